"""Pure parsers of the capture path: frames, DNS answers, TLS SNI, HTTP Host, BPF."""

from __future__ import annotations

import contextlib
import struct
from ipaddress import IPv4Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scanner.capture import bpf
from scanner.capture.decode import (
    LINKTYPE_ETHERNET,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_RAW,
    LINKTYPES,
    Malformed,
    decode,
)
from scanner.capture.dnsmap import (
    BadNameData,
    NameMap,
    dns_message,
    parse_dns_response,
    parse_http_host,
    parse_sni,
)
from tests.capture_frames import (
    CAM,
    CLOUD,
    DNS_ANSWER_HIK,
    ether,
    ipv4,
    ipv6,
    tcp,
    udp,
)

# RFC 8448 §3 ("Simple 1-RTT Handshake"), the client's ClientHello record:
# TLS 1.3 from a real stack, server_name "server".
RFC8448_CLIENT_HELLO = bytes.fromhex(
    "16030100c4010000c00303cb34ecb1e78163ba1c38c6dacb196a6dffa21a8d9912ec18a2ef6283"
    "024dece7000006130113031302010000910000000b0009000006736572766572ff01000100000a00"
    "140012001d0017001800190100010101020103010400230000003300260024001d002099381de560"
    "e4bd43d23d8e435a7dbafeb3c06e51c13cae4d5413691e529aaf2c002b0003020304000d0020001e"
    "040305030603020308040805080604010501060102010402050206020202002d00020101001c0002"
    "4001"
)


# ------------------------------------------------------------------ frames


def test_ethernet_ipv4_tcp_frame() -> None:
    frame = ether(ipv4(CAM, CLOUD, 6, tcp(40000, 443, b"hello", flags=0x18)))
    p = decode(frame, LINKTYPE_ETHERNET, 1.5)
    assert p is not None
    assert (p.src, p.dst, p.proto, p.sport, p.dport) == (CAM, CLOUD, "tcp", 40000, 443)
    assert p.payload == b"hello"
    assert p.length == 20 + 20 + 5
    assert p.flags == 0x18


def test_vlan_tags_are_skipped() -> None:
    inner = ipv4(CAM, CLOUD, 17, udp(5000, 8800, b"x"))
    frame = ether(inner, tags=(0x88A8, 0x8100))
    p = decode(frame, LINKTYPE_ETHERNET, 0.0)
    assert p is not None and p.dport == 8800


def test_linux_cooked_and_raw_link_types() -> None:
    datagram = ipv4(CAM, CLOUD, 17, udp(5000, 53, b"q"))
    sll = struct.pack("!HHH8sH", 4, 1, 6, b"\x02" * 6 + b"\0\0", 0x0800) + datagram
    sll2 = struct.pack("!HHIHBB8s", 0x0800, 0, 2, 1, 4, 6, b"\x02" * 8) + datagram
    for frame, lt in (
        (sll, LINKTYPE_LINUX_SLL),
        (sll2, LINKTYPE_LINUX_SLL2),
        (datagram, LINKTYPE_RAW),
    ):
        p = decode(frame, lt, 0.0)
        assert p is not None and (p.src, p.dport) == (CAM, 53), lt


def test_ipv6_with_extension_header() -> None:
    hop_by_hop = bytes([17, 0]) + b"\x01\x04\0\0\0\0"  # next=UDP, 8 bytes, PadN
    frame = ether(
        ipv6("2001:db8::10", "2001:db8:1::1", 0, hop_by_hop + udp(1234, 123, b"t")), etype=0x86DD
    )
    p = decode(frame, LINKTYPE_ETHERNET, 0.0)
    assert p is not None and (p.proto, p.dport, p.dst) == ("udp", 123, "2001:db8:1::1")


