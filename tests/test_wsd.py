"""WS-Discovery: the Probe we send, ProbeMatches parsing on real-shaped replies, and the lab."""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab import Lab, Scenario, load_scenario
from scanner.config import ScanSettings, Scope
from scanner.discovery import wsd
from scanner.discovery.base import MAX_DATAGRAM, Budget, ProbeContext
from scanner.errors import ParseError
from scanner.model import Observation, Source
from tests.conftest import LabFactory

REPO_ROOT = Path(__file__).resolve().parents[1]
T0 = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)
IP = "198.51.100.20"

# --- fixtures: ProbeMatches as devices send them --------------------------------------

# A TP-Link TL-SC3130G's reply, quoted in evercam/evercam-discovery-java issue #32
# (2015-11-06). Header and the first scopes are verbatim (note the "uuid:" ids without
# "urn:", and the double space between scopes); the excerpt is cut after
# ".../location/global", so the name/hardware scopes and XAddrs that follow are
# reconstructed (the issue says the name scope carries the model) and the address
# is moved into TEST-NET-2.
TPLINK_RELATES = "urn:uuid:00493664-80b2-4b4f-9b56-745333c153ca"
TPLINK = (
    b'<?xml version="1.0" encoding="utf-8" ?><soap:Envelope'
    b' xmlns:wsadis="http://schemas.xmlsoap.org/ws/2004/08/addressing"'
    b' xmlns:d="http://schemas.xmlsoap.org/ws/2005/04/discovery"'
    b' xmlns:dn="http://www.onvif.org/ver10/network/wsdl"'
    b' xmlns:soap="http://www.w3.org/2003/05/soap-envelope"><soap:Header>'
    b"<wsadis:Action>http://schemas.xmlsoap.org/ws/2005/04/discovery/ProbeMatches</wsadis:Action>"
    b"<wsadis:MessageID>uuid:B926EB6A-CB4B-54DB-3130-0023CDE05FA7</wsadis:MessageID>"
    b"<wsadis:RelatesTo>uuid:00493664-80b2-4b4f-9b56-745333c153ca</wsadis:RelatesTo>"
    b"<wsadis:To>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</wsadis:To>"
    b'<d:AppSequence InstanceId="0" MessageNumber="25028" /></soap:Header><soap:Body>'
    b"<d:ProbeMatches><d:ProbeMatch><wsadis:EndpointReference>"
    b"<wsadis:Address>uuid:B926EB6A-CB4B-54DB-3130-0023CDE05FA7</wsadis:Address>"
    b"</wsadis:EndpointReference><d:Types>dn:NetworkVideoTransmitter</d:Types>"
    b"<d:Scopes>onvif://www.onvif.org/type/video_encoder onvif://www.onvif.org/type/audio_encoder"
    b" onvif://www.onvif.org/type/video_analytic  onvif://www.onvif.org/location/global"
    b" onvif://www.onvif.org/name/TL-SC3130G onvif://www.onvif.org/hardware/TL-SC3130G</d:Scopes>"
    b"<d:XAddrs>http://198.51.100.20:80/onvif/device_service</d:XAddrs>"
    b"<d:MetadataVersion>1</d:MetadataVersion></d:ProbeMatch></d:ProbeMatches>"
    b"</soap:Body></soap:Envelope>"
)

# A Hanwha Vision camera's reply, from Jazea/Onvif.Core issue #55 (2025-10-28):
# the envelope and header are verbatim; the body is cut from the excerpt, so
# it is rebuilt from the issue's own words (the scopes carry "the manufacturer, model,
# and location") with Hanwha's names; the XAddr is moved into TEST-NET-2.
HANWHA_RELATES = "uuid:9ac9a12f-be37-4767-9333-50aa933026ea"
HANWHA = b"""<?xml version="1.0" encoding="UTF-8"?>
<SOAP-ENV:Envelope
    xmlns:SOAP-ENV="http://www.w3.org/2003/05/soap-envelope"
    xmlns:SOAP-ENC="http://www.w3.org/2003/05/soap-encoding"
    xmlns:wsa="http://schemas.xmlsoap.org/ws/2004/08/addressing"
    xmlns:tds="http://www.onvif.org/ver10/device/wsdl"
    xmlns:d="http://schemas.xmlsoap.org/ws/2005/04/discovery"
    xmlns:dn="http://www.onvif.org/ver10/network/wsdl">
    <SOAP-ENV:Header>
        <wsa:MessageID>uuid:b0bc3602-35b7-cb46-b51c-714db0a9f0a4</wsa:MessageID>
        <wsa:RelatesTo>uuid:9ac9a12f-be37-4767-9333-50aa933026ea</wsa:RelatesTo>
        <wsa:To SOAP-ENV:mustUnderstand="true">http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</wsa:To>
        <wsa:Action SOAP-ENV:mustUnderstand="true">http://schemas.xmlsoap.org/ws/2005/04/discovery/ProbeMatches</wsa:Action>
        <d:AppSequence SOAP-ENV:mustUnderstand="true" MessageNumber="1506" InstanceId="1761674209"/>
    </SOAP-ENV:Header>
    <SOAP-ENV:Body>
        <d:ProbeMatches>
            <d:ProbeMatch>
                <wsa:EndpointReference>
                    <wsa:Address>urn:uuid:a0b1c2d3-0000-4000-8000-000918aabbcc</wsa:Address>
                </wsa:EndpointReference>
                <d:Types>dn:NetworkVideoTransmitter tds:Device</d:Types>
                <d:Scopes>onvif://www.onvif.org/type/video_encoder
                    onvif://www.onvif.org/Profile/Streaming
                    onvif://www.onvif.org/manufacturer/Hanwha%20Vision
                    onvif://www.onvif.org/model/XNV-8080R
                    onvif://www.onvif.org/hardware/XNV-8080R
                    onvif://www.onvif.org/name/XNV-8080R
                    onvif://www.onvif.org/location/country/korea</d:Scopes>
                <d:XAddrs>http://198.51.100.21/onvif/device_service</d:XAddrs>
                <d:MetadataVersion>10</d:MetadataVersion>
            </d:ProbeMatch>
        </d:ProbeMatches>
    </SOAP-ENV:Body>
</SOAP-ENV:Envelope>
"""

