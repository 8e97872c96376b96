"""Live capture: scapy's AsyncSniffer on one interface, behind a kernel BPF filter.

The socket is scapy's Linux L2ListenSocket (AF_PACKET, every frame in and
out of the interface), opened without a libpcap filter; our own BPF program
(scanner/capture/bpf.py), built from the inventory's addresses, is attached
with SO_ATTACH_FILTER, so the kernel drops unrelated traffic before it is
queued. Frames reach Python as bytes (scapy's Raw layer, no dissection) and
go straight into a FlowTable. Passive: nothing is ever sent. The filter is
IPv4 (the inventory's addresses are); IPv6 is read from capture files only.

Needs CAP_NET_RAW (packet socket, promiscuous membership), nothing more:
systemd `AmbientCapabilities=CAP_NET_RAW`, or in a test
`setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=+net_raw
--ambient-caps=+net_raw`.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Any

from scanner.capture import bpf
from scanner.capture.decode import LINKTYPE_ETHERNET
from scanner.capture.flows import FlowTable
from scanner.errors import CaptureError

_LOGGER = logging.getLogger(__name__)
SOL_PACKET = 263
PACKET_STATISTICS = 6  # struct tpacket_stats { u32 tp_packets, tp_drops } (resets on read)
RCVBUF_BYTES = 4 << 20  # capped by net.core.rmem_max without CAP_NET_ADMIN


@dataclass(frozen=True, slots=True)
class SniffResult:
    interface: str
    seconds: float
    kernel_packets: int  # frames that passed the filter (kernel's count)
    kernel_drops: int  # frames that passed but found the socket buffer full
    handled: int  # frames the flow table saw
    errors: int  # frames whose handling raised (a bug: logged, never fatal)
    filter_insns: int


def _open_socket(iface: str, prog: list[bpf.Insn], promisc: bool) -> Any:
    """scapy's listen socket with our filter attached; CaptureError for what we can explain."""
    import scapy.layers.l2  # noqa: F401 (registers Ethernet, so scapy does not warn)
    from scapy.arch.linux import L2ListenSocket
    from scapy.packet import Raw

    try:
        sock = L2ListenSocket(iface=iface, promisc=promisc, nofilter=1)
    except PermissionError:
        raise CaptureError(
            "capture needs CAP_NET_RAW: run as root, or with "
            "AmbientCapabilities=CAP_NET_RAW (systemd) / setpriv --ambient-caps=+net_raw"
        ) from None
    except OSError as exc:
        raise CaptureError(f"cannot capture on {iface!r}: {exc.strerror or exc}") from None
    try:
        bpf.attach(sock.ins, prog)
        _drain(sock.ins)  # frames queued before the filter was on
        with contextlib.suppress(OSError):
            sock.ins.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF_BYTES)
        _kernel_stats(sock.ins)  # reset the counters to this window
    except OSError as exc:
        sock.close()
        raise CaptureError(f"cannot attach the capture filter on {iface!r}: {exc}") from None
    sock.LL = Raw  # hand frames over as bytes: no dissection
    return sock


def _drain(s: socket.socket) -> None:
    s.setblocking(False)
    try:
        while True:
            s.recv(65535)
    except (BlockingIOError, InterruptedError):
        pass
    finally:
        s.setblocking(True)


def _drain_into(s: socket.socket, table: FlowTable, limit: int = 100_000) -> int:
    """Feed what is still queued on the socket; bounded, so a flood cannot stall the stop."""
    n = 0
    s.setblocking(False)
    with contextlib.suppress(BlockingIOError, InterruptedError):
        while n < limit:
            table.feed(s.recv(65535), LINKTYPE_ETHERNET, time.time())
            n += 1
    return n


def _kernel_stats(s: socket.socket) -> tuple[int, int]:
    raw = s.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
    packets, drops = struct.unpack("II", raw)
    return packets, drops


def check_interface(iface: str) -> None:
    try:
        socket.if_nametoindex(iface)
    except OSError:
        raise CaptureError(f"no interface {iface!r} in this network namespace") from None


def sniff(
    iface: str,
    seconds: float,
    table: FlowTable,
    addresses: Iterable[IPv4Address],
    *,
    promisc: bool = True,
    stop: threading.Event | None = None,
) -> SniffResult:
    """Capture for `seconds` (or until `stop` is set) into `table`; return the counts."""
    from scapy.sendrecv import AsyncSniffer

    check_interface(iface)
    prog = bpf.build_program(addresses)
    sock = _open_socket(iface, prog, promisc)
    errors = 0
    handled = 0

    def handle(pkt: Any) -> None:
        nonlocal errors, handled
        try:  # an exception here would make scapy close the socket: never let one out
            table.feed(bytes(pkt.load), LINKTYPE_ETHERNET, float(pkt.time))
            handled += 1
        except Exception:
            errors += 1
            if errors <= 3:
                _LOGGER.exception("capture: frame handling failed (kept going)")

    started = time.monotonic()
    sniffer = AsyncSniffer(opened_socket=sock, prn=handle, store=False)
    try:
        sniffer.start()
        (stop or threading.Event()).wait(seconds)
        with contextlib.suppress(Exception):
            sniffer.stop()
        handled += _drain_into(sock.ins, table)  # frames queued when the window closed
        packets, drops = _kernel_stats(sock.ins)
    finally:
        sock.close()
    if drops:
        _LOGGER.warning("capture on %s: the kernel dropped %d frames (buffer full)", iface, drops)
    return SniffResult(
        iface, time.monotonic() - started, packets, drops, handled, errors, len(prog)
    )
