"""SSDP/UPnP: pure parsers on real replies, the description fetcher on loopback, and the lab."""

from __future__ import annotations

import contextlib
import json
import socket
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab import Scenario
from scanner.config import ScanSettings, Scope
from scanner.discovery import ssdp
from scanner.discovery.base import MAX_DATAGRAM, MAX_REPLY, Budget, ProbeContext
from scanner.errors import ParseError
from scanner.model import Observation, Source
from tests.conftest import LabFactory
from tests.servers import ThreadServers

REPO_ROOT = Path(__file__).resolve().parents[1]
T0 = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)
IP = "198.51.100.20"

# --- captured replies -------------------------------------------------------------

# An AXIS camera's reply to an M-SEARCH, quoted in ivanempire/lighthouse issue #4
# ("USN should accept any string as UUID", 2023-03-22); the address is the reporter's.
AXIS_REPLY = (
    b"HTTP/1.1 200 OK\r\n"
    b"CACHE-CONTROL: max-age=1800\r\n"
    b"DATE: Wed, 22 Mar 2023 22:19:47 GMT\r\n"
    b"EXT:\r\n"
    b"LOCATION: http://192.168.0.209:49152/rootdesc1.xml\r\n"
    b'OPT: "http://schemas.upnp.org/upnp/1/0/"; ns=01\r\n'
    b"01-NLS: 44f2f88c-c8fe-11ed-9459-93612e419c43\r\n"
    b"SERVER: Linux/4.9.206-axis5, UPnP/1.0, Portable SDK for UPnP devices/1.14.6\r\n"
    b"X-User-Agent: redsonic\r\n"
    b"ST: upnp:rootdevice\r\n"
    b"USN: uuid:Upnp-BasicDevice-1_0-B8A44F26437D::upnp:rootdevice\r\n"
    b"\r\n"
)

# A Dahua camera's search reply as Home Assistant logged it (home-assistant/core
# issue #46822, 2021-02-25); HA printed the headers as a dict, laid out here in
# wire order again.
DAHUA_REPLY = (
    b"HTTP/1.1 200 OK\r\n"
    b"CACHE-CONTROL: max-age=1800\r\n"
    b"DATE: Thu, 25 Feb 2021 21:08:18 GMT\r\n"
    b"EXT:\r\n"
    b"X-User-Agent: redsonic\r\n"
    b"LOCATION: http://192.168.1.20:49152/upnp_device_desc.xml\r\n"
    b"SERVER: Linux/3.8.8, UPnP/1.0, ZheJiang Dahua Technology CO.,LTD. Upnp SDK\r\n"
    b"ST: uuid:www.dahuatech.com.device_3_0-1L047ACPAW00037\r\n"
    b"USN: uuid:www.dahuatech.com.device_3_0-1L047ACPAW00037\r\n"
    b"\r\n"
)

# The AXIS M1065-LW description fields Home Assistant's Axis tests carry
# (home-assistant/core tests/components/axis/test_config_flow.py, SsdpServiceInfo.upnp),
# written back as the XML a libupnp camera serves.
AXIS_DESCRIPTION = b"""<?xml version="1.0"?>
<root xmlns="urn:schemas-upnp-org:device-1-0">
<specVersion><major>1</major><minor>0</minor></specVersion>
<device>
<deviceType>urn:schemas-upnp-org:device:Basic:1</deviceType>
<friendlyName>AXIS M1065-LW - 00408C123456</friendlyName>
<manufacturer>AXIS</manufacturer>
<manufacturerURL>http://www.axis.com/</manufacturerURL>
<modelDescription>AXIS M1065-LW Network Camera</modelDescription>
<modelName>AXIS M1065-LW</modelName>
<modelNumber>M1065-LW</modelNumber>
<modelURL>http://www.axis.com/</modelURL>
<serialNumber>00408C123456</serialNumber>
<UDN>uuid:Upnp-BasicDevice-1_0-00408C123456</UDN>
<serviceList><service>
<serviceType>urn:axis-com:service:BasicService:1</serviceType>
<serviceId>urn:axis-com:serviceId:BasicServiceId</serviceId>
<controlURL>/upnp/control/BasicServiceId</controlURL>
<eventSubURL>/upnp/event/BasicServiceId</eventSubURL>
<SCPDURL>/scpd_basic.xml</SCPDURL>
</service></serviceList>
<presentationURL>http://1.2.3.4:80/</presentationURL>
</device>
</root>
"""