# A Hikvision-made camera in the shape of the gSOAP replies quoted in lumeohq/onvif-rs
# issue #48 (wsdd: prefixes, urn:uuid EPR) with the scope set Hikvision firmware
# announces: name/HIKVISION%20<model> (percent-encoded space), hardware/<model>,
# MAC/ percent-encoded, and an IPv6 link-local XAddr beside the IPv4 one. Values
# are ours; no single capture shows them all.
HIK_RELATES = "urn:uuid:4c8d2f1e-0b7a-4b55-9a2e-7d1c3e5f6a7b"
HIK_SCOPES = b" ".join(
    b"onvif://www.onvif.org/" + s
    for s in (
        b"type/video_encoder",
        b"Profile/Streaming",
        b"MAC/c4%3A2f%3A90%3Aab%3Acd%3Aef",
        b"hardware/DS-2CD2143G0-I",
        b"name/HIKVISION%20DS-2CD2143G0-I",
        b"location/city/hangzhou",
    )
)
HIK = (
    b"""<?xml version="1.0" encoding="UTF-8"?>
<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://www.w3.org/2003/05/soap-envelope"
 xmlns:SOAP-ENC="http://www.w3.org/2003/05/soap-encoding"
 xmlns:wsa="http://schemas.xmlsoap.org/ws/2004/08/addressing"
 xmlns:wsdd="http://schemas.xmlsoap.org/ws/2005/04/discovery"
 xmlns:tdn="http://www.onvif.org/ver10/network/wsdl"
 xmlns:tds="http://www.onvif.org/ver10/device/wsdl">
<SOAP-ENV:Header>
<wsa:MessageID>urn:uuid:11111111-2222-4333-8444-c42f90abcdef</wsa:MessageID>
<wsa:RelatesTo>urn:uuid:4c8d2f1e-0b7a-4b55-9a2e-7d1c3e5f6a7b</wsa:RelatesTo>
<wsa:To SOAP-ENV:mustUnderstand="true">urn:schemas-xmlsoap-org:ws:2005:04:discovery</wsa:To>
<wsa:Action SOAP-ENV:mustUnderstand="true">http://schemas.xmlsoap.org/ws/2005/04/discovery/ProbeMatches</wsa:Action>
</SOAP-ENV:Header>
<SOAP-ENV:Body><wsdd:ProbeMatches><wsdd:ProbeMatch>
<wsa:EndpointReference><wsa:Address>urn:uuid:3fa1fe68-b915-4053-a3e1-c42f90abcdef</wsa:Address></wsa:EndpointReference>
<wsdd:Types>tdn:NetworkVideoTransmitter tds:Device</wsdd:Types>
<wsdd:Scopes>"""
    + HIK_SCOPES
    + b"""</wsdd:Scopes>
<wsdd:XAddrs>http://198.51.100.20/onvif/device_service http://[fe80::c62f:90ff:feab:cdef]/onvif/device_service</wsdd:XAddrs>
<wsdd:MetadataVersion>10</wsdd:MetadataVersion>
</wsdd:ProbeMatch></wsdd:ProbeMatches></SOAP-ENV:Body></SOAP-ENV:Envelope>
"""
)

