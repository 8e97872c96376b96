"""Observations are the one door device text comes in by: no control sequence passes it."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from scanner.model import Observation, Source, defang
from tests.helpers import T0

TERMINAL = "\x1b]0;pwned\x07\x1b[2J\x9b31m\x9d0;x\x9c\r\x08"


def test_control_sequences_become_visible_replacement_characters() -> None:
    o = Observation(
        source=Source.HTTP,
        ip="198.51.100.9",
        seen_at=T0,
        attrs={"title": f"Cam{TERMINAL}=cmd <b>", "port": "80"},
        error=f"not http: {TERMINAL}",
    )
    assert (
        o.attrs["title"]
        == "Cam\ufffd]0;pwned\ufffd\ufffd[2J\ufffd31m\ufffd0;x\ufffd\ufffd\ufffd=cmd <b>"
    )
    assert o.attrs["port"] == "80"
    assert o.error is not None and "\x1b" not in o.error and "\x9b" not in o.error
    # tab and newline are text, not commands; HTML and formulas are the renderers' job
    assert defang("a\tb\nc =1 <i>") == "a\tb\nc =1 <i>"


def test_clean_text_is_kept_as_it_is() -> None:
    attrs = {"model": "DS-2CD2143G2-I", "name": "Caméra d'entrée"}
    o = Observation(source=Source.WSD, ip="198.51.100.9", seen_at=T0, attrs=attrs)
    assert o.attrs is attrs  # nothing to do: no copy


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=10), st.text(max_size=60), max_size=6))
def test_no_attribute_keeps_a_control_character(attrs: dict[str, str]) -> None:
    o = Observation(source=Source.MDNS, ip="198.51.100.9", seen_at=T0, attrs=attrs)
    assert set(o.attrs) == set(attrs)
    for v in o.attrs.values():
        assert not any(c < "\t" or "\x0b" <= c < " " or "\x7f" <= c <= "\x9f" for c in v)
