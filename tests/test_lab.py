"""The lab itself: scenario checks (no root needed) and the namespace LAN (root)."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from lab import Lab, LabError, Scenario, ScenarioError, cleanup_stale, load_scenario
from lab.netns import NETNS_RUN_DIR
from lab.responders import registry
from lab.responders.http import build_response
from lab.state import RunState, detached_state, is_responder, owner_pid, pid_alive, state_dir

REPO_ROOT = Path(__file__).resolve().parents[1]

BASE: dict[str, Any] = {
    "network": {
        "cidr": "198.51.100.0/24",
        "scanner_ip": "198.51.100.1",
        "scanner_mac": "02:00:5e:10:00:01",
    },
    "device": [
        {
            "name": "cam",
            "mac": "44:19:b6:00:00:02",
            "ip": "198.51.100.10",
            "service": [{"kind": "http", "port": 80, "server": "App-webs/", "body": "hi"}],
        },
        {"name": "cam2", "mac": "e0:50:8b:00:00:03", "ip": "198.51.100.11"},
    ],
}

ARP_SCAN = """
import json, sys
from scapy.all import ARP, Ether, conf, srp
conf.verb = 0
ans, _ = srp(Ether(dst="ff:ff:ff:ff:ff:ff") / ARP(pdst=sys.argv[1:]), iface="lab0",
             timeout=1, retry=1)
print(json.dumps({r[ARP].psrc: r[ARP].hwsrc for _, r in ans}))
"""

HTTP_GET = """
import json, sys, urllib.error, urllib.request
out = {}
for url in sys.argv[1:]:
    method, _, url = url.partition(" ")
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=3)
    except urllib.error.HTTPError as err:
        resp = err
    out[method + " " + url] = [resp.status, dict(resp.headers), resp.read().decode()]
print(json.dumps(out))
"""

UDP_PROBE = """
import json, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
s.settimeout(1.0)
s.sendto(b"probe", (sys.argv[1], int(sys.argv[2])))
got = {}
try:
    while True:
        data, addr = s.recvfrom(2048)
        got[addr[0]] = data.decode()
except socket.timeout:
    pass
print(json.dumps(got))
"""


def py_in_scanner(lab: Lab, code: str, *args: str) -> Any:
    res = lab.run_in_scanner([sys.executable, "-c", code, *args], capture_output=True, timeout=60)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def netns_names() -> set[str]:
    return {p.name for p in NETNS_RUN_DIR.iterdir()} if NETNS_RUN_DIR.is_dir() else set()


def dead_pid() -> int:
    """A PID no process can have: above the kernel's pid_max."""
    return int(Path("/proc/sys/kernel/pid_max").read_text()) + 1


# --- scenarios (no root needed) ------------------------------------------------------


def test_foundation_scenario_covers_the_brands() -> None:
    scen = load_scenario("foundation")
    assert scen.cidr == "198.51.100.0/24"
    assert len(scen.devices) >= 7
    ouis = {d.mac[:8] for d in scen.devices}
    assert {"44:19:b6", "bc:ad:28"} <= ouis  # two Hikvision
    assert ouis & {"e0:50:8b", "3c:ef:8c"}  # Dahua
    assert ouis & {"00:40:8c", "ac:cc:8e"}  # Axis
    assert ouis & {"00:07:c7", "00:d0:d9"}  # UK: Synectics / Dedicated Micros
    assert "00:04:63" in ouis  # Bosch
    assert any(int(d.mac[:2], 16) & 2 for d in scen.devices)  # locally administered
    for dev in scen.devices:
        http = [s for s in dev.services if s.kind == "http"]
        assert http and http[0].options.get("server"), dev.name


def test_scenario_round_trips_through_dict() -> None:
    scen = load_scenario("foundation")
    assert Scenario.from_dict(scen.to_dict(), source=scen.source) == scen


def mutated(path: str, value: Any) -> dict[str, Any]:
    """BASE with one change: set ``a.0.b``, delete it (value KeyError) or append (``a.+``)."""
    data = copy.deepcopy(BASE)
    node: Any = data
    keys = path.split(".")
    for key in keys[:-1]:
        node = node[int(key)] if key.isdigit() else node[key]
    last = keys[-1]
    if last == "+":
        node.append(value)
    elif value is KeyError:
        del node[last]
    elif last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value
    return data