# A WSD printer/scanner answering an untyped Probe, in the shape sane-airscan logged
# for a Canon MFP (alexpevzner/sane-airscan issue #83: "Server: CANON HTTP Server",
# EPR urn:uuid:6d4ff0ce-6b11-11d8-8020-f80d609c8532); the Types are the WSD print and
# scan device types; the address is moved into TEST-NET-2.
PRINTER_RELATES = "urn:uuid:29b743c7-f91d-8d4f-c890-517686b29e26"
PRINTER = b"""<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"
 xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing"
 xmlns:d="http://schemas.xmlsoap.org/ws/2005/04/discovery"
 xmlns:wsdp="http://schemas.xmlsoap.org/ws/2006/02/devprof"
 xmlns:wprt="http://schemas.microsoft.com/windows/2006/08/wdp/print"
 xmlns:wscn="http://schemas.microsoft.com/windows/2006/08/wdp/scan">
<s:Header>
<a:Action>http://schemas.xmlsoap.org/ws/2005/04/discovery/ProbeMatches</a:Action>
<a:MessageID>urn:uuid:7d1c1c1c-6b11-11d8-8020-f80d609c8532</a:MessageID>
<a:RelatesTo>urn:uuid:29b743c7-f91d-8d4f-c890-517686b29e26</a:RelatesTo>
<a:To>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</a:To>
</s:Header>
<s:Body><d:ProbeMatches><d:ProbeMatch>
<a:EndpointReference><a:Address>urn:uuid:6d4ff0ce-6b11-11d8-8020-f80d609c8532</a:Address></a:EndpointReference>
<d:Types>wsdp:Device wprt:PrintDeviceType wscn:ScanDeviceType</d:Types>
<d:XAddrs>http://198.51.100.30:80/StableWSDiscoveryEndpoint/schemas-xmlsoap-org_ws_2005_04_discovery</d:XAddrs>
<d:MetadataVersion>1</d:MetadataVersion>
</d:ProbeMatch></d:ProbeMatches></s:Body></s:Envelope>
"""

# A Hikvision camera refusing a Probe form it does not support: the fault quoted in
# edgexfoundry/device-onvif-camera issue #134 (subcode MatchingRuleNotSupported,
# reason "the xml format error"), with a RelatesTo added as gSOAP sets it.
FAULT_RELATES = "urn:uuid:a277f13a-ecae-4492-9d6a-218982122d2c"
FAULT = b"""<?xml version="1.0" encoding="UTF-8"?>
<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope"
 xmlns:wsa="http://schemas.xmlsoap.org/ws/2004/08/addressing"
 xmlns:d="http://schemas.xmlsoap.org/ws/2005/04/discovery">
<env:Header><wsa:RelatesTo>uuid:a277f13a-ecae-4492-9d6a-218982122d2c</wsa:RelatesTo>
<wsa:Action>http://schemas.xmlsoap.org/ws/2004/08/addressing/fault</wsa:Action></env:Header>
<env:Body><env:Fault><env:Code><env:Value>env:Sender</env:Value>
<env:Subcode><env:Value>d:MatchingRuleNotSupported</env:Value></env:Subcode></env:Code>
<env:Reason><env:Text xml:lang="en">the xml format error</env:Text></env:Reason>
</env:Fault></env:Body></env:Envelope>
"""

# Windows' WSD host announcement type, as every wsdd implementation sends it
# (e.g. christgau/wsdd: "wsdp:Device pub:Computer").
PC_RELATES = "urn:uuid:0d6a3f1e-5b6c-4d7e-8f90-a1b2c3d4e5f6"
PC = (
    b'<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope"'
    b' xmlns:wsa="http://schemas.xmlsoap.org/ws/2004/08/addressing"'
    b' xmlns:wsd="http://schemas.xmlsoap.org/ws/2005/04/discovery"'
    b' xmlns:wsdp="http://schemas.xmlsoap.org/ws/2006/02/devprof"'
    b' xmlns:pub="http://schemas.microsoft.com/windows/pub/2005/07"><soap:Header>'
    b"<wsa:Action>http://schemas.xmlsoap.org/ws/2005/04/discovery/ProbeMatches</wsa:Action>"
    b"<wsa:RelatesTo>urn:uuid:0d6a3f1e-5b6c-4d7e-8f90-a1b2c3d4e5f6</wsa:RelatesTo></soap:Header>"
    b"<soap:Body><wsd:ProbeMatches><wsd:ProbeMatch><wsa:EndpointReference><wsa:Address>"
    b"urn:uuid:9d3c1c2e-1f2a-5b3c-8d4e-5f6a7b8c9d0e</wsa:Address></wsa:EndpointReference>"
    b"<wsd:Types>wsdp:Device pub:Computer</wsd:Types>"
    b"<wsd:XAddrs>http://198.51.100.40:5357/9d3c1c2e-1f2a-5b3c-8d4e-5f6a7b8c9d0e/</wsd:XAddrs>"
    b"<wsd:MetadataVersion>1</wsd:MetadataVersion></wsd:ProbeMatch></wsd:ProbeMatches>"
    b"</soap:Body></soap:Envelope>"
)


def parse(data: bytes, *ids: str) -> list[Observation]:
    return wsd.parse_probe_matches(data, IP, T0, ids)


def one(data: bytes, *ids: str) -> Observation:
    found = parse(data, *ids)
    assert len(found) == 1, found
    return found[0]


# --- the Probe --------------------------------------------------------------------------

