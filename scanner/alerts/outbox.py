"""Findings and their outbox rows, written inside the transaction that records them.

The first-run rule: when a scan covers a network that no earlier scan
covered (the first scan of a new database, or a network added to the scope),
the findings for devices on that network are all recorded, but they go out
as ONE summary mail listing every one of them, flagged first, instead of a
mail each. From the next scan of that network on, each new finding is its
own mail (mode "immediate") or waits for the next digest (mode "digest").
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from ipaddress import IPv4Address, IPv4Network, ip_address, ip_network
from typing import Any

from scanner.alerts.compose import Text, digest_text, finding_text, first_capture_text, summary_text
from scanner.alerts.settings import EmailSettings
from scanner.findings import ABSENT_SCANS, Finding, Kind, PreviousDevice, device_findings
from scanner.findings import connection_finding as _connection_finding
from scanner.store import DeviceRecord, FindingsHook, ScanRecord, Store

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Recorded:
    """What one write added: new findings, and the outbox rows made for them."""

    findings: tuple[Finding, ...] = ()
    alerts: int = 0
    baseline_networks: tuple[str, ...] = ()


def _net(text: str) -> IPv4Network | None:
    try:
        net = ip_network(text, strict=False)
    except ValueError:
        return None
    return net if isinstance(net, IPv4Network) else None


def _contains(nets: Sequence[IPv4Network], ip: object) -> bool:
    try:
        addr = ip_address(str(ip))
    except ValueError:
        return False
    return isinstance(addr, IPv4Address) and any(addr in n for n in nets)


def new_networks(store: Store, scan_id: int, cidrs: Sequence[str]) -> list[IPv4Network]:
    """This scan's networks that no earlier scan covered (its first-run networks)."""
    earlier = [n for s in store.scans_between(None, scan_id) for c in s["cidrs"] if (n := _net(c))]
    out = []
    for c in cidrs:
        net = _net(c)
        if net is not None and not any(net.subnet_of(e) for e in earlier):
            out.append(net)
    return out


def _missed(store: Store, before: dict[str, Any], scan_id: int) -> int:
    """Scans since the device was last seen that covered its address, and missed it."""
    covering = 0
    for s in store.scans_between(before.get("last_scan_id"), scan_id):
        nets = [n for c in s["cidrs"] if (n := _net(c))]
        covering += _contains(nets, before.get("ip"))
    return covering


def record_scan_findings(
    store: Store,
    scan_id: int,
    scan: ScanRecord,
    changes: Sequence[tuple[dict[str, Any] | None, DeviceRecord]],
    settings: EmailSettings | None,
) -> Recorded:
    """Compute, dedupe and record the scan's findings; queue their mails if email is on."""
    now = scan.finished_at
    fresh: list[tuple[int, Finding]] = []
    for before, record in changes:
        previous = None
        if before is not None:
            missed = _missed(store, before, scan_id) if before.get("flagged") else 0
            previous = PreviousDevice.from_row(before, missed)
        for f in device_findings(previous, record, absent_scans=ABSENT_SCANS):
            fid = _add(store, scan_id, f, now)
            if fid is not None:
                fresh.append((fid, f))
    baseline_nets = new_networks(store, scan_id, scan.cidrs)
    if settings is None:
        return Recorded(tuple(f for _, f in fresh))
    baseline = [(i, f) for i, f in fresh if _contains(baseline_nets, f.detail.get("ip"))]
    rest = [(i, f) for i, f in fresh if not _contains(baseline_nets, f.detail.get("ip"))]
    alerts = 0
    if baseline_nets:
        devices = sum(_contains(baseline_nets, r.ip) for _, r in changes)
        text = summary_text([str(n) for n in baseline_nets], devices, [f for _, f in baseline])
        children = [_queue(store, i, f, now, status="summarised") for i, f in baseline]
        if children:
            bundle(store, children, "summary", text, now, from_status="summarised")
        else:
            store.add_alert(
                kind="summary", subject=text.subject, body=text.body, html=text.html, created_at=now
            )
        alerts += 1
    status = "queued" if settings.mode == "digest" else "pending"
    for i, f in rest:
        _queue(store, i, f, now, status=status)
        alerts += status == "pending"
    _LOGGER.info(
        "scan %d: %d new findings, %d mails queued%s",
        scan_id,
        len(fresh),
        alerts,
        f" (first scan of {', '.join(map(str, baseline_nets))}: one summary)"
        if baseline_nets
        else "",
    )
    return Recorded(tuple(f for _, f in fresh), alerts, tuple(str(n) for n in baseline_nets))


