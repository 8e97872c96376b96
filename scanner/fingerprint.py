"""Matching: from a device's observations to who made it, with evidence.

Pure functions over Observations and the fingerprint database; no I/O
beyond loading the database once.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from scanner.errors import ConfigError
from scanner.model import Evidence, Identification, Observation
from scanner.oui import OuiRegistry, is_locally_administered
from scanner.resources import data_dir


@dataclass(frozen=True, slots=True)
class Policy:
    id: str
    short: str
    title: str
    date: str
    url: str


@dataclass(frozen=True, slots=True)
class Vendor:
    id: str
    name: str
    registrant: re.Pattern[str]
    country: str | None
    flags: tuple[str, ...]
    sources: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class FingerprintDB:
    vendors: tuple[Vendor, ...]
    policies: dict[str, Policy]

    def vendor_for_registrant(self, registrant: str) -> Vendor | None:
        for v in self.vendors:
            if v.registrant.search(registrant):
                return v
        return None

    def vendor_by_name(self, name: str) -> Vendor | None:
        for v in self.vendors:
            if v.name == name or v.id == name:
                return v
        return None


def _load_toml(path: Path) -> dict[str, object]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from None


def load_db(directory: Path | None = None) -> FingerprintDB:
    """Read and check `vendors.toml` and `policies.toml`; errors name file and entry."""
    base = directory or data_dir("fingerprints")
    pol_path, ven_path = base / "policies.toml", base / "vendors.toml"
    policies: dict[str, Policy] = {}
    for pid, body in _load_toml(pol_path).items():
        if not isinstance(body, dict):
            raise ConfigError(f"{pol_path}: [{pid}] must be a table")
        try:
            policies[pid] = Policy(
                pid, str(body["short"]), str(body["title"]), str(body["date"]), str(body["url"])
            )
        except KeyError as exc:
            raise ConfigError(f"{pol_path}: [{pid}] lacks {exc.args[0]!r}") from None
    vendors = []
    raw = _load_toml(ven_path).get("vendor", [])
    if not isinstance(raw, list):
        raise ConfigError(f"{ven_path}: 'vendor' must be an array of tables")
    for i, entry in enumerate(raw):
        where = f"{ven_path}: vendor[{i}] ({entry.get('id', '?')})"
        try:
            flags = tuple(entry.get("flags", ()))
            unknown = [f for f in flags if f not in policies]
            if unknown:
                raise ConfigError(f"{where}: flags cite unknown policy {unknown[0]!r}")
            if not entry.get("sources"):
                raise ConfigError(f"{where}: no sources cited")
            vendors.append(
                Vendor(
                    id=entry["id"],
                    name=entry["name"],
                    registrant=re.compile(entry["registrant"], re.IGNORECASE),
                    country=entry.get("country"),
                    flags=flags,
                    sources=tuple(entry["sources"]),
                )
            )
        except KeyError as exc:
            raise ConfigError(f"{where}: missing key {exc.args[0]!r}") from None
        except re.error as exc:
            raise ConfigError(f"{where}: registrant regex: {exc}") from None
    return FingerprintDB(tuple(vendors), policies)


@lru_cache(maxsize=1)
def default_db() -> FingerprintDB:
    return load_db()


def identify(
    observations: Sequence[Observation], oui: OuiRegistry, db: FingerprintDB
) -> Identification:
    """Who made this device, judged from its MAC's IEEE registrant (weak evidence)."""
    mac = next((o.mac for o in observations if o.mac), None)
    if mac is None:
        return Identification()
    if is_locally_administered(mac):
        return Identification(
            randomised_mac=True,
            evidence=(Evidence("arp", "mac", mac, "mac:locally-administered"),),
        )
    entry = oui.lookup(mac)
    if entry is None:
        return Identification(evidence=(Evidence("arp", "mac", mac, "oui:unregistered"),))
    vendor = db.vendor_for_registrant(entry.name)
    country = entry.country
    evidence = Evidence(
        "arp",
        "mac_oui",
        f"{entry.prefix} {entry.name} ({country or 'country unknown'})",
        f"ieee:{entry.block}",
    )
    return Identification(
        vendor=vendor.name if vendor else entry.name,
        maker=vendor.name if vendor else entry.name,
        origin_country=(vendor.country if vendor and vendor.country else country),
        registrant=entry.name,
        registrant_country=country,
        confidence="weak",
        evidence=(evidence,)
        + ((Evidence("arp", "registrant", entry.name, f"vendor:{vendor.id}"),) if vendor else ()),
    )


def lint(directory: Path | None = None) -> list[str]:
    """Problems in the fingerprint files, one line each; empty when clean."""
    try:
        db = load_db(directory)
    except ConfigError as exc:
        return [str(exc)]
    problems = []
    seen: dict[str, str] = {}
    for v in db.vendors:
        for key in (v.id, v.name.lower()):
            if key in seen and seen[key] != v.id:
                problems.append(f"vendors.toml: {v.id}: duplicate of {seen[key]}")
            seen[key] = v.id
        if v.registrant.search("") is not None:
            problems.append(f"vendors.toml: {v.id}: registrant regex matches everything")
        if v.country is not None and not re.fullmatch(r"[A-Z]{2}", v.country):
            problems.append(f"vendors.toml: {v.id}: country {v.country!r} is not ISO 3166 alpha-2")
    for pid, pol in db.policies.items():
        if not pol.url.startswith("https://"):
            problems.append(f"policies.toml: {pid}: url must be https")
    return problems
