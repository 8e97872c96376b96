"""Dahua DHIP discovery: parser over real replies, hostile input, and live lab discovery."""

from __future__ import annotations

import json
import struct
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scanner.discovery import dhip
from scanner.errors import ParseError
from scanner.model import Observation, Source
from tests.conftest import LabFactory
from tests.test_sadp import hostile_scenario, run_discover

T0 = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)


def frame(body: bytes, header_size: int = 32, length: int | None = None) -> bytes:
    """A DHIP frame as devices send it: 32-byte little-endian header, then the JSON."""
    n = len(body) if length is None else length
    head = struct.pack("<I4sIIQQ", header_size, b"DHIP", 0, 0, n, n)
    return head + b"\x00" * (header_size - 32) + body


# An IPC-HDW5421S's reply body, quoted in a UDP amplification write-up ("DVR
# DHCPDiscover (multiple CCTV products)", stored GitHub code index id 1180738884).
# The write-up prints the binary header as spaces; frame() rebuilds it.
IPC_HDW5421S = frame(
    b'{ "mac" : "4c:11:bf:c2:0b:9d", "method" : "client.notifyDevInfo", "params" : '
    b'{ "deviceInfo" : { "AlarmInputChannels" : 0, "AlarmOutputChannels" : 0, '
    b'"DeviceClass" : "IPC", "DeviceType" : "IPC-HDW5421S", "HttpPort" : 80, '
    b'"IPv4Address" : { "DefaultGateway" : "218.5.136.1", "DhcpEnable" : false, '
    b'"IPAddress" : "218.5.136.140", "SubnetMask" : "255.255.255.0" }, '
    b'"IPv6Address" : { "DefaultGateway" : "2001:250:3000:1::1:1", "DhcpEnable" : false, '
    b'"IPAddress" : "2001:250:3000:1::1:2\\/112", '
    b'"LinkLocalAddress" : "fe80::4e11:bfff:fec2:0b9d\\/64" }, '
    b'"MachineName" : "1F006E4PAX00075", "Manufacturer" : "Private", "Port" : 37777, '
    b'"RemoteVideoInputChannels" : 0, "SerialNo" : "1F006E4PAX00075", "Vendor" : "Dahua", '
    b'"Version" : "2.400.0.8", "VideoInputChannels" : 1, "VideoOutputChannels" : 16 } } }'
)

# An Intelbras (Dahua OEM) MHDX 1016 DVR's reply body, from the same kind of write-up
# (stored GitHub code index id 2658589927).
INTELBRAS_MHDX = frame(
    b'{"mac":"58:10:8c:4d:3b:fa","method":"client.notifyDevInfo","params":{"deviceInfo":'
    b'{"AlarmInputChannels":0,"AlarmOutputChannels":0,"DeviceClass":"MHDX",'
    b'"DeviceType":"MHDX 1016","HttpPort":1101,"IPv4Address":{"DefaultGateway":'
    b'"192.168.15.1","DhcpEnable":false,"IPAddress":"192.168.15.110","SubnetMask":'
    b'"255.255.255.0"},"IPv6Address":{"DefaultGateway":"fe80::1272:23ff:fe4c:1d5a",'
    b'"DhcpEnable":true,"IPAddress":"2804:7f4:5380:8bc5:5810:8cff:fe4d:3bfa\\/64",'
    b'"LinkLocalAddress":"fe80::5a10:8cff:fe4d:3bfa\\/64"},"MachineName":"KELVIN",'
    b'"Manufacturer":"Intelbras","Port":1102,"RemoteVideoInputChannels":2,'
    b'"SerialNo":"O9RF220012635","Vendor":"Intelbras","Version":"3.210.IB01.3",'
    b'"VideoInputChannels":16,"VideoOutputChannels":0}}}'
)