def _add(store: Store, scan_id: int | None, f: Finding, now: str) -> int | None:
    """The finding's id if it is new; None if the store already had it."""
    return store.add_finding(
        scan_id=scan_id,
        kind=str(f.kind),
        key=f.key,
        device_id=f.device,
        detail=dict(f.detail),
        now=now,
    )


def bundle(
    store: Store, ids: Sequence[int], kind: str, text: Text, now: str, *, from_status: str
) -> int:
    """One mail of `kind` carrying the alerts `ids`, which leave `from_status`."""
    return store.bundle_alerts(
        ids,
        kind=kind,
        subject=text.subject,
        body=text.body,
        html=text.html,
        created_at=now,
        from_status=from_status,
    )


def _queue(store: Store, finding_id: int, f: Finding, now: str, *, status: str) -> int:
    text = finding_text(f)
    return store.add_alert(
        kind="finding",
        subject=text.subject,
        body=text.body,
        html=text.html,
        created_at=now,
        status=status,
        finding_id=finding_id,
    )


def recorder(settings: EmailSettings | None) -> FindingsHook:
    """The `findings_for` hook for Store.record_scan."""

    def hook(
        store: Store,
        scan_id: int,
        scan: ScanRecord,
        changes: list[tuple[dict[str, Any] | None, DeviceRecord]],
    ) -> None:
        record_scan_findings(store, scan_id, scan, changes, settings)

    return hook


def record_connection_findings(store: Store, settings: EmailSettings | None, now: str) -> int:
    """New vendor-cloud/unexpected connections become findings (and mails), once each.

    Runs after captures and pcap imports, whoever wrote the rows. The first
    time any are found, they go out as one summary, as for a first scan.
    """
    known = store.finding_keys(str(Kind.NEW_CONNECTION))
    new = [
        f
        for row in store.connections()
        if (f := _connection_finding(row)) is not None and f.key not in known
    ]
    if not new:
        return 0
    first = not known
    count = 0
    with store.transaction():
        fresh: list[tuple[int, Finding]] = []
        for f in new:
            fid = _add(store, None, f, now)
            if fid is not None:
                fresh.append((fid, f))
                count += 1
        if settings is None or not fresh:
            return count
        if first and len(fresh) > 1:
            ids = [_queue(store, i, f, now, status="summarised") for i, f in fresh]
            text = first_capture_text([f for _, f in fresh])
            bundle(store, ids, "summary", text, now, from_status="summarised")
        else:
            status = "queued" if settings.mode == "digest" else "pending"
            for i, f in fresh:
                _queue(store, i, f, now, status=status)
    return count


def make_digest(
    store: Store, settings: EmailSettings, now: str, *, force: bool = False
) -> int | None:
    """Fold queued findings into one digest mail when digest_minutes have passed."""
    if settings.mode != "digest":
        return None
    queued = list(reversed(store.alerts(status="queued")))
    if not queued:
        return None
    last = store.last_alert_created("digest")
    if not force and last is not None:
        due = datetime.fromisoformat(last) + timedelta(minutes=settings.digest_minutes)
        if datetime.fromisoformat(now) < due:
            return None
    text = digest_text(queued, last)
    return bundle(store, [int(r["id"]) for r in queued], "digest", text, now, from_status="queued")
