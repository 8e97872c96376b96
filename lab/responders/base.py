"""What a responder kind is, and the registry that maps ``kind`` to it.

A kind is one small module in ``lab/responders/`` holding a ``@register``-ed
class. The lab's single responder process creates every device's sockets with
``bind()`` while its thread sits inside that device's namespace, then returns
to its own namespace and calls ``start()`` for all of them on one asyncio
loop. So ``bind()`` must only create/bind/listen/join: nothing that needs the
loop, and no name lookups that would go out on the lab network.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import ipaddress
import logging
import pkgutil
import random
import socket
import struct
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar, cast
from xml.etree.ElementTree import Element

from lab.scenario import ServiceSpec, allowed_range

log = logging.getLogger("lab.responders")

DEVICE_IFACE = "eth0"  # every device namespace has exactly this interface

OptionType = type | tuple[type, ...]


class OptionError(Exception):
    """A bad service option; ``field`` is the key under the service table."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class Responder(ABC):
    kind: ClassVar[str]
    transport: ClassVar[str] = "tcp"  # "tcp" or "udp": ports are unique per transport
    # Allowed options (keys of the service table other than kind/port) and their types.
    options: ClassVar[Mapping[str, OptionType]] = {}
    required: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, device: str, service: ServiceSpec) -> None:
        self.device = device
        self.service = service
        self.port = service.port
        self.opts: Mapping[str, Any] = service.options
        self.sockets: list[socket.socket] = []

    @classmethod
    def check(cls, options: Mapping[str, Any]) -> None:
        """Validate the service's options; raise OptionError naming the key."""
        for key, value in options.items():
            if key not in cls.options:
                allowed = ", ".join(sorted(cls.options)) or "none"
                raise OptionError(key, f"unknown option for kind {cls.kind!r} (allowed: {allowed})")
            check_type(key, value, cls.options[key])
        for key in sorted(cls.required - set(options)):
            raise OptionError(key, f"required for kind {cls.kind!r}")

    @abstractmethod
    def bind(self) -> None:
        """Create and bind sockets; called with this thread in the device netns."""

    @abstractmethod
    async def start(self) -> None:
        """Start serving on the running loop (back in the responder's netns)."""

    async def stop(self) -> None:
        for sock in self.sockets:
            sock.close()

    def __repr__(self) -> str:
        return f"<{self.kind} {self.device} {self.transport}/{self.port}>"


def check_type(field: str, value: Any, want: OptionType) -> None:
    wants = want if isinstance(want, tuple) else (want,)
    # TOML true is not a number, though bool subclasses int
    is_bad_bool = isinstance(value, bool) and bool not in wants
    if is_bad_bool or not isinstance(value, wants):
        names = " or ".join("table" if w is dict else w.__name__ for w in wants)
        raise OptionError(field, f"must be {names}, not {type(value).__name__}")


def tcp_listener(port: int, backlog: int = 128) -> socket.socket:
    """A listening TCP socket on every address of the current netns.

    The wildcard address keeps the service reachable after set_device_ip.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("0.0.0.0", port))
    sock.listen(backlog)
    sock.setblocking(False)
    return sock


def udp_socket(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("0.0.0.0", port))
    sock.setblocking(False)
    return sock


def join_group(sock: socket.socket, group: str, iface: str = DEVICE_IFACE) -> None:
    """Join a multicast group on the device interface (by index: no routes needed)."""
    mreqn = socket.inet_aton(group) + socket.inet_aton("0.0.0.0")
    mreqn += socket.if_nametoindex(iface).to_bytes(4, "little")
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreqn)


class StreamResponder(Responder):
    """A TCP service: subclasses write ``handle``; one connection per call."""

    transport = "tcp"
    read_limit: ClassVar[int] = 64 * 1024  # StreamReader buffer cap

    def __init__(self, device: str, service: ServiceSpec) -> None:
        super().__init__(device, service)
        self._server: asyncio.Server | None = None

    def bind(self) -> None:
        self.sockets.append(tcp_listener(self.port))

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._guarded, sock=self.sockets[0], limit=self.read_limit
        )

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        await super().stop()

    async def _guarded(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self.handle(reader, writer)
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError):
            pass
        except Exception:
            log.exception("%r: handler failed", self)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    @abstractmethod
    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve one connection; the caller closes it and swallows I/O errors."""


SPOOF_OPTION = "spoof_from"
SPOOF_TTL = 64
SPOOF_MTU = 1500  # the lab's veth MTU


