"""Flow aggregation, classification, settings and storage of connections (no network)."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest

from scanner.capture.classify import (
    ALLOWED,
    INTERNAL,
    UNEXPECTED,
    VENDOR_CLOUD,
    Classifier,
    CloudPattern,
)
from scanner.capture.decode import LINKTYPE_ETHERNET
from scanner.capture.flows import DeviceRef, FlowTable, peer_is_server
from scanner.capture.pipeline import classifier_for, rows_for
from scanner.capture.settings import CaptureSettings, parse_allow
from scanner.errors import ConfigError
from scanner.store import Store
from tests.capture_frames import (
    CAM,
    CAM2,
    CAM_MAC,
    CLOUD,
    DNS,
    DNS_ANSWER_HIK,
    ether,
    ipv4,
    tcp,
    udp,
)

DEVICES = {CAM: DeviceRef(CAM, CAM_MAC, f"mac:{CAM_MAC}"), CAM2: DeviceRef(CAM2, None, None)}
SYN, SYNACK, ACK, PSH = 0x02, 0x12, 0x10, 0x18


def feed(table: FlowTable, *frames: bytes, t0: float = 1000.0) -> None:
    for i, f in enumerate(frames):
        table.feed(f, LINKTYPE_ETHERNET, t0 + i)


def test_dns_then_connection_names_the_flow() -> None:
    table = FlowTable(DEVICES)
    feed(
        table,
        ether(ipv4(CAM, DNS, 17, udp(40001, 53, b"\0" * 30))),  # the query
        ether(ipv4(DNS, CAM, 17, udp(53, 40001, DNS_ANSWER_HIK))),  # the answer
        ether(ipv4(CAM, CLOUD, 6, tcp(40002, 443, flags=SYN))),
        ether(ipv4(CLOUD, CAM, 6, tcp(443, 40002, flags=SYNACK))),
        ether(ipv4(CAM, CLOUD, 6, tcp(40002, 443, b"x" * 10, flags=PSH))),
    )
    flows = {f.key: f for f in table.finish()}
    web = flows[(CAM, CLOUD, 443, "tcp")]
    assert web.names == ["www.hik-connect.com", "dev.hik-connect.com"]
    assert web.packets == 3 and web.bytes == 40 + 40 + 50
    assert (web.first_seen, web.last_seen) == (1002.0, 1004.0)
    dns = flows[(CAM, DNS, 53, "udp")]
    assert dns.packets == 2
    assert table.stats["dns_answers"] == 1


def test_sni_and_host_name_flows_without_dns() -> None:
    from tests.test_capture_parse import RFC8448_CLIENT_HELLO

    table = FlowTable(DEVICES)
    feed(
        table,
        ether(ipv4(CAM, CLOUD, 6, tcp(40002, 443, RFC8448_CLIENT_HELLO, flags=PSH))),
        ether(ipv4(CAM2, CLOUD, 6, tcp(40003, 80, b"GET / HTTP/1.1\r\nHost: a.ys7.com\r\n\r\n"))),
    )
    names = {f.key: f.names for f in table.finish()}
    assert names[(CAM, CLOUD, 443, "tcp")] == ["server"]
    assert names[(CAM2, CLOUD, 80, "tcp")] == ["a.ys7.com"]


def test_inbound_conversations_are_not_outbound_flows() -> None:
    table = FlowTable(DEVICES)
    feed(
        table,
        ether(ipv4(CLOUD, CAM, 6, tcp(51000, 554, flags=SYN))),  # someone opens RTSP on the camera
        ether(ipv4(CAM, CLOUD, 6, tcp(554, 51000, flags=SYNACK))),
        ether(ipv4(CLOUD, CAM, 6, tcp(51000, 554, b"OPTIONS", flags=PSH))),
    )
    assert table.finish() == []
    assert table.stats["inbound_packets"] == 3


def test_udp_direction_by_ports_and_reply_joins_flow() -> None:
    table = FlowTable(DEVICES)
    feed(
        table,
        ether(ipv4(CLOUD, CAM2, 17, udp(8800, 41000, b"r"))),  # the reply seen first
        ether(ipv4(CAM2, CLOUD, 17, udp(41000, 8800, b"q"))),
        ether(ipv4(CAM2, "203.0.113.123", 17, udp(123, 123, b"n" * 48))),
    )
    keys = {f.key for f in table.finish()}
    assert keys == {(CAM2, CLOUD, 8800, "udp"), (CAM2, "203.0.113.123", 123, "udp")}
    assert peer_is_server(41000, 8800) and not peer_is_server(554, 51000)


def test_unrelated_and_malformed_are_counted_not_raised() -> None:
    table = FlowTable(DEVICES)
    feed(
        table,
        ether(ipv4("198.51.100.50", CLOUD, 17, udp(1, 2))),
        ether(ipv4(CAM, CLOUD, 6, tcp(1, 2)))[:40],
        b"\x00" * 5,
        ether(ipv4(DNS, CAM, 17, udp(53, 40001, DNS_ANSWER_HIK[:30]))),  # garbage DNS
    )
    assert table.stats["unrelated"] == 1
    assert table.stats["malformed"] == 1
    assert table.stats["not_ip"] == 1
    assert table.stats["dns_errors"] == 1


def test_flow_table_memory_is_bounded() -> None:
    table = FlowTable(DEVICES, max_flows=1000)
    tracemalloc.start()
    try:
        for i in range(5000):  # a flood to 5000 distinct destinations
            dst = f"203.0.{113 + i // 250 % 2}.{i % 250 + 1}"
            table.feed(ether(ipv4(CAM, dst, 17, udp(40000, 10000 + i, b"z"))), 1, float(i))
        base, _ = tracemalloc.get_traced_memory()
        for i in range(5000, 20000):
            dst = f"198.18.{i // 250 % 250}.{i % 250 + 1}"
            table.feed(ether(ipv4(CAM, dst, 17, udp(40000, 10000 + i % 50000, b"z"))), 1, float(i))
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(table.flows) == 1000
    assert table.stats["flows_dropped"] == 19000
    assert after - base < 200_000  # no growth once full (allowing counters and noise)


# ---------------------------------------------------------------- classify

CLOUDS = [CloudPattern("hik-connect.com", "Hikvision"), CloudPattern("easy4ipcloud.com", "Dahua")]


def classifier(*allow: str) -> Classifier:
    s = CaptureSettings(allow=tuple(parse_allow(a) for a in allow))
    return Classifier(s.internal(), s.allow, CLOUDS)


@pytest.mark.parametrize(
    ("dst", "port", "names", "want", "vendor"),
    [
        ("10.1.2.3", 80, (), INTERNAL, None),
        ("239.255.255.250", 1900, (), INTERNAL, None),
        ("255.255.255.255", 67, (), INTERNAL, None),
        ("169.254.1.1", 80, (), INTERNAL, None),
        ("fe80::1", 80, (), INTERNAL, None),
        (DNS, 53, (), ALLOWED, None),
        ("203.0.113.123", 123, ("ntp.force.example",), ALLOWED, None),
        ("203.0.113.124", 123, ("pool.ntp.force.example",), ALLOWED, None),
        (CLOUD, 443, ("dev.hik-connect.com",), VENDOR_CLOUD, "Hikvision"),
        (CLOUD, 443, ("cdn.example", "x.easy4ipcloud.com"), VENDOR_CLOUD, "Dahua"),
        (CLOUD, 443, ("nothik-connect.com",), UNEXPECTED, None),
        ("203.0.113.77", 8800, (), UNEXPECTED, None),
        ("8.8.8.8", 53, (), UNEXPECTED, None),  # DNS allowed only at the site's resolver
    ],
)
def test_classification(
    dst: str, port: int, names: tuple[str, ...], want: str, vendor: str | None
) -> None:
    v = classifier(f"{DNS}", "ntp.force.example").classify(dst, port, names)
    assert (v.cls, v.vendor) == (want, vendor), v.reason


def test_allow_rule_ports_and_vendor_cloud_can_be_allowed() -> None:
    c = Classifier(
        CaptureSettings().internal(),
        (parse_allow({"name": "hik-connect.com", "ports": [443], "note": "accepted risk"}),),
        CLOUDS,
    )
    assert c.classify(CLOUD, 443, ["dev.hik-connect.com"]).cls == ALLOWED
    assert c.classify(CLOUD, 6500, ["dev.hik-connect.com"]).cls == VENDOR_CLOUD


def test_real_fingerprint_clouds_name_vendors() -> None:
    c = classifier_for(CaptureSettings())
    assert c.classify(CLOUD, 443, ["api.ezvizlife.com"]).vendor == "EZVIZ"
    assert c.classify(CLOUD, 8086, ["cloud.secu100.net"]).vendor == "Xiongmai"
    assert c.classify(CLOUD, 443, ["dev.hik-connect.com"]).vendor == "Hikvision"


# ---------------------------------------------------------------- settings


def test_settings_from_dict() -> None:
    s = CaptureSettings.from_dict(
        {
            "interface": "eth1",
            "seconds": 30,
            "internal_networks": ["10.20.0.0/16", "2001:db8::/32"],
            "allow": [
                {"address": "203.0.113.20", "note": "NVR"},
                {"network": "203.0.113.64/26"},
                {"name": "NTP.Force.Example.", "ports": [123]},
            ],
            "geoip_mmdb": "/var/lib/scanner/country.mmdb",
            "max_flows": 1000,
        }
    )
    assert s.interface == "eth1" and s.seconds == 30.0
    assert [str(n) for n in s.internal_networks] == ["10.20.0.0/16", "2001:db8::/32"]
    assert s.allow[2].name == "ntp.force.example" and s.allow[2].ports == frozenset({123})
    assert s.allow[0].label == "203.0.113.20 (NVR)"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"interfce": "eth1"}, "unknown key capture.interfce"),
        ({"interface": "eth 1"}, "capture.interface: 'eth 1' is not an interface name"),
        ({"seconds": 0}, "capture.seconds: must be a number from 0.1 to 3600"),
        ({"internal_networks": ["10.0.0.1/8"]}, "[0] '10.0.0.1/8' is not a valid CIDR"),
        ({"allow": [{"address": "x", "name": "y"}]}, "give exactly one of address"),
        ({"allow": [{"name": "bad name"}]}, "is not a DNS name"),
        ({"allow": [{"address": "203.0.113.1", "ports": [0]}]}, "port numbers 1-65535"),
        ({"allow": [{"address": "203.0.113.1", "proto": "udp"}]}, "unknown key 'proto'"),
        ({"promisc": "yes"}, "capture.promisc: must be true or false"),
    ],
)
def test_settings_errors_name_the_key(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        CaptureSettings.from_dict(raw, "/etc/scanner/scanner.toml")
    assert message in str(exc.value)
    assert str(exc.value).startswith("/etc/scanner/scanner.toml: ")


# ------------------------------------------------------------------ storage


def test_upsert_connections_merges_windows(tmp_path: Path) -> None:
    table = FlowTable(DEVICES)
    feed(
        table,
        ether(ipv4(DNS, CAM, 17, udp(53, 40001, DNS_ANSWER_HIK))),
        ether(ipv4(CAM, CLOUD, 6, tcp(40002, 443, flags=SYN))),
        ether(ipv4(CAM2, "203.0.113.77", 17, udp(41000, 8800, b"q"))),
        ether(ipv4(CAM2, "203.0.113.77", 1, b"\x08\0\0\0\0\0\0\0")),  # ping: no port
    )
    from scanner.capture.geoip import GeoIP

    c = classifier(DNS)
    rows = rows_for(table.finish(), DEVICES, c, GeoIP([]))
    with Store.open(tmp_path / "s.db") as store:
        new = store.upsert_connections(rows)
        assert len(new) == len(rows) == 4
        again = store.upsert_connections(rows)  # the next window saw the same flows
        assert again == []
        conns = {
            (r["device_ip"], r["dst_ip"], r["dst_port"], r["proto"]): r for r in store.connections()
        }
    assert len(conns) == 4
    hik = conns[(CAM, CLOUD, 443, "tcp")]
    assert (hik["class"], hik["vendor"], hik["dst_name"]) == (
        VENDOR_CLOUD,
        "Hikvision",
        "www.hik-connect.com",
    )
    assert hik["device_mac"] == CAM_MAC and hik["packets"] == 2
    ping = conns[(CAM2, "203.0.113.77", None, "icmp")]
    assert ping["class"] == UNEXPECTED and ping["packets"] == 2 and ping["dst_country"] is None