NS = {
    "s": "http://www.w3.org/2003/05/soap-envelope",
    "a": "http://schemas.xmlsoap.org/ws/2004/08/addressing",
    "d": "http://schemas.xmlsoap.org/ws/2005/04/discovery",
}


@pytest.mark.parametrize(
    ("types", "qname"),
    [
        ("dn:NetworkVideoTransmitter", "{http://www.onvif.org/ver10/network/wsdl}"),
        ("tds:Device", "{http://www.onvif.org/ver10/device/wsdl}"),
        (None, None),
    ],
)
def test_probe_shape(types: str | None, qname: str | None) -> None:
    mid = "urn:uuid:1e405209-ed76-48c9-97fe-c8ba94908c48"
    data = wsd.build_probe(types, mid)
    root = ET.fromstring(data)
    assert root.tag == "{http://www.w3.org/2003/05/soap-envelope}Envelope"
    header = root.find("s:Header", NS)
    assert header is not None
    assert header.findtext("a:Action", namespaces=NS) == wsd.ACTION_PROBE
    assert header.findtext("a:MessageID", namespaces=NS) == mid
    assert header.findtext("a:To", namespaces=NS) == "urn:schemas-xmlsoap-org:ws:2005:04:discovery"
    probe = root.find("s:Body/d:Probe", NS)
    assert probe is not None
    if types is None:
        assert probe.find("d:Types", NS) is None
    else:
        assert probe.findtext("d:Types", namespaces=NS) == types
        prefix = types.split(":")[0]
        assert qname is not None
        assert f'xmlns:{prefix}="{qname[1:-1]}"'.encode() in data
    assert len(data) < 1500  # one unfragmented datagram


def test_probe_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="types"):
        wsd.build_probe("wsdp:Device", "urn:uuid:1")
    with pytest.raises(ValueError, match="types"):
        wsd.build_probe("dn:<x>", "urn:uuid:1")
    with pytest.raises(ValueError, match="message id"):
        wsd.build_probe(None, "urn:uuid:</a:MessageID>")


def test_the_responder_matches_our_probes() -> None:
    """Our Probes and the lab's matching rules agree (typed, untyped, wrong type)."""
    from lab.responders.wsd import WsdResponder
    from lab.scenario import ServiceSpec

    camera = WsdResponder("cam", ServiceSpec("wsd", 3702, {}))
    printer = WsdResponder(
        "prn", ServiceSpec("wsd", 3702, {"types": "wsdp:Device wprt:PrintDeviceType"})
    )
    for types in wsd.MULTICAST_PROBES:
        assert camera.probe_id(wsd.build_probe(types, "urn:uuid:1")) == "urn:uuid:1"
    assert printer.probe_id(wsd.build_probe(None, "urn:uuid:2")) == "urn:uuid:2"
    assert printer.probe_id(wsd.build_probe(wsd.TYPE_NVT, "urn:uuid:3")) is None
    assert camera.probe_id(b"<not a probe/>") is None


# --- parsing ------------------------------------------------------------------------------


def test_tplink_reply() -> None:
    obs = one(TPLINK, TPLINK_RELATES)
    assert obs.source is Source.WSD and obs.error is None and obs.ip == IP
    a = obs.attrs
    assert a["uuid"] == "b926eb6a-cb4b-54db-3130-0023cde05fa7"
    assert a["types"] == "dn:NetworkVideoTransmitter"
    assert a["scopes"].split()[2:4] == [
        "onvif://www.onvif.org/type/video_analytic",
        "onvif://www.onvif.org/location/global",
    ]
    assert "  " not in a["scopes"]
    assert (a["name"], a["hardware"], a["location"]) == ("TL-SC3130G", "TL-SC3130G", "global")
    assert a["xaddrs"] == "http://198.51.100.20:80/onvif/device_service"
    assert a["metadata_version"] == "1"
    assert (a["is_camera"], a["onvif"]) == ("true", "true")
    assert "manufacturer" not in a and obs.mac is None


def test_unsolicited_and_foreign_replies_are_ignored() -> None:
    assert parse(TPLINK, "urn:uuid:00000000-80b2-4b4f-9b56-745333c153ca") == []
    assert parse(TPLINK) == []
    no_relates = TPLINK.replace(b"<wsadis:RelatesTo>", b"<wsadis:X>").replace(
        b"</wsadis:RelatesTo>", b"</wsadis:X>"
    )
    assert parse(no_relates, TPLINK_RELATES) == []
    # someone else's Probe (or a Hello) carrying our id is not an answer
    hello = TPLINK.replace(
        b"discovery/ProbeMatches</wsadis:Action>", b"discovery/Hello</wsadis:Action>"
    )
    assert parse(hello, TPLINK_RELATES) == []
    # any spelling of our own id counts: urn:uuid:, uuid:, upper case
    assert len(parse(TPLINK, TPLINK_RELATES.upper().replace("URN:UUID:", "uuid:"))) == 1