# A description in a vendor namespace with empty manufacturer/model elements,
# as a Digital Loggers PDU serves it (home-assistant/core issue #99068).
BELKIN_NS_DESCRIPTION = b"""<root xmlns="urn:Belkin:device-1-0">
<specVersion><major>1</major><minor>0</minor></specVersion>
<device>
<deviceType>urn:Belkin:device:controllee:1</deviceType>
<friendlyName>HAF</friendlyName>
<manufacturer/>
<modelName/>
<modelNumber/>
<serialNumber>e6428dc70</serialNumber>
<UDN>uuid:Socket-1_0-e6428dc70</UDN>
</device>
</root>
"""

# A relabelled Hikvision recorder: what a Hikvision-OUI (8c:e7:48) unit reported over
# UPnP in a scanner's field notes (code index 52222251960): manufacturer SWANN, modelName
# "SWANN DVR8-1550", deviceType EmbeddedNetDevice:1. The other fields follow that stack.
SWANN_DESCRIPTION = b"""<?xml version="1.0"?>
<root xmlns="urn:schemas-upnp-org:device-1-0">
<specVersion><major>1</major><minor>0</minor></specVersion>
<device>
<deviceType>urn:schemas-upnp-org:device:EmbeddedNetDevice:1</deviceType>
<friendlyName>SWANN 192.168.4.20</friendlyName>
<manufacturer>SWANN</manufacturer>
<modelName>SWANN DVR8-1550</modelName>
<UDN>uuid:a1b2c3d4-0000-1000-8000-8ce74843e31e</UDN>
</device>
</root>
"""

XML_BOMB = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<root xmlns="urn:schemas-upnp-org:device-1-0"><device><friendlyName>&lol3;</friendlyName>
</device></root>"""

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE root [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<root><device><friendlyName>&xxe;</friendlyName></device></root>"""


# --- build_msearch -----------------------------------------------------------------


def test_msearch_is_a_well_formed_multicast_search() -> None:
    msg = ssdp.build_msearch("upnp:rootdevice", 3).decode()
    lines = msg.split("\r\n")
    assert lines[0] == "M-SEARCH * HTTP/1.1"
    assert "HOST: 239.255.255.250:1900" in lines
    assert 'MAN: "ssdp:discover"' in lines
    assert "MX: 3" in lines
    assert "ST: upnp:rootdevice" in lines
    assert msg.endswith("\r\n\r\n")
    assert b"MX: 5\r\n" in ssdp.build_msearch(mx=60)  # UDA caps MX at 5
    assert b"MX: 1\r\n" in ssdp.build_msearch(mx=0)


def test_msearch_refuses_header_injection() -> None:
    with pytest.raises(ValueError, match="search target"):
        ssdp.build_msearch("ssdp:all\r\nX-Evil: 1")


# --- parse_response ----------------------------------------------------------------


def test_axis_reply() -> None:
    obs = ssdp.parse_response(AXIS_REPLY, IP, T0)
    assert obs is not None
    assert obs.source is Source.SSDP
    assert obs.error is None
    assert obs.attrs == {
        "server": "Linux/4.9.206-axis5, UPnP/1.0, Portable SDK for UPnP devices/1.14.6",
        "location": "http://192.168.0.209:49152/rootdesc1.xml",
        "usn": "uuid:Upnp-BasicDevice-1_0-B8A44F26437D::upnp:rootdevice",
        "st": "upnp:rootdevice",
        "uuid": "Upnp-BasicDevice-1_0-B8A44F26437D",
    }


def test_dahua_reply_keeps_the_serial_bearing_uuid() -> None:
    obs = ssdp.parse_response(DAHUA_REPLY, IP, T0)
    assert obs is not None and obs.error is None
    assert obs.attrs["uuid"] == "www.dahuatech.com.device_3_0-1L047ACPAW00037"
    assert "ZheJiang Dahua" in obs.attrs["server"]


def test_header_names_are_case_insensitive_and_lf_only_is_accepted() -> None:
    data = AXIS_REPLY.replace(b"\r\n", b"\n").replace(b"LOCATION:", b"Location:")
    obs = ssdp.parse_response(data, IP, T0)
    assert obs is not None
    assert obs.attrs["location"] == "http://192.168.0.209:49152/rootdesc1.xml"


