"""Frame, DNS and capture-file builders for the capture tests (bytes only, no I/O).

Headers follow RFC 791 (IPv4), RFC 8200 (IPv6), RFC 9293 (TCP), RFC 768 (UDP);
checksums are left zero (nothing here is sent, and the parsers do not check
them, as a capture of offloaded traffic would not let them).
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterable, Sequence

CAM = "198.51.100.10"
CAM2 = "198.51.100.11"
CLOUD = "203.0.113.10"
DNS = "203.0.113.53"
CAM_MAC = "44:19:b6:00:01:10"


def ether(payload: bytes, *, etype: int = 0x0800, tags: Sequence[int] = ()) -> bytes:
    head = b"\x02\x00\x5e\x20\x00\x02" + b"\x44\x19\xb6\x00\x01\x10"
    for i, tpid in enumerate(tags):
        head += struct.pack("!HH", tpid, 100 + i)
    return head + struct.pack("!H", etype) + payload


def ipv4(src: str, dst: str, proto: int, payload: bytes) -> bytes:
    return (
        struct.pack(
            "!BBHHHBBH4s4s",
            0x45,
            0,
            20 + len(payload),
            1,
            0x4000,
            64,
            proto,
            0,
            socket.inet_aton(src),
            socket.inet_aton(dst),
        )
        + payload
    )


def ipv6(src: str, dst: str, nxt: int, payload: bytes) -> bytes:
    return (
        struct.pack(
            "!IHBB16s16s",
            6 << 28,
            len(payload),
            nxt,
            64,
            socket.inet_pton(socket.AF_INET6, src),
            socket.inet_pton(socket.AF_INET6, dst),
        )
        + payload
    )


def tcp(sport: int, dport: int, payload: bytes = b"", *, flags: int = 0x10) -> bytes:
    return struct.pack("!HHIIBBHHH", sport, dport, 1, 1, 5 << 4, flags, 65535, 0, 0) + payload


def udp(sport: int, dport: int, payload: bytes = b"") -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def _name(name: str) -> bytes:
    return b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"


def dns_response(qname: str, chain: Sequence[str], address: str, *, qid: int = 0x2A2A) -> bytes:
    """A recursive resolver's answer (RFC 1035 §4.1): CNAMEs first, then the A record.

    Owner names after the question are compression pointers, as BIND and
    dnsmasq write them; the lab's dns responder answers the same shape.
    """
    out = struct.pack("!6H", qid, 0x8180, 1, len(chain) + 1, 0, 0)
    out += _name(qname) + struct.pack("!HH", 1, 1)
    owner_ptr = b"\xc0\x0c"  # the question name at offset 12
    for target in chain:
        rdata = _name(target)
        owner_off = len(out) + 2 + 10  # where this record's rdata (the target) starts
        out += owner_ptr + struct.pack("!HHIH", 5, 1, 300, len(rdata)) + rdata
        owner_ptr = struct.pack("!H", 0xC000 | owner_off)
    out += owner_ptr + struct.pack("!HHIH", 1, 1, 300, 4) + socket.inet_aton(address)
    return out


# www.hik-connect.com CNAME dev.hik-connect.com, A 203.0.113.10 (the lab's records)
DNS_ANSWER_HIK = dns_response("www.hik-connect.com", ["dev.hik-connect.com"], CLOUD)


def pcap_file(frames: Iterable[tuple[float, bytes]], *, linktype: int = 1) -> bytes:
    """A classic little-endian microsecond pcap (pcap-savefile(5))."""
    out = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, linktype)
    for ts, frame in frames:
        sec, usec = int(ts), round((ts - int(ts)) * 1e6)
        out += struct.pack("<IIII", sec, usec, len(frame), len(frame)) + frame
    return out


def _block(btype: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    n = len(body) + 12
    return struct.pack("<II", btype, n) + body + struct.pack("<I", n)


def pcapng_file(frames: Iterable[tuple[float, bytes]], *, nanos: bool = True) -> bytes:
    """A pcapng file: section header, one Ethernet interface, enhanced packet blocks."""
    out = _block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    opts = b""
    if nanos:
        opts = struct.pack("<HHB3x", 9, 1, 9) + struct.pack("<HH", 0, 0)  # if_tsresol = 10^-9
    out += _block(1, struct.pack("<HHI", 1, 0, 262144) + opts)
    unit = 1e9 if nanos else 1e6
    for ts, frame in frames:
        t = round(ts * unit)
        out += _block(
            6, struct.pack("<IIIII", 0, t >> 32, t & 0xFFFFFFFF, len(frame), len(frame)) + frame
        )
    return out