@pytest.mark.parametrize(
    ("path", "value", "field", "words"),
    [
        ("network.cidr", "8.8.8.0/24", "network.cidr", "not inside"),
        ("network.cidr", "100.64.0.0/24", "network.cidr", "not inside"),
        ("network.cidr", "198.51.100.0/33", "network.cidr", "198.51.100.0/33"),
        ("network.scanner_ip", "203.0.113.1", "network.scanner_ip", "not inside network.cidr"),
        ("network.scanner_mac", "02:00:5e:10:00", "network.scanner_mac", "not a unicast MAC"),
        ("network.scanner_mac", KeyError, "network.scanner_mac", "missing"),
        ("device.0.ip", "1.2.3.4", 'device[0] "cam".ip', "outside the documentation/private"),
        ("device.0.ip", "198.51.100.255", 'device[0] "cam".ip', "broadcast"),
        ("device.0.ip", "198.51.100.1", 'device[0] "cam".ip', "already used by network.scanner_ip"),
        (
            "device.1.ip",
            "198.51.100.10",
            'device[1] "cam2".ip',
            'already used by device[0] "cam".ip',
        ),
        ("device.0.mac", "44:19:b6:00:00:2", 'device[0] "cam".mac', "not a unicast MAC"),
        ("device.0.mac", "01:00:5e:00:00:01", 'device[0] "cam".mac', "not a unicast MAC"),
        ("device.0.mac", "zz:19:b6:00:00:02", 'device[0] "cam".mac', "not a unicast MAC"),
        ("device.1.mac", "44:19:B6:00:00:02", 'device[1] "cam2".mac', "already used"),
        ("device.1.mac", "02:00:5e:10:00:01", 'device[1] "cam2".mac', "network.scanner_mac"),
        ("device.1.name", "cam", 'device[1] "cam".name', "duplicate"),
        ("device.0.name", "Bad Name", 'device[0] "Bad Name".name', "must match"),
        ("device.0.colour", "red", 'device[0] "cam".colour', "unknown key"),
        ("device.0.service.0.kind", "telnet", 'device[0] "cam".service[0].kind', "unknown kind"),
        ("device.0.service.0.port", 70000, 'device[0] "cam".service[0].port', "not a port"),
        ("device.0.service.0.status", "200", 'device[0] "cam".service[0].status', "must be int"),
        ("device.0.service.0.status", 42, 'device[0] "cam".service[0].status', "not an HTTP"),
        ("device.0.service.0.srever", "x", 'device[0] "cam".service[0].srever', "unknown option"),
        (
            "device.0.service.0.headers",
            {"Bad Header": "x"},
            'device[0] "cam".service[0].headers.Bad Header',
            "not a valid header",
        ),
        (
            "device.0.service.+",
            {"kind": "http", "port": 80},
            'device[0] "cam".service[1].port',
            "tcp/80 is already used",
        ),
        (
            "device.0.service.+",
            {"kind": "udp", "port": 37020},
            'device[0] "cam".service[1].reply',
            "exactly one of",
        ),
        (
            "device.0.service.+",
            {"kind": "udp", "port": 37020, "reply": "x", "group": "198.51.100.7"},
            'device[0] "cam".service[1].group',
            "not a multicast",
        ),
    ],
)
def test_scenario_validation_names_file_and_field(
    path: str, value: Any, field: str, words: str
) -> None:
    data = mutated(path, value)
    with pytest.raises(ScenarioError) as info:
        Scenario.from_dict(data, source="lab/scenarios/x.toml")
    msg = str(info.value)
    assert msg.startswith(f"lab/scenarios/x.toml: {field}: "), msg
    assert words in msg


def test_same_port_on_tcp_and_udp_is_fine() -> None:
    data = copy.deepcopy(BASE)
    data["device"][0]["service"].append({"kind": "udp", "port": 80, "reply": "x"})
    Scenario.from_dict(data)


def test_load_scenario_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[network]\ncidr = "198.51.100.0/24"\nscanner_ip = "198.51.100.1"\n'
        'scanner_mac = "02:00:5e:10:00:01"\n\n'
        '[[device]]\nname = "cam"\nmac = "44:19:b6:00:00"\nip = "198.51.100.10"\n'
    )
    with pytest.raises(ScenarioError, match=rf'^{bad}: device\[0\] "cam"\.mac: '):
        load_scenario(bad)
    bad.write_text("[network\n")
    with pytest.raises(ScenarioError, match=rf"^{bad}: not valid TOML"):
        load_scenario(bad)
    with pytest.raises(ScenarioError, match="no such scenario file"):
        load_scenario("no-such-scenario")


