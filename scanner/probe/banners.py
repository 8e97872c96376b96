"""Which banner to ask for on which camera port, and how politely.

Ports, in the order they are tried (the per-host packet budget of 40 seldom
covers them all, so the most telling come first). Sources: shared/reference/
vendors.md §6 and peers.md.

   80  HTTP        web UI, ISAPI / CGI / VAPIX (T11, T9)
  554  RTSP        every camera's stream (T14e, T10)
  443  HTTPS+TLS   web UI over TLS; the certificate names the maker
 8000  HTTP/raw    Hikvision SDK "server port" (T33); often a web UI too
37777  TCP         Dahua DVRIP remote port (T5, T14c): connect only
34567  TCP         Xiongmai/XMeye "Sofia" control port (T2, T3): connect only
 8080  HTTP        alternative web port
 8443  HTTPS+TLS   alternative TLS web port
 8554  RTSP        alternative RTSP port (Cameradar defaults, peers.md [CD])
 8899  HTTP        ONVIF/SOAP on Xiongmai boards (T3)
 9000  TCP         Reolink "Baichuan" native protocol (T16, T34): connect only
   81  HTTP        alternative web port seen on Hikvision installs (code index 19589676)
10554  RTSP        alternative RTSP port (RTSP honeypot personas of Hik/Dahua in the code index)

Costs per port in budget packets (ProbeContext.connect charges 3 + requests,
refused or not): TCP connect-only 3, HTTP 4, RTSP 5, HTTPS 6; each vendor
path GET 4. At most two connections to one host are open at any time.

Connect-only ports produce a Source.HTTP observation with scheme "tcp",
open="true", service (what the port is known for) and raw (hex of anything
the device said unasked). A spent budget gives one observation with
error="budget_exhausted", attrs budget_exhausted="true" and skipped_ports.

Time per host is bounded too, so a tar-pit costs the scan one exchange
deadline, not one per port: once an HTTP, RTSP or TLS exchange with a host
runs out its deadline (a slowloris or silent server), or once the host has
had HOST_DEADLINE_FACTOR exchange deadlines in all, no new connection is
opened to it. That gives one observation with error="slow_host", attrs
slow_host="true" and skipped_ports.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from ipaddress import IPv4Address

from scanner.discovery.base import ProbeContext
from scanner.model import Observation, Source, utcnow
from scanner.probe import (
    DEADLINE_FACTOR,
    BudgetExhausted,
    close,
    connect,
    http,
    merge_hints,
    preview,
    receive,
    rtsp,
    tls,
)

_LOGGER = logging.getLogger(__name__)

CAMERA_PORTS: tuple[int, ...] = (
    80, 554, 443, 8000, 37777, 34567, 8080, 8443, 8554, 8899, 9000, 81, 10554,
)  # fmt: skip
HTTP_PORTS = frozenset({80, 81, 8000, 8080, 8899})
HTTPS_PORTS = frozenset({443, 8443})
RTSP_PORTS = frozenset({554, 8554, 10554})
CONNECT_ONLY = {37777: "dahua-dvrip", 34567: "xmeye-sofia", 9000: "reolink-baichuan"}
MAX_HOST_CONNECTIONS = 2
# a host's banners must be done within this many exchange deadlines (2 x 2 x 2 s = 8 s
# at the defaults); no new exchange starts after it, and a running one ends by its own
HOST_DEADLINE_FACTOR = 2.0
BANNER_WAIT = 0.5  # seconds a connect-only port is given to speak first
TCP_REQUESTS = 0


def plan(port: int) -> str:
    """What to speak on a port: "http", "https", "rtsp" or "tcp" (connect only)."""
    if port in HTTPS_PORTS:
        return "https"
    if port in RTSP_PORTS:
        return "rtsp"
    if port in CONNECT_ONLY:
        return "tcp"
    return "http"  # HTTP_PORTS, and any other port a caller names


def _enabled(ctx: ProbeContext) -> set[str]:
    protocols = getattr(ctx.settings, "protocols", None)
    return set(protocols) if protocols is not None else {"http", "tls", "rtsp"}


def probe_tcp(ctx: ProbeContext, ip: str, port: int) -> Observation | None:
    """Connect, listen briefly for a banner, close; None if the port is closed."""
    try:
        sock = connect(ctx, ip, port, requests=TCP_REQUESTS)
    except BudgetExhausted:
        raise
    except OSError:
        return None
    try:
        wait = min(BANNER_WAIT, DEADLINE_FACTOR * ctx.timeout)
        data, _why = receive(sock, time.monotonic() + wait, lambda d: len(d) >= 64)
    finally:
        close(sock)
    attrs = {"port": str(port), "scheme": "tcp", "open": "true"}
    if port in CONNECT_ONLY:
        attrs["service"] = CONNECT_ONLY[port]
    if data:
        attrs["raw"] = preview(data)
    else:
        attrs["silent"] = "true"
    return Observation(source=Source.HTTP, ip=ip, seen_at=utcnow(), attrs=attrs)


class _Host:
    """Shared state of one host's two probing workers."""

    def __init__(self, ctx: ProbeContext, ip: str, ports: Sequence[int]) -> None:
        self.ctx = ctx
        self.ip = ip
        self.enabled = _enabled(ctx)
        self.queue: deque[int] = deque(dict.fromkeys(ports))
        self.lock = threading.Lock()
        self.exhausted = threading.Event()
        self.slow = threading.Event()  # a tar-pit, or past its time: no new connections
        self.until = time.monotonic() + HOST_DEADLINE_FACTOR * DEADLINE_FACTOR * ctx.timeout
        self.vendor_claimed = False
        self.skipped: list[int] = []
        self.results: list[Observation] = []

    def next_port(self) -> int | None:
        with self.lock:
            if self.exhausted.is_set() or self.slow.is_set() or not self.queue:
                return None
            if time.monotonic() >= self.until:
                self.slow.set()
                return None
            return self.queue.popleft()

    def claim_vendor_paths(self) -> bool:
        with self.lock:
            if self.vendor_claimed:
                return False
            self.vendor_claimed = True
            return True

    def hints(self, extra: Sequence[Observation]) -> list[str]:
        """Vendor hints seen on this host so far (certificates, RTSP servers, pages)."""
        with self.lock:
            seen = [*self.results, *extra]
        return merge_hints(*(o.attrs.get("vendor_hint") for o in seen)).split()

    def probe_port(self, port: int) -> list[Observation]:
        kind = plan(port)
        ctx, ip = self.ctx, self.ip
        if kind == "rtsp":
            if "rtsp" not in self.enabled:
                return []
            found = rtsp.probe(ctx, ip, port)
            return [found] if found is not None else []
        if kind == "tcp":
            if "http" not in self.enabled:
                return []
            found = probe_tcp(ctx, ip, port)
            return [found] if found is not None else []
        tls_on = kind == "https"
        if "http" not in self.enabled:
            if not tls_on or "tls" not in self.enabled:
                return []
            cert = tls.probe(ctx, ip, port)  # the certificate alone
            return [cert] if cert is not None else []
        out = http.probe(ctx, ip, port, tls=tls_on, vendor_paths=False)
        if tls_on and "tls" not in self.enabled:
            out = [o for o in out if o.source != Source.TLS]
        root = next((o for o in out if o.source == Source.HTTP), None)
        if root is not None and http.is_usable(root) and self.claim_vendor_paths():
            merged = http.probe_vendor_paths(
                ctx, ip, port, tls=tls_on, base=root, extra_hints=self.hints(out), until=self.until
            )
            out = [merged if o is root else o for o in out]
            if merged.attrs.get("budget_exhausted") == "true":
                self.exhausted.set()
        return out

    def work(self) -> None:
        while (port := self.next_port()) is not None:
            try:
                found = self.probe_port(port)
            except BudgetExhausted:
                with self.lock:
                    self.skipped.append(port)
                self.exhausted.set()
                return
            with self.lock:
                self.results += found
            if any(_timed_out(o) for o in found):
                self.slow.set()