# A VTO2000A door station's reply, "rebuilt from the captured fields" in
# rroller/dahua:tests/test_discovery.py (stored code index id 71357628047).
VTO2000A_INFO = {
    "AlarmInputChannels": 8,
    "AlarmOutputChannels": 0,
    "DeviceClass": "VTO",
    "DeviceType": "VTO2000A",
    "Find": "BC",
    "HttpPort": 80,
    "Init": 150,
    "IPv4Address": {
        "IPAddress": "192.168.0.232",
        "SubnetMask": "255.255.255.0",
        "DefaultGateway": "192.168.0.4",
        "DhcpEnable": False,
    },
    "MachineName": "3C06520PAN00001",
    "Manufacturer": "General",
    "Port": 37777,
    "RemoteVideoInputChannels": 0,
    "SerialNo": "3C06520PAN00001",
    "Vendor": "General",
    "Version": "3.120.0000.0.R",
    "VideoInputChannels": 1,
    "VideoOutputChannels": 16,
}


def vto_reply(info: dict[str, object] | None = None, header_size: int = 32) -> bytes:
    body = {
        "mac": "3c:ef:8c:41:6c:ce",
        "method": "client.notifyDevInfo",
        "params": {"deviceInfo": VTO2000A_INFO if info is None else info},
    }
    return frame(json.dumps(body).encode(), header_size)


# A bare search request as printed in the same write-up (code index id 2658589927):
# its length fields say 0x3e (the whole datagram), not the 30-byte body.
WRITEUP_SEARCH = (
    b"\x20\x00\x00\x00\x44\x48\x49\x50\x00\x00\x00\x00\x00\x00\x00\x00"
    b"\x3e\x00\x00\x00\x00\x00\x00\x00\x3e\x00\x00\x00\x00\x00\x00\x00"
    b'{"method":"DHDiscover.search"}'
)


def parse(data: bytes, ip: str = "198.51.100.21") -> Observation | None:
    return dhip.parse_reply(data, ip, T0)


# --------------------------------------------------------------------------- probe


def test_probe_is_header_then_search_json() -> None:
    probe = dhip.build_probe()
    body = b'{"method":"DHDiscover.search","params":{"mac":"","uni":1}}'
    assert probe[:8] == b"\x20\x00\x00\x00DHIP"  # not "PIHD": see rroller/dahua
    assert probe[8:16] == bytes(8)
    assert struct.unpack("<QQ", probe[16:32]) == (len(body), len(body))
    assert probe[32:] == body


# --------------------------------------------------------------------------- parser


def test_dahua_camera_reply() -> None:
    obs = parse(IPC_HDW5421S, ip="218.5.136.140")
    assert obs is not None and obs.error is None
    assert obs.source is Source.DHIP
    assert obs.mac == "4c:11:bf:c2:0b:9d"
    assert obs.attrs == {
        "model": "IPC-HDW5421S",
        "serial": "1F006E4PAX00075",
        "firmware": "2.400.0.8",
        "name": "1F006E4PAX00075",
        "dhip_vendor": "Dahua",
        "dhip_manufacturer": "Private",
        "device_class": "IPC",
        "http_port": "80",
        "sdk_port": "37777",
        "video_inputs": "1",
        "remote_video_inputs": "0",
        "manufacturer": "Dahua",
        "subnet_mask": "255.255.255.0",
        "gateway": "218.5.136.1",
        "dhcp": "false",
        "mac": "4c:11:bf:c2:0b:9d",
    }


def test_oem_reply_keeps_the_brand_it_claims() -> None:
    obs = parse(INTELBRAS_MHDX, ip="192.168.15.110")
    assert obs is not None and obs.error is None
    assert obs.attrs["manufacturer"] == "Intelbras"
    assert obs.attrs["dhip_manufacturer"] == "Intelbras"
    assert obs.attrs["model"] == "MHDX 1016"
    assert obs.attrs["firmware"] == "3.210.IB01.3"
    assert obs.attrs["http_port"] == "1101"
    assert obs.mac == "58:10:8c:4d:3b:fa"