def udp_datagrams(
    src: str, sport: int, dst: str, dport: int, payload: bytes, *, mtu: int = SPOOF_MTU
) -> list[bytes]:
    """One UDP datagram as IPv4 packets for a raw socket, fragmented to fit ``mtu``.

    UDP checksum 0 means "none" (RFC 768). With IP_HDRINCL the kernel fills in
    the header checksum but never fragments, so a datagram over the MTU is cut
    here into RFC 791 fragments (offsets in 8-byte units, MF on all but the last).
    """
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    ident = random.randrange(1, 1 << 16)
    step = (mtu - 20) // 8 * 8
    out = []
    for offset in range(0, len(udp), step):
        piece = udp[offset : offset + step]
        more = 0x2000 if offset + step < len(udp) else 0
        header = struct.pack(
            "!BBHHHBBH4s4s",
            0x45,
            0,
            20 + len(piece),
            ident,
            more | (offset // 8),
            SPOOF_TTL,
            socket.IPPROTO_UDP,
            0,
            socket.inet_aton(src),
            socket.inet_aton(dst),
        )
        out.append(header + piece)
    return out


class DatagramResponder(Responder):
    """A UDP service: subclasses write ``reply``; None means stay silent.

    Every UDP kind also takes ``spoof_from = "<lab address>"``: its answers
    then leave through a raw socket with that forged source address (a host
    that sends replies "from" somewhere outside the scanner's scope), and
    never from the device's own address.
    """

    transport = "udp"

    @classmethod
    def check(cls, options: Mapping[str, Any]) -> None:
        super().check({k: v for k, v in options.items() if k != SPOOF_OPTION})
        if SPOOF_OPTION in options:
            check_type(SPOOF_OPTION, options[SPOOF_OPTION], str)
            try:
                ip = ipaddress.IPv4Address(options[SPOOF_OPTION])
            except ValueError:
                raise OptionError(SPOOF_OPTION, "not an IPv4 address") from None
            if allowed_range(ip) is None or ip.is_multicast or ip.is_unspecified:
                raise OptionError(SPOOF_OPTION, f"{ip} is not a unicast address the lab may use")

    def __init__(self, device: str, service: ServiceSpec) -> None:
        super().__init__(device, service)
        self._transport: asyncio.DatagramTransport | None = None
        self.spoof_from: str | None = service.options.get(SPOOF_OPTION)
        self._raw: socket.socket | None = None

    def bind(self) -> None:
        self.sockets.append(udp_socket(self.port))
        if self.spoof_from is not None:
            # IPPROTO_RAW implies IP_HDRINCL: the source address is whatever we write
            self._raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
            self._raw.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)  # XMEye, DHIP
            self._raw.setblocking(False)  # kept out of ``sockets``: kinds index those

    def send(self, payload: bytes, dest: tuple[str, int]) -> None:
        """One answer datagram: from our socket, or forged from ``spoof_from``."""
        if self._raw is not None and self.spoof_from is not None:
            try:
                for packet in udp_datagrams(self.spoof_from, self.port, *dest, payload):
                    self._raw.sendto(packet, (dest[0], 0))
            except OSError as exc:  # a full queue: dropped, as UDP is
                log.warning("%r: spoofed reply to %s dropped: %s", self, dest[0], exc)
            return
        if self._transport is not None and not self._transport.is_closing():
            self._transport.sendto(payload, dest)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_datagram_endpoint(
            lambda: _DatagramProtocol(self), sock=self.sockets[0]
        )

    async def stop(self) -> None:
        if self._transport is not None:
            self._transport.close()
        if self._raw is not None:
            self._raw.close()
        await super().stop()

    @abstractmethod
    def reply(self, data: bytes, addr: tuple[str, int]) -> bytes | None:
        """The answer to one datagram from ``addr``."""


class _DatagramProtocol(asyncio.DatagramProtocol):
    def __init__(self, responder: DatagramResponder) -> None:
        self.responder = responder
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # 3.11's selector transport does not subclass DatagramTransport: cast, not assert.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            answer = self.responder.reply(data, addr)
        except Exception:
            log.exception("%r: reply failed", self.responder)
            return
        if answer is not None:
            self.responder.send(answer, addr)


_REGISTRY: dict[str, type[Responder]] = {}
_discovered = False


def register(cls: type[Responder]) -> type[Responder]:
    """Class decorator: make ``cls.kind`` usable in scenario files."""
    other = _REGISTRY.get(cls.kind)
    if other is not None and other is not cls:
        raise ValueError(f"responder kind {cls.kind!r} registered twice ({other}, {cls})")
    _REGISTRY[cls.kind] = cls
    return cls


def registry() -> dict[str, type[Responder]]:
    """Every kind, importing each module of this package once (no list to edit)."""
    global _discovered
    if not _discovered:
        import lab.responders as pkg

        for mod in pkgutil.iter_modules(pkg.__path__):
            if mod.name != "base" and not mod.name.startswith("_"):
                importlib.import_module(f"{pkg.__name__}.{mod.name}")
        _discovered = True
    return dict(_REGISTRY)


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