def test_registry_and_http_response() -> None:
    assert {"http", "udp"} <= set(registry())
    raw = build_response(status=401, server="Webs", headers={"X-A": "1"}, body=b"no")
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "HTTP/1.1 401 Unauthorized"
    assert "Server: Webs" in lines and "X-A: 1" in lines and "Content-Length: 2" in lines
    assert body == b"no"
    assert build_response(status=200, body=b"abc", head_only=True).endswith(b"\r\n\r\n")


def test_owner_pid_parsing() -> None:
    assert owner_pid("scnlab-4242-sw") == 4242
    assert owner_pid("scnlab-4242-1-d007") == 4242
    assert owner_pid("scnlab-4242") == 4242
    assert owner_pid("scnlab-keep-4242") is None
    assert owner_pid("scnlabx-4242-sw") is None
    assert owner_pid("other-4242") is None
    assert not pid_alive(dead_pid())


# --- the namespace lab (root) ----------------------------------------------------------


def test_lab_builds_and_every_device_answers_arp(lab_factory: Any) -> None:
    lab = lab_factory("foundation")
    assert lab.build_seconds is not None  # how long it took is bench/'s business
    assert lab.scanner_iface == "lab0" and lab.cidr == "198.51.100.0/24"
    assert set(lab.namespaces) <= netns_names()
    for ns in lab.namespaces:
        assert ns.startswith(f"scnlab-{os.getpid()}")
    seen = py_in_scanner(lab, ARP_SCAN, *(d.ip for d in lab.devices))
    assert seen == {d.ip: d.mac for d in lab.devices}


def test_http_responder_serves_configured_answers(lab_factory: Any) -> None:
    lab = lab_factory("foundation")
    urls = [f"GET http://{d.ip}/" for d in lab.devices]
    hik = lab.device("hik-cam")
    urls += [f"GET http://{hik.ip}/ISAPI/System/deviceInfo?x=1", f"HEAD http://{hik.ip}/"]
    got = py_in_scanner(lab, HTTP_GET, *urls)
    for dev in lab.devices:
        status, headers, body = got[f"GET http://{dev.ip}/"]
        opts = dev.services[0].options
        assert status == opts.get("status", 200)
        assert headers["Server"] == opts["server"]
        assert body == opts["body"]
        for name, value in opts.get("headers", {}).items():
            assert headers[name] == value
    status, headers, body = got[f"GET http://{hik.ip}/ISAPI/System/deviceInfo?x=1"]
    assert status == 401
    assert headers["WWW-Authenticate"].startswith("Digest ")
    assert headers["Server"] == "App-webs/"
    assert "Unauthorized" in body
    status, headers, body = got[f"HEAD http://{hik.ip}/"]
    assert status == 200 and body == "" and int(headers["Content-Length"]) > 0


def test_udp_responder_hears_unicast_multicast_and_broadcast(lab_factory: Any) -> None:
    data = copy.deepcopy(BASE)
    for i, dev in enumerate(data["device"]):
        dev["service"] = [
            {"kind": "udp", "port": 37020, "reply": f"hello {i}", "group": "239.255.255.250"}
        ]
    lab = lab_factory(Scenario.from_dict(data, source="udp-test"))
    everyone = {"198.51.100.10": "hello 0", "198.51.100.11": "hello 1"}
    assert py_in_scanner(lab, UDP_PROBE, "239.255.255.250", "37020") == everyone
    assert py_in_scanner(lab, UDP_PROBE, "255.255.255.255", "37020") == everyone
    assert py_in_scanner(lab, UDP_PROBE, "198.51.100.11", "37020") == {"198.51.100.11": "hello 1"}


def test_set_device_ip_keeps_mac_and_services(lab_factory: Any) -> None:
    lab = lab_factory("foundation")
    hik = lab.device("hik-cam")
    lab.set_device_ip("hik-cam", "198.51.100.99")
    assert lab.device("hik-cam").ip == "198.51.100.99"
    assert lab.device("hik-cam").mac == hik.mac
    seen = py_in_scanner(lab, ARP_SCAN, "198.51.100.99", hik.ip)
    assert seen == {"198.51.100.99": hik.mac}
    got = py_in_scanner(lab, HTTP_GET, "GET http://198.51.100.99/")
    assert got["GET http://198.51.100.99/"][1]["Server"] == "App-webs/"
    res = lab.run_in_device("hik-cam", ["ip", "neigh", "show", lab.scanner_ip], capture_output=True)
    assert "PERMANENT" in res.stdout  # static neighbour survives the renumbering
    with pytest.raises(ScenarioError, match="already used"):
        lab.set_device_ip("hik-cam", lab.device("hik-nvr").ip)
    with pytest.raises(ScenarioError, match="outside"):
        lab.set_device_ip("hik-cam", "8.8.8.8")