def test_generic_vendor_and_reported_ip() -> None:
    obs = parse(vto_reply(), ip="198.51.100.5")
    assert obs is not None and obs.error is None
    assert obs.attrs["manufacturer"] == "General"  # as sent: matching decides what it means
    assert obs.attrs["model"] == "VTO2000A"
    assert obs.attrs["device_class"] == "VTO"
    assert obs.attrs["init_status"] == "150"
    assert obs.attrs["reported_ip"] == "192.168.0.232"


def test_no_vendor_means_dahua() -> None:
    info = {k: v for k, v in VTO2000A_INFO.items() if k != "Vendor"}
    obs = parse(vto_reply(info))
    assert obs is not None and obs.attrs["manufacturer"] == "Dahua"


def test_longer_header_is_honoured() -> None:
    # rroller/dahua saw header lengths vary across firmwares
    obs = parse(vto_reply(header_size=40))
    assert obs is not None and obs.error is None
    assert obs.attrs["serial"] == "3C06520PAN00001"


def test_search_requests_and_other_traffic_are_not_replies() -> None:
    assert parse(dhip.build_probe()) is None  # our own multicast/broadcast echo
    assert parse(WRITEUP_SEARCH) is None
    assert parse(b"") is None
    assert parse(b"\xff") is None
    assert parse(b"junk on port 37810, nothing more") is None
    other = frame(b'{"method":"DHDiscover.setConfig","params":{}}')
    assert parse(other) is None


def test_truncated_reply_keeps_what_arrived() -> None:
    obs = parse(IPC_HDW5421S[:420])
    assert obs is not None and obs.error is not None
    assert "truncated" in obs.error
    assert obs.attrs["model"] == "IPC-HDW5421S"
    assert obs.mac == "4c:11:bf:c2:0b:9d"
    assert "serial" not in obs.attrs


def test_short_header_is_an_error() -> None:
    obs = parse(IPC_HDW5421S[:20])
    assert obs is not None and obs.error is not None and "header" in obs.error


def test_malformed_json_is_salvaged() -> None:
    broken = IPC_HDW5421S.replace(b'"DeviceClass" : "IPC",', b'"DeviceClass" : IPC,')
    obs = parse(broken)
    assert obs is not None and obs.error is not None and "JSON" in obs.error
    assert obs.attrs["serial"] == "1F006E4PAX00075"
    assert obs.attrs["model"] == "IPC-HDW5421S"
    assert obs.mac == "4c:11:bf:c2:0b:9d"
    assert "device_class" not in obs.attrs


def test_reply_without_device_info_is_an_error() -> None:
    obs = parse(frame(b'{"mac":"4c:11:bf:c2:0b:9d","method":"client.notifyDevInfo"}'))
    assert obs is not None and obs.error == "no params.deviceInfo in the reply"
    assert obs.mac == "4c:11:bf:c2:0b:9d"


def test_non_utf8_reply_is_flagged_but_read() -> None:
    obs = parse(INTELBRAS_MHDX.replace(b'"KELVIN"', b'"KEL\xff\xfeN"'))
    assert obs is not None and obs.error == "reply is not valid UTF-8"
    assert obs.attrs["name"] == "KEL\ufffd\ufffdN"
    assert obs.attrs["serial"] == "O9RF220012635"


def test_oversized_reply_is_not_parsed() -> None:
    obs = parse(frame(b'{"pad":"' + b"x" * 40_000 + b'"}'))
    assert obs is not None and obs.error is not None and obs.error.startswith("oversized")
    assert obs.attrs == {}


def test_deep_nesting_does_not_escape() -> None:
    obs = parse(frame(b"[" * 100_000 + b"]" * 100_000)[:30_000])
    assert obs is not None and obs.error is not None


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=4096))
def test_any_bytes_give_an_observation_or_none(data: bytes) -> None:
    try:
        out = parse(data)
    except ParseError:
        return
    assert out is None or isinstance(out, Observation)


