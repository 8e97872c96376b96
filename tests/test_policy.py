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


def _flagged_ident() -> Identification:
    return _judge("44:19:b6:00:00:02")[0]


def test_a_valid_exception_is_reported_as_accepted_risk() -> None:
    from datetime import date

    from scanner.exceptions import parse_exceptions

    [exc] = parse_exceptions(
        '[[exception]]\nmac = "44-19-B6-00-00-02"\nreason = "ANPR, replacement ordered"\n'
        'approver = "J. Smith"\nexpires = 2027-03-31\n',
        "ex.toml",
    )
    a = assess(_flagged_ident(), "GB", DB, exception=exc, today=date(2026, 11, 22))
    assert a.verdict is Verdict.FLAGGED
    assert a.accepted_risk and a.exception == "valid"
    assert (
        "accepted risk: ANPR, replacement ordered (approved by J. Smith until 2027-03-31)"
        in a.reasons
    )


def test_an_expired_exception_alarms_again() -> None:
    from datetime import date

    from scanner.exceptions import RiskException

    exc = RiskException("44:19:b6:00:00:02", None, "temporary", "J. Smith", date(2026, 1, 1))
    a = assess(_flagged_ident(), "GB", DB, exception=exc, today=date(2026, 11, 22))
    assert a.flagged and not a.accepted_risk
    assert a.exception == "expired"
    assert any(r.startswith("exception expired on 2026-01-01") for r in a.reasons)


def test_exception_register_errors_name_file_entry_and_key() -> None:
    import pytest

    from scanner.errors import ConfigError
    from scanner.exceptions import parse_exceptions

    with pytest.raises(ConfigError, match=r"ex.toml: exception\[0\]: give mac or serial"):
        parse_exceptions('[[exception]]\nreason = "x"\n', "ex.toml")
    with pytest.raises(ConfigError, match=r"exception\[0\]: expires must be a TOML date"):
        parse_exceptions(
            '[[exception]]\nserial = "X1"\nreason = "x"\napprover = "y"\nexpires = "soon"\n',
            "ex.toml",
        )
    with pytest.raises(ConfigError, match=r"exception\[0\]: unknown key 'aprover'"):
        parse_exceptions('[[exception]]\nserial = "X1"\naprover = "y"\n', "ex.toml")


def test_flag_policies_narrow_what_flags() -> None:
    ident = _flagged_ident()
    only_survey = assess(ident, "GB", DB, flag_policies=frozenset({"bscc-survey-2022"}))
    assert only_survey.flagged
    assert "BSCC 2022 police survey [bscc-survey-2022]" in only_survey.reasons[0]
    zte = _judge("00:19:c6:00:00:01")[0]  # a ZTE prefix: on s.889 but not in the survey
    assert not assess(zte, "GB", DB, flag_policies=frozenset({"bscc-survey-2022"})).flagged
