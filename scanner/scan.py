"""One discovery cycle: the code of `scanner scan --once` and of the daemon's job.

Phase 1 listens for every voice a camera has on the local segments at once
(ARP and the multicast/broadcast protocols). Phase 2 asks the hosts found,
and the routed parts of the scope, directly: WS-Discovery (multicast, and
unicast to each host). Phase 3 reads ONVIF device information from the
endpoints WS-Discovery gave, and phase 4 reads banners with what is left of
each host's packet budget: on an ONVIF host after its phase 3, on the others
while phase 3 runs.
Everything goes through one ProbeContext: one scope guard, one packet budget.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from ipaddress import IPv4Address
from urllib.parse import urlsplit

from scanner import __version__
from scanner.alerts import outbox
from scanner.alerts.deliver import after_scan
from scanner.config import Config
from scanner.discovery import arp
from scanner.discovery.base import Budget, ProbeContext
from scanner.errors import ConfigError
from scanner.exceptions import RiskException, load_exceptions
from scanner.exceptions import find as find_exception
from scanner.fingerprint import default_db, identify
from scanner.inventory import identifiers, merge
from scanner.model import Observation, iso, utcnow
from scanner.oui import OuiRegistry
from scanner.policy import assess
from scanner.store import DeviceRecord, ScanRecord, Store

_LOGGER = logging.getLogger(__name__)

MULTICAST_PROTOCOLS = ("sadp", "dhip", "xmeye", "ssdp", "mdns")
BANNER_PROTOCOLS = ("http", "tls", "rtsp")


@dataclass(frozen=True, slots=True)
class ScanSummary:
    scan_id: int
    devices: int
    flagged: int
    observations: int
    seconds: float


def make_context(cfg: Config) -> ProbeContext:
    scope = cfg.require_scope()
    credentials: dict[str, tuple[str, str]] = {}
    if cfg.credentials_file is not None and "onvif" in cfg.scan.protocols:
        from scanner.credentials import load_credentials

        credentials = load_credentials(cfg.credentials_file)
    return ProbeContext(
        scope=scope,
        settings=cfg.scan,
        interfaces=[arp.interface_info(name) for name in scope.interfaces],
        budget=Budget(cfg.scan.rate, cfg.scan.per_host_packets),
        timeout=cfg.scan.timeout,
        credentials=credentials,
    )


def _routed_targets(ctx: ProbeContext) -> list[str]:
    """Scope addresses no scoped interface is on-link for: ARP cannot see them."""
    return [str(t) for t in ctx.scope.targets() if not any(t in i.network for i in ctx.interfaces)]


def _arp(ctx: ProbeContext) -> list[Observation]:
    out: list[Observation] = []
    retries = min(ctx.settings.arp_retries, ctx.settings.per_host_packets - 1)
    for info in ctx.interfaces:
        targets = arp.on_link_targets(ctx.scope.targets(), info)
        _LOGGER.info("ARP: %d targets on %s (%s)", len(targets), info.name, info.network)
        out += arp.sweep(
            info,
            targets,
            rate=ctx.settings.rate,
            timeout=ctx.settings.arp_timeout,
            retries=retries,
            take=ctx.budget.take,
        )
    return out


def _multicast(name: str) -> Callable[[ProbeContext], list[Observation]]:
    def run(ctx: ProbeContext) -> list[Observation]:
        if name == "sadp":
            from scanner.discovery import sadp

            return sadp.discover(ctx)
        if name == "dhip":
            from scanner.discovery import dhip

            return dhip.discover(ctx)
        if name == "xmeye":
            from scanner.discovery import xmeye

            return xmeye.discover(ctx)
        if name == "ssdp":
            from scanner.discovery import ssdp

            return ssdp.discover(ctx)
        from scanner.discovery import mdns

        return mdns.discover(ctx)

    return run


def _guarded(name: str, fn: Callable[[], list[Observation]]) -> list[Observation]:
    """One protocol failing must not cost the others their results."""
    t0 = time.monotonic()
    try:
        found = fn()
    except Exception:  # a probe bug or a hostile reply: log it, keep the scan
        _LOGGER.exception("%s discovery failed; the scan carries on without it", name)
        return []
    _LOGGER.info("%s: %d observations in %.1f s", name, len(found), time.monotonic() - t0)
    return found


def discover(ctx: ProbeContext) -> list[Observation]:
    """Every probe of the cycle, inside the scope; returns raw observations."""
    protocols = set(ctx.settings.protocols)
    phase1: dict[str, Callable[[], list[Observation]]] = {}
    if "arp" in protocols:
        phase1["arp"] = lambda: _arp(ctx)
    for name in MULTICAST_PROTOCOLS:
        if name in protocols:
            phase1[name] = lambda n=name: _multicast(n)(ctx)  # type: ignore[misc]
    observations: list[Observation] = []
    with ThreadPoolExecutor(max_workers=max(1, len(phase1)), thread_name_prefix="probe") as pool:
        futures = {name: pool.submit(_guarded, name, fn) for name, fn in phase1.items()}
        for fut in futures.values():
            observations += fut.result()

    seen_hosts = sorted(
        {o.ip for o in observations if ctx.in_scope(o.ip)}, key=lambda ip: IPv4Address(ip)
    )
    routed = _routed_targets(ctx)
    if "wsd" in protocols:
        from scanner.discovery import wsd

        observations += _guarded("wsd", lambda: wsd.discover(ctx, seen_hosts + routed))
    hosts = sorted(
        {o.ip for o in observations if ctx.in_scope(o.ip)}, key=lambda ip: IPv4Address(ip)
    )
    # ONVIF before banners on each ONVIF host: a device's own GetDeviceInformation is
    # worth more than its thirteenth port, and banners would otherwise spend the
    # per-host budget first. The other hosts' banners run meanwhile, so a tar-pit in
    # one phase does not add its wait to the other's.
    targets: list[tuple[str, int, str | None]] = []
    if "onvif" in protocols:
        targets = onvif_targets(ctx, observations)
    first = {ip for ip, _port, _xaddr in targets}
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="phase3") as pool:
        onvif_done = pool.submit(_onvif, ctx, targets)
        others = [h for h in hosts if h not in first]
        banners_done = pool.submit(_banners, ctx, others)
        observations += onvif_done.result()
        later = pool.submit(
            _banners, ctx, [h for h in hosts if h in first], "banners (ONVIF hosts)"
        )
        observations += banners_done.result() + later.result()
    return observations


def _onvif(ctx: ProbeContext, targets: list[tuple[str, int, str | None]]) -> list[Observation]:
    if not targets:
        return []
    from scanner.discovery import onvif

    return _guarded("onvif", lambda: onvif.probe(ctx, targets))


def _banners(ctx: ProbeContext, hosts: list[str], name: str = "banners") -> list[Observation]:
    if not hosts or not set(ctx.settings.protocols) & set(BANNER_PROTOCOLS):
        return []
    from scanner.probe import banners

    return _guarded(name, lambda: banners.probe_hosts(ctx, hosts))


def onvif_targets(
    ctx: ProbeContext, observations: list[Observation]
) -> list[tuple[str, int, str | None]]:
    """(ip, port, xaddr) for each in-scope ONVIF device service WS-Discovery named."""
    targets: dict[tuple[str, int], str | None] = {}
    for o in observations:
        if str(o.source) != "wsd" or o.attrs.get("onvif") != "true":
            continue  # printers and PCs answer WS-Discovery too; only ONVIF gets SOAP
        for xaddr in (o.attrs.get("xaddrs_in_scope") or "").split():
            parts = urlsplit(xaddr)
            host = parts.hostname
            if host is None or not ctx.in_scope(host):
                continue
            port = parts.port or (443 if parts.scheme == "https" else 80)
            targets.setdefault((host, port), xaddr)
    return [(ip, port, xaddr) for (ip, port), xaddr in sorted(targets.items())]


def build_records(
    observations: list[Observation],
    home_country: str,
    *,
    register: Sequence[RiskException] = (),
    flag_policies: Sequence[str] | None = None,
) -> list[DeviceRecord]:
    """Merge, identify and judge: pure over the observations and the databases."""
    oui, fdb = OuiRegistry.default(), default_db()
    only = frozenset(flag_policies) if flag_policies is not None else None
    records = []
    for dev in merge(observations):
        ident = identify(dev.observations, oui, fdb)
        uuid = next(
            (i[5:] for o in dev.observations for i in identifiers(o) if i.startswith("uuid:")),
            None,
        )
        records.append(
            DeviceRecord(
                key=dev.key,
                ip=dev.ip,
                mac=dev.mac,
                identification=ident,
                assessment=assess(
                    ident,
                    home_country,
                    fdb,
                    exception=find_exception(register, dev.mac, ident.serial),
                    flag_policies=only,
                ),
                sources=dev.sources,
                observations=dev.observations,
                uuid=uuid,
            )
        )
    return records


def run_scan(cfg: Config) -> ScanSummary:
    """Discover, merge, identify, judge and record one complete scan."""
    scope = cfg.require_scope()
    unknown = sorted(set(cfg.flag_policies or ()) - set(default_db().policies))
    if unknown:
        raise ConfigError(
            f"{cfg.path or 'config'}: policy.flag_policies: unknown id {unknown[0]!r}"
        )
    t0 = time.monotonic()
    with Store.open(cfg.db) as store:  # open first: a bad DB path fails before any packet
        ctx = make_context(cfg)
        started = utcnow()
        observations = discover(ctx)
        register = load_exceptions(cfg.exceptions_file) if cfg.exceptions_file else []
        records = build_records(
            observations, cfg.home_country, register=register, flag_policies=cfg.flag_policies
        )
        scan_id = store.record_scan(
            ScanRecord(
                started_at=iso(started),
                finished_at=iso(utcnow()),
                interfaces=list(scope.interfaces),
                cidrs=[str(c) for c in scope.cidrs],
                devices=records,
                scanner_version=__version__,
            ),
            findings_for=outbox.recorder(cfg.email),
        )
    after_scan(cfg.db, cfg.email)  # mail what this scan found, now rather than at the next tick
    refused = sum(ctx.budget.refused.values())
    if refused:
        _LOGGER.warning(
            "per-host budget held back %d packets to %d hosts", refused, len(ctx.budget.refused)
        )
    return ScanSummary(
        scan_id=scan_id,
        devices=len(records),
        flagged=sum(r.assessment.flagged for r in records),
        observations=len(observations),
        seconds=time.monotonic() - t0,
    )
