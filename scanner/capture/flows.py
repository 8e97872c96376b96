"""Packets to flows: who a known device talked to, on which port, how much.

A flow is (device address, destination address, destination port, protocol),
the columns of the `connections` table. The device is the end whose address
is in the inventory; the destination is the other end, counted only when the
device opened the conversation (outbound). Which end opened it is read from
the TCP SYN where one was seen, else from the ports: the end on a well-known
or registered service port is the server, an ephemeral port is the client.
Conversations a peer opened to a device (an NVR pulling RTSP, a port
forward) are counted in `stats["inbound_packets"]`, not stored as flows.

Memory is bounded whatever the traffic: at most `max_flows` flows (new ones
past the cap are counted in `stats["flows_dropped"]`, existing ones keep
counting), at most NAMES_PER_ADDRESS names per flow, only the first few
payloads of a flow are inspected for SNI/Host, and DNS answers go to a
bounded `NameMap`.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from scanner.capture.decode import TCP_ACK, TCP_SYN, Malformed, Packet, decode
from scanner.capture.dnsmap import (
    BadNameData,
    NameMap,
    dns_message,
    merge_names,
    parse_dns_response,
    parse_http_host,
    parse_sni,
)

_LOGGER = logging.getLogger(__name__)

FlowKey = tuple[str, str, int | None, str]  # device_ip, dst_ip, dst_port, proto
DNS_PORTS = frozenset({53})
INSPECT_PAYLOADS = 3  # payload-carrying packets per flow looked at for SNI/Host
# Ports cameras and their clouds serve on above 1023 (vendors.md §6, clouds.toml):
# on these, the other end is the client even when both ports look registered.
SERVICE_PORTS = frozenset(
    {
        1883,  # MQTT
        1935,  # RTMP
        3478,  # STUN
        5060,  # SIP
        5683,  # CoAP
        6123,  # EZVIZ relay
        6500,  # EZVIZ CAS
        7660,  # Hikvision ISUP/EHome
        7661,
        8000,  # Hikvision SDK
        8080,
        8086,  # XMEye
        8443,
        8554,  # RTSP alt / EZVIZ stream relay
        8800,  # Dahua P2P
        8883,  # MQTT over TLS
        9999,  # Reolink P2P
        10001,
        34567,  # Xiongmai NETsurveillance
        37777,  # Dahua SDK
    }
)


@dataclass(frozen=True, slots=True)
class DeviceRef:
    """An inventory device the capture watches for."""

    ip: str
    mac: str | None = None
    device_id: str | None = None


@dataclass(slots=True)
class Flow:
    device_ip: str
    dst_ip: str
    dst_port: int | None
    proto: str
    first_seen: float
    last_seen: float
    packets: int = 0
    bytes: int = 0
    names: list[str] = field(default_factory=list)  # DNS question first, then SNI/Host
    inspected: int = 0

    @property
    def key(self) -> FlowKey:
        return (self.device_ip, self.dst_ip, self.dst_port, self.proto)


def port_rank(port: int) -> int:
    """Lower is more server-like: well-known, known service, registered, ephemeral."""
    if port < 1024:
        return 0
    if port in SERVICE_PORTS:
        return 1
    if port < 32768:
        return 2
    return 3


def peer_is_server(device_port: int, peer_port: int) -> bool:
    """Without a SYN to go on: does the peer's port look like the service?"""
    rp, rd = port_rank(peer_port), port_rank(device_port)
    return rp < rd or (rp == rd and peer_port <= device_port)


