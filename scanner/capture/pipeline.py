"""One capture window or one pcap import, from inventory to `connections` rows.

inventory (store) -> FlowTable <- frames (live sniff or capture file)
FlowTable.finish() -> Classifier + GeoIP -> rows -> Store.upsert_connections

The same `rows_for` turns flows into rows for both paths, so a live window
and an import of a capture of it store the same connections. Findings and
mail for new vendor-cloud/unexpected rows are the alert side's job
(scanner.alerts.outbox.record_connection_findings), run after this.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from ipaddress import IPv4Address
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scanner.capture.classify import Classifier, cloud_patterns
from scanner.capture.dnsmap import NameMap
from scanner.capture.flows import DeviceRef, Flow, FlowTable
from scanner.capture.geoip import GeoIP, open_geoip
from scanner.capture.pcap import CaptureFile
from scanner.capture.settings import CaptureSettings, IPNetwork
from scanner.capture.zeek import is_zeek_log, read_conn_log
from scanner.errors import CaptureError
from scanner.model import iso

if TYPE_CHECKING:
    from scanner.capture.sniff import SniffResult
    from scanner.store import Store

_LOGGER = logging.getLogger(__name__)
# Names learnt from DNS outlive a window in the daemon (cameras cache answers
# for hours); one bounded map per interface.
_NAMES: dict[str, NameMap] = {}


@dataclass(slots=True)
class Outcome:
    """What one window or import did, for the CLI's summary."""

    source: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    new: list[dict[str, Any]] = field(default_factory=list)
    stats: Counter[str] = field(default_factory=Counter)
    sniff: SniffResult | None = None
    ended_early: str | None = None
    skipped: Counter[str] = field(default_factory=Counter)
    geoip: str = ""

    def by_class(self) -> Counter[str]:
        return Counter(str(r["class"]) for r in self.rows)


def inventory(store: Store) -> dict[str, DeviceRef]:
    """The known devices by current address: what the capture keeps packets of."""
    out: dict[str, DeviceRef] = {}
    for d in store.devices():
        ip = d.get("ip")
        if ip:
            out[str(ip)] = DeviceRef(str(ip), d.get("mac"), str(d.get("id")))
    return out


def classifier_for(
    settings: CaptureSettings, extra_internal: Sequence[IPNetwork] = ()
) -> Classifier:
    from scanner.fingerprint import default_db

    db = default_db()
    names = {vid: v.name for vid, v in db.vendors.items()}
    return Classifier(
        settings.internal() + tuple(extra_internal),
        settings.allow,
        cloud_patterns(db.clouds, names),
    )


@lru_cache(maxsize=4)
def _geoip(mmdb: Path | None, tor_file: Path | None) -> GeoIP:
    return open_geoip(mmdb, tor_file)


def geoip_for(settings: CaptureSettings) -> GeoIP:
    return _geoip(settings.geoip_mmdb, settings.geoip_file)


def _ts(t: float) -> str:
    return iso(datetime.fromtimestamp(t, UTC))


def rows_for(
    flows: Sequence[Flow],
    devices: Mapping[str, DeviceRef],
    classifier: Classifier,
    geo: GeoIP,
    known_names: Mapping[tuple[str, str], str] | None = None,
) -> list[dict[str, Any]]:
    """Flows to `connections` rows (the report's CONNECTION_KEYS), classified."""
    rows = []
    for f in flows:
        names = list(f.names)
        if not names and known_names and (f.device_ip, f.dst_ip) in known_names:
            names = [known_names[(f.device_ip, f.dst_ip)]]  # learnt in an earlier window
        verdict = classifier.classify(f.dst_ip, f.dst_port, names)
        dev = devices.get(f.device_ip)
        rows.append(
            {
                "device_mac": dev.mac if dev else None,
                "device_ip": f.device_ip,
                "dst_ip": f.dst_ip,
                "dst_port": f.dst_port,
                "proto": f.proto,
                "dst_name": names[0] if names else None,
                "dst_country": geo.country(f.dst_ip),
                "class": verdict.cls,
                "vendor": verdict.vendor,
                "first_seen": _ts(f.first_seen),
                "last_seen": _ts(f.last_seen),
                "packets": f.packets,
                "bytes": f.bytes,
            }
        )
    return rows


def _known_names(store: Store) -> dict[tuple[str, str], str]:
    return {
        (str(r["device_ip"]), str(r["dst_ip"])): str(r["dst_name"])
        for r in store.connections()
        if r.get("dst_name")
    }


