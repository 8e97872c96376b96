"""`scanner scan --plan`: what a scan would send, computed without sending anything.

Counts are upper bounds from the same scope, settings and constants the
probes use, so an operator can show a change board exactly what touches
which network before the first packet:

* multicast/broadcast probes, per scoped interface: SADP, DHIP, XMEye, SSDP,
  mDNS and WS-Discovery (typed and untyped Probes), plus the IGMP reports
  the kernel sends for the groups the scanner listens on;
* ARP: the sweep (1 + arp_retries requests per on-link address) and the
  kernel's own neighbour lookup before it sends a host its first unicast;
* unicast, per host: WS-Discovery Probes, SSDP description GETs, ONVIF SOAP
  requests and banner ports. Every one of these goes through the per-host
  budget, so one host is sent at most min(their sum, `per_host_packets`).

A TCP exchange is counted as the budget counts it: SYN, ACK and FIN plus one
packet per request (a TLS handshake's flights are requests); ACKs of a reply
are not counted.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from scanner.config import Config
from scanner.discovery import arp
from scanner.discovery.arp import InterfaceInfo

# The Linux default of net.ipv4.neigh.*.mcast_solicit: ARP requests the kernel
# sends to resolve a host before giving up (once per host it then talks to).
KERNEL_ARP_PER_HOST = 3
# IGMPv3 (RFC 3376 §8.1, robustness variable 2): a join and a leave are each
# reported twice.
IGMP_REPORTS_PER_GROUP = 4


@dataclass(frozen=True, slots=True)
class PlanLine:
    protocol: str
    targets: str
    ports: str
    packets: int  # upper bound for the whole line
    per_host: int = 0  # upper bound per unicast target host (0: not per host)
    budgeted: bool = False  # counted against the per-host budget


@dataclass(frozen=True, slots=True)
class Plan:
    lines: tuple[PlanLine, ...]
    hosts: int  # unicast targets at most: on-link addresses plus routed ones
    per_host_budget: int  # scan.per_host_packets
    per_host: int  # unicast packets one host can be sent: min(sum of lines, budget)
    arp_per_host: int  # ARP requests naming one on-link address (sweep + kernel)

    @property
    def total(self) -> int:
        """Every packet the scan can send: per-host lines are capped by the budget."""
        fixed = sum(line.packets for line in self.lines if not line.budgeted)
        return fixed + self.hosts * self.per_host


def multicast_probes(protocols: Collection[str], timeout: float) -> list[tuple[str, str, str, int]]:
    """(protocol, destination, port, datagrams per interface) of each enabled search."""
    from scanner.discovery import dhip, mdns, sadp, ssdp, wsd, xmeye

    browse_s = min(max(max(timeout, mdns.MIN_BROWSE_S), 0.1), mdns.MAX_BROWSE_S)
    table = [
        ("sadp", " + ".join(sadp.DESTINATIONS), f"udp/{sadp.PORT}", len(sadp.DESTINATIONS)),
        ("dhip", " + ".join(dhip.DESTINATIONS), f"udp/{dhip.PORT}", len(dhip.DESTINATIONS)),
        ("xmeye", " + ".join(xmeye.DESTINATIONS), f"udp/{xmeye.PORT}", len(xmeye.DESTINATIONS)),
        ("ssdp", ssdp.SSDP_GROUP, f"udp/{ssdp.SSDP_PORT}", len(ssdp.SEARCH_TARGETS)),
        # zeroconf paces its own queries: the browse, then follow-ups for instances
        # whose records were not volunteered (the same estimates mdns.py charges)
        ("mdns", "224.0.0.251", "udp/5353", mdns.planned_queries(browse_s)),
        ("wsd", wsd.WSD_GROUP, f"udp/{wsd.WSD_PORT}", len(wsd.MULTICAST_PROBES)),
    ]
    return [row for row in table if row[0] in protocols]


def joined_groups(protocols: Collection[str]) -> list[str]:
    """Multicast groups the scanner's sockets join (replies come to them)."""
    from scanner.discovery import dhip, sadp

    groups = {"sadp": sadp.GROUP, "dhip": dhip.GROUP, "mdns": "224.0.0.251"}
    return [group for name, group in groups.items() if name in protocols]


def banner_packets(protocols: Collection[str]) -> int:
    """Budget packets the banner probes can spend on one host, every port answering."""
    from scanner.discovery.base import TCP_CONNECT_PACKETS
    from scanner.probe import banners, http, rtsp, tls

    http_on, tls_on, rtsp_on = "http" in protocols, "tls" in protocols, "rtsp" in protocols
    total = 0
    for port in banners.CAMERA_PORTS:
        kind = banners.plan(port)
        if kind == "rtsp" and rtsp_on:
            total += TCP_CONNECT_PACKETS + rtsp.RTSP_REQUESTS
        elif kind == "tcp" and http_on:
            total += TCP_CONNECT_PACKETS + banners.TCP_REQUESTS
        elif kind == "https" and (http_on or tls_on):
            requests = http.HTTPS_REQUESTS if http_on else tls.TLS_REQUESTS
            total += TCP_CONNECT_PACKETS + requests
        elif kind == "http" and http_on:
            total += TCP_CONNECT_PACKETS + http.HTTP_REQUESTS
    if http_on:  # read-only vendor paths on the first usable page, HTTPS at worst
        total += http.MAX_VENDOR_PATHS * (TCP_CONNECT_PACKETS + http.HTTPS_REQUESTS)
    return total