def test_hanwha_manufacturer_and_model_scopes() -> None:
    a = one(HANWHA, HANWHA_RELATES).attrs
    assert a["manufacturer"] == "Hanwha Vision"
    assert (a["model"], a["hardware"], a["name"]) == ("XNV-8080R", "XNV-8080R", "XNV-8080R")
    assert a["location"] == "country/korea"
    assert a["uuid"] == "a0b1c2d3-0000-4000-8000-000918aabbcc"
    assert a["types"] == "dn:NetworkVideoTransmitter tds:Device"
    assert len(a["scopes"].split()) == 7


@pytest.mark.parametrize("key", ["manufacturer", "Manufacturer", "mfr", "MFG"])
def test_manufacturer_scope_spellings(key: str) -> None:
    data = HANWHA.replace(b"manufacturer/Hanwha%20Vision", f"{key}/Acme%2FCo".encode())
    assert one(data, HANWHA_RELATES).attrs["manufacturer"] == "Acme/Co"


def test_hikvision_scopes_decoded() -> None:
    obs = one(HIK, HIK_RELATES)
    a = obs.attrs
    assert a["name"] == "HIKVISION DS-2CD2143G0-I"
    assert a["hardware"] == "DS-2CD2143G0-I"
    assert a["location"] == "city/hangzhou"
    assert obs.mac == a["mac"] == "c4:2f:90:ab:cd:ef"
    assert a["types"] == "tdn:NetworkVideoTransmitter tds:Device"  # any prefix for the NVT ns
    assert a["is_camera"] == "true"
    assert a["xaddrs"].split()[1].startswith("http://[fe80::")


@pytest.mark.parametrize(
    ("scope", "mac", "raw"),
    [
        ("MAC/c42f90abcdef", "c4:2f:90:ab:cd:ef", None),
        ("mac/C4-2F-90-AB-CD-EF", "c4:2f:90:ab:cd:ef", None),
        ("MAC/not-a-mac", None, "not-a-mac"),
        ("MAC/ff:ff:ff:ff:ff:ff", None, "ff:ff:ff:ff:ff:ff"),
    ],
)
def test_mac_scope(scope: str, mac: str | None, raw: str | None) -> None:
    data = HIK.replace(b"MAC/c4%3A2f%3A90%3Aab%3Acd%3Aef", scope.encode())
    obs = one(data, HIK_RELATES)
    assert obs.mac == mac and obs.attrs.get("mac") == mac
    assert obs.attrs.get("mac_raw") == raw


def test_printer_is_recorded_but_not_a_camera() -> None:
    a = one(PRINTER, PRINTER_RELATES).attrs
    assert a["types"] == "wsdp:Device wprt:PrintDeviceType wscn:ScanDeviceType"
    assert (a["is_camera"], a["onvif"]) == ("false", "false")
    assert a["uuid"] == "6d4ff0ce-6b11-11d8-8020-f80d609c8532"
    assert "scopes" not in a


def test_pc_is_not_a_camera() -> None:
    a = one(PC, PC_RELATES).attrs
    assert (a["types"], a["is_camera"], a["onvif"]) == (
        "wsdp:Device pub:Computer",
        "false",
        "false",
    )


def test_device_type_is_resolved_through_its_namespace() -> None:
    """tds:Device is ONVIF; wsdp:Device (same local name) is a WSD printer or PC."""
    onvif_only = HIK.replace(b"tdn:NetworkVideoTransmitter tds:Device", b"tds:Device")
    onvif_only = onvif_only.replace(b"onvif://www.onvif.org/type/video_encoder ", b"")
    a = one(onvif_only, HIK_RELATES).attrs
    assert (a["is_camera"], a["onvif"]) == ("false", "true")  # e.g. an NVR
    # a printer that happens to use the prefix "tds" for devprof is still a printer
    sneaky = PRINTER.replace(b"xmlns:wsdp=", b"xmlns:tds=").replace(b"wsdp:Device", b"tds:Device")
    assert one(sneaky, PRINTER_RELATES).attrs["onvif"] == "false"


@pytest.mark.parametrize(
    "scope", ["type/Network_Video_Transmitter", "type/NetworkVideoTransmitter", "type/ptz"]
)
def test_camera_by_scope_type_alone(scope: str) -> None:
    data = PRINTER.replace(
        b"<d:XAddrs>", f"<d:Scopes>onvif://www.onvif.org/{scope}</d:Scopes><d:XAddrs>".encode()
    )
    assert one(data, PRINTER_RELATES).attrs["is_camera"] == "true"


def test_fault_answer_is_an_error_observation() -> None:
    obs = one(FAULT, FAULT_RELATES)
    assert obs.error == "fault: d:MatchingRuleNotSupported the xml format error"
    assert parse(FAULT, TPLINK_RELATES) == []


def test_several_matches_in_one_reply_and_the_cap() -> None:
    start, end = HANWHA.index(b"<d:ProbeMatch>"), HANWHA.index(b"</d:ProbeMatches>")
    match = HANWHA[start:end]
    two = HANWHA[:start] + match + match.replace(b"a0b1c2d3", b"b0b1c2d3") + HANWHA[end:]
    assert [o.attrs["uuid"][:8] for o in parse(two, HANWHA_RELATES)] == ["a0b1c2d3", "b0b1c2d3"]
    many = HANWHA[:start] + match * 40 + HANWHA[end:]
    assert len(parse(many, HANWHA_RELATES)) == wsd.MAX_MATCHES


