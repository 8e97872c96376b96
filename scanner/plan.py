"""`scanner scan --plan`: what a scan would send, computed without sending anything.

Counts are upper bounds from the same scope, settings and constants the
probes use, so an operator can show a change board exactly what touches
which network before the first packet.
"""

from __future__ import annotations

from dataclasses import dataclass

from scanner.config import Config
from scanner.discovery import arp


@dataclass(frozen=True, slots=True)
class PlanLine:
    protocol: str
    targets: str
    ports: str
    packets: int  # upper bound


# datagrams per scoped interface for each multicast/broadcast protocol
MULTICAST_PACKETS = {"sadp": 1, "dhip": 2, "xmeye": 1, "ssdp": 3, "mdns": 12, "wsd": 3}
MULTICAST_DEST = {
    "sadp": ("239.255.255.250", "udp/37020"),
    "dhip": ("239.255.255.251 + broadcast", "udp/37810"),
    "xmeye": ("255.255.255.255", "udp/34569"),
    "ssdp": ("239.255.255.250", "udp/1900"),
    "mdns": ("224.0.0.251", "udp/5353"),
    "wsd": ("239.255.255.250", "udp/3702"),
}


def scan_plan(cfg: Config) -> list[PlanLine]:
    from scanner.probe.banners import CAMERA_PORTS

    scope = cfg.require_scope()
    settings = cfg.scan
    protos = set(settings.protocols)
    ifaces = [arp.interface_info(name) for name in scope.interfaces]
    targets = list(scope.targets())
    on_link = [t for t in targets if any(t in i.network and t != i.ip for i in ifaces)]
    routed = [t for t in targets if not any(t in i.network for i in ifaces)]
    lines: list[PlanLine] = []
    if "arp" in protos:
        rounds = 1 + min(settings.arp_retries, settings.per_host_packets - 1)
        lines.append(
            PlanLine("arp", f"{len(on_link)} on-link addresses", "-", len(on_link) * rounds)
        )
    for name in ("sadp", "dhip", "xmeye", "ssdp", "mdns", "wsd"):
        if name in protos:
            dest, port = MULTICAST_DEST[name]
            lines.append(
                PlanLine(
                    name,
                    f"{dest} on {len(ifaces)} interface(s)",
                    port,
                    MULTICAST_PACKETS[name] * len(ifaces),
                )
            )
    hosts = len(on_link) + len(routed)
    budget = settings.per_host_packets
    if "wsd" in protos:
        lines.append(PlanLine("wsd", f"up to {hosts} hosts (unicast)", "udp/3702", hosts))
    if "ssdp" in protos:
        lines.append(PlanLine("ssdp", "description URLs in scope", "tcp (LOCATION)", hosts * 4))
    banner = protos & {"http", "tls", "rtsp"}
    if banner:
        ports = ",".join(str(p) for p in CAMERA_PORTS)
        lines.append(
            PlanLine(
                "+".join(sorted(banner)),
                f"up to {hosts} responding hosts",
                f"tcp/{ports}",
                hosts * budget,
            )
        )
    if "onvif" in protos:
        lines.append(
            PlanLine("onvif", "ONVIF services named by WS-Discovery", "tcp (XAddrs)", hosts * 3 * 4)
        )
    return lines


def render_plan(lines: list[PlanLine], cfg: Config | None = None) -> str:
    width = max((len(line.targets) for line in lines), default=10)
    out = [f"{'protocol':<14} {'targets':<{width}} {'ports':<24} {'packets (max)':>13}"]
    for line in lines:
        out.append(
            f"{line.protocol:<14} {line.targets:<{width}} {line.ports[:24]:<24} {line.packets:>13}"
        )
    total = sum(line.packets for line in lines)
    out.append(f"{'total':<14} {'':<{width}} {'':<24} {total:>13}")
    out.append("nothing was sent; every unicast target is inside the scope and outside `exclude`")
    return "\n".join(out) + "\n"