def test_notify_alive_is_read_as_a_reply() -> None:
    data = (
        b"NOTIFY * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nCACHE-CONTROL: max-age=1800\r\n"
        b"LOCATION: http://198.51.100.20:49152/rootdesc1.xml\r\nNT: upnp:rootdevice\r\n"
        b"NTS: ssdp:alive\r\nSERVER: Linux, UPnP/1.0, x/1\r\n"
        b"USN: uuid:abc::upnp:rootdevice\r\n\r\n"
    )
    obs = ssdp.parse_response(data, IP, T0)
    assert obs is not None and obs.error is None
    assert obs.attrs["nts"] == "ssdp:alive"
    assert obs.attrs["st"] == "upnp:rootdevice"
    assert obs.attrs["uuid"] == "abc"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nST: ssdp:all\r\n\r\n",
        b"\x00\x01\x02garbage",
        b"<?xml version='1.0'?><ProbeMatch/>",
    ],
)
def test_not_an_ssdp_reply(data: bytes) -> None:
    assert ssdp.parse_response(data, IP, T0) is None


def test_reply_missing_headers_is_kept_with_an_error() -> None:
    obs = ssdp.parse_response(b"HTTP/1.1 200 OK\r\nSERVER: x\r\n\r\n", IP, T0)
    assert obs is not None
    assert obs.attrs == {"server": "x"}
    assert obs.error == "missing LOCATION, USN, ST"


def test_non_200_and_bad_status_lines() -> None:
    obs = ssdp.parse_response(AXIS_REPLY.replace(b" 200 OK", b" 404 Not Found"), IP, T0)
    assert obs is not None and obs.error == "status 404"
    obs = ssdp.parse_response(b"HTTP/1.1 OK\r\n\r\n", IP, T0)
    assert obs is not None and obs.error is not None and "bad status line" in obs.error


def test_non_utf8_and_control_characters_are_made_safe() -> None:
    data = AXIS_REPLY.replace(b"Linux/4.9.206-axis5", b"Lin\xffux\x1b[31m\x00")
    obs = ssdp.parse_response(data, IP, T0)
    assert obs is not None
    assert obs.error == "not valid UTF-8"
    assert obs.attrs["server"].startswith("Lin\ufffdux[31m,")


def test_oversized_datagram_and_long_values_are_capped() -> None:
    data = AXIS_REPLY.replace(b"X-User-Agent: redsonic", b"SERVER2: " + b"A" * (MAX_DATAGRAM + 10))
    data = data.replace(b"SERVER: ", b"SERVER: " + b"S" * 5000)
    obs = ssdp.parse_response(data, IP, T0)
    assert obs is not None
    assert obs.error is not None and "oversized datagram" in obs.error
    assert all(len(v) <= ssdp.MAX_VALUE for v in obs.attrs.values())


def test_uuid_from_usn_and_udn() -> None:
    assert ssdp.uuid_from("uuid:abc::urn:x") == "abc"
    assert ssdp.uuid_from("UUID:abc") == "abc"
    assert ssdp.uuid_from("abc") is None
    assert ssdp.uuid_from("uuid:") is None


# --- parse_description ---------------------------------------------------------------


def test_axis_description() -> None:
    obs = ssdp.parse_description(AXIS_DESCRIPTION, IP, T0)
    assert obs.error is None
    assert obs.attrs == {
        "manufacturer": "AXIS",
        "manufacturer_url": "http://www.axis.com/",
        "model_description": "AXIS M1065-LW Network Camera",
        "model_number": "M1065-LW",
        "presentation_url": "http://1.2.3.4:80/",
        "device_type": "urn:schemas-upnp-org:device:Basic:1",
        "model": "AXIS M1065-LW",
        "serial": "00408C123456",
        "name": "AXIS M1065-LW - 00408C123456",
        "uuid": "Upnp-BasicDevice-1_0-00408C123456",
    }


def test_description_in_another_namespace_with_empty_fields() -> None:
    obs = ssdp.parse_description(BELKIN_NS_DESCRIPTION, IP, T0)
    assert obs.error is None
    assert obs.attrs == {
        "device_type": "urn:Belkin:device:controllee:1",
        "serial": "e6428dc70",
        "name": "HAF",
        "uuid": "Socket-1_0-e6428dc70",
    }


def test_relabelled_recorder_keeps_the_brand_it_claims() -> None:
    obs = ssdp.parse_description(SWANN_DESCRIPTION, IP, T0)
    assert obs.attrs["manufacturer"] == "SWANN"
    assert obs.attrs["model"] == "SWANN DVR8-1550"
    assert obs.attrs["device_type"] == "urn:schemas-upnp-org:device:EmbeddedNetDevice:1"


