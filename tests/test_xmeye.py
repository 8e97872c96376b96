"""Xiongmai (XMEye) search: parser over real replies, hostile input, and live lab discovery."""

from __future__ import annotations

import json
import struct
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scanner.discovery import xmeye
from scanner.errors import ParseError
from scanner.model import Observation, Source
from tests.conftest import LabFactory
from tests.test_sadp import hostile_scenario, run_discover

T0 = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)


def frame(body: bytes, msg: int = 1531, length: int | None = None, version: int = 1) -> bytes:
    """A DVRIP frame: head 0xff, version (1 from devices), ids, message id, length, body.

    Device replies start ``ff 01 00 00``, as in a reply quoted in an early
    python-dvr DeviceManager.py (stored code index id 45512167264); the body
    ends with a newline and a NUL, counted in the length.
    """
    n = len(body) if length is None else length
    return struct.pack("<BBHIIBBHI", 0xFF, version, 0, 0, 0, 0, 0, msg, n) + body


# The broadcast a factory-reset device sent on port 34569, quoted in a Go
# "sofia" package's source comment (stored GitHub code index id 43385522421).
FACTORY_RESET = frame(
    b"""{
\t"Name" : "NetWork.NetCommon",
\t"NetWork.NetCommon" :
\t{
\t\t"DeviceType" : 43,
\t\t"GateWay" : "0x0101a8c0",
\t\t"HostIP" : "0x0a01a8c0",
\t\t"HostName" : "IPC_6a6b",
\t\t"HttpPort" : 80,
\t\t"MAC" : "00:12:31:09:b7:9e",
\t\t"MaxBps" : 0,
\t\t"MonMode" : "TCP",
\t\t"SN" : "a5b23b431b14712e",
\t\t"SSLPort" : 8443,
\t\t"Submask" : "0x00ffffff",
\t\t"TCPMaxConn" : 10,
\t\t"TCPPort" : 34567,
\t\t"TransferPlan" : "Quality",
\t\t"UDPPort" : 34568,
\t\t"UseHSDownLoad" : false,
\t\t"Version" : "V4.02.R12.E7335520.12012.047502.00000",
\t\t"BuildDate" : "2018-09-17 10:47:30" ,
\t\t"OtherFunction": "D=2022-08-12 11:14:35 V=0832fc42ad047dc"
\t},
\t"Ret" : 100,
\t"SessionID" : "0x00000000"
}
\x00"""
)

# A reply captured by sol-vin/xet (src/xet/... comment "Check to see if we can
# broadcast a DoS!", stored code index id 10087480338): no Version, no BuildDate.
XET_CAPTURE = frame(
    b'{ "NetWork.NetCommon" : { "ChannelNum" : 1, "DeviceType" : 1, '
    b'"GateWay" : "0x010BA8C0", "HostIP" : "0x6D0BA8C0", "HostName" : "LocalHost", '
    b'"HttpPort" : 80, "MAC" : "00:12:31:08:bb:97", "MaxBps" : 0, "MonMode" : "TCP", '
    b'"NetConnectState" : 0, "OtherFunction" : "D=2019-02-28 17:30:58 V=92a9902100ec7c4", '
    b'"SN" : "41e6853ada5e9323", "SSLPort" : 8443, "Submask" : "0x00FFFFFF", '
    b'"TCPMaxConn" : 10, "TCPPort" : 34567, "TransferPlan" : "Quality", "UDPPort" : 34568, '
    b'"UseHSDownLoad" : false }, "Ret" : 100, "SessionID" : "0x00000000" }\n\x00'
)

# The Besder 6024PB-XMA501's broadcast (KostasEreksonas/Besder-6024PB-XMA501-ip-
# camera-security-investigation:README.md). MAC, SN and HostName are redacted
# there; the values here are ours, in the shapes that page describes.
BESDER = frame(
    json.dumps(
        {
            "NetWork.NetCommon": {
                "BuildDate": "2020-11-24 16:47:14",
                "ChannelNum": 1,
                "DeviceType": 24,
                "GateWay": "0x0100A8C0",
                "HostIP": "0x6700A8C0",
                "HostName": "camera_3bfa",
                "HttpPort": 80,
                "MAC": "a8:b5:8e:00:3b:fa",
                "MonMode": "TCP",
                "NetConnectState": 0,
                "OtherFunction": "D=2026-01-26 09:39:00 V=d7c59c8b475d964",
                "SN": "0123456789abcdef",
                "SSLPort": 8443,
                "Submask": "0x00FFFFFF",
                "TCPMaxConn": 10,
                "TCPPort": 34567,
                "UDPPort": 34568,
                "UseHSDownLoad": False,
                "Version": "V5.00.R02.00030747.10010.349f17.0000000",
            },
            "Ret": 100,
            "SessionID": "0x00000000",
        }
    ).encode()
    + b"\n\x00"
)

