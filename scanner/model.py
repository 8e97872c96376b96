"""Plain records passed between discovery, matching, policy, store and report.

Discovery produces Observations; nothing from scapy, zeep or zeroconf travels
past the module that imported the library.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

# What a terminal obeys rather than prints: C0 controls but tab and newline, DEL,
# and the C1 controls (0x9b is a one-character CSI, 0x9d an OSC).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def defang(text: str) -> str:
    """Device text with every terminal control character made a visible U+FFFD."""
    return _CONTROL.sub("\N{REPLACEMENT CHARACTER}", text)


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(ts: datetime) -> str:
    """ISO-8601 UTC text, second precision: sorts and facets well in SQLite."""
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Source(StrEnum):
    """Who saw a device; the report's `sources` uses these names."""

    ARP = "arp"
    WSD = "wsd"
    ONVIF = "onvif"
    MDNS = "mdns"
    SSDP = "ssdp"
    SADP = "sadp"
    DHIP = "dhip"
    XMEYE = "xmeye"
    HTTP = "http"
    TLS = "tls"
    RTSP = "rtsp"


class Verdict(StrEnum):
    FLAGGED = "flagged"
    NON_HOME = "non-home-origin"
    HOME = "home-origin"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Observation:
    """One thing one source saw about one address in one scan."""

    source: Source
    ip: str
    seen_at: datetime
    mac: str | None = None  # normalised aa:bb:cc:dd:ee:ff
    attrs: Mapping[str, str] = field(default_factory=dict)
    error: str | None = None  # a reply we could not read: kept, not raised

    def __post_init__(self) -> None:
        # The one door device text comes in by: whatever a parser let through, no
        # control sequence reaches matching, the store or a report from here on.
        if any(_CONTROL.search(v) for v in self.attrs.values() if isinstance(v, str)):
            clean = {k: defang(v) if isinstance(v, str) else v for k, v in self.attrs.items()}
            object.__setattr__(self, "attrs", clean)
        if self.error is not None and _CONTROL.search(self.error):
            object.__setattr__(self, "error", defang(self.error))


@dataclass(frozen=True, slots=True)
class Evidence:
    source: str
    field: str
    value: str
    rule: str | None = None


@dataclass(frozen=True, slots=True)
class Identification:
    """Who made a device, as far as the evidence goes."""

    vendor: str | None = None  # brand on the box
    maker: str | None = None  # real manufacturer (differs for OEM relabels)
    model: str | None = None
    firmware: str | None = None
    serial: str | None = None
    origin_country: str | None = None
    registrant: str | None = None  # IEEE registrant of the MAC's prefix
    registrant_country: str | None = None
    confidence: str = "none"  # none | weak | strong
    randomised_mac: bool = False
    evidence: tuple[Evidence, ...] = ()
    conflicts: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Assessment:
    """A policy verdict with the reasons behind it."""

    verdict: Verdict
    flagged: bool
    reasons: tuple[str, ...] = ()
    accepted_risk: bool = False
    exception: str | None = None  # "valid" or "expired" when the register names the device


@dataclass(slots=True)
class Device:
    """A physical device as merged from one scan's observations."""

    key: str  # "mac:…", "serial:…", "uuid:…" or "ip:…": identity order of the merge
    ip: str
    mac: str | None
    observations: list[Observation] = field(default_factory=list)

    @property
    def sources(self) -> list[str]:
        return sorted({str(o.source) for o in self.observations})


# one row of the `connections` table as the report and findings carry it
CONNECTION_KEYS = (
    "device_mac",
    "device_ip",
    "dst_ip",
    "dst_port",
    "proto",
    "dst_name",
    "dst_country",
    "class",
    "vendor",
    "first_seen",
    "last_seen",
    "packets",
    "bytes",
)
