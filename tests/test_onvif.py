"""ONVIF device information: the real onvif-zeep client against the lab's device service.

Loopback tests run the lab's ``onvif`` responder on 127.0.0.1 in a thread (no
root needed); the lab tests run the whole discovery -> query path in network
namespaces and check the device side: which requests arrived, with which auth.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab import Lab, Scenario, load_scenario
from lab.responders.onvif import OnvifResponder, password_digest
from lab.scenario import ServiceSpec
from scanner.config import ScanSettings, Scope
from scanner.discovery import onvif
from scanner.discovery.base import (
    MAX_REPLY,
    TCP_CONNECT_PACKETS,
    TLS_HANDSHAKE_PACKETS,
    Budget,
    ProbeContext,
)
from scanner.model import Observation, Source
from tests.aio import stop_all
from tests.conftest import LabFactory
from tests.servers import ThreadServers

REPO_ROOT = Path(__file__).resolve().parents[1]
LOOP = "127.0.0.1"
PASSWORD = "Unique-Lab-Pw-5d1c"  # searched for in every log line and record
INFO = {
    "manufacturer": "HIKVISION",
    "model": "DS-2CD2143G0-I",
    "firmware": "V5.5.0 build 170725",
    "serial": "DS-2CD2143G0-I20170101AAWR123456789",
    "hardware_id": "88",
    "mac": "44:19:b6:00:00:02",
}


Device = Callable[..., tuple[OnvifResponder, int]]


def loopback_ctx(
    timeout: float = 0.5, credentials: dict[str, tuple[str, str]] | None = None
) -> ProbeContext:
    scope = Scope(interfaces=("lo",), cidrs=(IPv4Network("127.0.0.0/24"),))
    return ProbeContext(
        scope=scope,
        settings=ScanSettings(),
        interfaces=[],
        budget=Budget(1000, 40),
        timeout=timeout,
        credentials=credentials or {},
    )


@pytest.fixture
def device() -> Iterator[Device]:
    """``device(**options)`` -> (the lab's onvif responder on 127.0.0.1, its port)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    started: list[OnvifResponder] = []

    def make(**options: Any) -> tuple[OnvifResponder, int]:
        OnvifResponder.check(options)
        sock = socket.socket()
        sock.bind((LOOP, 0))
        sock.listen(16)
        sock.setblocking(False)
        port = sock.getsockname()[1]
        responder = OnvifResponder("cam", ServiceSpec("onvif", port, options))
        responder.sockets.append(sock)
        if responder.mac is None:
            responder.mac = INFO["mac"]
        asyncio.run_coroutine_threadsafe(responder.start(), loop).result(5)
        started.append(responder)
        return responder, port

    yield make

    asyncio.run_coroutine_threadsafe(stop_all(started), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


@pytest.fixture
def canned() -> Iterator[Callable[[dict[str, bytes]], int]]:
    """A raw HTTP server on 127.0.0.1 answering by SOAP operation name with fixed bytes."""
    servers = ThreadServers()

    def make(answers: dict[str, bytes]) -> int:
        def answer(conn: socket.socket) -> None:
            conn.settimeout(2)
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(4096)
            m = re.search(rb"content-length:\s*(\d+)", data, re.I)
            need = data.index(b"\r\n\r\n") + 4 + int(m.group(1) if m else 0)
            while len(data) < need:
                data += conn.recv(4096)
            op = re.search(rb"<(?:\w+:)?(Get\w+)", data.split(b"\r\n\r\n", 1)[1])
            name = op.group(1).decode() if op else ""
            conn.sendall(answers.get(name, answers.get("*", b"")))

        return servers.start(answer)

    yield make
    servers.close()


def http(status: str, body: bytes, extra: str = "") -> bytes:
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: application/soap+xml; charset=utf-8\r\n"
        f"{extra}Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body


def assert_clean(obs: Observation, *secrets: str) -> None:
    text = repr(obs)
    for secret in secrets:
        assert secret not in text


# --- pure helpers ------------------------------------------------------------------------


def test_device_url() -> None:
    assert onvif.device_url("198.51.100.20", 80, None) == (
        "http://198.51.100.20:80/onvif/device_service",
        False,
        False,
    )
    assert onvif.device_url("198.51.100.20", 80, "http://198.51.100.20/onvif/dev?x=1") == (
        "http://198.51.100.20:80/onvif/dev?x=1",
        False,
        True,
    )
    assert onvif.device_url("198.51.100.20", 443, "https://198.51.100.20/onvif/device_service")[
        1:
    ] == (True, True)
    # another host, another port, a bad URL: the standard path on the target itself
    for other in (
        "http://203.0.113.50/onvif/device_service",
        "http://198.51.100.20:8080/onvif/device_service",
        "http://[bad/",
        "ftp://198.51.100.20/x",
        "http://198.51.100.20/a b",
    ):
        url, _tls, used = onvif.device_url("198.51.100.20", 80, other)
        assert (url, used) == ("http://198.51.100.20:80/onvif/device_service", False), other


def test_credentials_for_picks_the_most_specific_cidr() -> None:
    creds = {
        "198.51.100.0/24": ("site", "a"),
        "198.51.100.16/28": ("block", "b"),
        "198.51.100.21/32": ("host", "c"),
        "not a cidr": ("x", "y"),
    }
    assert onvif.credentials_for(creds, "198.51.100.21") == ("host", "c")
    assert onvif.credentials_for(creds, "198.51.100.22") == ("block", "b")
    assert onvif.credentials_for(creds, "198.51.100.99") == ("site", "a")
    assert onvif.credentials_for(creds, "203.0.113.1") is None
    assert onvif.credentials_for({}, "198.51.100.21") is None


def test_wsdl_dir_is_found_and_can_be_overridden(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    found = onvif.wsdl_dir()
    assert (found / "devicemgmt.wsdl").is_file()
    (tmp_path / "devicemgmt.wsdl").write_text("<x/>")
    monkeypatch.setenv(onvif.WSDL_ENV, str(tmp_path))
    onvif.wsdl_dir.cache_clear()
    try:
        assert onvif.wsdl_dir() == tmp_path
    finally:
        monkeypatch.delenv(onvif.WSDL_ENV)
        onvif.wsdl_dir.cache_clear()
    assert onvif.wsdl_dir() == found


def test_importing_the_client_leaves_logging_alone() -> None:
    """onvif/client.py calls logging.basicConfig(INFO) at import; we must not inherit it."""
    code = (
        "import logging; from scanner.discovery import onvif; onvif._library(); "
        "r = logging.getLogger(); print(len(r.handlers), r.level)"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, timeout=60
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["0", str(logging.WARNING)]


def test_parse_http_variants() -> None:
    assert onvif.parse_http(http("200 OK", b"<a/>")) == (
        200,
        {
            "Content-Type": "application/soap+xml; charset=utf-8",
            "Content-Length": "4",
            "Connection": "close",
        },
        b"<a/>",
    )
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n<a/\r\n1\r\n>\r\n0\r\n\r\n"
    )
    assert onvif.parse_http(chunked)[2] == b"<a/>"
    assert onvif._complete(chunked)
    cont = b"HTTP/1.1 100 Continue\r\n\r\n" + http("400 Bad Request", b"x")
    assert onvif.parse_http(cont)[0] == 400 and onvif._complete(cont)
    with pytest.raises(onvif.ReplyError, match="truncated"):
        onvif.parse_http(http("200 OK", b"<abc/>")[:-2])
    with pytest.raises(onvif.ReplyError, match="not an HTTP reply"):
        onvif.parse_http(b"SSH-2.0-dropbear\r\n")
    assert not onvif._complete(http("200 OK", b"<abc/>")[:-1])
    assert not onvif._complete(b"HTTP/1.1 200 OK\r\n\r\nno length: read to close")


def test_check_xml_refuses_bombs_and_junk() -> None:
    from lab.responders.onvif import bomb_body

    onvif.check_xml(b"<a><b/></a>")
    with pytest.raises(onvif.ReplyError, match="forbidden XML construct"):
        onvif.check_xml(bomb_body())
    with pytest.raises(onvif.ReplyError, match="malformed"):
        onvif.check_xml(b"<a><b></a>")


def test_transport_never_leaves_its_host() -> None:
    ctx = loopback_ctx()
    t = onvif.ScopedTransport(ctx, LOOP, 80, tls=False, deadline=time.monotonic() + 5)
    with pytest.raises(onvif.ReplyError, match="another host"):
        t.post("http://127.0.0.2:80/onvif/device_service", b"<x/>", {})
    with pytest.raises(onvif.ReplyError, match="another host"):
        t.post("http://127.0.0.1:8080/onvif/device_service", b"<x/>", {})
    with pytest.raises(onvif.ReplyError, match="remote schema"):
        t.load("http://www.onvif.org/ver10/schema/onvif.xsd")
    with pytest.raises(onvif.ReplyError, match="GET"):
        t.get("http://127.0.0.1/", {}, {})
    assert t.requests == 0 and ctx.budget.sent[LOOP] == 0


def test_a_request_over_tls_is_charged_its_handshake_too() -> None:
    ctx = loopback_ctx(timeout=0.2)
    with socket.create_server((LOOP, 0)) as silent:  # connects, then never says a word
        port = silent.getsockname()[1]
        charged = []
        for tls in (False, True):
            t = onvif.ScopedTransport(ctx, LOOP, port, tls=tls, deadline=time.monotonic() + 2)
            before = ctx.budget.sent[LOOP]
            with pytest.raises(onvif.ReplyError, match="timed out"):
                t.exchange(onvif.DEVICE_PATH, b"<x/>", {})
            charged.append(ctx.budget.sent[LOOP] - before)
    # SYN, ACK, FIN and the request; over TLS the ClientHello and key exchange too
    assert charged == [TCP_CONNECT_PACKETS + 1, TCP_CONNECT_PACKETS + 1 + TLS_HANDSHAKE_PACKETS]


def test_the_responders_digest_is_the_ws_security_one() -> None:
    # WS-Security UsernameToken Profile 1.0, §3.1 example values: zeep computes the same
    import base64
    import hashlib

    nonce, created = b"0123456789abcdef", "2026-11-22T03:00:00+00:00"
    want = base64.b64encode(hashlib.sha1(nonce + created.encode() + b"pw").digest()).decode()
    assert password_digest(nonce, created, "pw") == want


# --- the real client against the responder on loopback ------------------------------------


def test_open_device(device: Device) -> None:
    responder, port = device(**{k: v for k, v in INFO.items() if k != "mac"})
    obs = onvif.query(loopback_ctx(), LOOP, port, None, None)
    assert obs.source is Source.ONVIF and obs.error is None, obs
    a = obs.attrs
    assert (a["manufacturer"], a["model"], a["firmware"]) == (
        "HIKVISION",
        "DS-2CD2143G0-I",
        "V5.5.0 build 170725",
    )
    assert (a["serial"], a["hardware_id"]) == (INFO["serial"], "88")
    assert obs.mac == a["mac"] == "44:19:b6:00:00:02"
    assert a["auth"] == "none" and abs(int(a["clock_skew_s"])) <= 1
    assert a["xaddr"] == f"http://127.0.0.1:{port}/onvif/device_service"
    assert responder.attempts == {"valid": 0, "invalid": 0}


def test_auth_required_without_credentials(device: Device, tmp_path: Path) -> None:
    log = tmp_path / "requests.jsonl"
    _, port = device(**INFO, username="admin", password=PASSWORD, log_path=str(log))
    obs = onvif.query(loopback_ctx(), LOOP, port, None, None)
    assert obs.error is None and obs.attrs["auth"] == "required"
    assert "manufacturer" not in obs.attrs and obs.mac is None
    ops = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(o["op"], o["auth"]) for o in ops] == [
        ("GetSystemDateAndTime", "none"),
        ("GetDeviceInformation", "none"),
    ]  # and nothing after the refusal


def test_correct_credentials_with_a_skewed_clock(
    device: Device,
) -> None:
    """The device clock is 2 h ahead: the token's Created must follow it (adjust_time)."""
    responder, port = device(**INFO, username="admin", password=PASSWORD, clock_offset_s=7200)
    obs = onvif.query(loopback_ctx(), LOOP, port, None, ("admin", PASSWORD))
    assert obs.error is None, obs
    assert obs.attrs["auth"] == "ok" and obs.attrs["clock_skew_s"] in ("7199", "7200", "7201")
    assert obs.attrs["model"] == "DS-2CD2143G0-I" and obs.mac == "44:19:b6:00:00:02"
    assert responder.attempts == {"valid": 2, "invalid": 0}  # device info + interfaces
    assert_clean(obs, PASSWORD)


def test_wrong_credentials_are_tried_exactly_once(
    device: Device,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = tmp_path / "requests.jsonl"
    responder, port = device(**INFO, username="admin", password="right-one", log_path=str(log))
    caplog.set_level(logging.DEBUG)
    ctx = loopback_ctx(credentials={"127.0.0.0/24": ("admin", PASSWORD)})
    [obs] = onvif.probe(ctx, [(LOOP, port, None)])
    assert obs.error is None and obs.attrs["auth"] == "failed"
    assert responder.attempts == {"valid": 0, "invalid": 1}
    ops = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(o["op"], o["auth"]) for o in ops] == [
        ("GetSystemDateAndTime", "none"),  # PRE_AUTH: sent without credentials
        ("GetDeviceInformation", "invalid"),
    ]
    assert_clean(obs, PASSWORD)
    assert PASSWORD not in caplog.text
    assert "refused (failed)" in caplog.text


def test_http_401_refusal(device: Device) -> None:
    _, port = device(**INFO, username="admin", password="x1", fault_status=401)
    obs = onvif.query(loopback_ctx(), LOOP, port, None, ("admin", "nope"))
    assert obs.attrs["auth"] == "failed" and obs.error is None


@pytest.mark.parametrize(
    ("mode", "error"),
    [
        ("xml-bomb", "GetSystemDateAndTime: forbidden XML construct (DTDForbidden)"),
        ("malformed", "GetSystemDateAndTime: malformed XML"),
        ("oversized", f"GetSystemDateAndTime: reply larger than {MAX_REPLY} bytes"),
        ("xxe", "GetSystemDateAndTime: forbidden XML construct (DTDForbidden)"),
    ],
)
def test_hostile_replies_become_error_observations(device: Device, mode: str, error: str) -> None:
    _, port = device(mode=mode)
    obs = onvif.query(loopback_ctx(), LOOP, port, None, ("admin", PASSWORD))
    assert obs.error == error
    assert obs.attrs == {
        "port": str(port),
        "xaddr": f"http://127.0.0.1:{port}/onvif/device_service",
    }
    assert_clean(obs, PASSWORD)


def test_a_tarpit_gets_one_probe_timeout_for_its_first_line(device: Device) -> None:
    _, slow = device(mode="slow")  # one byte a second from the status line on
    ctx = loopback_ctx(timeout=1.0)  # the request limit alone would allow 2.5 s
    t0 = time.monotonic()
    obs = onvif.query(ctx, LOOP, slow, None, None)
    assert time.monotonic() - t0 < 2.0
    assert obs.error == "GetSystemDateAndTime: timed out waiting for the reply"


def test_a_tarpit_does_not_stall_the_probe(
    device: Device,
) -> None:
    _, slow = device(mode="slow")
    _, fine = device(**INFO)
    ctx = loopback_ctx(timeout=5.0)  # the per-request limit alone would allow 12.5 s
    t0 = time.monotonic()
    found = {
        int(o.attrs["port"]): o
        for o in onvif.probe(ctx, [(LOOP, slow, None), (LOOP, fine, None)], deadline_s=2.0)
    }
    elapsed = time.monotonic() - t0
    assert elapsed < 3.5, elapsed
    assert "timed out" in (found[slow].error or "")
    assert found[fine].error is None and found[fine].attrs["manufacturer"] == "HIKVISION"


def test_nothing_listening_and_out_of_scope(
    device: Device,
) -> None:
    s = socket.socket()
    s.bind((LOOP, 0))
    port = s.getsockname()[1]
    s.close()
    obs = onvif.query(loopback_ctx(), LOOP, port, None, None)
    assert obs.error == "GetSystemDateAndTime: connection refused"
    assert onvif.probe(loopback_ctx(), [("203.0.113.50", 80, None)]) == []
    far = onvif.query(loopback_ctx(), "203.0.113.50", 80, None, None)
    assert far.error == "outside the scope: not queried"


def test_fault_without_a_ter_namespace_is_still_an_auth_refusal(
    canned: Callable[[dict[str, bytes]], int],
) -> None:
    """Some firmwares use ter: without declaring it (python-zeep#1205): zeep cannot parse it."""
    fault = (
        b'<?xml version="1.0" encoding="UTF-8"?><SOAP-ENV:Envelope '
        b'xmlns:SOAP-ENV="http://www.w3.org/2003/05/soap-envelope"><SOAP-ENV:Body>'
        b"<SOAP-ENV:Fault><SOAP-ENV:Code><SOAP-ENV:Value>SOAP-ENV:Sender</SOAP-ENV:Value>"
        b"<SOAP-ENV:Subcode><SOAP-ENV:Value>ter:NotAuthorized</SOAP-ENV:Value></SOAP-ENV:Subcode>"
        b'</SOAP-ENV:Code><SOAP-ENV:Reason><SOAP-ENV:Text xml:lang="en">Sender not Authorized'
        b"</SOAP-ENV:Text></SOAP-ENV:Reason></SOAP-ENV:Fault></SOAP-ENV:Body></SOAP-ENV:Envelope>"
    )
    port = canned({"*": http("400 Bad Request", fault)})
    obs = onvif.query(loopback_ctx(), LOOP, port, None, None)
    assert obs.error is None
    assert obs.attrs["auth"] == "required"
    assert obs.attrs["time_error"] == "not authorized"  # it even wanted auth for the clock


def test_bare_401_and_local_time_only(canned: Callable[[dict[str, bytes]], int]) -> None:
    local_only = (
        b'<?xml version="1.0"?><s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" '
        b'xmlns:tds="http://www.onvif.org/ver10/device/wsdl" '
        b'xmlns:tt="http://www.onvif.org/ver10/schema"><s:Body><tds:GetSystemDateAndTimeResponse>'
        b"<tds:SystemDateAndTime><tt:DateTimeType>NTP</tt:DateTimeType>"
        b"<tt:DaylightSavings>false</tt:DaylightSavings><tt:LocalDateTime><tt:Time><tt:Hour>1"
        b"</tt:Hour><tt:Minute>2</tt:Minute><tt:Second>3</tt:Second></tt:Time><tt:Date>"
        b"<tt:Year>2026</tt:Year><tt:Month>11</tt:Month><tt:Day>22</tt:Day></tt:Date>"
        b"</tt:LocalDateTime></tds:SystemDateAndTime></tds:GetSystemDateAndTimeResponse>"
        b"</s:Body></s:Envelope>"
    )
    port = canned(
        {
            "GetSystemDateAndTime": http("200 OK", local_only),
            "*": http("401 Unauthorized", b"", 'WWW-Authenticate: Digest realm="x"\r\n'),
        }
    )
    obs = onvif.query(loopback_ctx(), LOOP, port, None, ("admin", PASSWORD))
    assert obs.error is None
    assert obs.attrs["auth"] == "failed"
    assert obs.attrs["time_error"] == "no UTCDateTime in the reply"
    assert "clock_skew_s" not in obs.attrs


def test_stock_onvifcamera_works_against_the_responder(
    device: Device,
) -> None:
    """ONVIFCamera() calls GetSystemDateAndTime and GetCapabilities on construction."""
    import zeep.transports

    onvif._library()  # the import guard: ONVIFCamera comes from the same package
    from onvif import ONVIFCamera

    _, port = device(**INFO, username="admin", password=PASSWORD, clock_offset_s=900)
    cam = ONVIFCamera(
        LOOP,
        port,
        "admin",
        PASSWORD,
        wsdl_dir=str(onvif.wsdl_dir()),
        no_cache=True,
        adjust_time=True,
        transport=zeep.transports.Transport(timeout=5, operation_timeout=5),
    )
    info = cam.devicemgmt.GetDeviceInformation()
    assert (info.Manufacturer, info.SerialNumber) == ("HIKVISION", INFO["serial"])
    assert "http://www.onvif.org/ver10/media/wsdl" in cam.xaddrs


# --- the lab ---------------------------------------------------------------------------------

PIPELINE = r"""
import json, logging, sys, time
from urllib.parse import urlsplit
logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
from scanner.config import Scope, ScanSettings, parse_cidr
from scanner.discovery.arp import interface_info
from scanner.discovery.base import Budget, ProbeContext
from scanner.discovery import onvif, wsd
cfg = json.loads(sys.argv[1])
scope = Scope(interfaces=("lab0",), cidrs=(parse_cidr(cfg["cidr"]),))
ctx = ProbeContext(scope=scope, settings=ScanSettings(), interfaces=[interface_info("lab0")],
                   budget=Budget(1000, 40), timeout=1.0,
                   credentials={k: tuple(v) for k, v in cfg["credentials"].items()})
found = wsd.discover(ctx, [])
# what the scan does with WS-Discovery results: every in-scope XAddr of an ONVIF device
targets = []
for o in found:
    if o.attrs.get("onvif") == "true":
        for x in o.attrs.get("xaddrs_in_scope", "").split():
            u = urlsplit(x)
            targets.append((u.hostname, u.port or 80, x))
t0 = time.monotonic()
obs = onvif.probe(ctx, targets, deadline_s=cfg["deadline"])
elapsed = time.monotonic() - t0
print(json.dumps({"elapsed": elapsed, "targets": targets,
                  "wsd": [{"ip": o.ip, "attrs": dict(o.attrs)} for o in found],
                  "onvif": [{"ip": o.ip, "mac": o.mac, "attrs": dict(o.attrs), "error": o.error}
                            for o in obs]}))
"""

RIGHT = "Lab-Only-9f3e"  # cam-auth's password in lab/scenarios/onvif.toml
WRONG = "Not-The-Password-42"  # what the "credentials file" gives for cam-wrongpw


def onvif_lab(lab_factory: LabFactory, tmp_path: Path) -> tuple[Lab, dict[str, Path]]:
    """The onvif scenario with request logs on the devices the tests watch."""
    data = load_scenario("onvif").to_dict()
    logs: dict[str, Path] = {}
    for dev in data["device"]:
        for svc in dev["service"]:
            if svc["kind"] == "onvif":
                logs[dev["name"]] = tmp_path / f"{dev['name']}.jsonl"
                svc["log_path"] = str(logs[dev["name"]])
    return lab_factory(Scenario.from_dict(data, name="onvif")), logs


def run_pipeline(
    lab: Lab, cidr: str, credentials: dict[str, list[str]], deadline: float = 3.0
) -> tuple[dict[str, Any], str]:
    cfg = {"cidr": cidr, "credentials": credentials, "deadline": deadline}
    r = lab.run_in_scanner(
        [sys.executable, "-c", PIPELINE, json.dumps(cfg)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO_ROOT,
    )
    assert r.returncode == 0, r.stderr
    result: dict[str, Any] = json.loads(r.stdout)
    return result, r.stderr


def requests_seen(log: Path) -> list[tuple[str, str]]:
    if not log.exists():
        return []
    return [(o["op"], o["auth"]) for o in map(json.loads, log.read_text().splitlines())]


def passive_opens(lab: Lab, device: str) -> int:
    """TCP connections the device's kernel accepted so far (its namespace's /proc/net/snmp)."""
    r = lab.run_in_device(
        device, ["cat", "/proc/net/snmp"], capture_output=True, text=True, timeout=10
    )
    rows = [line.split() for line in r.stdout.splitlines() if line.startswith("Tcp:")]
    return int(rows[1][rows[0].index("PassiveOpens")])


def test_lab_discovery_then_device_information(lab_factory: LabFactory, tmp_path: Path) -> None:
    lab, logs = onvif_lab(lab_factory, tmp_path)
    decoy_before = passive_opens(lab, "decoy")
    creds = {"198.51.100.21/32": ["admin", RIGHT], "198.51.100.22/32": ["admin", WRONG]}
    result, stderr = run_pipeline(lab, "198.51.100.0/25", creds, deadline=3.0)

    # only in-scope XAddrs of ONVIF devices became targets: the far camera named none,
    # the printer is no ONVIF device
    assert [t[0] for t in result["targets"]] == [
        "198.51.100.20",
        "198.51.100.21",
        "198.51.100.22",
        "198.51.100.24",
    ]  # .25's ProbeMatches was a bomb: no XAddr to follow
    far = next(o for o in result["wsd"] if o["ip"] == "198.51.100.23")["attrs"]
    assert far["xaddrs_out_of_scope"].split() == [
        "http://203.0.113.50/onvif/device_service",
        "http://198.51.100.200:8080/onvif/device_service",
    ]
    assert "xaddrs_in_scope" not in far
    # recorded, never followed: the decoy at .200 saw no request and no connection
    assert requests_seen(logs["decoy"]) == []
    assert passive_opens(lab, "decoy") == decoy_before

    found = {o["ip"]: o for o in result["onvif"]}
    hik = found["198.51.100.20"]
    assert hik["error"] is None and hik["mac"] == "0a:0b:0c:00:00:20"
    assert (hik["attrs"]["manufacturer"], hik["attrs"]["model"]) == ("IPCamera", "NC-4MP-D")
    assert hik["attrs"]["auth"] == "none"

    dahua = found["198.51.100.21"]
    assert dahua["error"] is None and dahua["attrs"]["auth"] == "ok"
    assert dahua["attrs"]["clock_skew_s"] in ("3599", "3600", "3601")
    assert (dahua["attrs"]["manufacturer"], dahua["attrs"]["serial"]) == (
        "Dahua",
        "6J0ABCD123456789",
    )
    assert dahua["mac"] == "e0:50:8b:00:00:21"

    axis = found["198.51.100.22"]
    assert axis["error"] is None and axis["attrs"]["auth"] == "failed"
    assert "manufacturer" not in axis["attrs"]
    assert requests_seen(logs["cam-wrongpw"]) == [
        ("GetSystemDateAndTime", "none"),
        ("GetDeviceInformation", "invalid"),
    ]  # exactly one authentication attempt, then nothing

    tarpit = found["198.51.100.24"]
    assert tarpit["error"] is not None and "timed out" in tarpit["error"]
    assert result["elapsed"] < 3.0 + 1.5  # the tar-pit cost its deadline, no more

    for secret in (RIGHT, WRONG):
        assert secret not in stderr  # DEBUG logging of the whole run, zeep's included
        assert secret not in json.dumps(result)


def test_lab_auth_required_and_xml_bomb(lab_factory: LabFactory, tmp_path: Path) -> None:
    lab, logs = onvif_lab(lab_factory, tmp_path)
    result, _ = run_pipeline(lab, "198.51.100.0/25", {})
    found = {o["ip"]: o for o in result["onvif"]}
    assert found["198.51.100.21"]["attrs"]["auth"] == "required"
    assert found["198.51.100.22"]["attrs"]["auth"] == "required"
    assert [a for _op, a in requests_seen(logs["cam-auth"])] == ["none", "none"]
    # the bomb camera's ProbeMatches was unreadable; ask its device service directly
    snippet = (
        "import json\n"
        "from scanner.config import Scope, ScanSettings, parse_cidr\n"
        "from scanner.discovery.arp import interface_info\n"
        "from scanner.discovery.base import Budget, ProbeContext\n"
        "from scanner.discovery import onvif\n"
        "scope = Scope(interfaces=('lab0',), cidrs=(parse_cidr('198.51.100.0/24'),))\n"
        "ctx = ProbeContext(scope=scope, settings=ScanSettings(), "
        "interfaces=[interface_info('lab0')], budget=Budget(1000, 40), timeout=2.0)\n"
        "[o] = onvif.probe(ctx, [('198.51.100.25', 80, None)])\n"
        "print(json.dumps({'error': o.error, 'attrs': dict(o.attrs)}))\n"
    )
    r = lab.run_in_scanner(
        [sys.executable, "-c", snippet], capture_output=True, text=True, timeout=60, cwd=REPO_ROOT
    )
    assert r.returncode == 0, r.stderr
    bomb = json.loads(r.stdout)
    assert bomb["error"] == "GetSystemDateAndTime: forbidden XML construct (DTDForbidden)"
    assert requests_seen(logs["bomb-cam"]) == [("GetSystemDateAndTime", "none")]


# --- fuzz: the HTTP and XML gates in front of zeep -----------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_fuzz_http_and_xml_gates(data: bytes) -> None:
    """Any bytes: a parsed response or ReplyError, never another exception."""
    with contextlib.suppress(onvif.ReplyError):
        status, headers, _body = onvif.parse_http(data)
        assert isinstance(status, int) and isinstance(headers, dict)
    with contextlib.suppress(onvif.ReplyError):
        onvif.check_xml(data)
    onvif._complete(data)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=512), st.sampled_from([b"200 OK", b"400 Bad Request", b"x"]))
def test_fuzz_http_bodies(body: bytes, status: bytes) -> None:
    data = b"HTTP/1.1 " + status + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    with contextlib.suppress(onvif.ReplyError):
        assert onvif.parse_http(data)[2] == body