def test_down_removes_everything_and_is_idempotent(lab_factory: Any) -> None:
    lab = lab_factory("foundation")
    names, pid, prefix = set(lab.namespaces), lab.responder_pid, lab.prefix
    state_file = state_dir() / f"{prefix}.json"
    assert state_file.exists() and is_responder(pid, prefix)
    lab.down()
    assert not names & netns_names()
    assert not is_responder(pid, prefix)
    assert not list(state_dir().glob(f"{prefix}.*"))
    lab.down()  # and again: no error


def test_down_is_safe_on_half_built_labs(
    lab_available: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    Lab("foundation").down()  # never built at all

    def boom(self: Lab) -> None:
        raise RuntimeError("configure failed")

    monkeypatch.setattr(Lab, "_configure", boom)
    lab = Lab("foundation")
    with pytest.raises(RuntimeError, match="configure failed"):
        lab.up()
    assert not set(lab.namespaces) & netns_names()
    assert not (state_dir() / f"{lab.prefix}.json").exists()


def test_a_prefix_clash_leaves_the_other_lab_alone(lab_factory: Any) -> None:
    first = lab_factory("foundation")
    second = Lab("foundation", prefix=first.prefix)
    with pytest.raises(LabError, match="already exists"):
        second.up()
    second.down()
    assert set(first.namespaces) <= netns_names()
    assert is_responder(first.responder_pid, first.prefix)


def test_nothing_lab_made_in_the_root_namespace(lab_factory: Any) -> None:
    def root_view() -> tuple[str, str, str]:
        run = [
            subprocess.run(["ip", *args], capture_output=True, text=True, check=True).stdout
            for args in (["-o", "link"], ["-o", "-4", "addr"], ["route", "show", "table", "all"])
        ]
        # drop per-link counters/state that change on their own
        links = "\n".join(sorted(line.split(":")[1].strip() for line in run[0].splitlines()))
        return links, run[1], run[2]

    before = root_view()
    lab = lab_factory("foundation")
    during = root_view()
    assert during == before  # no links, addresses or routes appeared
    full = subprocess.run(["ip", "-d", "link"], capture_output=True, text=True).stdout
    for mac in [lab.scanner_mac, *(d.mac for d in lab.devices)]:
        assert mac not in full
    for name in ("lab0", "br0", "scan", "d001"):
        assert name not in during[0].split("\n")
    assert lab.scanner_ns not in full


def test_stale_cleanup_only_removes_dead_runs(lab_available: None) -> None:
    dead = dead_pid()
    stale = [f"scnlab-{dead}-sw", f"scnlab-{dead}-d001"]
    keep = [f"scnlab-keep-{os.getpid()}", f"other-{dead}-sw", f"scnlab-{os.getpid()}-probe"]
    # a stand-in for the dead run's responder, recognisable by its argv
    fake = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", "lab.responders", f"scnlab-{dead}"]
    )
    try:
        RunState(
            prefix=f"scnlab-{dead}",
            owner_pid=dead,
            detached=False,
            namespaces=stale,
            scenario={},
            scanner_ns="",
            switch_ns=stale[0],
            device_ns={},
            responder_pid=fake.pid,
        ).save()
        for name in stale + keep:
            subprocess.run(["ip", "netns", "add", name], check=True)
        removed = cleanup_stale()
        assert sorted(removed) == sorted(stale)
        names = netns_names()
        assert not set(stale) & names
        assert set(keep) <= names
        assert fake.wait(timeout=5) == -signal.SIGTERM
        assert not (state_dir() / f"scnlab-{dead}.json").exists()
    finally:
        fake.kill()
        fake.wait()
        for name in stale + keep:
            if name in netns_names():
                subprocess.run(["ip", "netns", "del", name], check=False)


def test_a_killed_owner_leaves_nothing_after_cleanup(lab_available: None) -> None:
    code = (
        "import os, signal, sys; sys.path.insert(0, sys.argv[1]); from lab import Lab\n"
        "lab = Lab('foundation'); lab.up(); print(lab.prefix, lab.responder_pid, flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code, str(REPO_ROOT)], capture_output=True, text=True, timeout=60
    )
    prefix, pid = res.stdout.split()
    assert res.returncode == -signal.SIGKILL
    deadline = time.monotonic() + 5
    while is_responder(int(pid), prefix) and time.monotonic() < deadline:
        time.sleep(0.05)  # the responder watches its owner and exits with it
    assert not is_responder(int(pid), prefix)
    assert any(n.startswith(prefix + "-") for n in netns_names())
    cleanup_stale()
    assert not any(n.startswith(prefix + "-") for n in netns_names())
    assert not list(state_dir().glob(f"{prefix}.*"))