def test_not_ip_is_none_and_cut_headers_are_malformed() -> None:
    arp = b"\xff" * 6 + b"\x02" * 6 + b"\x08\x06" + b"\0" * 28
    assert decode(arp, LINKTYPE_ETHERNET, 0.0) is None
    full = ether(ipv4(CAM, CLOUD, 6, tcp(1, 2)))
    with pytest.raises(Malformed):
        decode(full[:30], LINKTYPE_ETHERNET, 0.0)  # IPv4 header cut
    with pytest.raises(Malformed):
        decode(full[:40], LINKTYPE_ETHERNET, 0.0)  # TCP header cut


def test_later_fragment_has_no_ports() -> None:
    datagram = bytearray(ipv4(CAM, CLOUD, 17, b"\0" * 16))
    datagram[6:8] = struct.pack("!H", 185)  # fragment offset 185*8
    p = decode(bytes(datagram), LINKTYPE_RAW, 0.0)
    assert p is not None and p.sport is None


@given(st.binary(max_size=200), st.sampled_from(sorted(LINKTYPES)))
@settings(max_examples=400, deadline=None)
def test_decode_any_bytes_never_raises_but_malformed(data: bytes, linktype: int) -> None:
    with contextlib.suppress(Malformed):
        decode(data, linktype, 0.0)


@given(st.binary(max_size=120))
@settings(max_examples=300, deadline=None)
def test_decode_mutated_frames(tail: bytes) -> None:
    frame = ether(ipv4(CAM, CLOUD, 6, tcp(1, 443, b"")))[:34] + tail
    with contextlib.suppress(Malformed):
        decode(frame, LINKTYPE_ETHERNET, 0.0)


# --------------------------------------------------------------------- DNS


def test_dns_answer_with_cname_chain() -> None:
    ans = parse_dns_response(DNS_ANSWER_HIK)
    assert ans is not None
    assert ans.qname == "www.hik-connect.com"
    assert ans.names == ("www.hik-connect.com", "dev.hik-connect.com")
    assert ans.addresses == (CLOUD,)


def test_dns_query_and_errors_are_not_answers() -> None:
    query = bytearray(DNS_ANSWER_HIK)
    query[2] &= 0x7F  # QR = 0
    assert parse_dns_response(bytes(query)) is None
    nxdomain = bytearray(DNS_ANSWER_HIK)
    nxdomain[3] = (nxdomain[3] & 0xF0) | 3
    assert parse_dns_response(bytes(nxdomain)) is None


def test_dns_compression_loop_and_truncation_raise() -> None:
    # header (1 question) + a name that is a pointer to itself (RFC 1035 §4.1.4 abuse)
    loop = struct.pack("!6H", 1, 0x8180, 1, 1, 0, 0) + b"\xc0\x0c" + b"\0\x01\0\x01"
    with pytest.raises(BadNameData):
        parse_dns_response(loop)
    for cut in (5, 20, 40, len(DNS_ANSWER_HIK) - 2):
        with pytest.raises(BadNameData):
            parse_dns_response(DNS_ANSWER_HIK[:cut])


def test_dns_over_tcp_length_prefix() -> None:
    seg = struct.pack("!H", len(DNS_ANSWER_HIK)) + DNS_ANSWER_HIK
    assert dns_message(seg, tcp=True) == DNS_ANSWER_HIK
    with pytest.raises(BadNameData):
        dns_message(seg[:-3], tcp=True)


@given(st.binary(max_size=300))
@settings(max_examples=500, deadline=None)
def test_dns_any_bytes(data: bytes) -> None:
    with contextlib.suppress(BadNameData):
        parse_dns_response(data)


@given(st.integers(min_value=0, max_value=len(DNS_ANSWER_HIK) - 1), st.integers(0, 255))
@settings(max_examples=500, deadline=None)
def test_dns_single_byte_corruption(pos: int, value: int) -> None:
    data = bytearray(DNS_ANSWER_HIK)
    data[pos] = value
    try:
        ans = parse_dns_response(bytes(data))
    except BadNameData:
        return
    if ans is not None:  # whatever it read is a clean host name
        assert all(n.isascii() and n == n.lower() for n in ans.names)


