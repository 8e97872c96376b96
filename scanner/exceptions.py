"""The exceptions register: devices a force has knowingly accepted, until a date.

An excepted device stays in every report, marked as accepted risk; after its
expiry it is judged (and alerts) like any other again.
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from scanner.errors import ConfigError
from scanner.oui import normalise_mac

_KEYS = {"mac", "serial", "reason", "approver", "expires", "reference"}


@dataclass(frozen=True, slots=True)
class RiskException:
    mac: str | None
    serial: str | None
    reason: str
    approver: str
    expires: date
    reference: str | None = None

    def valid_on(self, day: date) -> bool:
        return day <= self.expires

    def describe(self) -> str:
        ref = f", ref {self.reference}" if self.reference else ""
        return f"{self.reason} (approved by {self.approver} until {self.expires.isoformat()}{ref})"


def _text(entry: dict[str, Any], key: str, where: str, *, required: bool = True) -> str | None:
    value = entry.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: {key} must be a non-empty string")
    return value.strip()


def parse_exceptions(text: str, where: str) -> list[RiskException]:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: not valid TOML: {exc}") from None
    unknown = sorted(set(doc) - {"exception"})
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (expected [[exception]] tables)")
    out = []
    for i, entry in enumerate(doc.get("exception", [])):
        at = f"{where}: exception[{i}]"
        bad = sorted(set(entry) - _KEYS)
        if bad:
            raise ConfigError(f"{at}: unknown key {bad[0]!r}")
        mac = _text(entry, "mac", at, required=False)
        serial = _text(entry, "serial", at, required=False)
        if mac is None and serial is None:
            raise ConfigError(f"{at}: give mac or serial")
        if mac is not None:
            try:
                mac = normalise_mac(mac)
            except ValueError as exc:
                raise ConfigError(f"{at}: mac: {exc}") from None
        expires = entry.get("expires")
        if not isinstance(expires, date):
            raise ConfigError(f"{at}: expires must be a TOML date such as 2027-03-31")
        out.append(
            RiskException(
                mac=mac,
                serial=serial.upper() if serial else None,
                reason=_text(entry, "reason", at) or "",
                approver=_text(entry, "approver", at) or "",
                expires=expires,
                reference=_text(entry, "reference", at, required=False),
            )
        )
    return out


def load_exceptions(path: Path) -> list[RiskException]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read exceptions register: {exc}") from None
    return parse_exceptions(text, str(path))


def find(
    register: Sequence[RiskException], mac: str | None, serial: str | None
) -> RiskException | None:
    """The register entry for a device, by MAC first, then serial."""
    for e in register:
        if mac and e.mac == mac:
            return e
    for e in register:
        if serial and e.serial and e.serial == serial.upper():
            return e
    return None
