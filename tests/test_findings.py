"""Findings are state changes: pure function from (stored state, new record)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scanner.findings import (
    ABSENT_SCANS,
    Finding,
    Kind,
    PreviousDevice,
    connection_finding,
    device_findings,
)
from scanner.model import Assessment, Evidence, Identification, Verdict
from scanner.store import DeviceRecord
from tests.helpers import device

HIK = "44:19:b6:00:00:02"


def flagged(ip: str = "198.51.100.10", *, firmware: str | None = None) -> DeviceRecord:
    d = device(ip, HIK, maker="Hikvision", verdict=Verdict.FLAGGED)
    d.identification = Identification(
        vendor="Hikvision",
        maker="Hikvision",
        firmware=firmware,
        origin_country="CN",
        evidence=(Evidence("arp", "mac", HIK, "ieee:MA-L"),),
    )
    return d


def prev(rec: DeviceRecord, **kw: object) -> PreviousDevice:
    base = PreviousDevice(
        key=rec.key,
        ip=rec.ip,
        firmware=rec.identification.firmware,
        verdict=str(rec.assessment.verdict),
        flagged=rec.assessment.flagged,
        accepted_risk=rec.assessment.accepted_risk,
        last_seen="2026-11-22T02:00:00Z",
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def kinds(found: list[Finding]) -> list[Kind]:
    return [f.kind for f in found]


def test_new_flagged_device_is_one_finding_with_evidence() -> None:
    [f] = device_findings(None, flagged())
    assert f.kind is Kind.NEW_FLAGGED
    assert f.key == f"new-flagged:mac:{HIK}"
    assert f.device == f"mac:{HIK}"
    assert f.detail["ip"] == "198.51.100.10"
    assert f.detail["evidence"] == [
        {"source": "arp", "field": "mac", "value": HIK, "rule": "ieee:MA-L"}
    ]


def test_seeing_the_same_device_again_is_not_news() -> None:
    rec = flagged()
    assert device_findings(prev(rec), rec) == []
    axis = device("198.51.100.13", "ac:cc:8e:00:00:05")
    assert device_findings(prev(axis), axis) == []


def test_new_non_home_device_and_home_device() -> None:
    axis = device("198.51.100.13", "ac:cc:8e:00:00:05")
    assert kinds(device_findings(None, axis)) == [Kind.NEW_NON_HOME]
    uk = device("198.51.100.14", "00:07:c7:00:00:06", maker="Synectics", verdict=Verdict.HOME)
    assert device_findings(None, uk) == []
    unknown = device("198.51.100.17", "0a:1b:2c:3d:4e:09", maker=None, verdict=Verdict.UNKNOWN)
    assert device_findings(None, unknown) == []


def test_device_newly_identified_as_flagged() -> None:
    rec = flagged()
    before = prev(rec, verdict="unknown", flagged=False)
    assert kinds(device_findings(before, rec)) == [Kind.NEW_FLAGGED]


def test_accepted_risk_does_not_alert_until_it_expires() -> None:
    rec = flagged()
    rec.assessment = replace(rec.assessment, accepted_risk=True, exception="valid")
    assert device_findings(None, rec) == []
    stored = prev(rec)
    expired = flagged()
    expired.assessment = replace(
        expired.assessment,
        exception="expired",
        reasons=("maker on list", "exception expired on 2026-10-31: ANPR (approved by X)"),
    )
    [f] = device_findings(stored, expired)
    assert f.kind is Kind.EXCEPTION_EXPIRED
    assert f.key == f"exception-expired:mac:{HIK}:2026-10-31"
    # still expired at the next scan: already told
    assert device_findings(prev(expired), expired) == []


def test_firmware_and_ip_changes() -> None:
    old = flagged(firmware="V5.4.0 build 160530")
    new = flagged("198.51.100.99", firmware="V5.5.0 build 170725")
    found = device_findings(prev(old), new)
    assert kinds(found) == [Kind.FIRMWARE_CHANGED, Kind.IP_CHANGED]
    fw, ip = found
    assert fw.detail["old"] == "V5.4.0 build 160530"
    assert fw.detail["firmware"] == "V5.5.0 build 170725"
    assert ip.detail["old"] == "198.51.100.10" and ip.detail["ip"] == "198.51.100.99"
    # the same change computed again has the same key (dedupe), a later one not
    assert device_findings(prev(old), new)[1].key == ip.key
    later = prev(old, last_seen="2026-11-23T02:00:00Z")
    assert device_findings(later, new)[1].key != ip.key


def test_firmware_first_learnt_is_not_a_change() -> None:
    old, new = flagged(), flagged(firmware="V5.5.0")
    assert device_findings(prev(old), new) == []


def test_flagged_device_back_after_absence() -> None:
    rec = flagged()
    assert device_findings(prev(rec, missed_scans=ABSENT_SCANS - 1), rec) == []
    [f] = device_findings(prev(rec, missed_scans=ABSENT_SCANS), rec)
    assert f.kind is Kind.FLAGGED_RETURNED
    assert f.detail["absent_since"] == "2026-11-22T02:00:00Z"
    assert f.key == f"flagged-returned:mac:{HIK}@2026-11-22T02:00:00Z"


def test_connection_findings_only_for_alerting_classes() -> None:
    row = {
        "device_mac": HIK,
        "device_ip": "198.51.100.10",
        "dst_ip": "203.0.113.50",
        "dst_port": 443,
        "proto": "tcp",
        "dst_name": "hik-connect.example",
        "dst_country": "CN",
        "class": "vendor-cloud",
        "vendor": "hikvision",
        "first_seen": "2026-11-22T03:00:00Z",
        "packets": 10,
    }
    f = connection_finding(row)
    assert f is not None and f.kind is Kind.NEW_CONNECTION
    assert f.key == f"new-connection:{HIK}:203.0.113.50:443/tcp"
    # counters moving on are not a new finding
    assert connection_finding({**row, "packets": 99, "bytes": 5}) == f
    assert connection_finding({**row, "class": "expected"}) is None


@given(
    was_flagged=st.booleans(),
    accepted=st.booleans(),
    now_flagged=st.booleans(),
    now_accepted=st.booleans(),
    exception=st.sampled_from([None, "valid", "expired"]),
    missed=st.integers(0, 5),
    same_ip=st.booleans(),
)
def test_findings_are_deterministic_and_keys_unique(
    was_flagged: bool,
    accepted: bool,
    now_flagged: bool,
    now_accepted: bool,
    exception: str | None,
    missed: int,
    same_ip: bool,
) -> None:
    rec = flagged("198.51.100.10" if same_ip else "198.51.100.20")
    rec.assessment = Assessment(
        Verdict.FLAGGED if now_flagged else Verdict.NON_HOME,
        flagged=now_flagged,
        accepted_risk=now_accepted,
        exception=exception,
        reasons=("exception expired on 2026-01-01",) if exception == "expired" else (),
    )
    before = PreviousDevice(
        rec.key,
        "198.51.100.10",
        None,
        "flagged" if was_flagged else "non-home-origin",
        was_flagged,
        accepted,
        "2026-11-22T02:00:00Z",
        missed,
    )
    first = device_findings(before, rec)
    assert first == device_findings(before, rec)
    assert len({f.key for f in first}) == len(first)
    # a device unchanged against its own new state is never news
    after = PreviousDevice(
        rec.key,
        rec.ip,
        None,
        str(rec.assessment.verdict),
        now_flagged,
        now_accepted,
        "2026-11-22T03:00:00Z",
        0,
    )
    assert [f for f in device_findings(after, rec) if f.kind is not Kind.EXCEPTION_EXPIRED] == []


@pytest.mark.parametrize("kind", list(Kind))
def test_every_kind_has_a_label(kind: Kind) -> None:
    assert kind.label and kind.label[0].isupper()