def test_relabel_with_generic_model_name_takes_the_makers_code() -> None:
    xml = AXIS_DESCRIPTION.replace(
        b"<manufacturer>AXIS</manufacturer>", b"<manufacturer>LTS</manufacturer>"
    )
    xml = xml.replace(b"<modelName>AXIS M1065-LW</modelName>", b"<modelName>IP Camera</modelName>")
    xml = xml.replace(
        b"<modelNumber>M1065-LW</modelNumber>", b"<modelNumber>DS-2CD2343G2-IU</modelNumber>"
    )
    obs = ssdp.parse_description(xml, IP, T0)
    assert obs.attrs["manufacturer"] == "LTS"
    assert obs.attrs["model"] == "DS-2CD2343G2-IU"
    assert obs.attrs["model_number"] == "DS-2CD2343G2-IU"


@pytest.mark.parametrize(
    ("name", "number", "model"),
    [
        ("AXIS M1065-LW", "M1065-LW", "AXIS M1065-LW"),
        ("IP Camera", "DS-2CD2143G0-I", "DS-2CD2143G0-I"),
        ("Network Video Recorder", "DS-7608NI-K2", "DS-7608NI-K2"),
        ("Hyperion", "2.0.0", "Hyperion"),  # a version is not a product code
        ("SWANN DVR8-1550", "", "SWANN DVR8-1550"),
        ("", "NVR5208-8P", "NVR5208-8P"),
        ("FRITZ!Box 7530", "avme", "FRITZ!Box 7530"),  # home-assistant/core issue #57243
        (
            "Windows Media Connect compatible (MiniDLNA)",
            "1.3.3",
            "Windows Media Connect compatible (MiniDLNA)",
        ),
    ],
)
def test_pick_model(name: str, number: str, model: str) -> None:
    assert ssdp.pick_model(name, number) == model


def test_embedded_devices_are_each_kept() -> None:
    xml = b"""<root xmlns="urn:schemas-upnp-org:device-1-0"><device>
    <friendlyName>NVR</friendlyName><manufacturer>Hikvision</manufacturer>
    <modelName>DS-7608NI-K2</modelName><UDN>uuid:root-1</UDN>
    <deviceList><device><friendlyName>Channel 1</friendlyName>
    <modelName>DS-2CD2143G0-I</modelName><UDN>uuid:cam-1</UDN></device>
    <device><friendlyName>Channel 2</friendlyName><UDN>uuid:cam-2</UDN></device></deviceList>
    </device></root>"""
    devices = ssdp.parse_description_all(xml, IP, T0)
    assert [d.attrs["uuid"] for d in devices] == ["root-1", "cam-1", "cam-2"]
    assert devices[1].attrs["model"] == "DS-2CD2143G0-I"
    assert ssdp.parse_description(xml, IP, T0).attrs["uuid"] == "root-1"


@pytest.mark.parametrize(
    ("xml", "error"),
    [
        (XML_BOMB, "description refused: DTDForbidden"),
        (XXE, "description refused: DTDForbidden"),
        (b"<root><device><friendlyName>cut", "description is not XML"),
        (b"", "empty description"),
        (b"\xff\xfe\x00<", "description is not XML"),
        (b'<?xml version="1.0" encoding="bogus-8"?><root/>', "description is not XML"),
        (b"<html><body>Login</body></html>", "no <device> in description (root <html>)"),
        (b"<root>" + b"x" * (MAX_REPLY + 1) + b"</root>", "description larger than 262144 bytes"),
    ],
)
def test_hostile_descriptions_become_errors(xml: bytes, error: str) -> None:
    obs = ssdp.parse_description(xml, IP, T0)
    assert obs.error is not None and obs.error.startswith(error)
    assert obs.attrs == {}


def test_description_values_are_cleaned_and_capped() -> None:
    xml = (
        b"<root><device><friendlyName>a\x7f[2J\tb\n\nc"
        + b"z" * 2000
        + b"</friendlyName></device></root>"
    )
    obs = ssdp.parse_description(xml, IP, T0)
    assert obs.attrs["name"].startswith("a[2J b c")
    assert len(obs.attrs["name"]) == ssdp.MAX_VALUE


# --- fuzz ----------------------------------------------------------------------------


