"""probe_host / probe_hosts: port plan, politeness (two connections, budget), and the lab.

Loopback tests serve lab responders on 127.0.0.1; the lab test runs
probe_hosts inside the scanner namespace against lab/scenarios/banners.toml.
"""

from __future__ import annotations

import dataclasses
import json
import socket
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from scanner.config import ScanSettings
from scanner.errors import ScopeError
from scanner.model import Source
from scanner.probe import banners
from tests.conftest import LabFactory
from tests.test_probe_http import HIK_WEB, Loopback, loopback_ctx

LOCAL = "127.0.0.1"


@pytest.fixture
def loopback() -> Iterator[Loopback]:
    lb = Loopback()
    try:
        yield lb
    finally:
        lb.close()


def test_port_plan() -> None:
    assert banners.plan(80) == "http"
    assert banners.plan(8000) == "http"  # Hikvision SDK port: try HTTP, keep what comes
    assert banners.plan(443) == banners.plan(8443) == "https"
    assert banners.plan(554) == banners.plan(8554) == banners.plan(10554) == "rtsp"
    assert banners.plan(37777) == banners.plan(34567) == "tcp"
    assert banners.plan(12345) == "http"


def test_camera_ports_are_modest_unique_and_most_telling_first() -> None:
    ports = banners.CAMERA_PORTS
    assert len(ports) == len(set(ports)) <= 16
    assert ports[:3] == (80, 554, 443)
    for required in (80, 443, 554, 8000, 8080, 8443, 8554, 37777, 34567):
        assert required in ports


def _only(monkeypatch: pytest.MonkeyPatch, **kinds: set[int]) -> None:
    """Make the loopback's ephemeral ports count as RTSP/HTTPS/connect-only ports."""
    if "rtsp" in kinds:
        monkeypatch.setattr(banners, "RTSP_PORTS", frozenset(kinds["rtsp"]))
    if "https" in kinds:
        monkeypatch.setattr(banners, "HTTPS_PORTS", frozenset(kinds["https"]))
    if "tcp" in kinds:
        monkeypatch.setattr(banners, "CONNECT_ONLY", dict.fromkeys(kinds["tcp"], "test-sdk"))


def test_probe_host_speaks_each_ports_protocol(
    loopback: Loopback, monkeypatch: pytest.MonkeyPatch
) -> None:
    web = loopback.serve("http", **HIK_WEB)
    stream = loopback.serve("rtsp", realm="IP Camera(C6452)", auth="both")
    secure = loopback.serve("https", subject_o="HIKVISION", subject_cn="www.hikvision.com")
    sdk = loopback.serve("http_hostile", mode="silent")
    _only(monkeypatch, rtsp={stream}, https={secure}, tcp={sdk})
    ctx = loopback_ctx()
    found = banners.probe_host(ctx, LOCAL, [web, stream, secure, sdk])
    by = {(str(o.source), o.attrs.get("port")): o for o in found}
    assert set(by) == {
        ("http", str(web)),
        ("rtsp", str(stream)),
        ("http", str(secure)),
        ("tls", str(secure)),
        ("http", str(sdk)),
    }
    assert by["rtsp", str(stream)].attrs["realm"] == "IP Camera(C6452)"
    assert by["tls", str(secure)].attrs["subject_o"] == "HIKVISION"
    assert by["http", str(sdk)].attrs == {
        "port": str(sdk),
        "scheme": "tcp",
        "open": "true",
        "service": "test-sdk",
        "silent": "true",
    }
    with_paths = [o for o in found if "paths" in o.attrs]
    assert len(with_paths) == 1  # vendor paths are asked on one web port per host
    assert with_paths[0].attrs["paths"] == "/ISAPI/System/deviceInfo=401 /SDK/activateStatus=200"
    assert ctx.budget.sent[LOCAL] == 4 + 5 + 6 + 3 + 2 * 4


