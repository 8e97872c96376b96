"""Frame bytes to a small `Packet` summary: addresses, ports, flags, payload.

Parsed by hand, not by scapy: the capture path sees hostile and truncated
frames, and a summary of five fields costs a few microseconds where a full
dissection costs a hundred. Link types are those of libpcap's LINKTYPE_*
registry (tcpdump.org/linktypes.html): Ethernet (with up to two 802.1Q/802.1ad
tags), Linux cooked v1/v2 (`tcpdump -i any`), raw IP and BSD loopback.
IPv4 per RFC 791, IPv6 per RFC 8200 (extension headers walked), TCP per
RFC 9293, UDP per RFC 768.

`decode` returns None for frames that are not IP (ARP, LLDP, ...) and raises
`Malformed` for IP frames whose headers are cut short or contradict themselves;
callers count both and carry on.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW_BSD = 12  # DLT_RAW on OpenBSD and old Linux pcaps
LINKTYPE_RAW_BSDOS = 14
LINKTYPE_RAW = 101
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276
LINKTYPES = frozenset(
    {
        LINKTYPE_NULL,
        LINKTYPE_ETHERNET,
        LINKTYPE_RAW_BSD,
        LINKTYPE_RAW_BSDOS,
        LINKTYPE_RAW,
        LINKTYPE_LOOP,
        LINKTYPE_LINUX_SLL,
        LINKTYPE_IPV4,
        LINKTYPE_IPV6,
        LINKTYPE_LINUX_SLL2,
    }
)

ETH_IPV4, ETH_IPV6 = 0x0800, 0x86DD
_VLAN_TYPES = frozenset({0x8100, 0x88A8, 0x9100})
_IPV6_EXT = frozenset({0, 43, 60})  # hop-by-hop, routing, destination options
_IPV6_FRAGMENT = 44
_MAX_IPV6_EXT = 8  # more than real stacks send; bounds a hostile chain
PROTO_ICMP, PROTO_TCP, PROTO_UDP, PROTO_ICMPV6 = 1, 6, 17, 58
PROTO_NAMES = {PROTO_ICMP: "icmp", PROTO_TCP: "tcp", PROTO_UDP: "udp", PROTO_ICMPV6: "icmpv6"}

TCP_FIN, TCP_SYN, TCP_RST, TCP_ACK = 0x01, 0x02, 0x04, 0x10

_U16 = struct.Struct("!H")
_IPV4 = struct.Struct("!BBHHHBBH4s4s")
_IPV6 = struct.Struct("!IHBB16s16s")
_PORTS = struct.Struct("!HH")


class Malformed(ValueError):
    """An IP frame whose headers are truncated or inconsistent."""


@dataclass(frozen=True, slots=True)
class Packet:
    """What flow aggregation needs from one frame."""

    ts: float
    src: str
    dst: str
    proto: str  # tcp | udp | icmp | icmpv6 | ip-<number>
    sport: int | None  # None for ICMP, other protocols and non-first fragments
    dport: int | None
    length: int  # the IP datagram's length on the wire, whatever the snap length
    flags: int = 0  # TCP flags
    icmp_type: int | None = None
    payload: bytes = b""  # transport payload, as far as it was captured


def _network_offset(frame: bytes, linktype: int) -> tuple[int, int | None]:
    """(offset of the network header, ethertype or None if the version nibble decides)."""
    if linktype == LINKTYPE_ETHERNET:
        if len(frame) < 14:
            return -1, None
        off, etype = 14, _U16.unpack_from(frame, 12)[0]
        for _ in range(2):
            if etype not in _VLAN_TYPES:
                break
            if len(frame) < off + 4:
                return -1, None
            etype = _U16.unpack_from(frame, off + 2)[0]
            off += 4
        return off, etype
    if linktype == LINKTYPE_LINUX_SLL:
        if len(frame) < 16:
            return -1, None
        return 16, _U16.unpack_from(frame, 14)[0]
    if linktype == LINKTYPE_LINUX_SLL2:
        if len(frame) < 20:
            return -1, None
        return 20, _U16.unpack_from(frame, 0)[0]
    if linktype in (LINKTYPE_RAW, LINKTYPE_RAW_BSD, LINKTYPE_RAW_BSDOS):
        return 0, None
    if linktype == LINKTYPE_IPV4:
        return 0, ETH_IPV4
    if linktype == LINKTYPE_IPV6:
        return 0, ETH_IPV6
    if linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
        return (4, None) if len(frame) >= 4 else (-1, None)
    raise ValueError(f"link type {linktype} is not supported")


def decode(frame: bytes, linktype: int, ts: float) -> Packet | None:
    """Summarise one captured frame; None if it carries no IP datagram."""
    off, etype = _network_offset(frame, linktype)
    if off < 0:
        return None
    if etype is None:
        if len(frame) <= off:
            return None
        version = frame[off] >> 4
        etype = ETH_IPV4 if version == 4 else ETH_IPV6 if version == 6 else None
    if etype == ETH_IPV4:
        return _ipv4(frame, off, ts)
    if etype == ETH_IPV6:
        return _ipv6(frame, off, ts)
    return None


def _ipv4(frame: bytes, off: int, ts: float) -> Packet:
    if len(frame) < off + 20:
        raise Malformed("IPv4 header cut short")
    vihl, _tos, total, _ident, frag, _ttl, proto, _csum, src, dst = _IPV4.unpack_from(frame, off)
    ihl = (vihl & 0x0F) * 4
    if vihl >> 4 != 4 or ihl < 20:
        raise Malformed("bad IPv4 version or header length")
    if total < ihl:
        raise Malformed("IPv4 total length shorter than its header")
    if len(frame) < off + ihl:
        raise Malformed("IPv4 options cut short")
    end = min(len(frame), off + total)
    first_fragment = (frag & 0x1FFF) == 0
    return _transport(
        ts,
        socket.inet_ntoa(src),
        socket.inet_ntoa(dst),
        proto,
        frame[off + ihl : end] if first_fragment else None,
        total,
        PROTO_ICMP,
    )


def _ipv6(frame: bytes, off: int, ts: float) -> Packet:
    if len(frame) < off + 40:
        raise Malformed("IPv6 header cut short")
    vtf, plen, nxt, _hops, src, dst = _IPV6.unpack_from(frame, off)
    if vtf >> 28 != 6:
        raise Malformed("bad IPv6 version")
    end = min(len(frame), off + 40 + plen)
    pos = off + 40
    first_fragment = True
    for _ in range(_MAX_IPV6_EXT):
        if nxt in _IPV6_EXT:
            if end < pos + 2:
                raise Malformed("IPv6 extension header cut short")
            nxt, hlen = frame[pos], (frame[pos + 1] + 1) * 8
            pos += hlen
        elif nxt == _IPV6_FRAGMENT:
            if end < pos + 8:
                raise Malformed("IPv6 fragment header cut short")
            first_fragment = (_U16.unpack_from(frame, pos + 2)[0] >> 3) == 0
            nxt = frame[pos]
            pos += 8
        else:
            break
    else:
        raise Malformed("too many IPv6 extension headers")
    if pos > end:
        raise Malformed("IPv6 extension headers run past the datagram")
    return _transport(
        ts,
        socket.inet_ntop(socket.AF_INET6, src),
        socket.inet_ntop(socket.AF_INET6, dst),
        nxt,
        frame[pos:end] if first_fragment else None,
        40 + plen,
        PROTO_ICMPV6,
    )


def _transport(
    ts: float,
    src: str,
    dst: str,
    proto: int,
    seg: bytes | None,
    length: int,
    icmp: int,
) -> Packet:
    name = PROTO_NAMES.get(proto, f"ip-{proto}")
    if seg is None:  # a later fragment: no transport header to read
        return Packet(ts, src, dst, name, None, None, length)
    if proto == PROTO_TCP:
        if len(seg) < 20:
            raise Malformed("TCP header cut short")
        sport, dport = _PORTS.unpack_from(seg, 0)
        doff = (seg[12] >> 4) * 4
        if doff < 20:
            raise Malformed("bad TCP data offset")
        return Packet(ts, src, dst, name, sport, dport, length, seg[13], None, seg[doff:])
    if proto == PROTO_UDP:
        if len(seg) < 8:
            raise Malformed("UDP header cut short")
        sport, dport = _PORTS.unpack_from(seg, 0)
        return Packet(ts, src, dst, name, sport, dport, length, 0, None, seg[8:])
    if proto == icmp:
        if len(seg) < 4:
            raise Malformed("ICMP header cut short")
        return Packet(ts, src, dst, name, None, None, length, 0, seg[0])
    return Packet(ts, src, dst, name, None, None, length)