def test_match_without_endpoint_is_kept_with_an_error() -> None:
    data = PRINTER.replace(b"<a:EndpointReference>", b"<a:X>").replace(
        b"</a:EndpointReference>", b"</a:X>"
    )
    obs = one(data, PRINTER_RELATES)
    assert obs.error == "ProbeMatch without an endpoint address"
    assert obs.attrs["types"].startswith("wsdp:Device")


def test_values_are_cleaned_and_capped() -> None:
    long_name = "N" * 2000
    data = HIK.replace(b"name/HIKVISION%20DS-2CD2143G0-I", f"name/{long_name}%0D%0Ax".encode())
    data = data.replace(b"city/hangzhou", b"a%00b%07c")
    a = one(data, HIK_RELATES).attrs
    assert all(len(v) <= wsd.MAX_VALUE for v in a.values())
    assert all(c not in v for v in a.values() for c in "\r\n\x00\x07")
    assert a["location"] == "a b c"


def test_broken_replies_to_our_probe_become_errors() -> None:
    truncated = HIK[: len(HIK) * 2 // 3]
    assert one(truncated, HIK_RELATES).error == "malformed XML"
    assert parse(truncated, TPLINK_RELATES) == []  # not ours: dropped
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE e [<!ENTITY a "aaaaaaaaaa">'
        b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
        + HIK.split(b"?>", 1)[1].replace(b"city/hangzhou", b"&b;")
    )
    obs = one(bomb, HIK_RELATES)
    assert obs.error is not None and obs.error.startswith("forbidden XML construct")
    assert obs.attrs == {}
    external = HIK.replace(
        b"<SOAP-ENV:Envelope", b'<!DOCTYPE x SYSTEM "file:///etc/passwd"><SOAP-ENV:Envelope', 1
    )
    assert (one(external, HIK_RELATES).error or "").startswith("forbidden XML construct")
    huge = HIK + b" " * MAX_DATAGRAM
    assert (one(huge, HIK_RELATES).error or "").startswith("oversized reply")
    assert parse(b"\xff\xfe\x00garbage", HIK_RELATES) == []


def _flood(n: int, ip: str = IP) -> list[tuple[bytes, str, str, str]]:
    """n distinct ProbeMatches (own EPR and MAC scope each) from one address."""
    out = []
    for i in range(n):
        data = HIK.replace(
            b"3fa1fe68-b915-4053-a3e1-c42f90abcdef", f"{i:08x}-b915-4053-a3e1-c42f90abcdef".encode()
        )
        data = data.replace(
            b"c4%3A2f%3A90%3Aab%3Acd%3Aef",
            f"0e%3Af1%3A00%3A00%3A{i // 256:02x}%3A{i % 256:02x}".encode(),
        )
        out.append((data, ip, "unicast", ""))
    return out


def test_a_flood_from_one_address_is_capped_and_named(caplog: pytest.LogCaptureFixture) -> None:
    scope = Scope(interfaces=("lab0",), cidrs=(IPv4Network("198.51.100.0/24"),))
    ctx = ProbeContext(scope=scope, settings=ScanSettings(), interfaces=[], budget=Budget(10, 4))
    inbox = wsd._Inbox()
    for reply in [*_flood(500), *_flood(2, "198.51.100.21")]:
        inbox.add(*reply)
    # the flood cannot crowd the honest host out of what is kept
    assert inbox.per_host == {IP: wsd.MAX_REPLIES_PER_HOST, "198.51.100.21": 2}
    assert inbox.dropped[IP] == 500 - wsd.MAX_REPLIES_PER_HOST
    with caplog.at_level("WARNING", logger="scanner.discovery.wsd"):
        inbox.report()
        found = wsd._observations(ctx, inbox.kept, [HIK_RELATES])
    from_flood = [o for o in found if o.ip == IP]
    assert len(from_flood) == wsd.MAX_ENDPOINTS_PER_HOST
    assert len({o.mac for o in from_flood}) == wsd.MAX_ENDPOINTS_PER_HOST
    assert len([o for o in found if o.ip == "198.51.100.21"]) == 2
    assert f"{IP} sent 500 replies; kept the first {wsd.MAX_REPLIES_PER_HOST}" in caplog.text
    assert f"{IP} named {wsd.MAX_REPLIES_PER_HOST - wsd.MAX_ENDPOINTS_PER_HOST} endpoints" in (
        caplog.text
    )


def test_c1_controls_are_cleaned_like_c0() -> None:
    # U+009B is a one-character CSI: a terminal obeys it as it would ESC [
    assert wsd.clean("a\x1b[31mb\x9b2Jc\x07") == "a [31mb 2Jc"


def test_split_xaddrs() -> None:
    scope = Scope(interfaces=("lab0",), cidrs=(IPv4Network("198.51.100.0/25"),))
    ctx = ProbeContext(scope=scope, settings=ScanSettings(), interfaces=[], budget=Budget(10, 4))
    inside, outside = wsd.split_xaddrs(
        ctx,
        "http://198.51.100.20/onvif/device_service https://198.51.100.21:443/x "
        "http://198.51.100.200/onvif/device_service http://203.0.113.50/onvif/device_service "
        "http://[fe80::1]/onvif/device_service http://camera.local/onvif http://[bad/ junk "
        "http://198.51.100.20:99999/onvif/device_service",
    )
    assert inside == ["http://198.51.100.20/onvif/device_service", "https://198.51.100.21:443/x"]
    assert outside[:2] == [
        "http://198.51.100.200/onvif/device_service",
        "http://203.0.113.50/onvif/device_service",
    ]
    assert len(outside) == 7  # IPv6, names, bad ports and garbage are never "in scope"


# --- fuzz ---------------------------------------------------------------------------------


def _ok(found: list[Observation]) -> None:
    for obs in found:
        assert obs.source is Source.WSD and obs.ip == IP
        assert all(isinstance(v, str) and len(v) <= wsd.MAX_VALUE for v in obs.attrs.values())
        assert all(c not in v for v in obs.attrs.values() for c in "\r\n\x00")
        assert obs.attrs.get("is_camera", "false") in ("true", "false")


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=4096))
def test_fuzz_any_bytes(data: bytes) -> None:
    try:
        found = parse(data, HIK_RELATES)
    except ParseError:  # the only exception a parser may raise (this one never does)
        return
    _ok(found)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64), st.integers(min_value=0, max_value=len(HIK)))