class CountingServer:
    """HTTP listeners on many ports that answer slowly and count open connections."""

    def __init__(self, ports: int, delay: float) -> None:
        self.delay = delay
        self.spans: list[tuple[float, float]] = []
        self.total = 0  # connections accepted
        self.lock = threading.Lock()
        self.listeners = []
        for _ in range(ports):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((LOCAL, 0))
            sock.listen(8)
            sock.settimeout(0.2)
            self.listeners.append(sock)
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._accept, args=(s,)) for s in self.listeners]
        for t in self.threads:
            t.start()

    @property
    def ports(self) -> list[int]:
        return [s.getsockname()[1] for s in self.listeners]

    @property
    def peak(self) -> int:
        """Most connections open at once.

        Each span runs from when the server starts serving (after the client
        connected) to just before it answers (before the client can close):
        inside the client's connection, so overlaps never exceed the client's
        real concurrency, whatever the threads' scheduling.
        """
        events = sorted([(a, 1) for a, _ in self.spans] + [(b, -1) for _, b in self.spans])
        now = peak = 0
        for _, step in events:
            now += step
            peak = max(peak, now)
        return peak

    def _accept(self, listener: socket.socket) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        start = time.monotonic()
        with self.lock:
            self.total += 1
        try:
            conn.settimeout(2)
            conn.recv(4096)
            time.sleep(self.delay)
            end = time.monotonic()
            with self.lock:
                self.spans.append((start, end))
            conn.sendall(b"HTTP/1.1 200 OK\r\nServer: uc-httpd 1.0.0\r\nContent-Length: 0\r\n\r\n")
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(5)
        for s in self.listeners:
            s.close()


def test_never_more_than_two_connections_to_a_host() -> None:
    server = CountingServer(ports=6, delay=0.15)
    try:
        found = banners.probe_host(loopback_ctx(), LOCAL, server.ports)
    finally:
        server.close()
    assert len([o for o in found if o.source is Source.HTTP]) == 6
    assert server.total == 6  # uc-httpd says Xiongmai: no vendor path is worth a GET
    assert server.peak == 2


def test_budget_stops_the_host_and_says_what_was_skipped() -> None:
    server = CountingServer(ports=5, delay=0.0)
    ports = server.ports
    try:
        ctx = loopback_ctx(per_host=10)  # two HTTP GETs of 4 packets; the third is refused
        found = banners.probe_host(ctx, LOCAL, ports)
    finally:
        server.close()
    assert ctx.budget.sent[LOCAL] <= 10
    assert server.total == 2
    last = found[-1]
    assert last.error == "budget_exhausted"
    assert last.attrs["budget_exhausted"] == "true"
    assert sorted(int(p) for p in last.attrs["skipped_ports"].split()) == sorted(ports[2:])


def test_a_tar_pit_costs_one_probe_timeout_not_one_per_port(loopback: Loopback) -> None:
    pits = [loopback.serve("http_hostile", mode="silent") for _ in range(5)]
    ctx = loopback_ctx(timeout=0.5)
    t0 = time.monotonic()
    found = banners.probe_host(ctx, LOCAL, pits)
    took = time.monotonic() - t0
    # no first line within ctx.timeout: the two exchanges in flight give up, and no
    # third connection is opened (five ports at 2 x timeout each would be 2.5 s)
    assert took < 3 * ctx.timeout, took
    assert [o.error for o in found if o.attrs.get("port")] == ["deadline", "deadline"]
    last = found[-1]
    assert last.error == "slow_host" and last.attrs["slow_host"] == "true"
    assert sorted(int(p) for p in last.attrs["skipped_ports"].split()) == sorted(pits[2:])


def test_a_host_gets_its_time_and_no_more() -> None:
    # each answer just inside its deadline: the host's own deadline stops the round
    server = CountingServer(ports=12, delay=0.45)
    try:
        ctx = loopback_ctx(timeout=0.5)  # host deadline 2 x (2 x 0.5) = 2 s
        t0 = time.monotonic()
        found = banners.probe_host(ctx, LOCAL, server.ports)
        took = time.monotonic() - t0
    finally:
        server.close()
    limit = banners.HOST_DEADLINE_FACTOR * banners.DEADLINE_FACTOR * ctx.timeout
    assert took < limit + banners.DEADLINE_FACTOR * ctx.timeout, took
    assert server.total < 12
    assert found[-1].error == "slow_host"


def test_scope_is_enforced() -> None:
    ctx = loopback_ctx()
    with pytest.raises(ScopeError):
        banners.probe_host(ctx, "198.51.100.7", [80])
    assert banners.probe_hosts(ctx, ["198.51.100.7", "not an ip"]) == []
    assert sum(ctx.budget.sent.values()) == 0


