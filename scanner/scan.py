"""One discovery cycle: the code of `scanner scan --once` and of the daemon's job."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from scanner import __version__
from scanner.config import Config
from scanner.discovery import arp
from scanner.fingerprint import default_db, identify
from scanner.inventory import merge
from scanner.model import Observation, iso, utcnow
from scanner.oui import OuiRegistry
from scanner.policy import assess
from scanner.store import DeviceRecord, ScanRecord, Store

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ScanSummary:
    scan_id: int
    devices: int
    flagged: int
    observations: int
    seconds: float


def discover(cfg: Config) -> list[Observation]:
    """Every probe of the cycle, inside the scope; returns raw observations."""
    scope = cfg.require_scope()
    observations: list[Observation] = []
    reached: set[str] = set()
    retries = min(cfg.scan.arp_retries, cfg.scan.per_host_packets - 1)
    for name in scope.interfaces:
        info = arp.interface_info(name)
        targets = arp.on_link_targets(scope.targets(), info)
        reached.update(str(t) for t in targets)
        _LOGGER.info("ARP: %d targets on %s (%s)", len(targets), name, info.network)
        observations += arp.sweep(
            info, targets, rate=cfg.scan.rate, timeout=cfg.scan.arp_timeout, retries=retries
        )
    for net in scope.cidrs:
        if not any(str(a) in reached for a in net.hosts()):
            _LOGGER.warning("%s is not on-link on any scoped interface: ARP skipped", net)
    return observations


def run_scan(cfg: Config) -> ScanSummary:
    """Discover, merge, identify, judge and record one complete scan."""
    scope = cfg.require_scope()
    t0 = time.monotonic()
    with Store.open(cfg.db) as store:  # open first: a bad DB path fails before any packet
        started = utcnow()
        observations = discover(cfg)
        oui, fdb = OuiRegistry.default(), default_db()
        records = []
        for dev in merge(observations):
            ident = identify(dev.observations, oui, fdb)
            records.append(
                DeviceRecord(
                    key=dev.key,
                    ip=dev.ip,
                    mac=dev.mac,
                    identification=ident,
                    assessment=assess(ident, cfg.home_country, fdb),
                    sources=dev.sources,
                    observations=dev.observations,
                )
            )
        scan_id = store.record_scan(
            ScanRecord(
                started_at=iso(started),
                finished_at=iso(utcnow()),
                interfaces=list(scope.interfaces),
                cidrs=[str(c) for c in scope.cidrs],
                devices=records,
                scanner_version=__version__,
            )
        )
    return ScanSummary(
        scan_id=scan_id,
        devices=len(records),
        flagged=sum(r.assessment.flagged for r in records),
        observations=len(observations),
        seconds=time.monotonic() - t0,
    )
