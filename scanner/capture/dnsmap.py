"""Names for destinations: DNS answers, TLS SNI and HTTP Host seen on the wire.

A camera that phones home asks DNS for the cloud's name first, so the answer
(RFC 1035 §4.1, compression §4.1.4) ties the address it then connects to back
to the name it wanted. Where the answer was not seen (cached before the
window opened), the name can still come from the TLS ClientHello's
server_name extension (RFC 8446 §4.1.2, RFC 6066 §3) or a plain HTTP request's
Host header (RFC 9112 §3.2).

Every parser takes untrusted bytes and either returns what it could read or
raises `BadNameData`; nothing else escapes. `NameMap` is a bounded LRU, so a
host flooding DNS answers cannot grow memory.
"""

from __future__ import annotations

import ipaddress
import struct
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from scanner.capture.settings import normalise_name

TYPE_A, TYPE_CNAME, TYPE_AAAA = 1, 5, 28
CLASS_IN = 1
MAX_ANSWERS = 64  # a real answer has a handful; bounds the work on a hostile one
MAX_POINTER_JUMPS = 16  # compression loops end here
NAMES_PER_ADDRESS = 4  # the question plus a short CNAME chain
_HEADER = struct.Struct("!HHHHHH")
_RR = struct.Struct("!HHIH")
_U16 = struct.Struct("!H")
_HTTP_METHODS = (b"GET ", b"POST ", b"HEAD ", b"PUT ", b"OPTIONS ", b"DELETE ", b"PATCH ")
_HTTP_HEAD_LIMIT = 4096


class BadNameData(ValueError):
    """Bytes that claim to be DNS/TLS/HTTP but cannot be read."""


@dataclass(frozen=True, slots=True)
class DnsAnswer:
    """What one DNS response says: the question and where it points."""

    qname: str
    names: tuple[str, ...]  # the question first, then CNAME targets in order
    addresses: tuple[str, ...]  # A and AAAA data, as text


def _read_name(msg: bytes, pos: int) -> tuple[str, int]:
    """A possibly-compressed name at `pos`; returns (name, position after it)."""
    labels: list[str] = []
    end = -1
    jumps = 0
    total = 0
    while True:
        if pos >= len(msg):
            raise BadNameData("DNS name runs past the message")
        n = msg[pos]
        if n & 0xC0 == 0xC0:
            if pos + 1 >= len(msg):
                raise BadNameData("DNS pointer cut short")
            if end < 0:
                end = pos + 2
            jumps += 1
            if jumps > MAX_POINTER_JUMPS:
                raise BadNameData("DNS compression loop")
            pos = ((n & 0x3F) << 8) | msg[pos + 1]
            continue
        if n & 0xC0:
            raise BadNameData("DNS label type not supported")
        if n == 0:
            pos += 1
            break
        label = msg[pos + 1 : pos + 1 + n]
        if len(label) != n:
            raise BadNameData("DNS label runs past the message")
        total += n + 1
        if total > 255:
            raise BadNameData("DNS name longer than 255 bytes")
        labels.append(label.decode("ascii", "replace"))
        pos += 1 + n
    return ".".join(labels), (end if end >= 0 else pos)


def parse_dns_response(msg: bytes) -> DnsAnswer | None:
    """The question and A/AAAA/CNAME answers of a DNS response; None if not one we use.

    Queries, errors (RCODE != 0), non-IN classes and names that are not host
    names give None; truncated or looping messages raise BadNameData.
    """
    if len(msg) < _HEADER.size:
        raise BadNameData("DNS header cut short")
    _id, flags, qd, an, _ns, _ar = _HEADER.unpack_from(msg, 0)
    if not flags & 0x8000 or flags & 0x000F or (flags >> 11) & 0x0F:
        return None  # a query, an error, or not a standard query response
    if qd != 1:
        return None
    qraw, pos = _read_name(msg, _HEADER.size)
    if pos + 4 > len(msg):
        raise BadNameData("DNS question cut short")
    _qtype, qclass = struct.unpack_from("!HH", msg, pos)
    pos += 4
    qname = normalise_name(qraw)
    if qname is None or qclass != CLASS_IN:
        return None
    chain = [qname]
    addrs: list[str] = []
    for _ in range(min(an, MAX_ANSWERS)):
        owner_raw, pos = _read_name(msg, pos)
        if pos + _RR.size > len(msg):
            raise BadNameData("DNS record cut short")
        rtype, rclass, _ttl, rdlen = _RR.unpack_from(msg, pos)
        pos += _RR.size
        rdata = msg[pos : pos + rdlen]
        if len(rdata) != rdlen:
            raise BadNameData("DNS record data runs past the message")
        owner = normalise_name(owner_raw)
        if rclass == CLASS_IN and owner in chain:
            if rtype == TYPE_A and rdlen == 4:
                addrs.append(".".join(str(b) for b in rdata))
            elif rtype == TYPE_AAAA and rdlen == 16:
                addrs.append(str(ipaddress.IPv6Address(rdata)))
            elif rtype == TYPE_CNAME:
                target, _ = _read_name(msg, pos)
                tname = normalise_name(target)
                if tname is not None and tname not in chain and len(chain) < NAMES_PER_ADDRESS:
                    chain.append(tname)
        pos += rdlen
    return DnsAnswer(qname, tuple(chain), tuple(addrs))