def _timed_out(obs: Observation) -> bool:
    """An exchange that ran out its deadline ("deadline", or "not rtsp: deadline")."""
    return obs.error is not None and obs.error.split(": ")[-1] == "deadline"


def probe_host(
    ctx: ProbeContext, ip: str, ports: Sequence[int] = CAMERA_PORTS
) -> list[Observation]:
    """Every banner one host shows on `ports`, two connections at a time at most.

    Raises ScopeError if `ip` is outside the scope. Stops at the host's packet
    budget and records which ports it could not afford.
    """
    ctx.check(ip)
    host = _Host(ctx, ip, ports)
    workers = max(1, min(MAX_HOST_CONNECTIONS, len(host.queue)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"banner-{ip}") as pool:
        for fut in [pool.submit(host.work) for _ in range(workers)]:
            fut.result()  # a worker's unexpected exception surfaces here
    results = sorted(host.results, key=lambda o: (int(o.attrs.get("port", 0)), str(o.source)))
    skipped = " ".join(str(p) for p in sorted(set(host.skipped) | set(host.queue)))
    why = None
    if host.exhausted.is_set():
        why = "budget_exhausted"
    elif host.slow.is_set() and skipped:
        why = "slow_host"
        _LOGGER.info("banners: %s is too slow; ports %s not asked", ip, skipped)
    if why is not None:  # which ports went unasked, and why
        results.append(
            Observation(
                source=Source.HTTP,
                ip=ip,
                seen_at=utcnow(),
                attrs={why: "true", "skipped_ports": skipped},
                error=why,
            )
        )
    return results


def probe_hosts(ctx: ProbeContext, ips: Sequence[str], *, workers: int = 16) -> list[Observation]:
    """probe_host over many hosts in a bounded pool; out-of-scope addresses are skipped.

    Global pacing is ctx.budget's job; a host whose probe fails unexpectedly
    is logged and costs the others nothing.
    """
    targets = []
    for ip in dict.fromkeys(ips):
        if ctx.in_scope(ip):
            targets.append(ip)
        else:
            _LOGGER.warning("banners: %s is outside the scope; not probed", ip)
    if not targets:
        return []

    def one(ip: str) -> list[Observation]:
        try:
            return probe_host(ctx, ip)
        except Exception:  # a probe bug must not cost the other hosts their banners
            _LOGGER.exception("banners: probing %s failed", ip)
            return [Observation(source=Source.HTTP, ip=ip, seen_at=utcnow(), error="probe failed")]

    out: list[Observation] = []
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="banners") as pool:
        for found in pool.map(one, sorted(targets, key=IPv4Address)):
            out += found
    return out