def _ok(obs: Observation | None) -> None:
    if obs is None:
        return
    assert obs.source is Source.SSDP
    assert all(isinstance(v, str) and len(v) <= ssdp.MAX_VALUE for v in obs.attrs.values())
    assert all(c not in v for v in obs.attrs.values() for c in "\r\n\x00")


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=2048))
def test_fuzz_parse_response_any_bytes(data: bytes) -> None:
    with contextlib.suppress(ParseError):  # the only exception a parser may raise
        _ok(ssdp.parse_response(data, IP, T0))


_header_line = st.tuples(
    st.sampled_from(["LOCATION", "ST", "USN", "SERVER", "NT", "NTS", "X", ""]),
    st.text(max_size=80),
).map(lambda kv: f"{kv[0]}:{kv[1]}")


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["HTTP/1.1 200 OK", "HTTP/1.0 500 x", "NOTIFY * HTTP/1.1", "HTTP/1.1"]),
    st.lists(_header_line, max_size=20),
)
def test_fuzz_parse_response_structured(status: str, lines: list[str]) -> None:
    data = ("\r\n".join([status, *lines]) + "\r\n\r\n").encode("utf-8", "surrogatepass")
    obs = ssdp.parse_response(data, IP, T0)
    assert obs is not None
    _ok(obs)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=4096))
def test_fuzz_parse_description_any_bytes(data: bytes) -> None:
    try:
        obs = ssdp.parse_description(data, IP, T0)
    except ParseError:
        return
    _ok(obs)


_xml_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=100)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "friendlyName",
                "manufacturer",
                "modelName",
                "modelNumber",
                "serialNumber",
                "UDN",
                "deviceType",
                "x",
            ]
        ),
        _xml_text,
    ),
    st.sampled_from(["", ' xmlns="urn:schemas-upnp-org:device-1-0"', ' xmlns:a="b"']),
)
def test_fuzz_parse_description_structured(fields: dict[str, str], ns: str) -> None:
    from xml.sax.saxutils import escape

    body = "".join(f"<{k}>{escape(v)}</{k}>" for k, v in fields.items())
    xml = f"<root{ns}><device>{body}</device></root>".encode("utf-8", "surrogatepass")
    obs = ssdp.parse_description(xml, IP, T0)
    _ok(obs)


# --- the HTTP fetcher on loopback (no lab: a scope that holds 127.0.0.1) ----------------


def _loopback_ctx(timeout: float = 0.5) -> ProbeContext:
    scope = Scope(interfaces=("lo",), cidrs=(IPv4Network("127.0.0.0/8"),))
    return ProbeContext(
        scope=scope,
        settings=ScanSettings(),
        interfaces=[],
        budget=Budget(1000, 40),
        timeout=timeout,
    )


@pytest.fixture
def http_server() -> Iterator[Callable[[Callable[[socket.socket], None]], int]]:
    """Start a one-thread TCP server on 127.0.0.1 running ``handler(conn)`` after the request."""
    servers = ThreadServers()

    def start(handler: Callable[[socket.socket], None]) -> int:
        def after_request(conn: socket.socket) -> None:
            conn.recv(4096)
            handler(conn)

        return servers.start(after_request)

    yield start
    servers.close()


def _reply(body: bytes, head: bytes = b"") -> Callable[[socket.socket], None]:
    def handler(conn: socket.socket) -> None:
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\n"
            + head
            + b"Content-Length: "
            + str(len(body)).encode()
            + b"\r\n\r\n"
            + body
        )

    return handler


def test_fetch_description_reads_a_normal_answer(http_server: Any) -> None:
    port = http_server(_reply(AXIS_DESCRIPTION))
    got = ssdp.fetch_description(_loopback_ctx(), f"http://127.0.0.1:{port}/rootdesc1.xml")
    assert got.error is None and got.body == AXIS_DESCRIPTION


def test_fetch_description_does_not_wait_on_a_kept_alive_connection(http_server: Any) -> None:
    def handler(conn: socket.socket) -> None:
        _reply(AXIS_DESCRIPTION)(conn)
        time.sleep(3)  # ignores "Connection: close"

    port = http_server(handler)
    start = time.monotonic()
    got = ssdp.fetch_description(_loopback_ctx(timeout=1.0), f"http://127.0.0.1:{port}/")
    assert got.error is None and got.body == AXIS_DESCRIPTION
    assert time.monotonic() - start < 0.9  # not the read timeout (1 s), nor the close (3 s)


