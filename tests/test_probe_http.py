"""HTTP banners: the tolerant parser, titles, vendor answers, and probes on loopback.

Fixtures are replies quoted in public bug reports and code (cited per
fixture), rebuilt as raw bytes where the source quoted them as a header dict.
The I/O tests serve the lab's own responders on 127.0.0.1 (never a real
network) from a background asyncio loop.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from ipaddress import IPv4Network
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab.responders import registry
from lab.responders.base import Responder
from lab.scenario import ServiceSpec
from scanner.config import ScanSettings, Scope
from scanner.discovery.base import Budget, ProbeContext
from scanner.errors import ParseError
from scanner.model import Source
from scanner.probe import BudgetExhausted, parse_challenges, realm_facts
from scanner.probe import http as hp
from tests.aio import stop_all

T0 = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)
IP = "198.51.100.20"

# --------------------------------------------------------------- fixtures

# Hikvision ISAPI behind Digest: Server "App-webs/" and the "IP Camera(<id>)" realm
# (realm form as in blakeblackshear/frigate#9006 and androidx/media#357).
HIK_401 = (
    b"HTTP/1.1 401 Unauthorized\r\n"
    b"Date: Sat, 22 Nov 2026 03:00:00 GMT\r\n"
    b"Server: App-webs/\r\n"
    b"Content-Length: 167\r\n"
    b"Content-Type: text/html\r\n"
    b"Connection: close\r\n"
    b'WWW-Authenticate: Digest qop="auth", realm="IP Camera(C6452)", '
    b'nonce="4e5449784d7a63304d5467364e4455314e6a5a6a4d44413d", stale="FALSE"\r\n'
    b"\r\n"
    b"<!DOCTYPE html><html><head><title>Document Error: Unauthorized</title></head>"
    b"<body><h2>Access Error: 401 -- Unauthorized</h2><p>Authentication Error</p></body></html>\n"
)

# Axis 401 headers as node-onvif logged them (GuilhermeC18/node-onvif#40).
AXIS_401 = (
    b"HTTP/1.1 401 Unauthorized\r\n"
    b"Date: Tue, 11 Sep 2018 20:22:17 GMT\r\n"
    b"Server: Apache/2.4.27 (Unix) OpenSSL/1.0.2k\r\n"
    b'WWW-Authenticate: Digest realm="AXIS_WS_ACCC8E494578", '
    b'nonce="t6fuOp51BQA=f644e559881cb59b13221e8f9b63747f39e342c7", algorithm=MD5, qop="auth"\r\n'
    b"Content-Length: 0\r\n"
    b"Connection: close\r\n"
    b"Content-Type: text/html; charset=iso-8859-1\r\n\r\n"
)

# A Dahua camera's HEAD answer, upper-case names and all (D4-project/Plum-Island#204).
DAHUA_HEAD = (
    b"HTTP/1.1 200 OK\r\n"
    b"CONNECTION: keep-alive\r\n"
    b"Date: Thu, 20 Aug 2026 19:53:42 GMT\r\n"
    b'Etag: "1780651407:298f"\r\n'
    b"CONTENT-LENGTH: 10639\r\n"
    b"CACHE-CONTROL: max-age=0\r\n"
    b"P3P: CP=CAO PSA OUR\r\n"
    b"X-Frame-Options: SAMEORIGIN\r\n"
    b"CONTENT-TYPE: text/html\r\n\r\n"
)

# Xiongmai "NETSurveillance uc-httpd / Server: uc-httpd 1.0.0" (Shodan camera dorks,
# daffainfo/AllAboutBugBounty), sent here with LF-only line ends and an unclosed title.
XMEYE_LF = (
    b"HTTP/1.0 200 OK\nContent-type: text/html\nServer: uc-httpd 1.0.0\n\n"
    b"<html><head><title>  NETSurveillance\n   WEB </title></head>"
)

# ISAPI DeviceInfo of a PTZ dome (a Rust ISAPI client's test, code index 10998947318).
ISAPI_XML = b"""<?xml version="1.0" encoding="UTF-8"?>
<DeviceInfo version="2.0" xmlns="http://www.hikvision.com/ver20/XMLSchema">
<deviceName>PTZ</deviceName>
<deviceID>7ccc4404-e05d-4376-8ebf-81127da67c11</deviceID>
<deviceDescription>IPDome</deviceDescription>
<model>DS-2DE4A425IW-DE</model>
<serialNumber>DS-2DE4A425IW-DE20180101AAWRC52000000W</serialNumber>
<macAddress>ff:ff:ff:ff:ff:ff</macAddress>
<firmwareVersion>V5.5.71</firmwareVersion>
<firmwareReleasedDate>build 180725</firmwareReleasedDate>
<deviceType>IPDome</deviceType>
</DeviceInfo>
"""

# /SDK/activateStatus (code index 15251382388 reads <ActivateStatus><Activated>)
ACTIVATE_XML = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<ActivateStatus version="2.0" '
    b'xmlns="http://www.hikvision.com/ver20/XMLSchema">\n<Activated>true</Activated>\n'
    b"</ActivateStatus>\n"
)

# magicBox getSystemInfo of a Lorex (Dahua OEM) NVR (rroller/dahua client comments,
# code index 448093976): deviceType=31, the model in updateSerial.
MAGICBOX_SYSINFO = (
    b"deviceType=31\r\nprocessor=ST7108\r\nserialNumber=ND0219110NNNNN\r\n"
    b"updateSerial=DHI-NVR4108HS-8P-4KS2\r\n"
)

# VAPIX param.cgi?action=list&group=Brand (Kane610/axis tests/parameters/test_brand.py)
AXIS_BRAND = (
    b"root.Brand.Brand=AXIS\nroot.Brand.ProdFullName=AXIS M1065-LW Network Camera\n"
    b"root.Brand.ProdNbr=M1065-LW\nroot.Brand.ProdShortName=AXIS M1065-LW\n"
    b"root.Brand.ProdType=Network Camera\nroot.Brand.ProdVariant=\n"
    b"root.Brand.WebURL=http://www.axis.com\n"
)

# Uniview LAPI DeviceInfo (a NetBox collector's test, code index 57784706191)
LAPI_JSON = (
    b'{"Response": {"ResponseURL": "/LAPI/V1.0/System/DeviceInfo", "ResponseCode": 0, '
    b'"ResponseString": "Succeed", "StatusCode": 0, "Data": {"ID": 0, "DeviceName": '
    b'"NVR302-16S2", "DeviceType": 1, "DeviceModel": "NVR302-16S2", "SerialNumber": '
    b'"210235XAX93239000081", "FirmwareVersion": "NVR-B3601.37.45.230825"}}}'
)


def reply(status: int, body: bytes, **headers: str) -> hp.HttpReply:
    head = f"HTTP/1.1 {status} X\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return hp.parse_response(head.encode() + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)


# ------------------------------------------------------------------ parser


def test_hikvision_401_gives_server_realm_scheme_and_hint() -> None:
    r = hp.parse_response(HIK_401)
    assert (r.status, r.reason, r.version) == (401, "Unauthorized", "1.1")
    assert r.complete
    obs = hp.observe(IP, 80, False, r, "/ISAPI/System/deviceInfo", T0)
    assert obs.source is Source.HTTP
    assert obs.attrs["server"] == "App-webs/"
    assert obs.attrs["realm"] == "IP Camera(C6452)"
    assert obs.attrs["auth_scheme"] == "Digest"
    assert obs.attrs["title"] == "Document Error: Unauthorized"
    assert obs.attrs["vendor_hint"] == "hikvision"
    assert obs.attrs["path"] == "/ISAPI/System/deviceInfo"
    assert obs.error is None


def test_axis_realm_carries_the_serial_which_is_the_mac() -> None:
    obs = hp.observe(IP, 80, False, hp.parse_response(AXIS_401), "/", T0)
    assert obs.attrs["realm"] == "AXIS_WS_ACCC8E494578"
    assert obs.attrs["serial"] == "ACCC8E494578"
    assert obs.attrs["mac"] == "ac:cc:8e:49:45:78"
    assert obs.attrs["vendor_hint"] == "axis"


def test_header_names_are_case_insensitive_and_a_head_answer_is_incomplete() -> None:
    r = hp.parse_response(DAHUA_HEAD)
    assert r.headers.get("content-length") == "10639"
    assert r.headers.get("Connection") == "keep-alive"
    assert "server" not in r.headers
    assert not r.complete  # a HEAD answer promises a body it does not send
    obs = hp.observe(IP, 80, False, r, "/", T0)
    assert "server" not in obs.attrs
    assert obs.error == "truncated"


def test_lf_only_lines_and_an_unclosed_title() -> None:
    r = hp.parse_response(XMEYE_LF)
    assert r.status == 200
    assert r.headers.get("Server") == "uc-httpd 1.0.0"
    obs = hp.observe(IP, 80, False, r, "/", T0)
    assert obs.attrs["title"] == "NETSurveillance WEB"
    assert obs.attrs["vendor_hint"] == "xiongmai"


@pytest.mark.parametrize(
    ("data", "status", "reason"),
    [
        (b"HTTP/1.1 200\r\n\r\n", 200, ""),  # no reason phrase
        (b"HTTP/1.0 404 Not Found\r\n\r\n", 404, "Not Found"),  # no header fields
        (
            b"\r\nHTTP/1.1 302 Moved Temporarily\nLocation: /doc/index.html\n\n",
            302,
            "Moved Temporarily",
        ),
        (b"HTTP/1.1 200 OK", 200, "OK"),  # cut before the blank line
        (b"HTTP/1 200 OK\r\n\r\n", 200, "OK"),
    ],
)
def test_broken_embedded_http_still_parses(data: bytes, status: int, reason: str) -> None:
    r = hp.parse_response(data)
    assert (r.status, r.reason) == (status, reason)


def test_duplicate_headers_are_kept_in_order_and_junk_lines_dropped() -> None:
    r = hp.parse_response(
        b"HTTP/1.1 401 Unauthorized\r\n"
        b'WWW-Authenticate: Digest realm="IP Camera(L4906)", nonce="abc"\r\n'
        b"this line has no colon\r\n"
        b'WWW-Authenticate: Basic realm="IP Camera(L4906)"\r\n'
        b"Set-Cookie: a=1\r\nSet-Cookie: b=2\r\n X-Folded: continued\r\n\r\n"
    )
    assert r.headers.get_all("www-authenticate")[1] == 'Basic realm="IP Camera(L4906)"'
    assert r.headers.get_all("Set-Cookie") == ["a=1", "b=2 X-Folded: continued"]
    obs = hp.observe(IP, 80, False, r, "/", T0)
    assert obs.attrs["auth_scheme"] == "Digest Basic"


def test_chunked_body_is_decoded() -> None:
    r = hp.parse_response(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"7\r\n<title>\r\n4;ext=1\r\nWEB \r\n8\r\nSERVICE<\r\n7\r\n/title>\r\n0\r\n\r\n"
    )
    assert r.body == b"<title>WEB SERVICE</title>"
    assert r.complete


def test_body_longer_than_content_length_is_cut() -> None:
    r = hp.parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcdef")
    assert r.body == b"abc"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00\x00\x00 c\x00\x00",  # the Hikvision SDK port's answer to GET (lab)
        b"RTSP/1.0 200 OK\r\n\r\n",
        b"HTTP/1.1 OK 200\r\n\r\n",
        b"<html>hello</html>",
    ],
)
def test_not_http_is_a_parse_error(data: bytes) -> None:
    with pytest.raises(ParseError):
        hp.parse_response(data)


def test_title_entities_whitespace_and_charset() -> None:
    body = b"<html><head><TITLE lang=en>\n Caf&eacute; &amp;\t&#x41;xis\xc2\xa0Cam </TITLE>"
    assert hp.html_title(body) == "Café & Axis Cam"
    gbk = '<meta charset="gb2312"><title>网络摄像机</title>'.encode("gb2312")
    assert hp.html_title(gbk) == "网络摄像机"
    assert hp.html_title(b"<title></title>") is None
    assert hp.html_title(b"<p>no title</p>") is None
    assert len(hp.html_title(b"<title>" + b"x" * 10_000) or "") == 512


# ----------------------------------------------------------- vendor answers


def test_isapi_device_info_gives_canonical_identity() -> None:
    facts = hp.vendor_facts("/ISAPI/System/deviceInfo", reply(200, ISAPI_XML))
    assert facts["model"] == "DS-2DE4A425IW-DE"
    assert facts["serial"] == "DS-2DE4A425IW-DE20180101AAWRC52000000W"
    assert facts["firmware"] == "V5.5.71 build 180725"
    assert facts["name"] == "PTZ"
    assert facts["mac"] == "ff:ff:ff:ff:ff:ff"
    assert facts["xmlns"] == "http://www.hikvision.com/ver20/XMLSchema"
    assert facts["vendor_hint"] == "hikvision"


def test_activate_status_magicbox_axis_lapi_and_sunapi() -> None:
    assert hp.vendor_facts("/SDK/activateStatus", reply(200, ACTIVATE_XML))["activated"] == "true"
    dahua = hp.vendor_facts(
        "/cgi-bin/magicBox.cgi?action=getSystemInfo", reply(200, MAGICBOX_SYSINFO)
    )
    assert dahua == {
        "vendor_hint": "dahua",
        "model": "DHI-NVR4108HS-8P-4KS2",
        "serial": "ND0219110NNNNN",
    }
    dtype = hp.vendor_facts(
        "/cgi-bin/magicBox.cgi?action=getDeviceType", reply(200, b"type=IPC-HDW4631C-A\r\n")
    )
    assert dtype["model"] == "IPC-HDW4631C-A"
    axis = hp.vendor_facts("/axis-cgi/param.cgi?action=list&group=Brand", reply(200, AXIS_BRAND))
    assert (axis["manufacturer"], axis["model"]) == ("AXIS", "M1065-LW")
    assert axis["name"] == "AXIS M1065-LW Network Camera"
    lapi = hp.vendor_facts("/LAPI/V1.0/System/DeviceInfo", reply(200, LAPI_JSON))
    assert (lapi["model"], lapi["serial"]) == ("NVR302-16S2", "210235XAX93239000081")
    sunapi = hp.vendor_facts(
        "/stw-cgi/system.cgi?msubmenu=deviceinfo&action=view",
        reply(200, b"Model=XNV-6080\r\nSerialNumber=ZC7V70GJ400123\r\nFirmwareVersion=2.10.01\r\n"),
    )
    assert (sunapi["model"], sunapi["vendor_hint"]) == ("XNV-6080", "hanwha")


def test_a_catch_all_login_page_is_not_mistaken_for_a_vendor_answer() -> None:
    page = reply(200, b"<html><head><title>Login</title></head></html>")
    for path in (*hp.DEFAULT_PATHS, "/SDK/activateStatus", "/LAPI/V1.0/System/DeviceInfo"):
        assert hp.vendor_facts(path, page) == {}
    assert hp.vendor_facts("/ISAPI/System/deviceInfo", reply(401, ISAPI_XML)) == {}


def test_xml_bombs_are_refused_quietly() -> None:
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]>'
        b"<DeviceInfo><model>&b;</model></DeviceInfo>"
    )
    assert hp.vendor_facts("/ISAPI/System/deviceInfo", reply(200, bomb)) == {}
    deep = b"[" * 100_000
    assert hp.vendor_facts("/LAPI/V1.0/System/DeviceInfo", reply(200, deep)) == {}


def test_realm_facts() -> None:
    # Dahua: "Login to <serial>" (scottlamb/retina#62); Amcrest OEM (Motion-Project/motion#121)
    assert realm_facts("Login to 4K01FD2PAJ6E3FF")["serial"] == "4K01FD2PAJ6E3FF"
    assert realm_facts("Login to AMC0007RVY5EQ6DV29")["vendor_hint"] == "dahua"
    assert realm_facts("AXIS_ACCC8E494578")["mac"] == "ac:cc:8e:49:45:78"
    assert realm_facts("IP Camera(C6452)") == {}


def test_parse_challenges_splits_combined_values() -> None:
    got = parse_challenges(['Digest realm="a, b", nonce="x", Basic realm="c"', "Negotiate"])
    assert [(c.scheme, c.realm) for c in got] == [
        ("Digest", "a, b"),
        ("Basic", "c"),
        ("Negotiate", None),
    ]


def test_choose_paths_follows_hints_and_stays_small() -> None:
    assert hp.choose_paths([]) == list(hp.DEFAULT_PATHS)
    assert hp.choose_paths(["hikvision"]) == ["/ISAPI/System/deviceInfo", "/SDK/activateStatus"]
    assert hp.choose_paths(["xiongmai"]) == []  # the banner said it all; spend nothing
    every = hp.choose_paths(list(hp.VENDOR_PATHS))
    assert len(every) == hp.MAX_VENDOR_PATHS
    for paths in hp.VENDOR_PATHS.values():
        for path in paths:
            assert "RPC2" not in path and "basicdeviceinfo" not in path  # POST-only APIs


# ------------------------------------------------------------ property tests


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=2048))
def test_any_bytes_parse_or_parse_error(data: bytes) -> None:
    try:
        r = hp.parse_response(data)
    except ParseError:
        return
    obs = hp.observe(IP, 80, True, r, "/", T0)
    assert all(isinstance(v, str) and len(v) <= 512 for v in obs.attrs.values())


_header = st.tuples(
    st.sampled_from(["Server", "WWW-Authenticate", "Content-Length", "Transfer-Encoding", "X"]),
    st.text(max_size=60),
)


@settings(max_examples=400, deadline=None)
@given(
    st.integers(min_value=100, max_value=999),
    st.lists(_header, max_size=6),
    st.binary(max_size=512),
    st.sampled_from([b"\r\n", b"\n"]),
)
def test_http_shaped_bytes_never_raise(
    status: int, headers: list[tuple[str, str]], body: bytes, eol: bytes
) -> None:
    head = f"HTTP/1.1 {status} R".encode() + eol
    for name, value in headers:
        head += f"{name}: {value}".encode("utf-8", "replace") + eol
    r = hp.parse_response(head + eol + body)
    assert r.status == status
    for path in (*hp.DEFAULT_PATHS, "/SDK/activateStatus", "/", "/stw-cgi/system.cgi"):
        obs = hp.observe(IP, 80, False, r, path, T0)
        assert obs.attrs["status"] == str(status)


@settings(max_examples=300, deadline=None)
@given(
    st.binary(max_size=1024), st.sampled_from([p for ps in hp.VENDOR_PATHS.values() for p in ps])
)
def test_vendor_facts_never_raise(body: bytes, path: str) -> None:
    facts = hp.vendor_facts(path, hp.HttpReply("1.1", 200, "OK", hp.Headers(), body))
    assert all(isinstance(v, str) for v in facts.values())


# ------------------------------------------------------- loopback I/O tests


class Loopback:
    """Lab responders served on 127.0.0.1 ports from a background asyncio loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.responders: list[Responder] = []

    def serve(self, kind: str, **options: Any) -> int:
        cls = registry()[kind]
        cls.check(options)
        responder = cls("loopback", ServiceSpec(kind=kind, port=0, options=options))
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        sock.setblocking(False)
        responder.sockets.append(sock)
        responder.port = sock.getsockname()[1]
        asyncio.run_coroutine_threadsafe(responder.start(), self.loop).result(10)
        self.responders.append(responder)
        return responder.port

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(stop_all(self.responders), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def loopback() -> Iterator[Loopback]:
    lb = Loopback()
    try:
        yield lb
    finally:
        lb.close()


def loopback_ctx(timeout: float = 0.5, per_host: int = 40) -> ProbeContext:
    """A context whose scope is the loopback network only."""
    scope = Scope(interfaces=("lo",), cidrs=(IPv4Network("127.0.0.0/8"),))
    return ProbeContext(
        scope=scope,
        settings=ScanSettings(),
        interfaces=[],
        budget=Budget(10_000, per_host),
        timeout=timeout,
    )


HIK_WEB: dict[str, Any] = {
    "server": "App-webs/",
    "body": '<html><head><title></title><script>location.href="/doc/page/login.asp"</script>',
    "paths": {
        "/ISAPI/System/deviceInfo": {
            "status": 401,
            "headers": {"WWW-Authenticate": 'Digest realm="IP Camera(C6452)", nonce="1"'},
        },
        "/SDK/activateStatus": {"content_type": "application/xml", "body": ACTIVATE_XML.decode()},
    },
}


def test_probe_reads_root_then_hinted_vendor_paths(loopback: Loopback) -> None:
    port = loopback.serve("http", **HIK_WEB)
    ctx = loopback_ctx()
    [obs] = hp.probe(ctx, "127.0.0.1", port, tls=False)
    assert obs.attrs["server"] == "App-webs/"
    assert obs.attrs["paths"] == "/ISAPI/System/deviceInfo=401 /SDK/activateStatus=200"
    assert obs.attrs["activated"] == "true"
    assert obs.attrs["realm"] == "IP Camera(C6452)"
    assert ctx.budget.sent["127.0.0.1"] == 3 * (3 + hp.HTTP_REQUESTS)


def test_catch_all_pages_are_recorded_as_page(loopback: Loopback) -> None:
    port = loopback.serve("http", server="lighttpd/1.4.35", body="<title>Login</title>")
    [obs] = hp.probe(loopback_ctx(), "127.0.0.1", port, tls=False)
    assert obs.attrs["paths"].split() == [f"{p}=page" for p in hp.DEFAULT_PATHS]
    assert "vendor_hint" not in obs.attrs


def test_closed_port_gives_nothing() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    assert hp.probe(loopback_ctx(), "127.0.0.1", port, tls=False) == []


@pytest.mark.parametrize(
    ("mode", "error"),
    [
        ("slowloris", "deadline"),
        ("endless", "oversized"),
        ("huge", "oversized"),
        ("silent", "deadline"),
    ],
)
def test_hostile_servers_cannot_hold_a_probe(loopback: Loopback, mode: str, error: str) -> None:
    port = loopback.serve("http_hostile", mode=mode, server="Hostile/1.0", interval=0.2)
    ctx = loopback_ctx(timeout=0.5)
    t0 = time.monotonic()
    [obs] = hp.probe(ctx, "127.0.0.1", port, tls=False)
    took = time.monotonic() - t0
    assert took < 2 * ctx.timeout + 0.5, took
    assert obs.error == error
    assert obs.attrs["open"] == "true"
    assert "paths" not in obs.attrs  # a misbehaving server gets no further requests
    if mode == "silent":
        assert obs.attrs["silent"] == "true"
    if mode == "slowloris":
        assert obs.attrs["scheme"] == "http"  # slow HTTP is still HTTP
    if error == "deadline":  # no first line within the probe timeout: cut there
        assert took < ctx.timeout + 0.4, took


def test_non_http_answer_is_kept_as_raw_hex(loopback: Loopback) -> None:
    port = loopback.serve("http_hostile", mode="garbage", reply_hex="0000002063")
    [obs] = hp.probe(loopback_ctx(), "127.0.0.1", port, tls=False)
    assert obs.attrs["scheme"] == "tcp"
    assert obs.attrs["raw"] == "0000002063"
    assert obs.error == "not http"


def test_budget_runs_out_between_vendor_paths(loopback: Loopback) -> None:
    port = loopback.serve("http", **HIK_WEB)
    ctx = loopback_ctx(per_host=8)  # the root and one path
    [obs] = hp.probe(ctx, "127.0.0.1", port, tls=False)
    assert obs.attrs["budget_exhausted"] == "true"
    assert obs.attrs["paths"] == "/ISAPI/System/deviceInfo=401 /SDK/activateStatus=budget"
    assert ctx.budget.sent["127.0.0.1"] == 8


def test_spent_budget_raises_before_connecting(loopback: Loopback) -> None:
    port = loopback.serve("http", **HIK_WEB)
    ctx = loopback_ctx(per_host=3)
    with pytest.raises(BudgetExhausted):
        hp.probe(ctx, "127.0.0.1", port, tls=False)
    assert ctx.budget.sent["127.0.0.1"] == 0
