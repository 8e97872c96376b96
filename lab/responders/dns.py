"""``kind = "dns"``: the lab's DNS server (UDP, and TCP on the same port).

Plays the resolver a camera is given by DHCP: it answers A queries for the
names in ``records``, follows ``cnames`` chains (the CNAME records come first
in the answer, as RFC 1034 §4.3.2 has it), and says NXDOMAIN for anything
else. Replies set RA and copy RD and the question, as a recursive resolver's
do; there is no EDNS, so UDP answers over 512 bytes come back with TC set and
no records, and the client asks again over TCP (RFC 1035 §4.2, RFC 7766).

Options (all optional):
  records  {name = "203.0.113.10"} or {name = ["ip", ...]}: lab addresses only
  cnames   {name = "target.name"}: a loop is allowed and answers SERVFAIL
  ttl      seconds for every record (default 300)
  tcp      also serve DNS over TCP on the port (default true)
  mode     "normal" | "malformed" (the answer's owner name is a compression
           pointer to itself and its RDLENGTH runs past the end) | "truncated"
           (the reply is cut off inside its first record, TC not set) | "tc"
           (every UDP reply has TC set and no records; TCP answers in full)

Names match case-insensitively, without a trailing dot. Datagrams that are
responses or shorter than a header are dropped; a query the server cannot
read gets FORMERR, another opcode NOTIMP and another class REFUSED, as BIND
and dnsmasq do. The wire format is RFC 1035 §4.1, written here by hand: the
responder process must not depend on a package only this kind uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import re
import socket
import struct
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from lab.responders.base import (
    DatagramResponder,
    OptionError,
    OptionType,
    register,
    tcp_listener,
)
from lab.scenario import ServiceSpec, allowed_range

log = logging.getLogger("lab.responders")

TYPE_A, TYPE_CNAME, TYPE_ANY = 1, 5, 255
CLASS_IN = 1
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5
QR, TC, RD, RA = 0x8000, 0x0200, 0x0100, 0x0080
UDP_LIMIT = 512  # RFC 1035 §2.3.4, without EDNS
MAX_CHAIN = 8  # CNAME hops before SERVFAIL, like resolvers' own limits
TCP_IDLE = 10.0  # seconds a TCP client may sit between queries (RFC 7766 §6.2.3)
TCP_MAX_QUERIES = 100  # per connection
MODES = ("normal", "malformed", "truncated", "tc")
_LABEL_RE = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$")
_HEADER = struct.Struct("!6H")


class DnsFormatError(ValueError):
    """A query this server cannot read (answered with FORMERR)."""


def normalise_name(text: str) -> str | None:
    """Lower-case name without a trailing dot, or None if it is not a host name."""
    name = text.strip().lower().removesuffix(".")
    if not name or len(name) > 253:
        return None
    if not all(_LABEL_RE.match(label) for label in name.split(".")):
        return None
    return name


def encode_name(name: str) -> bytes:
    """Uncompressed wire form of a checked name (``normalise_name``)."""
    out = b"".join(bytes([len(lb)]) + lb.encode("ascii") for lb in name.split("."))
    return out + b"\x00"


def read_question(data: bytes, offset: int = 12) -> tuple[str, int, int, int]:
    """(lower-case name, qtype, qclass, end offset) of the question at ``offset``.

    Compression pointers are refused: a query has nothing earlier to point at.
    """
    labels: list[str] = []
    total = 0
    while True:
        if offset >= len(data):
            raise DnsFormatError("question name runs past the end")
        length = data[offset]
        offset += 1
        if length == 0:
            break
        if length & 0xC0:
            raise DnsFormatError("compressed or extended label in a query")
        total += length + 1
        if total > 255 or offset + length > len(data):
            raise DnsFormatError("question name too long or cut off")
        labels.append(data[offset : offset + length].decode("latin-1").lower())
        offset += length
    if offset + 4 > len(data):
        raise DnsFormatError("question type/class cut off")
    qtype, qclass = struct.unpack_from("!HH", data, offset)
    return ".".join(labels), qtype, qclass, offset + 4


class Zone:
    """The records a server answers from, already checked and normalised."""

    def __init__(
        self, records: Mapping[str, Sequence[str]], cnames: Mapping[str, str], ttl: int
    ) -> None:
        self.records = {n: [socket.inet_aton(ip) for ip in ips] for n, ips in records.items()}
        self.cnames = dict(cnames)
        self.ttl = ttl

    @classmethod
    def from_options(cls, opts: Mapping[str, Any]) -> Zone:
        records: dict[str, list[str]] = {}
        for name, value in opts.get("records", {}).items():
            key = normalise_name(name)
            assert key is not None  # check() has run
            records.setdefault(key, []).extend([value] if isinstance(value, str) else value)
        cnames = {}
        for name, target in opts.get("cnames", {}).items():
            key, dest = normalise_name(name), normalise_name(target)
            assert key is not None
            assert dest is not None
            cnames[key] = dest
        return cls(records, cnames, int(opts.get("ttl", 300)))

    def resolve(self, name: str, qtype: int) -> tuple[int, list[tuple[str, int, bytes]]]:
        """(rcode, [(owner, type, rdata), ...]) for one question."""
        if qtype == TYPE_CNAME and name in self.cnames:
            return NOERROR, [(name, TYPE_CNAME, encode_name(self.cnames[name]))]
        chain: list[tuple[str, int, bytes]] = []
        seen = {name}
        cur = name
        while cur in self.cnames:
            target = self.cnames[cur]
            chain.append((cur, TYPE_CNAME, encode_name(target)))
            if target in seen or len(chain) > MAX_CHAIN:
                return SERVFAIL, []
            seen.add(target)
            cur = target
        if cur not in self.records:
            return NXDOMAIN, chain  # the chain still goes out, as real servers send it
        if qtype in (TYPE_A, TYPE_ANY):
            return NOERROR, chain + [(cur, TYPE_A, ip) for ip in self.records[cur]]
        return NOERROR, chain  # the name exists, not with this type (NODATA)


def _reply_flags(query_flags: int, rcode: int) -> int:
    opcode = query_flags & 0x7800
    return QR | opcode | (query_flags & RD) | RA | rcode


def answer(data: bytes, zone: Zone, mode: str = "normal", *, udp: bool = True) -> bytes | None:
    """The reply to one DNS message, or None to stay silent (not a query)."""
    if len(data) < 12:
        return None
    qid, flags, qdcount, _an, _ns, _ar = _HEADER.unpack_from(data)
    if flags & QR:
        return None  # never answer a response: two servers would ping-pong forever
    if flags & 0x7800:
        return _HEADER.pack(qid, _reply_flags(flags, NOTIMP), 0, 0, 0, 0)
    if qdcount != 1:
        return _HEADER.pack(qid, _reply_flags(flags, FORMERR), 0, 0, 0, 0)
    try:
        qname, qtype, qclass, end = read_question(data)
    except DnsFormatError:
        return _HEADER.pack(qid, _reply_flags(flags, FORMERR), 0, 0, 0, 0)
    question = data[12:end]
    if qclass != CLASS_IN and qclass != TYPE_ANY:
        return _HEADER.pack(qid, _reply_flags(flags, REFUSED), 1, 0, 0, 0) + question
    rcode, records = zone.resolve(qname, qtype)
    if mode == "malformed":
        # Owner name: a pointer to itself (offset 12 + len(question)); RDLENGTH lies.
        here = 12 + len(question)
        bad = struct.pack("!H", 0xC000 | here) + struct.pack("!HHIH", TYPE_A, CLASS_IN, 60, 0xFFFF)
        return _HEADER.pack(qid, _reply_flags(flags, NOERROR), 1, 1, 0, 0) + question + bad
    if mode == "tc" and udp:
        return _HEADER.pack(qid, _reply_flags(flags, rcode) | TC, 1, 0, 0, 0) + question
    body = b""
    for owner, rtype, rdata in records:
        # The question's name is at offset 12: point at it (keeps the asker's case).
        name = b"\xc0\x0c" if owner == qname else encode_name(owner)
        body += name + struct.pack("!HHIH", rtype, CLASS_IN, zone.ttl, len(rdata)) + rdata
    reply = _HEADER.pack(qid, _reply_flags(flags, rcode), 1, len(records), 0, 0) + question
    if mode == "truncated":
        cut = len(reply) + 5 if records else 12 + len(question) // 2
        return (reply + body)[:cut]
    if udp and len(reply) + len(body) > UDP_LIMIT:
        return _HEADER.pack(qid, _reply_flags(flags, rcode) | TC, 1, 0, 0, 0) + question
    return reply + body


def _check_ip(field: str, value: Any) -> None:
    if not isinstance(value, str):
        raise OptionError(field, f"must be an IPv4 address string, not {type(value).__name__}")
    try:
        ip = ipaddress.IPv4Address(value)
    except ValueError:
        raise OptionError(field, f"{value!r} is not an IPv4 address") from None
    if allowed_range(ip) is None:
        raise OptionError(field, f"{value} is outside the documentation/private ranges")


@register
class DnsResponder(DatagramResponder):
    kind = "dns"
    options: ClassVar[Mapping[str, OptionType]] = {
        "records": dict,
        "cnames": dict,
        "ttl": int,
        "tcp": bool,
        "mode": str,
    }

    @classmethod
    def check(cls, options: Mapping[str, Any]) -> None:
        super().check(options)
        records = options.get("records", {})
        seen: set[str] = set()
        for name, value in records.items():
            field = f"records.{name}"
            key = normalise_name(name)
            if key is None:
                raise OptionError(field, f"{name!r} is not a DNS host name")
            if key in seen:
                raise OptionError(field, f"{key} is given twice")
            seen.add(key)
            values = [value] if isinstance(value, str) else value
            if not isinstance(values, list) or not values:
                raise OptionError(field, "must be an IPv4 address or a non-empty list of them")
            for ip in values:
                _check_ip(field, ip)
        for name, target in options.get("cnames", {}).items():
            field = f"cnames.{name}"
            key = normalise_name(name)
            if key is None:
                raise OptionError(field, f"{name!r} is not a DNS host name")
            if key in seen:
                raise OptionError(field, f"{key} has records too; a CNAME must stand alone")
            if not isinstance(target, str) or normalise_name(target) is None:
                raise OptionError(field, f"{target!r} is not a DNS host name")
        ttl = options.get("ttl", 300)
        if not 0 <= ttl <= 0x7FFFFFFF:
            raise OptionError("ttl", f"{ttl} is not a TTL (0..2147483647)")
        mode = options.get("mode", "normal")
        if mode not in MODES:
            raise OptionError("mode", f"{mode!r} is not one of {', '.join(MODES)}")

    @classmethod
    def transports_for(cls, options: Mapping[str, Any]) -> tuple[str, ...]:
        """The port is taken on UDP, and on TCP unless ``tcp = false``."""
        return ("udp", "tcp") if options.get("tcp", True) else ("udp",)

    def __init__(self, device: str, service: ServiceSpec) -> None:
        super().__init__(device, service)
        self.zone = Zone.from_options(self.opts)
        self.mode = str(self.opts.get("mode", "normal"))
        self._server: asyncio.Server | None = None

    def bind(self) -> None:
        super().bind()  # the UDP socket is sockets[0]
        if self.opts.get("tcp", True):
            self.sockets.append(tcp_listener(self.port))

    async def start(self) -> None:
        await super().start()
        if len(self.sockets) > 1:
            self._server = await asyncio.start_server(self._serve_tcp, sock=self.sockets[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        await super().stop()

    def reply(self, data: bytes, addr: tuple[str, int]) -> bytes | None:
        out = answer(data, self.zone, self.mode, udp=True)
        log.debug("%r: %d-byte query from %s, answered: %s", self, len(data), addr[0], bool(out))
        return out

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """RFC 1035 §4.2.2: each message has a two-byte length in front."""
        try:
            for _ in range(TCP_MAX_QUERIES):
                head = await asyncio.wait_for(reader.readexactly(2), TCP_IDLE)
                (length,) = struct.unpack("!H", head)
                msg = await asyncio.wait_for(reader.readexactly(length), TCP_IDLE)
                out = answer(msg, self.zone, self.mode, udp=False)
                if out is None:
                    break
                writer.write(struct.pack("!H", len(out)) + out)
                await writer.drain()
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError):
            pass
        except Exception:
            log.exception("%r: tcp handler failed", self)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
