"""Findings: the state changes worth telling a person about.

Pure. A finding comes from comparing what the store knew about a device
before a scan (or None: never seen) with what the scan made of it, never from
seeing the same thing again: a flagged camera that is still there is not news.
Each finding carries a dedupe `key`; the `findings` table holds it UNIQUE, so
the same change computed twice (a retried write, a reloaded daemon) is
recorded, and alerted, once.

Kinds and their keys:

=================  ==========================================================
new-flagged        a device on a policy list, not covered by a valid
                   exception, that was unknown or not flagged before
                   (``new-flagged:<device>``)
new-non-home       a device made outside the home country, new or newly
                   identified as such (``new-non-home:<device>``)
firmware-changed   both firmware strings known and different
                   (``firmware-changed:<device>:<old>-><new>@<prev last_seen>``)
ip-changed         the device answered on another address
                   (``ip-changed:<device>:<old>-><new>@<prev last_seen>``)
flagged-returned   a flagged device missed ABSENT_SCANS scans that covered its
                   address and is back (``flagged-returned:<device>@<prev last_seen>``)
exception-expired  the register's exception for the device has expired
                   (``exception-expired:<device>:<expiry date>``)
new-connection     a camera talked to a vendor cloud or an unexpected
                   destination (``new-connection:<device>:<dst>:<port>/<proto>``)
=================  ==========================================================
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from scanner.model import CONNECTION_KEYS, Verdict
from scanner.store import DeviceRecord

# A flagged device must miss this many covering scans before its return is
# news: one lost ARP reply is not an absence.
ABSENT_SCANS = 2
# Connection classes that alert; "expected" traffic does not.
ALERT_CONNECTION_CLASSES = ("vendor-cloud", "unexpected")
_EXPIRED = re.compile(r"exception expired on (\d{4}-\d\d-\d\d)")
_MAX_EVIDENCE = 20  # evidence lines carried into a finding


class Kind(StrEnum):
    NEW_FLAGGED = "new-flagged"
    NEW_NON_HOME = "new-non-home"
    FIRMWARE_CHANGED = "firmware-changed"
    IP_CHANGED = "ip-changed"
    FLAGGED_RETURNED = "flagged-returned"
    EXCEPTION_EXPIRED = "exception-expired"
    NEW_CONNECTION = "new-connection"

    @property
    def label(self) -> str:
        return _TITLES[self]

    @property
    def rank(self) -> int:
        """Sort order in summaries: the most urgent first."""
        return list(Kind).index(self)


_TITLES = {
    Kind.NEW_FLAGGED: "New flagged device",
    Kind.NEW_NON_HOME: "New non-home-origin device",
    Kind.FIRMWARE_CHANGED: "Firmware changed",
    Kind.IP_CHANGED: "IP address changed",
    Kind.FLAGGED_RETURNED: "Flagged device back after absence",
    Kind.EXCEPTION_EXPIRED: "Exception expired",
    Kind.NEW_CONNECTION: "New vendor-cloud or unexpected connection",
}


@dataclass(frozen=True, slots=True)
class Finding:
    """One state change: what happened, to which device, and the evidence."""

    kind: Kind
    device: str | None  # devices.id, when the finding is about a known device
    key: str  # dedupe key, UNIQUE in the findings table
    detail: Mapping[str, Any] = field(default_factory=dict)  # JSON-able

    @property
    def flagged(self) -> bool:
        return bool(self.detail.get("flagged"))


@dataclass(frozen=True, slots=True)
class PreviousDevice:
    """What the store knew about a device before this scan."""

    key: str
    ip: str | None
    firmware: str | None
    verdict: str
    flagged: bool
    accepted_risk: bool
    last_seen: str
    missed_scans: int = 0  # complete scans since last_seen that covered its address

    @classmethod
    def from_row(cls, row: Mapping[str, Any], missed_scans: int = 0) -> PreviousDevice:
        return cls(
            key=str(row["id"]),
            ip=row.get("ip"),
            firmware=row.get("firmware"),
            verdict=str(row.get("verdict") or ""),
            flagged=bool(row.get("flagged")),
            accepted_risk=bool(row.get("accepted_risk")),
            last_seen=str(row.get("last_seen") or ""),
            missed_scans=missed_scans,
        )


def _name(record: DeviceRecord) -> str | None:
    """The name the device calls itself, from any source that reported one."""
    for o in record.observations:
        name = o.attrs.get("name")
        if name:
            return name
    return None


def device_detail(record: DeviceRecord) -> dict[str, Any]:
    """The evidence a person needs to find and judge the device, JSON-able."""
    ident, a = record.identification, record.assessment
    return {
        "ip": record.ip,
        "mac": record.mac,
        "name": _name(record),
        "vendor": ident.vendor,
        "maker": ident.maker,
        "model": ident.model,
        "firmware": ident.firmware,
        "serial": ident.serial,
        "origin_country": ident.origin_country,
        "registrant": ident.registrant,
        "registrant_country": ident.registrant_country,
        "confidence": ident.confidence,
        "verdict": str(a.verdict),
        "flagged": a.flagged,
        "accepted_risk": a.accepted_risk,
        "reasons": list(a.reasons),
        "evidence": [
            {"source": e.source, "field": e.field, "value": e.value, "rule": e.rule}
            for e in ident.evidence[:_MAX_EVIDENCE]
        ],
        "sources": sorted(record.sources),
    }


def _expiry(reasons: Sequence[str]) -> str:
    for r in reasons:
        m = _EXPIRED.search(r)
        if m:
            return m.group(1)
    return "unknown"


def device_findings(
    previous: PreviousDevice | None,
    record: DeviceRecord,
    *,
    absent_scans: int = ABSENT_SCANS,
) -> list[Finding]:
    """Findings for one device of a scan, given its stored state before the scan.

    `record.key` must already be the stored identity (record_scan resolves it).
    """
    a = record.assessment
    dev = record.key
    detail = device_detail(record)
    out: list[Finding] = []

    def add(kind: Kind, key: str, **extra: Any) -> None:
        out.append(Finding(kind, dev, f"{kind}:{dev}{key}", {**detail, **extra}))

    alertable = a.flagged and not a.accepted_risk
    expired = a.exception == "expired"
    if expired and (previous is None or previous.accepted_risk):
        add(Kind.EXCEPTION_EXPIRED, f":{_expiry(a.reasons)}", expired_on=_expiry(a.reasons))
    elif alertable and (previous is None or not previous.flagged):
        add(Kind.NEW_FLAGGED, "")
    elif (
        a.verdict is Verdict.NON_HOME
        and not a.accepted_risk
        and not expired
        and (previous is None or previous.verdict not in (Verdict.NON_HOME, Verdict.FLAGGED))
    ):
        add(Kind.NEW_NON_HOME, "")
    if previous is None:
        return out
    since = f"@{previous.last_seen}"
    if alertable and previous.flagged and previous.missed_scans >= absent_scans:
        add(
            Kind.FLAGGED_RETURNED,
            since,
            absent_since=previous.last_seen,
            missed_scans=previous.missed_scans,
        )
    fw = record.identification.firmware
    if previous.firmware and fw and fw != previous.firmware:
        add(Kind.FIRMWARE_CHANGED, f":{previous.firmware}->{fw}{since}", old=previous.firmware)
    if previous.ip and record.ip != previous.ip:
        add(Kind.IP_CHANGED, f":{previous.ip}->{record.ip}{since}", old=previous.ip)
    return out


_RUNNING = ("last_seen", "packets", "bytes")


def connection_finding(conn: Mapping[str, Any]) -> Finding | None:
    """A finding for a connections row of an alerting class, else None.

    Keyed on (device, destination, port, protocol): byte counters and
    last_seen moving on are repetition, not news.
    """
    cls = conn.get("class")
    if cls not in ALERT_CONNECTION_CLASSES:
        return None
    who = conn.get("device_mac") or conn.get("device_ip")
    port = conn.get("dst_port")
    key = f"{Kind.NEW_CONNECTION}:{who}:{conn.get('dst_ip')}:{port if port is not None else '-'}"
    key += f"/{conn.get('proto')}"
    # what identifies the flow, not its running counts: a finding must not change
    detail = {k: conn.get(k) for k in CONNECTION_KEYS if k not in _RUNNING}
    detail["ip"], detail["mac"] = conn.get("device_ip"), conn.get("device_mac")
    device = f"mac:{conn['device_mac']}" if conn.get("device_mac") else None
    return Finding(Kind.NEW_CONNECTION, device, key, detail)