def test_fuzz_mutated_reply(junk: bytes, at: int) -> None:
    try:
        found = parse(HIK[:at] + junk + HIK[at:], HIK_RELATES)
    except ParseError:
        return
    _ok(found)


_token = st.text(
    st.characters(exclude_categories=["Cs", "Zs", "Cc"], exclude_characters="<>&"), max_size=40
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(_token, max_size=5),
    st.lists(
        st.tuples(
            st.sampled_from(["name", "hardware", "mac", "MAC", "location", "type", "mfr", "x"]),
            _token,
        ),
        max_size=8,
    ),
    st.lists(_token, max_size=4),
)
def test_fuzz_structured_matches(
    types: list[str], scopes: list[tuple[str, str]], xaddrs: list[str]
) -> None:
    scope_text = " ".join(f"onvif://www.onvif.org/{k}/{v}" for k, v in scopes)
    data = (
        HIK.replace(b"tdn:NetworkVideoTransmitter tds:Device", escape(" ".join(types)).encode())
        .replace(
            HIK[HIK.index(b"<wsdd:Scopes>") + 13 : HIK.index(b"</wsdd:Scopes>")],
            escape(scope_text).encode(),
        )
        .replace(
            HIK[HIK.index(b"<wsdd:XAddrs>") + 13 : HIK.index(b"</wsdd:XAddrs>")],
            escape(" ".join(xaddrs)).encode(),
        )
    )
    found = parse(data, HIK_RELATES)
    assert len(found) == 1 and found[0].error is None
    _ok(found)


# --- the lab --------------------------------------------------------------------------------

DISCOVER = r"""
import json, sys
from scanner.config import Scope, ScanSettings, parse_cidr
from scanner.discovery.arp import interface_info
from scanner.discovery.base import Budget, ProbeContext
from scanner.discovery import wsd
cidrs, multicast, hosts = sys.argv[1].split(","), sys.argv[2] == "1", json.loads(sys.argv[3])
scope = Scope(interfaces=("lab0",), cidrs=tuple(parse_cidr(c) for c in cidrs))
ifaces = [interface_info("lab0")] if multicast else []
ctx = ProbeContext(scope=scope, settings=ScanSettings(), interfaces=ifaces,
                   budget=Budget(1000, 40), timeout=1.5)
obs = wsd.discover(ctx, hosts)
print(json.dumps([{"ip": o.ip, "mac": o.mac, "attrs": dict(o.attrs), "error": o.error}
                  for o in obs]))
"""


def run_discover(
    lab: Lab, cidr: str, *, multicast: bool = True, hosts: list[str] | None = None
) -> dict[str, list[dict[str, Any]]]:
    r = lab.run_in_scanner(
        [sys.executable, "-c", DISCOVER, cidr, "1" if multicast else "0", json.dumps(hosts or [])],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO_ROOT,
    )
    assert r.returncode == 0, r.stderr
    out: dict[str, list[dict[str, Any]]] = {}
    for o in json.loads(r.stdout):
        out.setdefault(o["ip"], []).append(o)
    return out