def dns_message(payload: bytes, tcp: bool) -> bytes:
    """The DNS message inside a UDP payload or a TCP segment (2-byte length first)."""
    if not tcp:
        return payload
    if len(payload) < 2:
        raise BadNameData("DNS over TCP without its length")
    n = _U16.unpack_from(payload, 0)[0]
    msg = payload[2 : 2 + n]
    if len(msg) != n:
        raise BadNameData("DNS over TCP message spans segments")
    return msg


def parse_sni(payload: bytes) -> str | None:
    """The server_name of a TLS ClientHello at the start of `payload`, if present."""
    if len(payload) < 6 or payload[0] != 0x16 or payload[1] != 0x03:
        return None
    if payload[5] != 0x01:  # handshake type client_hello
        return None
    body = payload[5:]
    pos = 4 + 2 + 32  # handshake header, legacy_version, random
    try:
        pos += 1 + body[pos]  # legacy_session_id
        pos += 2 + _U16.unpack_from(body, pos)[0]  # cipher_suites
        pos += 1 + body[pos]  # legacy_compression_methods
        ext_end = pos + 2 + _U16.unpack_from(body, pos)[0]
        pos += 2
        while pos + 4 <= min(ext_end, len(body)):
            etype, elen = struct.unpack_from("!HH", body, pos)
            pos += 4
            if etype == 0:  # server_name: list of (type, len, name)
                lpos = pos + 2
                while lpos + 3 <= pos + elen:
                    ntype, nlen = body[lpos], _U16.unpack_from(body, lpos + 1)[0]
                    raw = body[lpos + 3 : lpos + 3 + nlen]
                    if len(raw) != nlen:
                        raise BadNameData("SNI cut short")
                    if ntype == 0:
                        return host_name(raw.decode("ascii", "replace"))
                    lpos += 3 + nlen
                return None
            pos += elen
    except (IndexError, struct.error):
        raise BadNameData("TLS ClientHello cut short") from None
    return None


def parse_http_host(payload: bytes) -> str | None:
    """The Host of a plain HTTP/1.x request at the start of `payload`, without the port."""
    if not payload.startswith(_HTTP_METHODS):
        return None
    head = payload[:_HTTP_HEAD_LIMIT].split(b"\r\n\r\n", 1)[0]
    for line in head.split(b"\r\n")[1:]:
        key, sep, value = line.partition(b":")
        if sep and key.strip().lower() == b"host":
            host = value.strip().decode("ascii", "replace")
            if host.startswith("["):  # an IPv6 literal: not a name
                return None
            return host_name(host.rsplit(":", 1)[0] if host.count(":") == 1 else host)
    return None


def host_name(text: str) -> str | None:
    """A normalised DNS name, or None for an address literal or a non-name."""
    try:
        ipaddress.ip_address(text.strip())
    except ValueError:
        return normalise_name(text)
    return None


class NameMap:
    """Which names an address was given under, per client, least recently used out.

    Keys are (client, address); a second entry under client "" remembers the
    latest answer for anyone, for a device whose own answer was not seen.
    """

    def __init__(self, max_entries: int = 65_536) -> None:
        self.max_entries = max_entries
        self._map: OrderedDict[tuple[str, str], tuple[str, ...]] = OrderedDict()
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._map)

    def learn(self, client: str, answer: DnsAnswer) -> None:
        for addr in answer.addresses[:MAX_ANSWERS]:
            for key in ((client, addr), ("", addr)):
                self._map[key] = answer.names
                self._map.move_to_end(key)
        while len(self._map) > self.max_entries:
            self._map.popitem(last=False)
            self.evicted += 1

    def names(self, client: str, addr: str) -> tuple[str, ...]:
        hit = self._map.get((client, addr)) or self._map.get(("", addr))
        return hit or ()


def merge_names(*groups: Sequence[str]) -> list[str]:
    """Names in first-seen order without repeats, at most NAMES_PER_ADDRESS."""
    out: list[str] = []
    for group in groups:
        for n in group:
            if n not in out and len(out) < NAMES_PER_ADDRESS:
                out.append(n)
    return out
