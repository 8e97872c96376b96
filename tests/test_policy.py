"""Matching and policy over ARP evidence: pure functions, no I/O."""

from __future__ import annotations

from scanner.fingerprint import default_db, identify, lint
from scanner.model import Identification, Verdict
from scanner.oui import OuiRegistry
from scanner.policy import assess
from tests.helpers import arp_obs

DB = default_db()


def _judge(mac: str, home: str = "GB") -> tuple[Identification, Verdict, tuple[str, ...]]:
    ident = identify([arp_obs("192.0.2.10", mac)], OuiRegistry.default(), DB)
    a = assess(ident, home, DB)
    return ident, a.verdict, a.reasons


def test_hikvision_oui_is_flagged_with_policy_reasons() -> None:
    ident, verdict, reasons = _judge("44:19:b6:00:00:02")
    assert ident.maker == "Hikvision" and ident.registrant_country == "CN"
    assert verdict is Verdict.FLAGGED
    assert any("US NDAA FY2019 s.889 [ndaa-889]" in r for r in reasons)
    assert any(e.rule == "ieee:MA-L" for e in ident.evidence)


def test_prama_hikvision_india_is_still_hikvision() -> None:
    ident, verdict, _ = _judge("24:b1:05:00:00:01")
    assert ident.registrant_country == "IN" and ident.maker == "Hikvision"
    assert verdict is Verdict.FLAGGED


def test_axis_is_non_home_and_never_flagged() -> None:
    ident, verdict, _ = _judge("00:40:8c:00:00:01")
    assert ident.maker == "Axis Communications" and ident.origin_country == "SE"
    assert verdict is Verdict.NON_HOME
    assert _judge("00:40:8c:00:00:01", home="SE")[1] is Verdict.HOME


def test_locally_administered_mac_gets_no_vendor_verdict() -> None:
    ident, verdict, reasons = _judge("02:00:5e:10:00:09")
    assert ident.randomised_mac and ident.maker is None
    assert verdict is Verdict.UNKNOWN
    assert "randomised/virtual" in reasons[0]


def test_shipped_fingerprints_lint_clean() -> None:
    assert lint() == []