class FlowTable:
    """Aggregates decoded packets into flows of the known devices."""

    def __init__(
        self,
        devices: Mapping[str, DeviceRef],
        *,
        max_flows: int = 65_536,
        names: NameMap | None = None,
    ) -> None:
        self.devices = devices
        self.max_flows = max_flows
        self.names = names if names is not None else NameMap()
        self.flows: dict[FlowKey, Flow] = {}
        self.stats: Counter[str] = Counter()

    def feed(self, frame: bytes, linktype: int, ts: float) -> None:
        """One captured frame; never raises on bad bytes (they are counted)."""
        self.stats["frames"] += 1
        try:
            pkt = decode(frame, linktype, ts)
        except Malformed as exc:
            self.stats["malformed"] += 1
            _LOGGER.debug("malformed frame: %s", exc)
            return
        if pkt is None:
            self.stats["not_ip"] += 1
            return
        self.add(pkt)

    def add(self, pkt: Packet) -> None:
        src_known, dst_known = pkt.src in self.devices, pkt.dst in self.devices
        if not src_known and not dst_known:
            self.stats["unrelated"] += 1
            return
        self.stats["packets"] += 1
        if pkt.sport is None and pkt.proto in ("tcp", "udp"):
            self.stats["fragments"] += 1  # a later fragment: its ports are in the first
            return
        outgoing = src_known and not (
            dst_known
            and pkt.sport is not None
            and pkt.dport is not None
            and not peer_is_server(pkt.sport, pkt.dport)
        )
        if outgoing:
            device, peer, dport, pport = pkt.src, pkt.dst, pkt.sport, pkt.dport
        else:
            device, peer, dport, pport = pkt.dst, pkt.src, pkt.dport, pkt.sport
        if not outgoing and pport in DNS_PORTS and pkt.payload:
            self._learn_dns(device, pkt)
        key: FlowKey = (device, peer, pport, pkt.proto)
        flow = self.flows.get(key)
        if flow is None:
            if not self._opens_outbound(pkt, outgoing, dport, pport):
                self.stats["inbound_packets"] += 1
                return
            if len(self.flows) >= self.max_flows:
                self.stats["flows_dropped"] += 1
                return
            flow = Flow(device, peer, pport, pkt.proto, pkt.ts, pkt.ts)
            flow.names = merge_names(self.names.names(device, peer))
            self.flows[key] = flow
        flow.packets += 1
        flow.bytes += pkt.length
        flow.first_seen = min(flow.first_seen, pkt.ts)
        flow.last_seen = max(flow.last_seen, pkt.ts)
        if outgoing and pkt.payload and pkt.proto == "tcp" and flow.inspected < INSPECT_PAYLOADS:
            flow.inspected += 1
            self._inspect(flow, pkt.payload)

    def _opens_outbound(
        self, pkt: Packet, outgoing: bool, dport: int | None, pport: int | None
    ) -> bool:
        """Is this the device's side of a conversation the device started?"""
        if pkt.proto == "tcp" and pkt.flags & TCP_SYN:
            client_sent = not pkt.flags & TCP_ACK  # SYN from the client, SYN-ACK back
            return client_sent == outgoing
        if dport is None or pport is None:
            if pkt.icmp_type is not None:  # echo request out, or its reply
                return pkt.icmp_type in ((8, 128) if outgoing else (0, 129))
            return outgoing
        return peer_is_server(dport, pport)

    def _learn_dns(self, device: str, pkt: Packet) -> None:
        try:
            answer = parse_dns_response(dns_message(pkt.payload, pkt.proto == "tcp"))
        except BadNameData as exc:
            self.stats["dns_errors"] += 1
            _LOGGER.debug("unreadable DNS answer to %s: %s", device, exc)
            return
        if answer is not None:
            self.stats["dns_answers"] += 1
            self.names.learn(device, answer)

    def _inspect(self, flow: Flow, payload: bytes) -> None:
        try:
            name = parse_sni(payload) or parse_http_host(payload)
        except BadNameData:
            self.stats["tls_errors"] += 1
            return
        if name is not None:
            flow.names = merge_names(flow.names, [name])

    def finish(self) -> list[Flow]:
        """The flows so far, with DNS names learnt after a flow began filled in."""
        for flow in self.flows.values():
            flow.names = merge_names(self.names.names(flow.device_ip, flow.dst_ip), flow.names)
        return sorted(self.flows.values(), key=lambda f: (f.device_ip, f.dst_ip, f.proto))

    def clear(self) -> None:
        """Start a new window: flows and counters go, learnt names stay."""
        self.flows.clear()
        self.stats.clear()
