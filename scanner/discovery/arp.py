"""ARP sweep: who answers on the local segment, and with which MAC.

Requests are built with scapy (its layer 2 module only: about 0.15 s to
import, where ``scapy.all`` takes 0.6 s), one frame as it is sent. Replies
are the 28 fixed bytes of RFC 826 behind an Ethernet header and are parsed
with struct, because parsing must never raise on hostile input and every
frame on the segment passes through it. The socket is an AF_PACKET socket
bound to ETH_P_ARP on one scoped interface (scapy's sendp would open one per
call), so the kernel hands us ARP only and no BPF compiler is needed.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import select
import socket
import struct
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from ipaddress import IPv4Address, IPv4Network

from scanner.errors import ScannerError, ScopeError
from scanner.model import Observation, Source, utcnow

_LOGGER = logging.getLogger(__name__)

ETH_P_ARP = 0x0806
_SIOCGIFADDR = 0x8915
_SIOCGIFNETMASK = 0x891B
_SIOCGIFHWADDR = 0x8927
_ARP_HEAD = struct.Struct("!HHBBH6s4s6s4s")  # RFC 826 for Ethernet/IPv4: 28 bytes
_MAX_REPLIES = 100_000  # bounds memory if a hostile segment floods replies


@dataclass(frozen=True, slots=True)
class InterfaceInfo:
    name: str
    mac: str
    ip: IPv4Address
    network: IPv4Network


def _mac_text(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def interface_info(name: str) -> InterfaceInfo:
    """Address, netmask and MAC of an interface in this network namespace."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        req = struct.pack("256s", name.encode()[:15])
        try:
            hw = fcntl.ioctl(sock.fileno(), _SIOCGIFHWADDR, req)
        except OSError:
            raise ScopeError(f"interface {name!r} does not exist here") from None
        try:
            addr = fcntl.ioctl(sock.fileno(), _SIOCGIFADDR, req)
            mask = fcntl.ioctl(sock.fileno(), _SIOCGIFNETMASK, req)
        except OSError:
            raise ScopeError(f"interface {name!r} has no IPv4 address") from None
    finally:
        sock.close()
    ip = IPv4Address(addr[20:24])
    netmask = IPv4Address(mask[20:24])
    return InterfaceInfo(
        name=name,
        mac=_mac_text(hw[18:24]),
        ip=ip,
        network=IPv4Network(f"{ip}/{netmask}", strict=False),
    )


def build_request(src_mac: str, src_ip: IPv4Address, target: IPv4Address) -> bytes:
    """A broadcast who-has for one target (42 bytes; the NIC pads it to 60)."""
    from scapy.layers.l2 import ARP, Ether

    frame = Ether(src=src_mac, dst="ff:ff:ff:ff:ff:ff") / ARP(
        op=1, hwsrc=src_mac, psrc=str(src_ip), hwdst="00:00:00:00:00:00", pdst=str(target)
    )
    return bytes(frame)


def parse_reply(frame: bytes) -> tuple[IPv4Address, str] | None:
    """(sender IP, sender MAC) of an ARP reply frame, or None for anything else."""
    if len(frame) < 14 + _ARP_HEAD.size:
        return None
    if frame[12:14] != b"\x08\x06":
        return None
    htype, ptype, hlen, plen, op, sha, spa, _tha, _tpa = _ARP_HEAD.unpack_from(frame, 14)
    if (htype, ptype, hlen, plen, op) != (1, 0x0800, 6, 4, 2):
        return None
    if sha[0] & 0x01 or sha == b"\x00" * 6:  # multicast/broadcast/zero: not a station
        return None
    return IPv4Address(spa), _mac_text(sha)


def on_link_targets(targets: Iterable[IPv4Address], iface: InterfaceInfo) -> list[IPv4Address]:
    """The scope's addresses that ARP can reach on this interface."""
    return [t for t in targets if t in iface.network and t != iface.ip]


def sweep(
    iface: InterfaceInfo,
    targets: Sequence[IPv4Address],
    *,
    rate: int,
    timeout: float,
    retries: int,
    take: Callable[[str], bool] | None = None,
) -> list[Observation]:
    """Ask every target who-has, paced at `rate` frames/s; one Observation per answer.

    With `take` (the scan's shared Budget.take), pacing is the budget's: ARP
    then shares the global rate with the protocols running beside it, and
    each request counts against its target's per-host allowance.

    Addresses that stay silent are asked again up to `retries` times. Replies
    from addresses that were not asked are ignored: a probe's answer must
    come from inside the scope.
    """
    if not targets:
        return []
    wanted = set(targets)
    try:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
    except PermissionError:
        raise ScannerError(
            "ARP needs CAP_NET_RAW (run as root or with AmbientCapabilities=CAP_NET_RAW)"
        ) from None
    found: dict[tuple[IPv4Address, str], datetime] = {}
    ignored = 0
    try:
        sock.bind((iface.name, ETH_P_ARP))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        sock.setblocking(False)
        interval = 1.0 / rate
        pending: list[IPv4Address] = list(targets)
        for _round in range(retries + 1):
            next_send = time.monotonic()
            i = 0
            deadline = float("inf")
            while True:
                now_m = time.monotonic()
                if i < len(pending) and (take is not None or now_m >= next_send):
                    if take is None or take(str(pending[i])):
                        frame = build_request(iface.mac, iface.ip, pending[i])
                        with contextlib.suppress(BlockingIOError):  # full: the retry covers it
                            sock.send(frame)
                    i += 1
                    next_send += interval
                    if i == len(pending):
                        deadline = time.monotonic() + timeout
                    continue
                if now_m >= deadline:
                    break
                wait = (next_send if i < len(pending) else deadline) - now_m
                ready, _, _ = select.select([sock], [], [], max(0.0, wait))
                if not ready:
                    continue
                while len(found) < _MAX_REPLIES:
                    try:
                        frame = sock.recv(2048)
                    except BlockingIOError:
                        break
                    parsed = parse_reply(frame)
                    if parsed is None:
                        continue
                    if parsed[0] not in wanted:
                        ignored += 1
                        continue
                    found.setdefault(parsed, utcnow())
            answered = {ip for ip, _mac in found}
            pending = [t for t in pending if t not in answered]
            if not pending:
                break
    finally:
        sock.close()
    if ignored:
        _LOGGER.info("ignored %d ARP replies from addresses outside the scope", ignored)
    return [
        Observation(
            source=Source.ARP, ip=str(ip), mac=mac, seen_at=seen, attrs={"iface": iface.name}
        )
        for (ip, mac), seen in sorted(found.items())
    ]
