"""ARP reply parsing is pure and never raises on hostile frames."""

from __future__ import annotations

from ipaddress import IPv4Address

from hypothesis import given
from hypothesis import strategies as st

from scanner.discovery.arp import build_request, parse_reply

# Ethernet + ARP reply: 192.0.2.10 is-at 44:19:b6:00:00:02 (built by hand from RFC 826)
REPLY = bytes.fromhex(
    "0200000000014419b6000002080600010800060400024419b6000002c000020a020000000001c0000201"
)


def test_a_reply_gives_sender_ip_and_mac() -> None:
    assert parse_reply(REPLY) == (IPv4Address("192.0.2.10"), "44:19:b6:00:00:02")


def test_requests_truncated_frames_and_broadcast_senders_are_ignored() -> None:
    request = build_request("02:00:00:00:00:01", IPv4Address("192.0.2.1"), IPv4Address("192.0.2.9"))
    assert parse_reply(request) is None
    assert parse_reply(REPLY[:30]) is None
    broadcast_sender = REPLY[:22] + b"\xff" * 6 + REPLY[28:]
    assert parse_reply(broadcast_sender) is None


def test_request_is_a_broadcast_who_has_for_the_target() -> None:
    frame = build_request("02:00:00:00:00:01", IPv4Address("192.0.2.1"), IPv4Address("192.0.2.9"))
    assert frame[:6] == b"\xff" * 6
    assert frame[12:14] == b"\x08\x06"
    assert frame[-4:] == bytes([192, 0, 2, 9])


@given(st.binary(max_size=200))
def test_any_bytes_parse_or_are_ignored(data: bytes) -> None:
    result = parse_reply(data)
    assert result is None or isinstance(result[0], IPv4Address)