def _open_inventory(db: Path) -> tuple[dict[str, DeviceRef], dict[tuple[str, str], str]]:
    from scanner.store import Store

    with Store.open(db, create=False) as store:
        devices = inventory(store)
        known = _known_names(store)
    if not devices:
        raise CaptureError(
            f"{db}: no devices in the inventory yet, so nothing to watch "
            "(run `scanner scan --once` first)"
        )
    return devices, known


def _save(db: Path, out: Outcome) -> None:
    from scanner.store import Store

    with Store.open(db) as store:
        out.new = store.upsert_connections(out.rows)


def capture_window(
    db: Path,
    settings: CaptureSettings,
    *,
    interface: str,
    seconds: float,
    extra_internal: Sequence[IPNetwork] = (),
    stop: threading.Event | None = None,
) -> Outcome:
    """Sniff `interface` for `seconds`, keep the inventory's flows, store them."""
    from scanner.capture.sniff import sniff

    devices, known = _open_inventory(db)
    classifier = classifier_for(settings, extra_internal)
    geo = geoip_for(settings)
    names = _NAMES.setdefault(interface, NameMap(settings.max_names))
    table = FlowTable(devices, max_flows=settings.max_flows, names=names)
    addresses = [IPv4Address(ip) for ip in devices if ":" not in ip]
    result = sniff(interface, seconds, table, addresses, promisc=settings.promisc, stop=stop)
    out = Outcome(f"{interface} for {result.seconds:.1f} s", sniff=result, geoip=geo.source)
    out.stats = table.stats
    out.rows = rows_for(table.finish(), devices, classifier, geo, known)
    _save(db, out)
    _log(out)
    return out


def import_capture(
    db: Path,
    path: Path,
    settings: CaptureSettings,
    *,
    extra_internal: Sequence[IPNetwork] = (),
) -> Outcome:
    """Read a pcap/pcapng file (or a Zeek conn.log) into flows and store them."""
    devices, known = _open_inventory(db)
    classifier = classifier_for(settings, extra_internal)
    geo = geoip_for(settings)
    if is_zeek_log(path):
        flows, stats = read_conn_log(
            path, devices, max_flows=settings.max_flows, names=NameMap(settings.max_names)
        )
        out = Outcome(f"{path} (zeek)", geoip=geo.source, stats=stats)
        out.rows = rows_for(flows, devices, classifier, geo, known)
        _save(db, out)
        _log(out)
        return out
    table = FlowTable(devices, max_flows=settings.max_flows, names=NameMap(settings.max_names))
    capfile = CaptureFile(path)
    for frame, linktype, ts in capfile.frames():
        table.feed(frame, linktype, ts)
    out = Outcome(f"{path} ({capfile.format})", geoip=geo.source)
    out.stats = table.stats
    out.stats["records"] = capfile.records
    out.ended_early = capfile.ended_early
    out.skipped = capfile.skipped
    out.rows = rows_for(table.finish(), devices, classifier, geo, known)
    _save(db, out)
    _log(out)
    return out


def _log(out: Outcome) -> None:
    s = out.stats
    _LOGGER.info(
        "capture %s: %d frames, %d kept, %d malformed, %d flows (%s), %d new",
        out.source,
        s["frames"],
        s["packets"],
        s["malformed"],
        len(out.rows),
        ", ".join(f"{n} {c}" for c, n in sorted(out.by_class().items())) or "none",
        len(out.new),
    )
    _LOGGER.info("capture %s: countries from %s", out.source, out.geoip)
    if s["flows_dropped"]:
        _LOGGER.warning(
            "capture %s: flow table full, %d new flows not kept", out.source, s["flows_dropped"]
        )


def run_capture(cfg: Any, stop: threading.Event | None = None) -> Outcome | None:
    """The daemon's entry: one window of `cfg.capture` (a CaptureSettings), or None if unset."""
    settings = getattr(cfg, "capture", None)
    if not isinstance(settings, CaptureSettings) or not settings.interface:
        _LOGGER.debug("capture: no [capture] interface configured")
        return None
    scope = getattr(cfg, "scope", None)
    return capture_window(
        cfg.db,
        settings,
        interface=settings.interface,
        seconds=settings.seconds,
        extra_internal=tuple(getattr(scope, "cidrs", ())),
        stop=stop,
    )
