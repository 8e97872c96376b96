"""``kind = "talker"``: a device that phones out, for the outbound-connection watch.

Not a server: every ``interval`` seconds it works through its ``targets``,
resolving names through the lab's DNS server first (a fresh A query each
round, as a camera with a short DNS cache does), then talking:

  udp://HOST:PORT    one datagram of ``payload`` from the service's ``port``
                     (P2P stacks send from a fixed port; replies are read and dropped)
  tcp://HOST:PORT    connect, send ``payload``, read what comes back, close
  http://HOST:PORT   connect, ``GET /`` with ``Host: HOST``, read, close
  tls://HOST:PORT    connect, a TLS 1.2 ClientHello with server_name HOST, close

Options:
  targets   list of the URLs above (required); HOST is a name or a lab address
  dns       the resolver's address (required when a HOST is a name)
  interval  seconds between rounds (default 1.0, at least 0.05)
  payload   text for udp/tcp targets (default "hello")

Only lab addresses (lab.scenario.ALLOWED_RANGES) are ever contacted: a
literal outside them is refused when the scenario loads, and a DNS answer
outside them is ignored. Sockets live in the device's namespace: the UDP
ones are made in ``bind()``; each TCP one is made by a short-lived thread
that enters the namespace (setns affects only that thread) and leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import random
import socket
import struct
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import urlsplit

from lab.netns import setns
from lab.responders.base import OptionError, OptionType, Responder, register
from lab.responders.dns import encode_name, normalise_name
from lab.scenario import ServiceSpec, allowed_range

log = logging.getLogger("lab.responders")

SCHEMES = ("udp", "tcp", "http", "tls")
IO_TIMEOUT = 1.0  # seconds for a DNS answer, a connect, a read


@dataclass(frozen=True, slots=True)
class Target:
    scheme: str
    host: str  # a lab address or a normalised name
    port: int

    @property
    def is_name(self) -> bool:
        try:
            ipaddress.IPv4Address(self.host)
        except ValueError:
            return True
        return False


def parse_target(text: str) -> Target:
    parts = urlsplit(text)
    if parts.scheme not in SCHEMES:
        raise ValueError(f"{text!r}: scheme must be one of {', '.join(SCHEMES)}")
    try:
        port = parts.port
    except ValueError:
        port = None
    if not parts.hostname or port is None:
        raise ValueError(f"{text!r}: give HOST:PORT")
    host = parts.hostname
    try:
        ip = ipaddress.IPv4Address(host)
    except ValueError:
        name = normalise_name(host)
        if name is None:
            raise ValueError(f"{text!r}: {host!r} is neither an IPv4 address nor a name") from None
        return Target(parts.scheme, name, port)
    if allowed_range(ip) is None:
        raise ValueError(f"{text!r}: {ip} is not a lab address")
    return Target(parts.scheme, str(ip), port)


def dns_query(name: str, qid: int) -> bytes:
    """An A query with RD set (RFC 1035 §4.1), as a stub resolver sends it."""
    return struct.pack("!6H", qid, 0x0100, 1, 0, 0, 0) + encode_name(name) + b"\x00\x01\x00\x01"


def first_a_record(reply: bytes, qid: int) -> str | None:
    """The first A record's address in a reply to ``qid`` (names skipped, not read)."""
    if len(reply) < 12:
        return None
    rid, flags, qd, an = struct.unpack_from("!4H", reply, 0)
    if rid != qid or not flags & 0x8000 or flags & 0x000F or qd != 1:
        return None
    pos = _skip_name(reply, 12) + 4
    for _ in range(min(an, 16)):
        pos = _skip_name(reply, pos)
        if pos < 0 or pos + 10 > len(reply):
            return None
        rtype, _cls, _ttl, rdlen = struct.unpack_from("!HHIH", reply, pos)
        pos += 10
        if rtype == 1 and rdlen == 4 and pos + 4 <= len(reply):
            return socket.inet_ntoa(reply[pos : pos + 4])
        pos += rdlen
    return None


def _skip_name(msg: bytes, pos: int) -> int:
    while 0 <= pos < len(msg):
        n = msg[pos]
        if n & 0xC0 == 0xC0:
            return pos + 2
        if n == 0:
            return pos + 1
        pos += 1 + n
    return -1


def client_hello(server_name: str) -> bytes:
    """A TLS 1.2 ClientHello record with one server_name (RFC 5246 §7.4.1.2, RFC 6066 §3)."""
    name = server_name.encode("ascii")
    sni_list = struct.pack("!BH", 0, len(name)) + name
    sni = struct.pack("!HHH", 0, len(sni_list) + 2, len(sni_list)) + sni_list
    groups = struct.pack("!HHH", 10, 4, 2) + struct.pack("!H", 0x001D)  # supported_groups x25519
    extensions = sni + groups
    suites = struct.pack("!H", 4) + struct.pack("!HH", 0xC02F, 0x009C)
    body = (
        b"\x03\x03"
        + os.urandom(32)
        + b"\x00"  # no session id
        + suites
        + b"\x01\x00"  # compression: null
        + struct.pack("!H", len(extensions))
        + extensions
    )
    handshake = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + struct.pack("!H", len(handshake)) + handshake