# OpenIPC/python-dvr:DeviceManager.py SearchXM sends struct.pack("BBHIIHHI", 255, 0, 0,
# 0, 0, 0, 1530, 0); the openHAB xmcamera binding spells the same 20 bytes out
# (XMCameraDiscoveryService.UDP_PACKET_CONTENTS, stored code index id 622169757).
PYTHON_DVR_SEARCH = b"\xff" + bytes(13) + b"\xfa\x05" + bytes(4)


def parse(data: bytes, ip: str = "192.168.1.10") -> Observation | None:
    return xmeye.parse_reply(data, ip, T0)


# --------------------------------------------------------------------------- probe


def test_probe_is_python_dvrs_search() -> None:
    assert len(PYTHON_DVR_SEARCH) == 20
    assert xmeye.build_probe() == PYTHON_DVR_SEARCH


def test_decode_address() -> None:
    assert xmeye.decode_address("0x6700A8C0") == "192.168.0.103"
    assert xmeye.decode_address("0x00FFFFFF") == "255.255.255.0"
    assert xmeye.decode_address("192.168.0.9") == "192.168.0.9"
    for bad in ("0x", "0x-1", "0x1_00", "0x123456789", "zz", "", None, 7):
        assert xmeye.decode_address(bad) is None


# --------------------------------------------------------------------------- parser


def test_factory_reset_broadcast() -> None:
    obs = parse(FACTORY_RESET, ip="192.168.1.10")
    assert obs is not None and obs.error is None
    assert obs.source is Source.XMEYE
    assert obs.mac == "00:12:31:09:b7:9e"
    assert obs.attrs == {
        "manufacturer": "Xiongmai",
        "serial": "a5b23b431b14712e",
        "firmware": "V4.02.R12.E7335520.12012.047502.00000",
        "name": "IPC_6a6b",
        "build_date": "2018-09-17 10:47:30",
        "device_type": "43",
        "http_port": "80",
        "sdk_port": "34567",
        "udp_port": "34568",
        "ssl_port": "8443",
        "other_function": "D=2022-08-12 11:14:35 V=0832fc42ad047dc",
        "subnet_mask": "255.255.255.0",
        "gateway": "192.168.1.1",
        "ret": "100",
        "mac": "00:12:31:09:b7:9e",
    }


def test_reply_without_version_and_with_another_reported_ip() -> None:
    obs = parse(XET_CAPTURE, ip="198.51.100.22")
    assert obs is not None and obs.error is None
    assert obs.attrs["serial"] == "41e6853ada5e9323"
    assert obs.attrs["name"] == "LocalHost"
    assert "firmware" not in obs.attrs
    assert obs.attrs["reported_ip"] == "192.168.11.109"
    assert obs.mac == "00:12:31:08:bb:97"


def test_besder_camera() -> None:
    obs = parse(BESDER, ip="192.168.0.103")
    assert obs is not None and obs.error is None
    assert obs.attrs["firmware"] == "V5.00.R02.00030747.10010.349f17.0000000"
    assert obs.attrs["device_type"] == "24"
    assert "reported_ip" not in obs.attrs


def test_searches_and_other_traffic_are_not_replies() -> None:
    assert parse(xmeye.build_probe()) is None  # our own broadcast, looped back
    assert parse(frame(b'{ "Ret" : 100, "SessionID" : "0x00000000" }\n\x00', msg=1533)) is None
    assert parse(b"") is None
    assert parse(b"\x00" * 40) is None
    assert parse(b"M-SEARCH * HTTP/1.1\r\n") is None


def test_truncated_reply_keeps_what_arrived() -> None:
    obs = parse(FACTORY_RESET[:240])
    assert obs is not None and obs.error is not None
    assert obs.error.startswith("truncated: header says")
    assert obs.attrs["name"] == "IPC_6a6b"
    assert obs.mac == "00:12:31:09:b7:9e"
    assert "serial" not in obs.attrs


def test_short_header_is_an_error() -> None:
    obs = parse(FACTORY_RESET[:12])
    assert obs is not None and obs.error is not None and "header" in obs.error