def test_protocols_setting_is_respected(
    loopback: Loopback, monkeypatch: pytest.MonkeyPatch
) -> None:
    if "protocols" not in {f.name for f in dataclasses.fields(ScanSettings)}:
        pytest.skip("this ScanSettings has no protocols selection")
    stream = loopback.serve("rtsp", server="Rtsp Server/3.0")
    web = loopback.serve("http", server="uc-httpd 1.0.0")
    _only(monkeypatch, rtsp={stream})
    ctx = loopback_ctx()
    settings = dataclasses.replace(ScanSettings(), protocols=("arp", "http"))
    ctx = dataclasses.replace(ctx, settings=settings)
    found = banners.probe_host(ctx, LOCAL, [stream, web])
    assert [(str(o.source), o.attrs["port"]) for o in found] == [("http", str(web))]

    secure = loopback.serve("https", subject_o="HIKVISION")
    _only(monkeypatch, rtsp={stream}, https={secure})
    tls_only = dataclasses.replace(ctx, settings=dataclasses.replace(settings, protocols=("tls",)))
    found = banners.probe_host(tls_only, LOCAL, [stream, web, secure])
    assert [(str(o.source), o.attrs["port"]) for o in found] == [("tls", str(secure))]


def test_probe_hosts_survives_a_bug_in_one_host(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(ctx: Any, ip: str, ports: Any = ()) -> list[Any]:
        raise RuntimeError("bug")

    monkeypatch.setattr(banners, "probe_host", boom)
    [obs] = banners.probe_hosts(loopback_ctx(), [LOCAL])
    assert obs.error == "probe failed"


# ---------------------------------------------------------------------- lab

SNIPPET = """
import json, sys, time
from scanner.config import Scope, ScanSettings, parse_cidr
from scanner.discovery.arp import interface_info
from scanner.discovery.base import Budget, ProbeContext
from scanner.probe.banners import probe_hosts
scope = Scope(interfaces=("lab0",), cidrs=(parse_cidr("198.51.100.0/24"),))
ctx = ProbeContext(scope=scope, settings=ScanSettings(), interfaces=[interface_info("lab0")],
                   budget=Budget(1000, 40), timeout=2.0)
t0 = time.monotonic()
found = probe_hosts(ctx, sys.argv[1:])
print(json.dumps({
    "seconds": time.monotonic() - t0,
    "sent": dict(ctx.budget.sent),
    "obs": [{"source": str(o.source), "ip": o.ip, "attrs": dict(o.attrs), "error": o.error}
            for o in found],
}))
"""

HOSTS = {
    "hik": "198.51.100.20",
    "dahua": "198.51.100.21",
    "axis": "198.51.100.22",
    "anon_nvr": "198.51.100.23",
    "anon_enc": "198.51.100.24",
    "slow": "198.51.100.30",
    "endless": "198.51.100.31",
}


def _find(obs: list[dict[str, Any]], ip: str, source: str, port: int) -> dict[str, Any]:
    for o in obs:
        if o["ip"] == ip and o["source"] == source and o["attrs"].get("port") == str(port):
            return o
    raise AssertionError(f"no {source} observation of {ip}:{port} in {obs}")


def test_banners_in_the_lab(lab_factory: LabFactory) -> None:
    lab = lab_factory("banners")
    r = lab.run_in_scanner(
        [sys.executable, "-c", SNIPPET, *HOSTS.values()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    obs = doc["obs"]

    # hostile devices finish within their deadlines (two connections of 2 x 2 s at once)
    assert doc["seconds"] < 12, doc["seconds"]
    assert _find(obs, HOSTS["slow"], "http", 80)["error"] == "deadline"
    assert _find(obs, HOSTS["slow"], "rtsp", 554)["error"] == "deadline"
    assert _find(obs, HOSTS["endless"], "http", 80)["error"] == "oversized"
    assert _find(obs, HOSTS["endless"], "rtsp", 554)["error"] == "oversized"
    assert _find(obs, HOSTS["endless"], "rtsp", 8554)["error"] == "not rtsp"
    # every host kept to its packet budget
    assert all(sent <= 40 for sent in doc["sent"].values()), doc["sent"]

    hik_web = _find(obs, HOSTS["hik"], "http", 80)["attrs"]
    assert hik_web["server"] == "App-webs/"
    assert hik_web["vendor_hint"] == "hikvision"
    assert hik_web["paths"] == "/ISAPI/System/deviceInfo=401 /SDK/activateStatus=200"
    assert hik_web["realm"] == "IP Camera(C6452)"
    assert hik_web["xmlns"] == "http://www.hikvision.com/ver20/XMLSchema"
    hik_cert = _find(obs, HOSTS["hik"], "tls", 443)["attrs"]
    assert (hik_cert["subject_o"], hik_cert["subject_ou"]) == ("HIKVISION", "DVRNVR")
    assert hik_cert["self_signed"] == "true"
    hik_rtsp = _find(obs, HOSTS["hik"], "rtsp", 554)["attrs"]
    assert hik_rtsp["realm"] == "IP Camera(C6452)" and hik_rtsp["auth_scheme"] == "Digest Basic"
    hik_sdk = _find(obs, HOSTS["hik"], "http", 8000)
    assert hik_sdk["attrs"]["scheme"] == "tcp" and hik_sdk["attrs"]["raw"].startswith("00000020")

    dahua_web = _find(obs, HOSTS["dahua"], "http", 80)["attrs"]
    assert dahua_web["title"] == "WEB" and "server" not in dahua_web
    # with no hint on the page the generic paths are asked, unless the RTSP realm
    # ("Login to <serial>") came in first and pointed at Dahua's: both are right
    paths = dict(p.rsplit("=", 1) for p in dahua_web["paths"].split())
    assert paths["/cgi-bin/magicBox.cgi?action=getDeviceType"] == "401"
    assert paths.get("/ISAPI/System/deviceInfo", "page") == "page"  # a catch-all page
    assert dahua_web["serial"] == "4K01FD2PAJ6E3FF"
    dahua_rtsp = _find(obs, HOSTS["dahua"], "rtsp", 554)["attrs"]
    assert dahua_rtsp["server"] == "Rtsp Server/3.0"
    assert dahua_rtsp["serial"] == "4K01FD2PAJ6E3FF"
    dahua_sdk = _find(obs, HOSTS["dahua"], "http", 37777)["attrs"]
    assert dahua_sdk["open"] == "true" and dahua_sdk["service"] == "dahua-dvrip"

    axis_web = _find(obs, HOSTS["axis"], "http", 80)["attrs"]
    assert axis_web["title"] == "AXIS"
    assert axis_web["paths"] == "/axis-cgi/param.cgi?action=list&group=Brand=401"
    assert axis_web["mac"] == "ac:cc:8e:00:01:22"
    axis_rtsp = _find(obs, HOSTS["axis"], "rtsp", 554)["attrs"]
    assert axis_rtsp["server"] == "GStreamer RTSP server"
    assert axis_rtsp["realm"] == "AXIS_ACCC8E000122"

    # the page names nobody; the certificate's issuer does, and steers the vendor paths
    nvr_web = _find(obs, HOSTS["anon_nvr"], "http", 443)["attrs"]
    assert nvr_web["title"] == "WEB" and "vendor_hint" not in nvr_web
    assert nvr_web["paths"].startswith("/cgi-bin/magicBox.cgi")
    nvr_cert = _find(obs, HOSTS["anon_nvr"], "tls", 443)["attrs"]
    assert nvr_cert["issuer_o"] == "Zhejiang Dahua Technology Co.,Ltd."
    assert nvr_cert["vendor_hint"] == "dahua"
    assert _find(obs, HOSTS["anon_nvr"], "http", 80)["attrs"]["location"].startswith("https://")

    # the page names nobody; the RTSP SDP betrays Hikvision firmware
    enc_web = _find(obs, HOSTS["anon_enc"], "http", 80)["attrs"]
    assert "vendor_hint" not in enc_web
    enc_rtsp = _find(obs, HOSTS["anon_enc"], "rtsp", 554)["attrs"]
    assert enc_rtsp["vendor_hint"] == "hikvision"
    assert enc_rtsp["rtsp_url"] == "rtsp://198.51.100.24:554/Streaming/Channels/101/"
