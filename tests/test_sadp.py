"""Hikvision SADP: parser over real replies, hostile input, and live lab discovery.

The live tests also cover the socket engine the three vendor searches share
(scope filtering, de-duplication, the flood caps).
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab import Lab, Scenario
from scanner.discovery import sadp
from scanner.errors import ParseError
from scanner.model import Observation, Source
from tests.conftest import LabFactory

REPO_ROOT = Path(__file__).resolve().parents[1]
T0 = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)

# A DS-2CD2320D-I camera's reply, quoted in a Go SADP client's source comment
# (stored GitHub code index id 19375522317, package "hik", type ProbeMatch).
DS_2CD2320D = b"""<?xml version="1.0" encoding="UTF-8"?>
<ProbeMatch><Uuid>F93CF8DC-DF53-424B-98A7-9FC0536E1083</Uuid>
<Types>inquiry</Types>
<DeviceType>142378</DeviceType>
<DeviceDescription>DS-2CD2320D-I</DeviceDescription>
<DeviceSN>DS-2CD2320D-I20180919AACHC52932642</DeviceSN>
<CommandPort>8000</CommandPort>
<HttpPort>80</HttpPort>
<MAC>44-47-cc-37-ce-81</MAC>
<IPv4Address>192.168.1.112</IPv4Address>
<IPv4SubnetMask>255.255.255.0</IPv4SubnetMask>
<IPv4Gateway>192.168.1.1</IPv4Gateway>
<IPv6Address>240e:361:c0a:2a00:4647:ccff:fe37:ce81</IPv6Address>
<IPv6Gateway>::</IPv6Gateway>
<IPv6MaskLen>64</IPv6MaskLen>
<DHCP>true</DHCP>
<AnalogChannelNum>0</AnalogChannelNum>
<DigitalChannelNum>1</DigitalChannelNum>
<SoftwareVersion>V5.5.6build 180326</SoftwareVersion>
<DSPVersion>V7.3 build 180326</DSPVersion>
<BootTime>2024-09-18 09:21:28</BootTime>
<Encrypt>true</Encrypt>
<ResetAbility>false</ResetAbility>
<DiskNumber>0</DiskNumber>
<Activated>true</Activated>
<PasswordResetAbility>true</PasswordResetAbility>
<PasswordResetModeSecond>true</PasswordResetModeSecond>
<SupportSecurityQuestion>true</SupportSecurityQuestion>
<SupportHCPlatform>true</SupportHCPlatform>
<HCPlatformEnable>flase</HCPlatformEnable>
<IsModifyVerificationCode>true</IsModifyVerificationCode>
<Salt>fc5237457341362c0d8810a4bfba0b85ed13421d1d553c62544a7df15948947a</Salt>
<DeviceLock>true</DeviceLock>
</ProbeMatch>
"""

# A DS-7804HQH-K1 DVR's reply, from https://www.mhzhuji.com/zhuji_info_958/ (a
# write-up of the SADPTool protocol). The page elides the tail after
# <SupportHCPlatform>; the closing tag is ours.
DS_7804HQH = b"""<?xml version="1.0" encoding="UTF-8" ?>
<ProbeMatch>
    <Uuid>8282F1DB-2FA6-4709-B261-3C6B6A48CA17</Uuid>
    <Types>inquiry</Types>
    <Encrypt>true</Encrypt>
    <Salt>9bb2be4e49c225d4e57e659ecb97214a1ba295f2f7bec69bba7df83c55cc5e18</Salt>
    <DeviceType>44322</DeviceType>
    <DeviceDescription>DS-7804HQH-K1</DeviceDescription>
    <DeviceSN>DS-7804HQH-K10420190822CCCHD53257168WCVU</DeviceSN>
    <CommandPort>8000</CommandPort>
    <HttpPort>80</HttpPort>
    <MAC>68-6d-bc-ee-f8-f0</MAC>
    <IPv4Address>192.168.1.227</IPv4Address>
    <IPv4SubnetMask>255.255.255.0</IPv4SubnetMask>
    <IPv4Gateway>192.168.1.1</IPv4Gateway>
    <IPv6Address>fe80::6a6d:bcff:feee:f8f0</IPv6Address>
    <IPv6Gateway>::</IPv6Gateway>
    <IPv6MaskLen>64</IPv6MaskLen>
    <DHCP>false</DHCP>
    <AnalogChannelNum>4</AnalogChannelNum>
    <DigitalChannelNum>5</DigitalChannelNum>
    <SoftwareVersion>V3.5.38build 191215</SoftwareVersion>
    <DSPVersion>V5.0, build 191213</DSPVersion>
    <BootTime>2021-05-19 14:31:12</BootTime>
    <OEMInfo>N/A</OEMInfo>
    <Activated>true</Activated>
    <PasswordResetAbility>true</PasswordResetAbility>
    <SyncIPCPassword>true</SyncIPCPassword>
    <PasswordResetModeSecond>true</PasswordResetModeSecond>
    <DeviceLock>true</DeviceLock>
    <SupportGUID>true</SupportGUID>
    <SupportSecurityQuestion>true</SupportSecurityQuestion>
    <SupportHCPlatform>true</SupportHCPlatform>