@settings(max_examples=400, deadline=None)
@given(
    st.integers(min_value=0, max_value=2**32 - 1),
    st.integers(min_value=0, max_value=2**64 - 1),
    st.binary(max_size=2048),
)
def test_any_body_behind_a_dhip_header_never_raises(size: int, length: int, body: bytes) -> None:
    data = struct.pack("<I4sIIQQ", size, b"DHIP", 0, 0, length, length) + body
    try:
        out = parse(data)
    except ParseError:
        return
    assert out is None or isinstance(out, Observation)


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
        ),
        max_leaves=30,
    )
)
def test_any_json_as_device_info_never_raises(info: object) -> None:
    body = {"mac": "x", "method": "client.notifyDevInfo", "params": {"deviceInfo": info}}
    out = parse(frame(json.dumps(body).encode()))
    assert isinstance(out, Observation)
    assert all(isinstance(v, str) and len(v) <= 512 for v in out.attrs.values())


# --------------------------------------------------------------------------- live lab


def test_lab_finds_the_dhip_only_cameras_and_the_relabel(lab_factory: LabFactory) -> None:
    lab = lab_factory("vendor")
    doc = run_discover(lab, "dhip")
    found = {o["ip"]: o for o in doc["obs"]}
    assert sorted(found) == ["198.51.100.21", "198.51.100.23"], doc
    dahua = found["198.51.100.21"]
    assert dahua["error"] is None and dahua["mac"] == "e0:50:8b:00:00:21"
    assert dahua["attrs"]["manufacturer"] == "Dahua"
    assert dahua["attrs"]["dhip_manufacturer"] == "Private"
    assert dahua["attrs"]["model"] == "IPC-HDW5442TM-AS"
    assert dahua["attrs"]["serial"] == "7J0ABCDPAZ12345"
    assert dahua["attrs"]["firmware"] == "2.800.0000000.25.R"
    assert dahua["attrs"]["mac"] == "e0:50:8b:00:00:21"
    # the relabelled unit: recorded as it says, Amcrest on the label, Dahua's model
    amcrest = found["198.51.100.23"]
    assert amcrest["mac"] == "9c:8e:cd:00:00:23"
    assert amcrest["attrs"]["manufacturer"] == "Amcrest"
    assert amcrest["attrs"]["model"] == "IPC-HDW5231R-ZE"
    assert amcrest["attrs"]["serial"] == "4E02D5CPAJ00123"
    assert amcrest["attrs"]["name"] == "Amcrest-Porch"
    assert doc["seconds"] < 1.5 + 1.0


def test_lab_hears_multicast_replies(lab_factory: LabFactory) -> None:
    lab = lab_factory(hostile_scenario("dhip", 37810, reply_to="multicast", ip="10.1.1.108"))
    (obs,) = run_discover(lab, "dhip", timeout=1.0)["obs"]
    assert obs["mac"] == "44:19:b6:00:00:30"
    assert obs["attrs"]["reported_ip"] == "10.1.1.108"


@pytest.mark.parametrize(
    ("mode", "error"),
    [
        ("malformed", "malformed or truncated JSON"),
        ("truncated", "truncated: header says"),
        ("oversized", "oversized reply"),
        ("non_utf8", "not valid UTF-8"),
    ],
)
def test_lab_hostile_replies_become_error_observations(
    lab_factory: LabFactory, mode: str, error: str
) -> None:
    lab = lab_factory(hostile_scenario("dhip", 37810, mode=mode))
    doc = run_discover(lab, "dhip", timeout=1.0)
    assert len(doc["obs"]) == 1, doc
    assert error in doc["obs"][0]["error"]
    if mode in ("malformed", "non_utf8"):
        assert doc["obs"][0]["attrs"]["serial"] == "1F006E4PAX00075"


def test_lab_flood_of_distinct_devices_stays_in_budget(lab_factory: LabFactory) -> None:
    lab = lab_factory(hostile_scenario("dhip", 37810, mode="flood", flood_count=2000))
    doc = run_discover(lab, "dhip", timeout=2.0)
    assert len({o["mac"] for o in doc["obs"]}) == 2000
    assert len({o["attrs"]["serial"] for o in doc["obs"]}) == 2000
    assert doc["seconds"] < 2.0 + 3.0
    assert doc["max_rss_kb"] < 300 * 1024
