"""Mail text from hostile device strings: property tests over compose (pure)."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from scanner.alerts.compose import clean, finding_text, subject
from scanner.findings import Finding, Kind

# the only tags compose writes; anything else in the HTML came from a device
OUR_TAGS = re.compile(r"</?(section|h2|table|tr|th|td|p|b|ul|li|pre|hr)( align='left')?>")
UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069]")
hostile = st.text(
    alphabet=st.sampled_from(list("<>&\"'=+-@/:\\ \x1b\x07\r\n\t\u202ehtps\x9b")),
    max_size=80,
) | st.text(max_size=80)


@given(hostile)
def test_clean_leaves_no_control_and_no_live_scheme(text: str) -> None:
    out = clean(text)
    assert not UNSAFE.search(out)
    assert "://" not in out
    assert len(out) <= 300


@settings(max_examples=200)
@given(name=hostile, model=hostile, banner=hostile, firmware=hostile)
def test_finding_mail_escapes_every_device_string(
    name: str, model: str, banner: str, firmware: str
) -> None:
    f = Finding(
        Kind.FIRMWARE_CHANGED,
        "mac:44:19:b6:00:00:02",
        "k",
        {
            "ip": "198.51.100.10",
            "mac": "44:19:b6:00:00:02",
            "name": name,
            "maker": "Hikvision",
            "model": model,
            "firmware": firmware,
            "old": banner,
            "reasons": [banner],
            "evidence": [{"source": "http", "field": "server", "value": banner, "rule": None}],
        },
    )
    t = finding_text(f)
    assert "\n" not in t.subject and not UNSAFE.search(t.subject)
    for line in t.body.splitlines():
        assert not UNSAFE.search(line)
    assert OUR_TAGS.sub("", t.html).count("<") == 0
    assert OUR_TAGS.sub("", t.html).count(">") == 0


def test_subject_is_one_short_line() -> None:
    s = subject("x" * 500 + "\r\nBcc: a@b.example")
    assert len(s) <= 180 and "\n" not in s and "\r" not in s