</ProbeMatch>
"""

# An EZVIZ (Hikvision brand) CS-C6TC-32WFR's reply, from
# https://www.itread01.com/content/1544974924.html ("SADPTool原理").
EZVIZ_C6TC = b"""<?xml version="1.0" encoding="UTF-8" ?>
<ProbeMatch>
<Uuid>12D17626-0DE1-48DB-97E3-40B106467932</Uuid>
<Types>inquiry</Types>
<DeviceType>139991</DeviceType>
<DeviceDescription>CS-C6TC-32WFR</DeviceDescription>
<DeviceSN>CS-C6TC-32WFR0120170327CCCH738231995</DeviceSN>
<CommandPort>8000</CommandPort>
<HttpPort>80</HttpPort>
<MAC>54-c4-15-9a-38-72</MAC>
<IPv4Address>172.20.20.100</IPv4Address>
<IPv4SubnetMask>255.255.255.0</IPv4SubnetMask>
<IPv4Gateway>172.20.20.254</IPv4Gateway>
<DHCP>false</DHCP>
<AnalogChannelNum>0</AnalogChannelNum>
<DigitalChannelNum>1</DigitalChannelNum>
<SoftwareVersion>V5.2.3build 180804</SoftwareVersion>
<DSPVersion>V1.0 build 180731</DSPVersion>
<BootTime>2018-10-18 21:30:10</BootTime>
<OEMInfo>N/A</OEMInfo>
<Activated>true</Activated>
<PasswordResetAbility>false</PasswordResetAbility>
</ProbeMatch>
"""

# The probe SADPTool multicasts (same page; also
# julienblitte/UniversalScanner:UniversalScanner/Hikvision.cs).
SADPTOOL_PROBE = (
    b'<?xml version="1.0" encoding="utf-8"?><Probe>'
    b"<Uuid>12D17626-0DE1-48DB-97E3-40B106467932</Uuid><Types>inquiry</Types></Probe>"
)


def parse(data: bytes, ip: str = "192.168.1.112") -> Observation | None:
    return sadp.parse_reply(data, ip, T0)


# --------------------------------------------------------------------------- probe


def test_probe_is_the_sadptool_inquiry() -> None:
    probe = sadp.build_probe("12d17626-0de1-48db-97e3-40b106467932")
    assert probe == SADPTOOL_PROBE


def test_probe_refuses_a_non_uuid() -> None:
    with pytest.raises(ValueError):
        sadp.build_probe("</Uuid><Evil/>")


# --------------------------------------------------------------------------- parser


def test_camera_reply_gives_model_serial_firmware_and_mac() -> None:
    obs = parse(DS_2CD2320D, ip="192.168.1.112")
    assert obs is not None and obs.error is None
    assert obs.source is Source.SADP
    assert obs.mac == "44:47:cc:37:ce:81"
    assert obs.attrs == {
        "manufacturer": "Hikvision",
        "model": "DS-2CD2320D-I",
        "serial": "DS-2CD2320D-I20180919AACHC52932642",
        "firmware": "V5.5.6build 180326",
        "device_type": "142378",
        "dsp_version": "V7.3 build 180326",
        "boot_time": "2024-09-18 09:21:28",
        "activated": "true",
        "http_port": "80",
        "sdk_port": "8000",
        "subnet_mask": "255.255.255.0",
        "gateway": "192.168.1.1",
        "dhcp": "true",
        "analog_channels": "0",
        "digital_channels": "1",
        "mac": "44:47:cc:37:ce:81",
    }


def test_dvr_reply_and_reported_ip_that_differs_from_the_source() -> None:
    obs = parse(DS_7804HQH, ip="10.9.8.7")
    assert obs is not None and obs.error is None
    assert obs.attrs["model"] == "DS-7804HQH-K1"
    assert obs.attrs["serial"] == "DS-7804HQH-K10420190822CCCHD53257168WCVU"
    assert obs.attrs["firmware"] == "V3.5.38build 191215"
    assert obs.attrs["oem_info"] == "N/A"
    assert obs.attrs["analog_channels"] == "4"
    assert obs.attrs["reported_ip"] == "192.168.1.227"
    assert obs.mac == "68:6d:bc:ee:f8:f0"


def test_ezviz_reply() -> None:
    obs = parse(EZVIZ_C6TC, ip="172.20.20.100")
    assert obs is not None and obs.error is None
    assert obs.attrs["manufacturer"] == "Hikvision"
    assert obs.attrs["model"] == "CS-C6TC-32WFR"
    assert obs.mac == "54:c4:15:9a:38:72"
    assert "reported_ip" not in obs.attrs


def test_probes_and_other_traffic_are_not_replies() -> None:
    assert parse(SADPTOOL_PROBE) is None  # our own echo, or another SADPTool
    assert parse(sadp.build_probe("8282f1db-2fa6-4709-b261-3c6b6a48ca17")) is None
    assert parse(b"") is None
    assert parse(b"M-SEARCH * HTTP/1.1\r\n\r\n") is None
    assert parse(b"<?xml version='1.0'?><Other><ProbeMatch/></Other>") is None


def test_truncated_reply_keeps_what_arrived() -> None:
    obs = parse(DS_2CD2320D[:330])  # cut inside <MAC>
    assert obs is not None
    assert obs.error is not None and "truncated" in obs.error
    assert obs.attrs["model"] == "DS-2CD2320D-I"
    assert obs.attrs["serial"] == "DS-2CD2320D-I20180919AACHC52932642"
    assert obs.mac is None  # the <MAC> element was cut off


def test_malformed_reply_is_an_error_observation() -> None:
    broken = DS_2CD2320D.replace(b"</DeviceSN>", b"</DeviceSerial>")
    obs = parse(broken)
    assert obs is not None and obs.error is not None
    assert obs.attrs["model"] == "DS-2CD2320D-I"
    assert "serial" not in obs.attrs
    assert obs.mac == "44:47:cc:37:ce:81"


def test_entities_are_refused_not_expanded() -> None:
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa">'
        b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
        b"<ProbeMatch><DeviceDescription>&b;</DeviceDescription>"
        b"<DeviceSN>DS-X1</DeviceSN></ProbeMatch>"
    )
    obs = parse(bomb)
    assert obs is not None and obs.error is not None and "DTD" in obs.error
    assert obs.attrs.get("serial") == "DS-X1"
    assert obs.attrs["model"] == "&b;"  # read as text, never expanded


def test_non_utf8_reply_is_flagged_but_read() -> None:
    data = DS_2CD2320D.replace(
        b"DS-2CD2320D-I</DeviceDescription>", b"DS-\xff\xfe</DeviceDescription>"
    )
    obs = parse(data)
    assert obs is not None and obs.error == "reply is not valid UTF-8"
    assert obs.attrs["model"] == "DS-\ufffd\ufffd"
    assert obs.attrs["serial"] == "DS-2CD2320D-I20180919AACHC52932642"


def test_oversized_reply_is_not_parsed() -> None:
    data = DS_2CD2320D.replace(b"</ProbeMatch>", b"<X>" + b"x" * 60_000 + b"</X></ProbeMatch>")
    obs = parse(data)
    assert obs is not None and obs.error is not None and obs.error.startswith("oversized")
    assert obs.attrs == {"manufacturer": "Hikvision"}


def test_values_are_clipped_and_bad_macs_kept_raw() -> None:
    data = (
        b"<ProbeMatch><DeviceDescription>" + b"M" * 5000 + b"</DeviceDescription>"
        b"<MAC>ff-ff-ff-ff-ff-ff</MAC></ProbeMatch>"
    )
    obs = parse(data)
    assert obs is not None and obs.error is None
    assert len(obs.attrs["model"]) == 512
    assert obs.mac is None and obs.attrs["mac_raw"] == "ff-ff-ff-ff-ff-ff"
    obs = parse(b"<ProbeMatch><MAC>not-a-mac</MAC></ProbeMatch>")
    assert obs is not None and obs.mac is None and obs.attrs["mac_raw"] == "not-a-mac"


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=4096))
def test_any_bytes_give_an_observation_or_none(data: bytes) -> None:
    try:
        out = parse(data)
    except ParseError:
        return
    assert out is None or isinstance(out, Observation)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048), st.integers(min_value=0, max_value=len(DS_2CD2320D)))
def test_spliced_replies_never_raise(noise: bytes, cut: int) -> None:
    for data in (DS_2CD2320D[:cut] + noise, noise + DS_2CD2320D[cut:]):
        try:
            out = parse(data)
        except ParseError:
            continue
        assert out is None or isinstance(out, Observation)
        if out is not None:
            assert all(isinstance(v, str) and len(v) <= 512 for v in out.attrs.values())


# --------------------------------------------------------------------------- live lab

# Runs inside the scanner namespace: discover() with a ProbeContext as the scanner
# builds it; prints observations, elapsed seconds and peak RSS as JSON.
SNIPPET = """
import json, logging, sys, time
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
from scanner.config import Scope, ScanSettings, parse_cidr
from scanner.discovery.arp import interface_info
from scanner.discovery.base import Budget, ProbeContext
import importlib
module = importlib.import_module("scanner.discovery." + sys.argv[1])
scope = Scope(interfaces=("lab0",), cidrs=(parse_cidr(sys.argv[2]),))
ctx = ProbeContext(scope=scope, settings=ScanSettings(), interfaces=[interface_info("lab0")],
                   budget=Budget(1000, 40), timeout=float(sys.argv[3]))