@register
class TalkerResponder(Responder):
    kind = "talker"
    transport = "udp"  # its ``port`` is the UDP source port of udp:// targets
    options: ClassVar[Mapping[str, OptionType]] = {
        "targets": list,
        "dns": str,
        "interval": (int, float),
        "payload": str,
    }
    required = frozenset({"targets"})

    @classmethod
    def check(cls, options: Mapping[str, Any]) -> None:
        super().check(options)
        targets = options["targets"]
        if not targets:
            raise OptionError("targets", "give at least one target")
        parsed = []
        for i, text in enumerate(targets):
            if not isinstance(text, str):
                raise OptionError(f"targets[{i}]", "must be a URL string")
            try:
                parsed.append(parse_target(text))
            except ValueError as exc:
                raise OptionError(f"targets[{i}]", str(exc)) from None
        if "dns" in options:
            try:
                dns = ipaddress.IPv4Address(options["dns"])
            except ValueError:
                raise OptionError("dns", f"{options['dns']!r} is not an IPv4 address") from None
            if allowed_range(dns) is None:
                raise OptionError("dns", f"{dns} is not a lab address")
        elif any(t.is_name for t in parsed):
            raise OptionError("dns", "required when a target is a name")
        if "interval" in options and not 0.05 <= float(options["interval"]) <= 3600:
            raise OptionError("interval", "must be 0.05 to 3600 seconds")

    def __init__(self, device: str, service: ServiceSpec) -> None:
        super().__init__(device, service)
        self.targets = [parse_target(t) for t in self.opts["targets"]]
        self.dns = self.opts.get("dns")
        self.interval = float(self.opts.get("interval", 1.0))
        self.payload = str(self.opts.get("payload", "hello")).encode()
        self._netns_fd = -1
        self._task: asyncio.Task[None] | None = None
        self.rounds = 0

    def bind(self) -> None:
        self._netns_fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        udp.bind(("0.0.0.0", self.port))
        udp.setblocking(False)
        dns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        dns.bind(("0.0.0.0", 0))
        dns.setblocking(False)
        self.sockets += [udp, dns]

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._netns_fd >= 0:
            os.close(self._netns_fd)
            self._netns_fd = -1
        await super().stop()

    async def _run(self) -> None:
        while True:
            try:
                await self._round()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%r: round failed", self)
            self.rounds += 1
            await asyncio.sleep(self.interval)

    async def _round(self) -> None:
        udp, _dns = self.sockets
        _drain(udp)
        for t in self.targets:
            ip = await self._resolve(t.host) if t.is_name else t.host
            if ip is None:
                continue
            if t.scheme == "udp":
                with contextlib.suppress(OSError):
                    udp.sendto(self.payload, (ip, t.port))
            else:
                await self._tcp(t, ip)

    async def _resolve(self, name: str) -> str | None:
        loop = asyncio.get_running_loop()
        sock = self.sockets[1]
        qid = random.randrange(1, 0xFFFF)
        _drain(sock)
        try:
            await loop.sock_sendto(sock, dns_query(name, qid), (str(self.dns), 53))
            deadline = loop.time() + IO_TIMEOUT
            while (left := deadline - loop.time()) > 0:
                reply, (src, _port) = await asyncio.wait_for(loop.sock_recvfrom(sock, 4096), left)
                if src != self.dns:
                    continue
                ip = first_a_record(reply, qid)
                if ip is None:
                    return None
                if allowed_range(ipaddress.IPv4Address(ip)) is None:
                    log.warning("%r: %s resolved outside the lab (%s): ignored", self, name, ip)
                    return None
                return ip
        except (TimeoutError, OSError):
            return None
        return None

    async def _tcp(self, t: Target, ip: str) -> None:
        loop = asyncio.get_running_loop()
        sock = self._socket_in_device(socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await asyncio.wait_for(loop.sock_connect(sock, (ip, t.port)), IO_TIMEOUT)
            if t.scheme == "http":
                host = t.host if t.port == 80 else f"{t.host}:{t.port}"
                data = (
                    f"GET / HTTP/1.1\r\nHost: {host}\r\nUser-Agent: lab-camera/1.0\r\n"
                    "Connection: close\r\n\r\n"
                ).encode()
            elif t.scheme == "tls":
                data = client_hello(t.host)
            else:
                data = self.payload
            await loop.sock_sendall(sock, data)
            if t.scheme != "tls":
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(loop.sock_recv(sock, 4096), IO_TIMEOUT)
        except (TimeoutError, OSError):
            pass
        finally:
            sock.close()

    def _socket_in_device(self, kind: int) -> socket.socket:
        """A socket made inside the device's namespace by a thread that then exits."""
        made: list[socket.socket] = []
        errors: list[BaseException] = []

        def work() -> None:
            home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            try:
                setns(self._netns_fd)
                try:
                    made.append(socket.socket(socket.AF_INET, kind))
                finally:
                    setns(home)
            except BaseException as exc:  # reported to the caller below
                errors.append(exc)
            finally:
                os.close(home)

        th = threading.Thread(target=work, name=f"talker-{self.device}")
        th.start()
        th.join()
        if errors or not made:
            raise OSError(f"cannot make a socket in {self.device}'s namespace: {errors}")
        return made[0]


def _drain(sock: socket.socket) -> None:
    with contextlib.suppress(BlockingIOError, InterruptedError, OSError):
        for _ in range(1000):
            sock.recv(65535)
