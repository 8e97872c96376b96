"""`[capture]` settings: where to listen, what counts as internal or allowed.

Built from a plain dict (the `[capture]` table of the config file, or flags)
by `CaptureSettings.from_dict`, which names the key in every error, so
scanner/config.py can wire it in with one line.

```toml
[capture]
interface = "eth1"                    # the SPAN/mirror port or the gateway's inside leg
seconds = 60                          # one capture window
every_minutes = 15                    # how often the daemon opens a window
promisc = true                        # needed on a SPAN port; harmless elsewhere
internal_networks = ["10.0.0.0/8"]    # added to the defaults (RFC 1918, CGNAT, link-local, ULA)
geoip_mmdb = "/var/lib/scanner/dbip-country-lite.mmdb"   # optional, MMDB reader
geoip_file = "/usr/share/scanner/geoip"                  # optional, Tor/IPFire text format
max_flows = 65536                     # flow-table cap per window (memory bound)
max_names = 65536                     # DNS answer cache cap

[[capture.allow]]                     # one of address / network / name, optional ports
address = "203.0.113.20"
note = "NVR at the data centre"
[[capture.allow]]
name = "ntp.force.example"            # matches the name and its sub-domains
ports = [123]
note = "force NTP"
```
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from pathlib import Path
from typing import Any

from scanner.checks import each, whole
from scanner.errors import ConfigError

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network

# Always internal: never routed on the internet, so never "phoning home".
DEFAULT_INTERNAL: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(n)
    for n in (
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",  # carrier-grade NAT (RFC 6598)
        "169.254.0.0/16",
        "fc00::/7",
        "fe80::/10",
    )
)
_IFNAME = re.compile(r"^[A-Za-z0-9_.:@-]{1,15}$")
_LABEL = r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?"
_NAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*$")
_ALLOW_KEYS = {"address", "network", "name", "ports", "note"}
_KEYS = {
    "interface",
    "seconds",
    "every_minutes",
    "promisc",
    "internal_networks",
    "allow",
    "geoip_mmdb",
    "geoip_file",
    "max_flows",
    "max_names",
}


def normalise_name(text: str) -> str | None:
    """Lower-case DNS name without the trailing dot, or None if it is not one."""
    name = text.strip().lower().removesuffix(".")
    return name if _NAME.fullmatch(name) else None


def name_matches(name: str, pattern: str) -> bool:
    """True if `name` is `pattern` or a sub-domain of it (label boundary, not substring)."""
    return name == pattern or name.endswith("." + pattern)


@dataclass(frozen=True, slots=True)
class AllowRule:
    """One allowlist entry: exactly one of address, network or name."""

    address: IPAddress | None = None
    network: IPNetwork | None = None
    name: str | None = None
    ports: frozenset[int] = frozenset()  # empty: any port
    note: str = ""

    def matches(self, dst: IPAddress, port: int | None, names: Sequence[str]) -> bool:
        if self.ports and port not in self.ports:
            return False
        if self.address is not None:
            return dst == self.address
        if self.network is not None:
            return dst.version == self.network.version and dst in self.network
        return self.name is not None and any(name_matches(n, self.name) for n in names)

    @property
    def label(self) -> str:
        what = str(self.address or self.network or self.name)
        return f"{what} ({self.note})" if self.note else what


@dataclass(frozen=True, slots=True)
class CaptureSettings:
    interface: str | None = None
    seconds: float = 60.0
    every_minutes: int = 15
    promisc: bool = True
    internal_networks: tuple[IPNetwork, ...] = ()  # in addition to DEFAULT_INTERNAL
    allow: tuple[AllowRule, ...] = ()
    geoip_mmdb: Path | None = None
    geoip_file: Path | None = None
    max_flows: int = 65_536
    max_names: int = 65_536

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], where: str = "[capture]") -> CaptureSettings:
        """Validate a `[capture]` table; ConfigError names `where` and the key."""
        unknown = sorted(set(raw) - _KEYS)
        if unknown:
            raise ConfigError(f"{where}: unknown key capture.{unknown[0]}")
        out: dict[str, Any] = {}
        try:
            for key, value in raw.items():
                out[key] = _CHECKS[key](value)
        except ValueError as exc:
            raise ConfigError(f"{where}: capture.{key}: {exc}") from None
        return cls(**out)

    def internal(self) -> tuple[IPNetwork, ...]:
        return DEFAULT_INTERNAL + self.internal_networks


def _interface(v: Any) -> str:
    if not isinstance(v, str) or not _IFNAME.match(v):
        raise ValueError(f"{v!r} is not an interface name")
    return v


def _number(lo: float, hi: float) -> Any:
    def check(v: Any) -> float:
        if isinstance(v, bool) or not isinstance(v, int | float) or not lo <= v <= hi:
            raise ValueError(f"must be a number from {lo:g} to {hi:g}")
        return float(v)

    return check


def _bool(v: Any) -> bool:
    if not isinstance(v, bool):
        raise ValueError("must be true or false")
    return v


def _path(v: Any) -> Path:
    if not isinstance(v, str) or not v:
        raise ValueError("must be a non-empty path")
    return Path(v)


def parse_network(v: Any) -> IPNetwork:
    """A CIDR (IPv4 or IPv6, host bits clear); a bare address is its /32 or /128."""
    if not isinstance(v, str):
        raise ValueError(f"{v!r} is not a CIDR string")
    try:
        net = ipaddress.ip_network(v, strict=True)
    except ValueError:
        raise ValueError(f"{v!r} is not a valid CIDR (host bits set?)") from None
    return net


def parse_allow(entry: Any) -> AllowRule:
    """One allowlist entry from a table, or from a flag's text (address, CIDR or name)."""
    if isinstance(entry, str):
        text = entry.strip()
        try:
            return AllowRule(address=ipaddress.ip_address(text))
        except ValueError:
            pass
        if "/" in text:
            return AllowRule(network=parse_network(text))
        name = normalise_name(text)
        if name is None:
            raise ValueError(f"{entry!r} is not an address, network or DNS name")
        return AllowRule(name=name)
    if not isinstance(entry, dict):
        raise ValueError("must be a table with address, network or name")
    unknown = sorted(set(entry) - _ALLOW_KEYS)
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r} (allowed: {', '.join(sorted(_ALLOW_KEYS))})")
    given = [k for k in ("address", "network", "name") if k in entry]
    if len(given) != 1:
        raise ValueError("give exactly one of address, network or name")
    ports: frozenset[int] = frozenset()
    if "ports" in entry:
        p = entry["ports"]
        if not isinstance(p, list) or not all(
            isinstance(x, int) and not isinstance(x, bool) and 0 < x < 65536 for x in p
        ):
            raise ValueError("ports must be a list of port numbers 1-65535")
        ports = frozenset(p)
    note = entry.get("note", "")
    if not isinstance(note, str):
        raise ValueError("note must be text")
    kind, value = given[0], entry[given[0]]
    if not isinstance(value, str):
        raise ValueError(f"{kind} must be text")
    if kind == "address":
        try:
            return AllowRule(address=ipaddress.ip_address(value), ports=ports, note=note)
        except ValueError:
            raise ValueError(f"address {value!r} is not an IP address") from None
    if kind == "network":
        return AllowRule(network=parse_network(value), ports=ports, note=note)
    name = normalise_name(value)
    if name is None:
        raise ValueError(f"name {value!r} is not a DNS name")
    return AllowRule(name=name, ports=ports, note=note)


_CHECKS: dict[str, Any] = {
    "interface": _interface,
    "seconds": _number(0.1, 3600),
    "every_minutes": whole(1, 1440),
    "promisc": _bool,
    "internal_networks": each(parse_network, "must be a list of CIDRs"),
    "allow": each(parse_allow, "must be a list of tables ([[capture.allow]])"),
    "geoip_mmdb": _path,
    "geoip_file": _path,
    "max_flows": whole(16, 1_000_000),
    "max_names": whole(16, 1_000_000),
}