t0 = time.monotonic()
found = module.discover(ctx)
print(json.dumps({
    "seconds": time.monotonic() - t0,
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec, so a child of a
    # large pytest would report pytest's peak as its own
    "max_rss_kb": int(next(l.split()[1] for l in open("/proc/self/status")
                           if l.startswith("VmHWM:"))),
    "obs": [{"source": str(o.source), "ip": o.ip, "mac": o.mac, "attrs": dict(o.attrs),
             "error": o.error} for o in found],
}))
"""


def run_discover(
    lab: Lab, protocol: str, cidr: str = "198.51.100.0/24", timeout: float = 1.5
) -> dict[str, Any]:
    """discover() of one protocol module, run in the lab's scanner namespace."""
    r = lab.run_in_scanner(
        [sys.executable, "-c", SNIPPET, protocol, cidr, str(timeout)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO_ROOT,
    )
    assert r.returncode == 0, r.stderr
    doc: dict[str, Any] = json.loads(r.stdout)
    doc["log"] = r.stderr
    return doc


def hostile_scenario(kind: str, port: int, **options: Any) -> Scenario:
    """One device with one vendor responder; later hostile-network tests reuse this shape."""
    return Scenario.from_dict(
        {
            "network": {
                "cidr": "198.51.100.0/24",
                "scanner_ip": "198.51.100.1",
                "scanner_mac": "02:00:5e:10:00:01",
            },
            "device": [
                {
                    "name": "dev",
                    "mac": "44:19:b6:00:00:30",
                    "ip": "198.51.100.30",
                    "service": [{"kind": kind, "port": port, **options}],
                }
            ],
        }
    )


def test_lab_finds_the_sadp_only_camera(lab_factory: LabFactory) -> None:
    lab = lab_factory("vendor")
    doc = run_discover(lab, "sadp")
    assert len(doc["obs"]) == 1, doc  # one device, though it answers twice (unicast + group)
    obs = doc["obs"][0]
    assert obs["source"] == "sadp" and obs["error"] is None
    assert obs["ip"] == "198.51.100.20"
    assert obs["mac"] == "44:19:b6:00:00:20"
    attrs = obs["attrs"]
    assert attrs["manufacturer"] == "Hikvision"
    assert attrs["model"] == "DS-2CD2143G2-I"
    assert attrs["serial"] == "DS-2CD2143G2-I20220315AAWRJ12345678"
    assert attrs["firmware"] == "V5.7.3build 220112"
    assert attrs["mac"] == "44:19:b6:00:00:20"
    assert attrs["activated"] == "true"
    assert attrs["iface"] == "lab0"
    assert "reported_ip" not in attrs
    assert doc["seconds"] < 1.5 + 1.0


@pytest.mark.parametrize("reply_to", ["unicast", "multicast"])
def test_lab_hears_replies_sent_either_way(lab_factory: LabFactory, reply_to: str) -> None:
    lab = lab_factory(hostile_scenario("sadp", 37020, reply_to=reply_to))
    doc = run_discover(lab, "sadp", timeout=1.0)
    assert [o["mac"] for o in doc["obs"]] == ["44:19:b6:00:00:30"]


def test_lab_ignores_and_counts_replies_from_outside_the_scope(lab_factory: LabFactory) -> None:
    lab = lab_factory("vendor")
    lab.set_device_ip("hik-sadp", "198.51.100.200")
    doc = run_discover(lab, "sadp", cidr="198.51.100.0/25", timeout=1.0)
    assert doc["obs"] == []
    # it answers twice (to us and to the group): two datagrams, one address
    assert "ignored 2 replies from 1 addresses outside the scope" in doc["log"]


def test_lab_keeps_a_self_reported_address_that_differs(lab_factory: LabFactory) -> None:
    lab = lab_factory(hostile_scenario("sadp", 37020, ip="192.168.1.64"))
    (obs,) = run_discover(lab, "sadp", timeout=1.0)["obs"]
    assert obs["ip"] == "198.51.100.30"
    assert obs["attrs"]["reported_ip"] == "192.168.1.64"


@pytest.mark.parametrize(
    ("mode", "error"),
    [
        ("malformed", "malformed or truncated XML"),
        ("truncated", "malformed or truncated XML"),
        ("oversized", "oversized reply"),
        ("non_utf8", "not valid UTF-8"),
    ],
)
def test_lab_hostile_replies_become_error_observations(
    lab_factory: LabFactory, mode: str, error: str
) -> None:
    lab = lab_factory(hostile_scenario("sadp", 37020, mode=mode))
    doc = run_discover(lab, "sadp", timeout=1.0)
    assert len(doc["obs"]) == 1, doc
    obs = doc["obs"][0]
    assert obs["ip"] == "198.51.100.30"
    assert error in obs["error"]
    if mode in ("malformed", "non_utf8"):
        assert obs["attrs"]["serial"].endswith("AACHC52932642")


def test_lab_flood_of_distinct_devices_stays_in_budget(lab_factory: LabFactory) -> None:
    lab = lab_factory(hostile_scenario("sadp", 37020, mode="flood", flood_count=2000))
    doc = run_discover(lab, "sadp", timeout=2.0)
    macs = {o["mac"] for o in doc["obs"]}
    assert len(macs) == 2000
    assert all(o["error"] is None for o in doc["obs"])
    assert doc["seconds"] < 2.0 + 3.0
    assert doc["max_rss_kb"] < 300 * 1024


# --------------------------------------------------------------------------- engine


def test_parse_all_drops_own_and_out_of_scope_and_duplicates(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from scanner.config import ScanSettings, Scope, parse_cidr
    from scanner.discovery.base import Budget, ProbeContext

    ctx = ProbeContext(
        scope=Scope(interfaces=("lab0",), cidrs=(parse_cidr("198.51.100.0/24"),)),
        settings=ScanSettings(),
        interfaces=[],
        budget=Budget(1000, 40),
    )
    raw = [
        (DS_2CD2320D, "198.51.100.1", T0, "lab0"),  # our own address
        (DS_2CD2320D, "203.0.113.9", T0, "lab0"),  # outside the scope
        (DS_2CD2320D, "198.51.100.9", T0, "lab0"),
        (DS_2CD2320D, "198.51.100.9", T0, "lab0"),  # same datagram twice
        (SADPTOOL_PROBE, "198.51.100.8", T0, "lab0"),  # someone's probe
    ]
    with caplog.at_level(logging.INFO, logger="scanner.discovery.sadp"):
        out = sadp._parse_all("sadp", raw, sadp.parse_reply, ctx, {"198.51.100.1"})
    assert [(o.ip, o.attrs["iface"]) for o in out] == [("198.51.100.9", "lab0")]
    assert "ignored 1 replies from 1 addresses outside the scope" in caplog.text


def test_parse_all_turns_parse_errors_into_observations() -> None:
    from scanner.config import ScanSettings, Scope, parse_cidr
    from scanner.discovery.base import Budget, ProbeContext

    def boom(data: bytes, ip: str, seen_at: datetime) -> Observation | None:
        raise ParseError("unreadable")

    ctx = ProbeContext(
        scope=Scope(interfaces=("lab0",), cidrs=(parse_cidr("198.51.100.0/24"),)),
        settings=ScanSettings(),
        interfaces=[],
        budget=Budget(1000, 40),
    )
    (obs,) = sadp._parse_all("sadp", [(b"x", "198.51.100.9", T0, "lab0")], boom, ctx, set())
    assert obs.error == "unreadable" and obs.source is Source.SADP