def test_malformed_json_is_salvaged() -> None:
    obs = parse(XET_CAPTURE.replace(b'"MaxBps" : 0,', b'"MaxBps" : ,'))
    assert obs is not None and obs.error is not None and "JSON" in obs.error
    assert obs.attrs["serial"] == "41e6853ada5e9323"
    assert obs.attrs["reported_ip"] == "192.168.11.109"
    assert obs.mac == "00:12:31:08:bb:97"


def test_reply_without_netcommon_is_an_error() -> None:
    obs = parse(frame(b'{ "Ret" : 103, "SessionID" : "0x00000000" }\n\x00'))
    assert obs is not None and obs.error == "no NetWork.NetCommon object in the reply"
    assert obs.attrs["ret"] == "103"


def test_non_utf8_reply_is_flagged_but_read() -> None:
    obs = parse(FACTORY_RESET.replace(b'"IPC_6a6b"', b'"IPC_\xff\xfe6b"'))
    assert obs is not None and obs.error == "reply is not valid UTF-8"
    assert obs.attrs["name"] == "IPC_\ufffd\ufffd6b"
    assert obs.attrs["serial"] == "a5b23b431b14712e"


def test_oversized_reply_is_not_parsed() -> None:
    obs = parse(frame(b'{ "pad" : "' + b"x" * 40_000 + b'" }'))
    assert obs is not None and obs.error is not None and obs.error.startswith("oversized")


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=4096))
def test_any_bytes_give_an_observation_or_none(data: bytes) -> None:
    try:
        out = parse(data)
    except ParseError:
        return
    assert out is None or isinstance(out, Observation)


@settings(max_examples=400, deadline=None)
@given(st.integers(min_value=0, max_value=2**32 - 1), st.binary(max_size=2048))
def test_any_body_behind_a_reply_header_never_raises(length: int, body: bytes) -> None:
    try:
        out = parse(frame(body, length=length))
    except ParseError:
        return
    assert isinstance(out, Observation)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["SN", "MAC", "HostIP", "GateWay", "HostName", "Version", "Ret", "x"]),
        st.none() | st.booleans() | st.integers() | st.text(max_size=40) | st.lists(st.integers()),
    )
)
def test_any_netcommon_values_never_raise(common: dict[str, object]) -> None:
    out = parse(frame(json.dumps({"NetWork.NetCommon": common}).encode()))
    assert isinstance(out, Observation)
    assert all(isinstance(v, str) and len(v) <= 512 for v in out.attrs.values())


# --------------------------------------------------------------------------- live lab


def test_lab_finds_the_xmeye_dvr(lab_factory: LabFactory) -> None:
    lab = lab_factory("vendor")
    doc = run_discover(lab, "xmeye")
    assert len(doc["obs"]) == 1, doc
    obs = doc["obs"][0]
    assert obs["source"] == "xmeye" and obs["error"] is None
    assert obs["ip"] == "198.51.100.22"
    assert obs["mac"] == "00:12:31:00:00:22"
    attrs = obs["attrs"]
    assert attrs["manufacturer"] == "Xiongmai"
    assert attrs["serial"] == "a5b23b431b14712e"
    assert attrs["firmware"] == "V4.02.R11.A6420109.10002.130700.00000"
    assert attrs["name"] == "DVR_8CH"
    assert attrs["channels"] == "8"
    assert attrs["mac"] == "00:12:31:00:00:22"
    assert "reported_ip" not in attrs
    assert doc["seconds"] < 1.5 + 1.0


def test_lab_unicast_replies_and_a_factory_default_address(lab_factory: LabFactory) -> None:
    lab = lab_factory(hostile_scenario("xmeye", 34569, reply_to="unicast", ip="192.168.1.10"))
    (obs,) = run_discover(lab, "xmeye", timeout=1.0)["obs"]
    assert obs["ip"] == "198.51.100.30"
    assert obs["attrs"]["reported_ip"] == "192.168.1.10"


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
    lab = lab_factory(hostile_scenario("xmeye", 34569, mode=mode))
    doc = run_discover(lab, "xmeye", timeout=1.0)
    assert len(doc["obs"]) == 1, doc
    assert error in doc["obs"][0]["error"]
    assert doc["obs"][0]["attrs"]["manufacturer"] == "Xiongmai"


def test_lab_flood_of_distinct_devices_stays_in_budget(lab_factory: LabFactory) -> None:
    lab = lab_factory(hostile_scenario("xmeye", 34569, mode="flood", flood_count=2000))
    doc = run_discover(lab, "xmeye", timeout=2.0)
    assert len({o["mac"] for o in doc["obs"]}) == 2000
    assert doc["seconds"] < 2.0 + 3.0
    assert doc["max_rss_kb"] < 300 * 1024