def test_fetch_description_chunked(http_server: Any) -> None:
    def handler(conn: socket.socket) -> None:
        body = AXIS_DESCRIPTION
        chunks = b"".join(
            b"%x\r\n%s\r\n" % (len(body[i : i + 100]), body[i : i + 100])
            for i in range(0, len(body), 100)
        )
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n"
        )

    port = http_server(handler)
    got = ssdp.fetch_description(_loopback_ctx(), f"http://127.0.0.1:{port}/")
    assert got.error is None and got.body == AXIS_DESCRIPTION


def test_fetch_description_endless_body_is_capped(http_server: Any) -> None:
    def handler(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\n\r\n<root>")
        for _ in range(2000):
            conn.sendall(b"x" * 65536)

    port = http_server(handler)
    start = time.monotonic()
    got = ssdp.fetch_description(_loopback_ctx(), f"http://127.0.0.1:{port}/")
    assert got.body is None and got.error == f"description larger than {MAX_REPLY} bytes"
    assert time.monotonic() - start < 3


def test_fetch_description_declared_oversize_is_refused_unread(http_server: Any) -> None:
    port = http_server(_reply(b"x" * (MAX_REPLY + 1)))
    got = ssdp.fetch_description(_loopback_ctx(), f"http://127.0.0.1:{port}/")
    assert got.body is None and got.error == f"description larger than {MAX_REPLY} bytes"


def test_fetch_description_slow_body_times_out(http_server: Any) -> None:
    def handler(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n<root>")
        time.sleep(3)

    port = http_server(handler)
    start = time.monotonic()
    got = ssdp.fetch_description(_loopback_ctx(timeout=0.3), f"http://127.0.0.1:{port}/")
    assert got.error == "description read timed out"
    assert time.monotonic() - start < 1.5


def test_fetch_description_redirect_outside_scope_is_not_followed(http_server: Any) -> None:
    def handler(conn: socket.socket) -> None:
        conn.sendall(
            b"HTTP/1.1 302 Found\r\nLocation: http://203.0.113.7:49152/x.xml\r\n"
            b"Content-Length: 0\r\n\r\n"
        )

    port = http_server(handler)
    got = ssdp.fetch_description(_loopback_ctx(), f"http://127.0.0.1:{port}/")
    assert got.body is None
    assert (
        got.error == "redirect to http://203.0.113.7:49152/x.xml not followed (outside the scope)"
    )


def test_fetch_description_follows_an_in_scope_redirect(http_server: Any) -> None:
    target = http_server(_reply(AXIS_DESCRIPTION))

    def handler(conn: socket.socket) -> None:
        conn.sendall(
            b"HTTP/1.1 301 Moved\r\nLocation: http://127.0.0.1:%d/d.xml\r\n"
            b"Content-Length: 0\r\n\r\n" % target
        )

    port = http_server(handler)
    got = ssdp.fetch_description(_loopback_ctx(), f"http://127.0.0.1:{port}/")
    assert got.body == AXIS_DESCRIPTION


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/desc.xml",
        "http://127.0.0.1/desc.xml HTTP/1.1\r\nX-Evil: 1",
        "http://127.0.0.1:99999/",
        "ftp://127.0.0.1/",
        "http:///nohost",
    ],
)
def test_unusable_locations_are_refused_without_a_connection(url: str) -> None:
    ctx = _loopback_ctx()
    got = ssdp.fetch_description(ctx, url)
    assert got.body is None and got.error == "LOCATION is not a usable http:// URL"
    assert sum(ctx.budget.sent.values()) == 0


def test_location_names_are_never_in_scope() -> None:
    ctx = _loopback_ctx()
    assert not ssdp.is_in_scope_host(ctx, "localhost")
    assert not ssdp.is_in_scope_host(ctx, None)
    assert ssdp.is_in_scope_host(ctx, "127.0.0.1")


# --- the lab -------------------------------------------------------------------------

DISCOVER = """
import json, sys
from dataclasses import asdict
from scanner.config import Scope, ScanSettings, parse_cidr
from scanner.discovery.arp import interface_info
from scanner.discovery.base import Budget, ProbeContext
from scanner.discovery.ssdp import discover
scope = Scope(interfaces=("lab0",), cidrs=(parse_cidr(sys.argv[1]),))
ctx = ProbeContext(scope=scope, settings=ScanSettings(), interfaces=[interface_info("lab0")],
                   budget=Budget(1000, 40), timeout=float(sys.argv[2]))
obs = discover(ctx)
print(json.dumps([asdict(o) | {"seen_at": o.seen_at.isoformat()} for o in obs]))
"""