def test_responders_refuse_to_run_outside_the_lab(lab_available: None, tmp_path: Path) -> None:
    """Started in the host namespace by mistake, the responder binds nothing and exits."""
    home = f"scnlab-{os.getpid()}-refuse"
    subprocess.run(["ip", "netns", "add", home], check=True)
    try:
        for netns in (home, "scnlab-no-such-ns"):
            spec = tmp_path / "spec.json"
            spec.write_text(json.dumps({"tag": "x", "home_netns": netns, "devices": []}))
            res = subprocess.run(
                [sys.executable, "-m", "lab.responders", "--spec", str(spec)],
                cwd=REPO_ROOT,
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert res.returncode == 2
            assert "refusing to run outside the lab's switch namespace" in res.stderr
    finally:
        subprocess.run(["ip", "netns", "del", home], check=True)


def test_cli_up_run_status_down(lab_available: None) -> None:
    if detached_state() is not None:
        pytest.skip("a `python -m lab up` lab is already running here")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "lab", *args],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )

    try:
        up = cli("up", "foundation")
        assert up.returncode == 0, up.stderr
        assert cli("up", "foundation").returncode == 1  # one CLI lab at a time
        cleanup_stale()  # its builder has exited, but the lab is not stale
        st = detached_state()
        assert st is not None and set(st.namespaces) <= netns_names()
        run = cli("run", "--", "sh", "-c", 'echo "$LAB_IFACE $LAB_CIDR"; ip -o -4 addr; exit 3')
        assert run.returncode == 3
        assert run.stdout.startswith("lab0 198.51.100.0/24\n")
        assert "lab0    inet 198.51.100.1/24" in run.stdout
        status = cli("status")
        assert status.returncode == 0 and "hik-cam" in status.stdout
        down = cli("down")
        assert down.returncode == 0
        assert not set(st.namespaces) & netns_names()
        for args in (("status",), ("run", "--", "true")):
            res = cli(*args)
            assert res.returncode == 1
            assert res.stderr.strip() == "lab: no lab is up; run `python -m lab up SCENARIO`"
        assert cli("down").returncode == 0
    finally:
        cli("down")


# ------------------------------------------------------- spoofed UDP (spoof_from)


def test_spoofed_datagrams_are_fragmented_to_the_mtu_and_reassemble() -> None:
    import struct

    from lab.responders.base import udp_datagrams

    payload = bytes(range(256)) * 12  # 3,072 bytes: three fragments at MTU 1500
    packets = udp_datagrams("198.51.100.200", 3702, "198.51.100.1", 40000, payload)
    assert len(packets) == 3 and all(len(p) <= 1500 for p in packets)
    ids = {struct.unpack_from("!H", p, 4)[0] for p in packets}
    assert len(ids) == 1
    body = b""
    for i, p in enumerate(packets):
        flags_offset = struct.unpack_from("!H", p, 6)[0]
        assert (flags_offset >> 13 == 1) == (i < len(packets) - 1)  # MF on all but the last
        assert (flags_offset & 0x1FFF) * 8 == len(body)
        assert p[12:16] == bytes([198, 51, 100, 200]) and p[9] == 17
        body += p[20:]
    sport, dport, length, checksum = struct.unpack_from("!HHHH", body)
    assert (sport, dport, length, checksum) == (3702, 40000, 8 + len(payload), 0)
    assert body[8:] == payload


@pytest.mark.parametrize("bad", ["192.0.2.9", "8.8.8.8", "224.0.0.251", "0.0.0.0", "nope"])
def test_spoof_from_must_be_a_lab_unicast_address(bad: str) -> None:
    from lab.responders.base import OptionError

    with pytest.raises(OptionError, match="spoof_from"):
        registry()["wsd"].check({"spoof_from": bad})
    registry()["wsd"].check({"spoof_from": "198.51.100.200"})


def test_mdns_address_must_be_ipv4() -> None:
    from lab.responders.base import OptionError

    service = {"services": [{"type": "_http._tcp", "instance": "cam", "port": 80}]}
    with pytest.raises(OptionError, match="address"):
        registry()["mdns"].check({**service, "address": "1"})
    registry()["mdns"].check({**service, "address": "198.51.100.16"})
