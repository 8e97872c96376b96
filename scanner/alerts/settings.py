"""The `[alerts.email]` config section, validated into EmailSettings.

Every error names the file and the key. The password is never in the config:
`password_file` points at a file (a systemd credential under
/run/credentials/scanner.service/ in production) read at send time.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.headerregistry import Address
from email.utils import parseaddr
from pathlib import Path
from typing import Any

from scanner.checks import each, whole
from scanner.errors import ConfigError

SECURITY = ("starttls", "ssl", "none")
MODES = ("immediate", "digest")
DEFAULT_PORTS = {"starttls": 587, "ssl": 465, "none": 25}
_HOST = re.compile(r"^[A-Za-z0-9.-]{1,253}$|^\[?[0-9A-Fa-f:.]{2,45}\]?$")


@dataclass(frozen=True, slots=True)
class EmailSettings:
    """How and to whom alert mails go."""

    host: str
    to: tuple[str, ...]
    from_addr: str
    port: int = 587
    security: str = "starttls"
    username: str | None = None
    password_file: Path | None = None
    mode: str = "immediate"
    digest_minutes: int = 60
    max_per_hour: int = 20  # storm cap: more than this become one "k suppressed" mail
    timeout: float = 30.0  # seconds for connect and for each SMTP command
    ca_file: Path | None = None  # extra CA bundle for an internal relay's certificate

    @property
    def domain(self) -> str:
        """The sender's domain, for Message-IDs."""
        return self.from_addr.rpartition("@")[2] or "localhost"

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str) -> EmailSettings:
        """Validate the [alerts.email] table; ConfigError names file and key."""
        unknown = sorted(set(d) - set(_CHECKS))
        if unknown:
            key = unknown[0]
            if key == "password":
                raise ConfigError(
                    f"{where}: alerts.email.password: never put the password in the config; "
                    "use password_file (e.g. a systemd LoadCredential= file)"
                )
            close = difflib.get_close_matches(key, list(_CHECKS), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{where}: unknown key alerts.email.{key}{hint}")
        v: dict[str, Any] = {}
        for key, value in d.items():
            try:
                v[key] = _CHECKS[key](value)
            except ValueError as exc:
                raise ConfigError(f"{where}: alerts.email.{key}: {exc}") from None
        for required in ("host", "from", "to"):
            if required not in v:
                raise ConfigError(f"{where}: alerts.email.{required} is required")
        security = v.get("security", "starttls")
        if v.get("username") and security == "none":
            raise ConfigError(
                f"{where}: alerts.email.username: refusing to log in without TLS "
                '(security = "none"); use "starttls" or "ssl", or drop the username'
            )
        if bool(v.get("username")) != bool(v.get("password_file")):
            missing = "password_file" if v.get("username") else "username"
            raise ConfigError(f"{where}: alerts.email.{missing}: needed with the other")
        return cls(
            host=v["host"],
            port=v.get("port", DEFAULT_PORTS[security]),
            security=security,
            username=v.get("username"),
            password_file=v.get("password_file"),
            from_addr=v["from"],
            to=v["to"],
            mode=v.get("mode", "immediate"),
            digest_minutes=v.get("digest_minutes", 60),
            max_per_hour=v.get("max_per_hour", 20),
            timeout=v.get("timeout", 30.0),
            ca_file=v.get("ca_file"),
        )

    def read_password(self) -> str | None:
        """The password from password_file (first line), or None without auth."""
        if self.password_file is None:
            return None
        try:
            text = self.password_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{self.password_file}: cannot read SMTP password: {exc}") from None
        password = text.splitlines()[0] if text else ""
        if not password:
            raise ConfigError(f"{self.password_file}: SMTP password file is empty")
        return password


def alerts_from_dict(d: Any, where: str) -> EmailSettings | None:
    """Validate the whole [alerts] table; None when it has no email section."""
    if not isinstance(d, dict):
        raise ConfigError(f"{where}: [alerts] must be a table")
    for key in d:
        if key != "email":
            raise ConfigError(f"{where}: unknown key alerts.{key} (only [alerts.email] exists)")
    email = d.get("email")
    if email is None:
        return None
    if not isinstance(email, dict):
        raise ConfigError(f"{where}: [alerts.email] must be a table")
    return EmailSettings.from_dict(email, where)


# ---------------------------------------------------------------- checks


def _text(v: Any) -> str:
    if not isinstance(v, str) or not v.strip() or any(c in v for c in "\r\n\0"):
        raise ValueError("must be a non-empty one-line string")
    return v.strip()


def _host(v: Any) -> str:
    host = _text(v)
    if not _HOST.match(host):
        raise ValueError(f"{host!r} is not a host name or address")
    return host


def _port(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 65535:
        raise ValueError("must be a port number from 1 to 65535")
    return v


def _choice(options: tuple[str, ...]) -> Callable[[Any], str]:
    def check(v: Any) -> str:
        if v not in options:
            raise ValueError(f"must be one of {', '.join(repr(o) for o in options)}")
        return str(v)

    return check


def _address(v: Any) -> str:
    text = _text(v)
    name, addr = parseaddr(text)
    try:
        parsed = Address(addr_spec=addr)
    except (ValueError, IndexError, TypeError):
        raise ValueError(f"{text!r} is not an email address") from None
    if not parsed.username or not parsed.domain or name or addr != text:
        raise ValueError(f"{text!r} is not a bare email address such as soc@force.example")
    return addr


def _addresses(v: Any) -> tuple[str, ...]:
    if isinstance(v, str):
        v = [v]
    if not v:
        raise ValueError(_ADDRESSES)
    return _each_address(v)


_ADDRESSES = "must be a non-empty list of email addresses"
_each_address = each(_address, _ADDRESSES)


def _path(v: Any) -> Path:
    return Path(_text(v))


def _timeout(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not 1 <= v <= 300:
        raise ValueError("must be a number of seconds from 1 to 300")
    return float(v)


_CHECKS: dict[str, Callable[[Any], Any]] = {
    "host": _host,
    "port": _port,
    "security": _choice(SECURITY),
    "username": _text,
    "password_file": _path,
    "from": _address,
    "to": _addresses,
    "mode": _choice(MODES),
    "digest_minutes": whole(1, 10080),
    "max_per_hour": whole(1, 1000),
    "timeout": _timeout,
    "ca_file": _path,
}