def test_name_map_is_bounded_lru() -> None:
    m = NameMap(max_entries=10)
    ans = parse_dns_response(DNS_ANSWER_HIK)
    assert ans is not None
    m.learn(CAM, ans)
    assert m.names(CAM, CLOUD)[0] == "www.hik-connect.com"
    assert m.names("198.51.100.99", CLOUD)[0] == "www.hik-connect.com"  # the "anyone" entry
    from scanner.capture.dnsmap import DnsAnswer

    for i in range(100):
        m.learn(CAM, DnsAnswer(f"n{i}.example", (f"n{i}.example",), (f"203.0.113.{i}",)))
    assert len(m) <= 10 and m.evicted > 0


# ---------------------------------------------------------------- TLS/HTTP


def test_sni_from_rfc8448_client_hello() -> None:
    assert len(RFC8448_CLIENT_HELLO) == 5 + 0xC4
    assert parse_sni(RFC8448_CLIENT_HELLO) == "server"


def test_sni_truncated_raises_or_none() -> None:
    for cut in range(6, len(RFC8448_CLIENT_HELLO), 7):
        with contextlib.suppress(BadNameData):
            parse_sni(RFC8448_CLIENT_HELLO[:cut])


@given(st.binary(max_size=300))
@settings(max_examples=300, deadline=None)
def test_sni_any_bytes(data: bytes) -> None:
    with contextlib.suppress(BadNameData):
        parse_sni(b"\x16\x03\x01" + data)


def test_http_host() -> None:
    req = b"GET /api/v1/ping HTTP/1.1\r\nHost: Dev.Hik-Connect.com:8080\r\nAccept: */*\r\n\r\n"
    assert parse_http_host(req) == "dev.hik-connect.com"
    assert parse_http_host(b"GET / HTTP/1.1\r\nHost: [2001:db8::1]\r\n\r\n") is None
    assert parse_http_host(b"HTTP/1.1 200 OK\r\nHost: x.example\r\n\r\n") is None
    assert parse_http_host(b"GET / HTTP/1.1\r\nHost: bad\x1b[31mname\r\n\r\n") is None


# --------------------------------------------------------------------- BPF


def test_bpf_program_keeps_only_inventory_addresses() -> None:
    prog = bpf.build_program([IPv4Address(CAM), IPv4Address("198.51.100.11")])
    kept = ether(ipv4(CAM, CLOUD, 17, udp(1, 2)))
    reply = ether(ipv4(CLOUD, "198.51.100.11", 17, udp(2, 1)))
    other = ether(ipv4("198.51.100.50", CLOUD, 17, udp(1, 2)))
    tagged = ether(ipv4(CLOUD, CAM, 17, udp(2, 1)), tags=(0x8100,))
    arp = b"\xff" * 6 + b"\x02" * 6 + b"\x08\x06" + b"\0" * 28
    assert bpf.run(prog, kept) == len(kept)
    assert bpf.run(prog, reply) == len(reply)
    assert bpf.run(prog, tagged) == len(tagged)
    assert bpf.run(prog, other) == 0
    assert bpf.run(prog, arp) == 0
    assert bpf.run(prog, kept[:20]) == 0


def test_bpf_widens_past_the_instruction_limit() -> None:
    many = [IPv4Address(0x0A000000 + i * 3) for i in range(3000)]  # 10.0.0.0, .3, .6 ...
    prog = bpf.build_program(many)
    assert len(prog) <= bpf.BPF_MAXINSNS
    for a in (many[0], many[1234], many[-1]):
        assert bpf.run(prog, ether(ipv4(str(a), CLOUD, 17, udp(1, 2)))) > 0
    assert bpf.run(prog, ether(ipv4("198.18.0.1", "198.18.0.2", 17, udp(1, 2)))) == 0


def test_bpf_snaplen_caps_what_is_kept() -> None:
    prog = bpf.build_program([IPv4Address(CAM)], snaplen=100)
    big = ether(ipv4(CAM, CLOUD, 17, udp(1, 2, b"\0" * 1000)))
    assert bpf.run(prog, big) == 100
