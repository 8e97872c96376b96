"""Config: validation names the file and key; the scope is mandatory."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from scanner.config import Config, Scope, load_config, parse_config, with_overrides
from scanner.errors import ConfigError, ScopeError
from scanner.resources import data_dir


def test_example_config_is_valid_and_documents_every_key() -> None:
    from scanner.config import SCHEMA

    path = data_dir("config") / "scanner.example.toml"
    cfg = load_config(path)
    assert cfg.scope.interfaces == ("eth1",)
    text = path.read_text()
    for section, keys in SCHEMA.items():
        assert f"[{section}]" in text
        for key in keys:
            assert f"\n{key} = " in text, f"{section}.{key} undocumented"
    from scanner.alerts.settings import _CHECKS as EMAIL_KEYS
    from scanner.capture.settings import _CHECKS as CAPTURE_KEYS

    assert cfg.email is not None and cfg.email.to == ("soc@force.example",)
    assert cfg.capture is not None and cfg.capture.interface == "eth2"
    assert cfg.daemon.interval_minutes == 60
    for section, keys in (
        ("alerts.email", EMAIL_KEYS),
        ("capture", CAPTURE_KEYS),
        ("daemon", ("interval_minutes", "cron", "retention_days")),
    ):
        assert f"[{section}]" in text
        for key in keys:
            documented = (f"\n{key} = ", f"\n# {key} = ", f"[[{section}.{key}]]")
            assert any(d in text for d in documented), f"{section}.{key} undocumented"


def test_unknown_key_is_named_with_a_suggestion() -> None:
    with pytest.raises(ConfigError, match=r"x.toml: unknown key scope.cidr \(did you mean 'cidrs'"):
        parse_config('[scope]\ncidr = ["192.0.2.0/24"]\n', "x.toml")


def test_unknown_section_is_named() -> None:
    with pytest.raises(ConfigError, match=r"unknown section \[scoop\]"):
        parse_config("[scoop]\n", "x.toml")


@pytest.mark.parametrize(
    ("cidr", "why"),
    [
        ("192.0.2.0/33", "not a valid CIDR"),
        ("192.0.2.1/24", "host bits set; did you mean 192.0.2.0/24"),
        ("10.0.0.0/8", "wider than /16"),
        ("2001:db8::/64", "only IPv4"),
        ("127.0.0.0/24", "not a network with hosts to scan"),
    ],
)
def test_bad_cidr_names_the_key_and_the_value(cidr: str, why: str) -> None:
    with pytest.raises(ConfigError, match=rf"x.toml: scope.cidrs: \[0\] .*{why}"):
        parse_config(f'[scope]\ninterfaces = ["eth0"]\ncidrs = ["{cidr}"]\n', "x.toml")


def test_bad_values_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"scan\.rate: must be a whole number from 1 to 1000"):
        parse_config("[scan]\nrate = 5000\n", "x.toml")
    with pytest.raises(ConfigError, match=r"policy\.home_country"):
        parse_config('[policy]\nhome_country = "UK "\n', "x.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        parse_config("[scope\n", "x.toml")


def test_no_scope_refuses_to_run() -> None:
    with pytest.raises(ScopeError, match="refusing to scan: no scope"):
        Config().require_scope()
    with pytest.raises(ScopeError, match="cidrs missing"):
        Config(scope=Scope(interfaces=("eth0",))).require_scope()


def test_flags_override_the_file_and_need_no_file(tmp_path: Path) -> None:
    cfg = with_overrides(Config(), interfaces=["lab0"], cidrs=["192.0.2.0/28"], db=tmp_path / "d")
    assert cfg.require_scope().cidrs == (IPv4Network("192.0.2.0/28"),)
    assert cfg.db == tmp_path / "d"
    with pytest.raises(ScopeError, match=r"--cidr: '300\.1\.1\.0/24' is not a valid CIDR"):
        with_overrides(Config(), cidrs=["300.1.1.0/24"])


def test_an_explicit_missing_config_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "nope.toml")


def test_scope_targets_skip_excluded_and_never_leave_the_cidrs() -> None:
    scope = Scope(
        interfaces=("eth0",),
        cidrs=(IPv4Network("192.0.2.0/29"), IPv4Network("192.0.2.0/30")),
        exclude=(IPv4Network("192.0.2.4/31"),),
    )
    targets = list(scope.targets())
    assert targets == [IPv4Address(f"192.0.2.{i}") for i in (1, 2, 3, 6)]
    assert scope.contains("192.0.2.6") and not scope.contains("192.0.2.5")
    assert not scope.contains("198.51.100.1") and not scope.contains("garbage")