def test_lab_multicast_discovery(lab_factory: LabFactory) -> None:
    lab = lab_factory("onvif")
    found = run_discover(lab, lab.cidr)
    assert set(found) == {
        "198.51.100.20",
        "198.51.100.21",
        "198.51.100.22",
        "198.51.100.23",
        "198.51.100.24",
        "198.51.100.25",
        "198.51.100.30",
    }  # the decoy speaks no WS-Discovery
    assert all(len(v) == 1 for v in found.values()), found  # 3 probes, one record each
    hik = found["198.51.100.20"][0]
    assert hik["error"] is None and hik["mac"] == "0a:0b:0c:00:00:20"
    a = hik["attrs"]
    assert (a["name"], a["hardware"], a["is_camera"]) == ("HIKVISION", "DS-2CD2143G0-I", "true")
    assert a["uuid"] == "3fa1fe68-b915-4053-a3e1-0a0b0c000020"
    assert a["xaddrs_in_scope"] == "http://198.51.100.20/onvif/device_service"  # {ip} filled in
    assert (a["probe"], a["iface"]) == ("multicast", "lab0")
    # the stray ProbeMatches .22 sends with a RelatesTo we never used is not recorded
    assert found["198.51.100.22"][0]["attrs"]["uuid"] == "e4c2d0a0-a3b5-11e5-8e3f-accc8e000022"
    printer = found["198.51.100.30"][0]["attrs"]
    assert (printer["is_camera"], printer["onvif"]) == ("false", "false")
    assert printer["types"] == "wsdp:Device wprt:PrintDeviceType wscn:ScanDeviceType"
    far = found["198.51.100.23"][0]["attrs"]
    assert far["xaddrs_out_of_scope"] == "http://203.0.113.50/onvif/device_service"
    assert far["xaddrs_in_scope"] == "http://198.51.100.200:8080/onvif/device_service"
    bomb = found["198.51.100.25"][0]
    assert bomb["error"] == "forbidden XML construct: DTDForbidden"


def test_lab_unicast_discovery_only(lab_factory: LabFactory) -> None:
    """No multicast at all: directed Probes find the devices (what works across routers)."""
    lab = lab_factory("onvif")
    hosts = ["198.51.100.20", "198.51.100.30", "198.51.100.99", "203.0.113.50"]
    found = run_discover(lab, lab.cidr, multicast=False, hosts=hosts)
    assert set(found) == {"198.51.100.20", "198.51.100.30"}  # .99 is silent; 203.* not asked
    assert found["198.51.100.20"][0]["attrs"]["probe"] == "unicast"
    assert found["198.51.100.20"][0]["attrs"]["name"] == "HIKVISION"
    assert found["198.51.100.30"][0]["attrs"]["is_camera"] == "false"  # answered untyped


def test_lab_replies_from_outside_the_scope_are_dropped(lab_factory: LabFactory) -> None:
    """A /29 scope: every device hears the multicast Probe, only .16-.23 may be recorded."""
    lab = lab_factory("onvif")
    found = run_discover(lab, "198.51.100.16/29")
    assert set(found) == {f"198.51.100.{i}" for i in (20, 21, 22, 23)}
    wide = run_discover(lab, "198.51.100.0/28")
    assert wide == {}


def test_lab_unicast_probe_crosses_a_router(lab_factory: LabFactory) -> None:
    """A camera on a routed subnet: TTL-1 multicast never reaches it, a directed Probe does."""
    data = load_scenario("onvif").to_dict()
    data["network"]["scanner_gateway"] = "198.51.100.254"
    data["segment"] = [{"name": "far", "cidr": "10.20.0.0/24"}]
    data["router"] = [
        {
            "name": "gw",
            "interface": [
                {"segment": "lan", "ip": "198.51.100.254", "mac": "02:00:5e:20:00:01"},
                {"segment": "far", "ip": "10.20.0.254", "mac": "02:00:5e:20:00:02"},
            ],
        }
    ]
    data["device"].append(
        {
            "name": "far-cam",
            "segment": "far",
            "gateway": "10.20.0.254",
            "mac": "e0:50:8b:00:01:20",
            "ip": "10.20.0.20",
            "service": [
                {
                    "kind": "wsd",
                    "port": 3702,
                    "scopes": [
                        "onvif://www.onvif.org/type/video_encoder",
                        "onvif://www.onvif.org/name/Dahua",
                        "onvif://www.onvif.org/hardware/IPC-HFW2431S-S-S2",
                    ],
                }
            ],
        }
    )
    lab = lab_factory(Scenario.from_dict(data, name="onvif-routed"))
    cidrs = "198.51.100.0/24,10.20.0.0/24"
    multicast_only = run_discover(lab, cidrs)
    assert "10.20.0.20" not in multicast_only and "198.51.100.20" in multicast_only
    found = run_discover(lab, cidrs, multicast=False, hosts=["10.20.0.20"])
    assert set(found) == {"10.20.0.20"}
    far = found["10.20.0.20"][0]["attrs"]
    assert (far["probe"], far["hardware"]) == ("unicast", "IPC-HFW2431S-S-S2")
    assert far["xaddrs_in_scope"] == "http://10.20.0.20/onvif/device_service"