def run_discover(lab: Any, cidr: str, timeout: float = 2.0) -> list[dict[str, Any]]:
    r = lab.run_in_scanner(
        [sys.executable, "-c", DISCOVER, cidr, str(timeout)],
        capture_output=True,
        timeout=60,
        cwd=REPO_ROOT,
    )
    assert r.returncode == 0, r.stderr
    found: list[dict[str, Any]] = json.loads(r.stdout)
    return found


def passive_opens(lab: Any, device: str) -> int:
    """TCP connections the device's kernel accepted so far (its namespace's /proc/net/snmp)."""
    r = lab.run_in_device(device, ["cat", "/proc/net/snmp"], capture_output=True, timeout=10)
    rows = [line.split() for line in r.stdout.splitlines() if line.startswith("Tcp:")]
    return int(rows[1][rows[0].index("PassiveOpens")])


def by_ip(found: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for o in found:
        out.setdefault(o["ip"], []).append(o)
    return out


def test_lan_ssdp_discovery_with_descriptions(lab_factory: LabFactory) -> None:
    lab = lab_factory("lan")
    found = by_ip(run_discover(lab, lab.cidr))
    assert set(found) == {
        "198.51.100.20",
        "198.51.100.21",
        "198.51.100.22",
        "198.51.100.23",
        "198.51.100.26",
    }  # the printer and the Hikvision camera do no UPnP
    assert all(len(v) == 1 for v in found.values())
    axis = found["198.51.100.20"][0]
    assert axis["source"] == "ssdp" and axis["error"] is None
    for key, value in {
        "manufacturer": "AXIS",
        "model": "AXIS M3045-V",
        "model_number": "M3045-V",
        "serial": "ACCC8E000020",
        "uuid": "Upnp-BasicDevice-1_0-ACCC8E000020",
        "name": "AXIS M3045-V - ACCC8E000020",
        "location": "http://198.51.100.20:49152/rootdesc1.xml",
        "usn": "uuid:Upnp-BasicDevice-1_0-ACCC8E000020::upnp:rootdevice",
        "presentation_url": "http://198.51.100.20:80/",
    }.items():
        assert axis["attrs"][key] == value, key
    assert "urn:axis-com:service:BasicService:1" in axis["attrs"]["st"].split()
    assert "Portable SDK for UPnP devices" in axis["attrs"]["server"]

    nvr = found["198.51.100.21"][0]["attrs"]
    assert (nvr["manufacturer"], nvr["model"]) == ("Hikvision", "DS-7608NI-K2")
    relabel = found["198.51.100.22"][0]["attrs"]
    assert (relabel["manufacturer"], relabel["model"]) == ("LTS", "DS-2CD2343G2-IU")
    assert relabel["serial"].startswith("DS-2CD2343G2-IU")
    pc = found["198.51.100.23"][0]["attrs"]
    assert pc["device_type"] == "urn:schemas-upnp-org:device:MediaServer:1"
    assert pc["manufacturer"] == "Justin Maggard"

    nat = found["198.51.100.26"][0]
    assert nat["attrs"]["location_out_of_scope"] == "true"
    assert nat["attrs"]["location_host"] == "203.0.113.7"
    assert "manufacturer" not in nat["attrs"]  # its description was never read
    assert nat["attrs"]["uuid"] == "www.dahuatech.com.device_3_0-4J01234PAZ00026"


def _ssdp_device(name: str, mac: str, ip: str, **opts: Any) -> dict[str, Any]:
    service = {
        "kind": "ssdp",
        "port": 1900,
        "manufacturer": "Hikvision",
        "model_name": "DS-7608NI-K2",
        "model_number": "DS-7608NI-K2",
        **opts,
    }
    return {"name": name, "mac": mac, "ip": ip, "service": [service]}


def test_location_outside_the_scope_is_never_fetched(lab_factory: LabFactory) -> None:
    """The scope is 198.51.100.0/25; the fake LOCATION names .200, a live host outside it."""
    scenario = Scenario.from_dict(
        {
            "network": {
                "cidr": "198.51.100.0/24",
                "scanner_ip": "198.51.100.1",
                "scanner_mac": "02:00:5e:10:00:01",
            },
            "device": [
                _ssdp_device(
                    "liar",
                    "c0:56:e3:00:00:10",
                    "198.51.100.10",
                    location="http://198.51.100.200:49152/description.xml",
                ),
                _ssdp_device("honest", "c0:56:e3:00:00:11", "198.51.100.11"),
                _ssdp_device("outside", "c0:56:e3:00:00:c8", "198.51.100.200"),
            ],
        },
        name="ssdp-scope",
    )
    lab = lab_factory(scenario)
    before = {d: passive_opens(lab, d) for d in ("outside", "honest")}
    found = by_ip(run_discover(lab, "198.51.100.0/25"))
    after = {d: passive_opens(lab, d) for d in ("outside", "honest")}
    assert after["outside"] == before["outside"]  # no TCP connection ever reached .200
    assert after["honest"] == before["honest"] + 1  # the control: one description fetch
    assert set(found) == {"198.51.100.10", "198.51.100.11"}  # .200's own reply was dropped
    liar = found["198.51.100.10"][0]["attrs"]
    assert liar["location_out_of_scope"] == "true"
    assert liar["location_host"] == "198.51.100.200"
    assert "manufacturer" not in liar
    assert found["198.51.100.11"][0]["attrs"]["manufacturer"] == "Hikvision"


def test_hostile_descriptions_do_not_stop_the_scan(lab_factory: LabFactory) -> None:
    modes = ["malformed", "xml-bomb", "oversized", "endless", "slow"]
    devices = [
        _ssdp_device(
            mode.replace("-", ""), f"c0:56:e3:00:01:{i:02x}", f"198.51.100.{30 + i}", mode=mode
        )
        for i, mode in enumerate(modes)
    ]
    devices += [
        _ssdp_device(
            "redirect",
            "c0:56:e3:00:02:01",
            "198.51.100.40",
            mode="redirect",
            redirect_to="http://203.0.113.7/desc.xml",
        ),
        _ssdp_device("badreply", "c0:56:e3:00:02:02", "198.51.100.41", reply_mode="malformed"),
        _ssdp_device("bigreply", "c0:56:e3:00:02:03", "198.51.100.42", reply_mode="oversized"),
        _ssdp_device("silent", "c0:56:e3:00:02:04", "198.51.100.43", reply_mode="silent"),
        _ssdp_device(
            "fine",
            "c0:56:e3:00:02:05",
            "198.51.100.44",
            extra_devices=[
                {
                    "uuid": "second-root",
                    "description_path": "/second.xml",
                    "friendly_name": "Channel 2",
                    "model_name": "DS-2CD2143G0-I",
                }
            ],
        ),
    ]
    scenario = Scenario.from_dict(
        {
            "network": {
                "cidr": "198.51.100.0/24",
                "scanner_ip": "198.51.100.1",
                "scanner_mac": "02:00:5e:10:00:01",
            },
            "device": devices,
        },
        name="ssdp-hostile",
    )
    lab = lab_factory(scenario)
    start = time.monotonic()
    found = by_ip(run_discover(lab, lab.cidr, timeout=1.0))
    assert time.monotonic() - start < 20
    errors = {ip: [o["error"] for o in obs] for ip, obs in found.items()}
    assert errors["198.51.100.30"][0].startswith("description is not XML")
    assert errors["198.51.100.31"] == ["description refused: DTDForbidden"]
    assert errors["198.51.100.32"] == [f"description larger than {MAX_REPLY} bytes"]
    assert errors["198.51.100.33"] == [f"description larger than {MAX_REPLY} bytes"]
    assert errors["198.51.100.34"][0].startswith("description read timed out")
    assert errors["198.51.100.40"] == [
        "redirect to http://203.0.113.7/desc.xml not followed (outside the scope)"
    ]
    bad = found["198.51.100.41"][0]
    assert bad["error"] and "missing" in bad["error"]
    big = found["198.51.100.42"][0]
    assert big["attrs"]["manufacturer"] == "Hikvision"  # a padded header is still a reply
    assert "198.51.100.43" not in found
    fine = sorted(found["198.51.100.44"], key=lambda o: o["attrs"]["model"])
    assert [o["attrs"]["model"] for o in fine] == ["DS-2CD2143G0-I", "DS-7608NI-K2"]
    assert [o["error"] for o in fine] == [None, None]
    assert fine[0]["attrs"]["uuid"] == "second-root"
    for obs in found.values():
        for o in obs:
            assert all(len(v) <= 512 for v in o["attrs"].values())
