"""[alerts.email]: the stable contract parses; every mistake names file and key."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from scanner.alerts.settings import EmailSettings, alerts_from_dict
from scanner.config import parse_config
from scanner.errors import ConfigError

# the section exactly as the issue fixes it (the stable contract)
CONTRACT = """
[alerts.email]
host = "smtp.force.example"   # required to enable email
port = 587
security = "starttls"         # "starttls" | "ssl" | "none" (none only to a trusted internal relay)
username = "scanner"          # optional
password_file = "/run/credentials/scanner.service/smtp"   # optional; never the password itself
from = "scanner@force.example"
to = ["soc@force.example"]
mode = "immediate"            # "immediate" | "digest"
digest_minutes = 60
"""
WHERE = "/etc/scanner/scanner.toml"


def email(**over: Any) -> dict[str, Any]:
    d: dict[str, Any] = dict(tomllib.loads(CONTRACT)["alerts"]["email"])
    d.update(over)
    return {k: v for k, v in d.items() if v is not None}


def test_contract_section_parses() -> None:
    s = alerts_from_dict(tomllib.loads(CONTRACT)["alerts"], WHERE)
    assert s == EmailSettings(
        host="smtp.force.example",
        port=587,
        security="starttls",
        username="scanner",
        password_file=Path("/run/credentials/scanner.service/smtp"),
        from_addr="scanner@force.example",
        to=("soc@force.example",),
        mode="immediate",
        digest_minutes=60,
    )
    assert s.domain == "force.example"


def test_config_file_carries_it() -> None:
    cfg = parse_config(CONTRACT + "\n[daemon]\ninterval_minutes = 30\n", WHERE)
    assert cfg.email is not None and cfg.email.host == "smtp.force.example"
    assert cfg.daemon.interval_minutes == 30
    assert parse_config("", WHERE).email is None


def test_default_port_follows_security() -> None:
    assert EmailSettings.from_dict(email(port=None, security="ssl"), WHERE).port == 465
    plain = email(port=None, security="none", username=None, password_file=None)
    assert EmailSettings.from_dict(plain, WHERE).port == 25


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"host": None}, "alerts.email.host is required"),
        ({"to": []}, "alerts.email.to: must be a non-empty list"),
        ({"to": ["soc"]}, "alerts.email.to: [0] 'soc' is not"),
        ({"from": "Scanner <s@x.example>"}, "alerts.email.from: 'Scanner <s@x.example>' is not"),
        ({"security": "tls"}, "alerts.email.security: must be one of 'starttls', 'ssl', 'none'"),
        ({"security": "none"}, "alerts.email.username: refusing to log in without TLS"),
        ({"password_file": None}, "alerts.email.password_file: needed with the other"),
        ({"port": 0}, "alerts.email.port: must be a port number"),
        ({"mode": "weekly"}, "alerts.email.mode: must be one of"),
        ({"digest_minutes": 0}, "alerts.email.digest_minutes: must be a whole number"),
        (
            {"host": "smtp.example\r\nRCPT TO:<x>"},
            "alerts.email.host: must be a non-empty one-line",
        ),
        ({"password": "hunter2"}, "alerts.email.password: never put the password in the config"),
        ({"hots": "x"}, "unknown key alerts.email.hots (did you mean 'host'?)"),
    ],
)
def test_mistakes_name_file_and_key(over: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        EmailSettings.from_dict(email(**over), WHERE)
    assert str(exc.value).startswith(WHERE + ": ")
    assert message in str(exc.value)
    assert "hunter2" not in str(exc.value)


def test_alerts_table_shape() -> None:
    assert alerts_from_dict({}, WHERE) is None
    with pytest.raises(ConfigError, match=r"unknown key alerts\.slack"):
        alerts_from_dict({"slack": {}}, WHERE)
    with pytest.raises(ConfigError, match=r"\[alerts.email\] must be a table"):
        alerts_from_dict({"email": "smtp"}, WHERE)


def test_password_file_is_read_at_send_time(tmp_path: Path) -> None:
    pw = tmp_path / "smtp"
    s = EmailSettings.from_dict(email(password_file=str(pw)), WHERE)
    with pytest.raises(ConfigError, match="cannot read SMTP password"):
        s.read_password()
    pw.write_text("s3cret\n")
    assert s.read_password() == "s3cret"
    pw.write_text("")
    with pytest.raises(ConfigError, match="empty"):
        s.read_password()
