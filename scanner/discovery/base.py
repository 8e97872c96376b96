"""What every probe shares: the scope guard, the packet budget and safe sockets.

Each protocol module keeps its parsing pure (bytes in, Observation out) and
does its I/O through a ProbeContext, so "never outside the scope" and "never
faster than the configured rate" are enforced in one place, not in eleven.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from xml.etree.ElementTree import Element

from scanner.config import ScanSettings, Scope
from scanner.discovery.arp import InterfaceInfo
from scanner.errors import ScopeError

MAX_DATAGRAM = 65_507  # the largest UDP payload over IPv4; replies are capped at this
MAX_REPLY = 256 * 1024  # TCP reply cap (HTTP/RTSP heads and bodies, SOAP, XML)
TCP_CONNECT_PACKETS = 3  # SYN, ACK, FIN
TLS_HANDSHAKE_PACKETS = 2  # ClientHello, then key exchange + Finished
SO_BINDTODEVICE = getattr(socket, "SO_BINDTODEVICE", 25)

# canonical attribute names that matching and merging read from Observation.attrs
ATTR_MANUFACTURER = "manufacturer"
ATTR_MODEL = "model"
ATTR_FIRMWARE = "firmware"
ATTR_SERIAL = "serial"
ATTR_UUID = "uuid"  # ONVIF endpoint reference / UPnP UDN, without the urn:uuid: prefix
ATTR_NAME = "name"  # a friendly or device name
ATTR_MAC = "mac"  # a MAC a device reports about itself (SADP/DHIP/ONVIF)


class Budget:
    """A global packet rate plus a per-host allowance, shared by all probes.

    Thread-safe; `take` sleeps to keep the global rate and refuses once a host
    has had its share, so a fragile camera never sees more than the budget.
    """

    def __init__(self, rate: int, per_host: int) -> None:
        self.interval = 1.0 / rate
        self.per_host = per_host
        self._next = time.monotonic()
        self._lock = threading.Lock()
        self.sent: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()

    def refund(self, host: str, packets: int) -> None:
        """Give back what was charged but never sent (a refused connect is one SYN)."""
        with self._lock:
            self.sent[host] = max(0, self.sent[host] - packets)

    def take(self, host: str | None, packets: int = 1) -> bool:
        with self._lock:
            if host is not None:
                if self.sent[host] + packets > self.per_host:
                    self.refused[host] += packets
                    return False
                self.sent[host] += packets
            else:
                self.sent["*multicast*"] += packets
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval * packets
            delay = start - now
        if delay > 0:
            time.sleep(delay)
        return True


@dataclass
class ProbeContext:
    """Everything a probe may use to talk to the network, and nothing more."""

    scope: Scope
    settings: ScanSettings
    interfaces: Sequence[InterfaceInfo]
    budget: Budget
    timeout: float = 2.0  # seconds per reply, per probe
    # cidr -> (user, password); never printed, logged or stored
    credentials: dict[str, tuple[str, str]] = field(default_factory=dict, repr=False)

    def check(self, ip: str | IPv4Address) -> None:
        """Refuse any unicast destination outside the scope; called before every send."""
        if not self.scope.contains(ip):
            raise ScopeError(f"refusing to probe {ip}: outside the scope")

    def in_scope(self, ip: str | IPv4Address) -> bool:
        return self.scope.contains(ip)

    def multicast_socket(self, iface: InterfaceInfo, port: int = 0) -> socket.socket:
        """A UDP socket pinned to one scoped interface for multicast/broadcast probes.

        Bound to the interface's own address and device, TTL 1, so a probe can
        neither leave through another interface nor cross a router.
        """
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, iface.name.encode())
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            # hundreds of devices answer a multicast probe within milliseconds
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
            sock.setsockopt(
                socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(str(iface.ip))
            )
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, struct.pack("B", 1))
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
            sock.bind(("0.0.0.0" if port else str(iface.ip), port))  # noqa: S104
        except OSError:
            sock.close()
            raise
        return sock

    def unicast_socket(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        return sock

    def send_multicast(self, sock: socket.socket, payload: bytes, group: str, port: int) -> None:
        self.budget.take(None)
        sock.sendto(payload, (group, port))

    def send_unicast(self, sock: socket.socket, payload: bytes, ip: str, port: int) -> bool:
        """Send one datagram to an in-scope host within its budget; False if refused."""
        self.check(ip)
        if not self.budget.take(ip):
            return False
        sock.sendto(payload, (ip, port))
        return True

    def connect(
        self, ip: str, port: int, timeout: float | None = None, *, requests: int = 1
    ) -> socket.socket:
        """A TCP connection to an in-scope host, counted against its budget.

        Counted as the packets we send: SYN, ACK and FIN (3), plus one per
        request the caller will write; ACKs of the reply are not counted.
        """
        self.check(ip)
        charged = TCP_CONNECT_PACKETS + requests
        if not self.budget.take(ip, charged):
            raise ScopeError(f"per-host packet budget spent for {ip}")
        try:
            return socket.create_connection((ip, port), timeout=timeout or self.timeout)
        except ConnectionRefusedError:
            self.budget.refund(ip, charged - 1)  # only the SYN went out
            raise


def recv_until(
    sock: socket.socket, deadline: float, *, max_replies: int = 20_000
) -> list[tuple[bytes, str]]:
    """Collect datagrams until the deadline; each capped at MAX_DATAGRAM bytes."""
    out: list[tuple[bytes, str]] = []
    while len(out) < max_replies:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        sock.settimeout(remaining)
        try:
            data, (ip, _port) = sock.recvfrom(MAX_DATAGRAM)
        except TimeoutError:
            break
        except OSError:
            break
        out.append((data, ip))
    return out


def local_name(tag: object) -> str:
    """An element's name without its namespace: devices vary the namespaces, not the names."""
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def child(parent: Element | None, name: str) -> Element | None:
    """The first child element called `name`, in any namespace."""
    if parent is None:
        return None
    for el in parent:
        if local_name(el.tag) == name:
            return el
    return None