def scan_plan(cfg: Config, interfaces: Sequence[InterfaceInfo] | None = None) -> Plan:
    """The plan for `cfg`'s scope; `interfaces` are looked up by name when not given."""
    from scanner.discovery import onvif, ssdp, wsd
    from scanner.discovery.base import TCP_CONNECT_PACKETS, TLS_HANDSHAKE_PACKETS
    from scanner.probe.banners import CAMERA_PORTS

    scope = cfg.require_scope()
    settings = cfg.scan
    protos = set(settings.protocols)
    ifaces = (
        list(interfaces)
        if interfaces is not None
        else [arp.interface_info(name) for name in scope.interfaces]
    )
    targets = list(scope.targets())
    on_link = [t for t in targets if any(t in i.network and t != i.ip for i in ifaces)]
    routed = [t for t in targets if not any(t in i.network for i in ifaces)]
    hosts = len(on_link) + len(routed)
    budget = settings.per_host_packets
    n_if = len(ifaces)
    lines: list[PlanLine] = []

    rounds = 1 + min(settings.arp_retries, budget - 1) if "arp" in protos else 0
    if "arp" in protos:
        lines.append(
            PlanLine("arp", f"{len(on_link)} on-link addresses", "-", len(on_link) * rounds, rounds)
        )
    lookups = len(on_link) + (1 if routed else 0)  # routed hosts: the gateway, once
    lines.append(
        PlanLine(
            "arp (kernel)",
            "hosts probed by unicast, before the first packet",
            "-",
            lookups * KERNEL_ARP_PER_HOST,
            KERNEL_ARP_PER_HOST,
        )
    )
    for name, dest, port, per_iface in multicast_probes(protos, settings.timeout):
        lines.append(PlanLine(name, f"{dest} on {n_if} interface(s)", port, per_iface * n_if))
    groups = joined_groups(protos)
    if groups:
        lines.append(
            PlanLine(
                "igmp",
                f"reports for {', '.join(groups)}",
                "224.0.0.22",
                len(groups) * IGMP_REPORTS_PER_GROUP * n_if,
            )
        )

    per_request = TCP_CONNECT_PACKETS + 1
    if "wsd" in protos:
        n = len(wsd.UNICAST_PROBES)
        lines.append(
            PlanLine(
                "wsd", f"up to {hosts} hosts (unicast)", f"udp/{wsd.WSD_PORT}", hosts * n, n, True
            )
        )
    if "ssdp" in protos:
        n = ssdp.MAX_LOCATIONS_PER_HOST * (1 + ssdp.MAX_REDIRECTS) * per_request
        lines.append(
            PlanLine(
                "ssdp",
                f"description URLs in scope (at most {ssdp.MAX_FETCHES})",
                "tcp (LOCATION)",
                min(hosts * n, ssdp.MAX_FETCHES * (1 + ssdp.MAX_REDIRECTS) * per_request),
                n,
                True,
            )
        )
    if "onvif" in protos:
        # targets come only from WS-Discovery answers: without wsd there are none;
        # an XAddr may be https, each request then a TLS handshake too
        n = onvif.SOAP_REQUESTS * (per_request + TLS_HANDSHAKE_PACKETS) if "wsd" in protos else 0
        lines.append(
            PlanLine(
                "onvif",
                "device services WS-Discovery named" if n else "none (needs wsd)",
                "tcp (XAddrs)",
                hosts * n,
                n,
                True,
            )
        )
    banner = protos & {"http", "tls", "rtsp"}
    if banner:
        n = banner_packets(protos)
        ports = ",".join(str(p) for p in CAMERA_PORTS)
        lines.append(
            PlanLine(
                "+".join(sorted(banner)),
                f"up to {hosts} responding hosts",
                f"tcp/{ports}",
                hosts * n,
                n,
                True,
            )
        )
    unicast = sum(line.per_host for line in lines if line.budgeted)
    return Plan(
        lines=tuple(lines),
        hosts=hosts,
        per_host_budget=budget,
        per_host=min(unicast, budget),
        arp_per_host=rounds + KERNEL_ARP_PER_HOST,
    )


def render_plan(plan: Plan) -> str:
    """The plan as a table an operator can paste into a change request."""
    unicast = sum(line.per_host for line in plan.lines if line.budgeted)
    cap = f"unicast: min({unicast}, budget {plan.per_host_budget})"
    tw = max([len(cap), *(len(line.targets) for line in plan.lines)])
    pw = max([len("ports"), *(len(line.ports) for line in plan.lines)])
    out = [
        f"{'protocol':<14} {'targets':<{tw}} {'ports':<{pw}} {'per host':>8} {'packets (max)':>13}"
    ]
    for line in plan.lines:
        per_host = str(line.per_host) if line.per_host else ""
        out.append(
            f"{line.protocol:<14} {line.targets:<{tw}} {line.ports:<{pw}} "
            f"{per_host:>8} {line.packets:>13}"
        )
    out.append(
        f"{'per host':<14} {cap:<{tw}} {'':<{pw}} "
        f"{plan.per_host:>8} {plan.hosts * plan.per_host:>13}"
    )
    out.append(f"{'total':<14} {'':<{tw}} {'':<{pw}} {'':>8} {plan.total:>13}")
    out.append("nothing was sent; every unicast target is inside the scope and outside `exclude`")
    return "\n".join(out) + "\n"
