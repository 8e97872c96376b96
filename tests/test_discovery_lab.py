"""End to end: every protocol at once against lab/scenarios/discovery.toml.

One lab, one `scanner scan --once` with all protocols and a 0600 credentials
file named in a config file, then `scanner report --format json`. Each test
below reads the result of that one scan:

* every in-scope device matches its scenario `expect` table (the scenario file
  is the single source of truth): vendor, maker, model, firmware, serial,
  sources, verdict, and flag reasons citing policy ids;
* ONVIF credentials: used where right, one refused attempt where wrong, never
  echoed anywhere;
* far-cam, on a segment the scanner is attached to but the scope leaves out,
  receives no packet at all (its own interface counters and request log);
* what the scan put on the wire, per host and per protocol, stays within
  `scanner scan --plan` and the per-host budget (a sniffer on lab0 and lab1).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import pytest

from lab import Lab, Scenario, load_scenario, unavailable_reason
from lab.scenario import DeviceSpec
from scanner.config import PROTOCOLS
from scanner.fingerprint import default_db
from scanner.store import Store
from tests.conftest import REPO_ROOT

SCENARIO = load_scenario("discovery")
IN_SCOPE = [d for d in SCENARIO.devices if d.segment == "lan"]
FAR = [d for d in SCENARIO.devices if d.segment != "lan"]
FIELDS = ("vendor", "maker", "model", "firmware", "serial")
VERDICTS = ("flagged", "non-home-origin", "home-origin")
TRUSTED = ("Axis Communications", "Bosch Security Systems")  # makers on no policy list

RIGHT = "Lab-Only-9f3e"  # cam-auth's password in the scenario
WRONG = "Not-The-Password-42"  # what the credentials file says for cam-wrongpw

# Multicast and broadcast destinations a scan may use, and the plan line of each.
GROUPS = {
    ("239.255.255.250", 37020): "sadp",
    ("239.255.255.251", 37810): "dhip",
    ("255.255.255.255", 37810): "dhip",
    ("255.255.255.255", 34569): "xmeye",
    ("239.255.255.250", 1900): "ssdp",
    ("224.0.0.251", 5353): "mdns",
    ("239.255.255.250", 3702): "wsd",
    ("224.0.0.22", 0): "igmp",
}

# A raw AF_PACKET listener in the scanner namespace: counts every frame the
# scanner sends on each interface (and anything at all on the others), keyed
# "iface direction kind destination port". kind: arp (destination = the
# address asked for), udp, tcp (SYN/FIN/RST or data: what the budget counts),
# tcp-ack (a pure ACK, which the budget does not count), ip<proto>, other.
SNIFFER = r"""
import json, select, socket, struct, sys
PACKET_OUTGOING = 4
quiet_inbound = set(sys.argv[1].split(","))
socks = {}
for name in sys.argv[2:]:
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 << 20)
    s.bind((name, 0))
    s.setblocking(False)
    socks[s] = name
counts = {}

def classify(f):
    if f[12:14] == b"\x08\x06":
        return "arp", socket.inet_ntoa(f[38:42]), 0
    if f[12:14] != b"\x08\x00":
        return "other", "-", 0
    ip = f[14:]
    ihl, total = (ip[0] & 15) * 4, struct.unpack("!H", ip[2:4])[0]
    proto, dst, l4 = ip[9], socket.inet_ntoa(ip[16:20]), ip[ihl:total]
    if proto == 17:
        return "udp", dst, struct.unpack("!H", l4[2:4])[0]
    if proto == 6:
        off, flags = (l4[12] >> 4) * 4, l4[13]
        pure_ack = flags & 0x17 == 0x10 and len(l4) == off
        return "tcp-ack" if pure_ack else "tcp", dst, struct.unpack("!H", l4[2:4])[0]
    return "ip%d" % proto, dst, 0

def drain(s):
    while True:
        try:
            frame, addr = s.recvfrom(65535)
        except BlockingIOError:
            return
        way = "out" if addr[2] == PACKET_OUTGOING else "in"
        if way == "in" and socks[s] in quiet_inbound:
            continue
        key = "%s %s %s %s %d" % ((socks[s], way) + classify(frame))
        counts[key] = counts.get(key, 0) + 1

print("READY", flush=True)
while True:
    ready, _, _ = select.select([*socks, sys.stdin], [], [])
    for s in ready:
        if s is not sys.stdin:
            drain(s)
    if sys.stdin in ready:
        sys.stdin.readline()
        break
for s in socks:
    drain(s)
print(json.dumps(counts), flush=True)
"""

PLAN = r"""
import json, sys
from dataclasses import asdict
from pathlib import Path
from scanner.config import load_config
from scanner.plan import scan_plan
plan = scan_plan(load_config(Path(sys.argv[1])))
print(json.dumps({**asdict(plan), "total": plan.total}))
"""


@dataclass
class Scan:
    lab: Lab
    db: Path
    stdout: str
    stderr: str
    report: dict[str, Any]
    report_text: str
    devices: dict[str, dict[str, Any]]  # by MAC
    observations: list[dict[str, Any]]
    onvif_logs: dict[str, Path]
    far_rx: tuple[int, int, int]  # far-cam eth0 rx_packets: before, after the scan, after a ping
    wire: Counter[tuple[str, str, str, str, int]]
    plan: dict[str, Any]
    plan_text: str


def rx_packets(lab: Lab, device: str) -> int:
    """Frames the device's eth0 has received (its namespace's /proc/net/dev)."""
    r = lab.run_in_device(device, ["cat", "/proc/net/dev"], capture_output=True, timeout=10)
    row = next(ln for ln in r.stdout.splitlines() if ln.strip().startswith("eth0:"))
    return int(row.split(":", 1)[1].split()[1])


def requests_seen(log: Path) -> list[tuple[str, str]]:
    """(operation, auth) of each SOAP request the device's ONVIF responder logged."""
    if not log.exists():
        return []
    return [(o["op"], o["auth"]) for o in map(json.loads, log.read_text().splitlines())]


def write_config(tmp: Path, lab: Lab) -> Path:
    creds = tmp / "onvif-credentials.toml"
    creds.write_text(
        "[[onvif]]\n"
        'cidr = "198.51.100.11/32"\nusername = "admin"\n'
        f'password = "{RIGHT}"\n\n'
        "[[onvif]]\n"
        'cidr = "198.51.100.12/32"\nusername = "admin"\n'
        f'password = "{WRONG}"\n'
    )
    creds.chmod(0o600)
    cfg = tmp / "scanner.toml"
    cfg.write_text(
        "[scope]\n"
        f'interfaces = ["{lab.scanner_iface}"]\n'
        f'cidrs = ["{lab.cidr}"]\n\n'
        "[scan]\n"
        f"protocols = {json.dumps(list(PROTOCOLS))}\n\n"
        "[onvif]\n"
        f'credentials_file = "{creds}"\n\n'
        "[store]\n"
        f'db = "{tmp / "discovery.db"}"\n'
    )
    return cfg


def in_scanner(lab: Lab, argv: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return lab.run_in_scanner(
        [sys.executable, *argv], capture_output=True, text=True, timeout=timeout, cwd=REPO_ROOT
    )


@pytest.fixture(scope="module")
def scan(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scan]:
    reason = unavailable_reason()  # as the lab_available fixture, at module scope
    if reason is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but the netns lab cannot run: {reason}")
        pytest.skip(f"netns lab unavailable: {reason}")
    tmp = tmp_path_factory.mktemp("discovery")
    data = SCENARIO.to_dict()
    logs: dict[str, Path] = {}
    for dev in data["device"]:
        for svc in dev["service"]:
            if svc["kind"] == "onvif":
                logs[dev["name"]] = tmp / f"{dev['name']}.onvif.jsonl"
                svc["log_path"] = str(logs[dev["name"]])
    lab = Lab(Scenario.from_dict(data, name="discovery"))
    lab.up()
    try:
        cfg = write_config(tmp, lab)
        ifaces = sorted(lab.scanner_ifaces.values())
        sniffer = lab.popen_in_scanner(
            [sys.executable, "-c", SNIFFER, lab.scanner_iface, *ifaces],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        try:
            assert sniffer.stdout is not None and sniffer.stdin is not None
            assert sniffer.stdout.readline().strip() == "READY"
            far_before = rx_packets(lab, "far-cam")
            r = in_scanner(lab, ["-m", "scanner", "-v", "scan", "--once", "--config", str(cfg)])
            assert r.returncode == 0, r.stderr
            far_after = rx_packets(lab, "far-cam")
            sniffer.stdin.write("STOP\n")
            sniffer.stdin.flush()
            counts = json.loads(sniffer.stdout.readline())
        finally:
            sniffer.kill()
            sniffer.wait(timeout=10)
        # the control: a datagram the scanner's lab1 does send shows up in the counter
        far_ip = FAR[0].ip
        ping = in_scanner(
            lab,
            [
                "-c",
                "import socket, sys; socket.socket(socket.AF_INET, socket.SOCK_DGRAM)"
                ".sendto(b'control', (sys.argv[1], 9))",
                far_ip,
            ],
        )
        assert ping.returncode == 0, ping.stderr
        time.sleep(0.2)
        far_control = rx_packets(lab, "far-cam")

        rep = in_scanner(lab, ["-m", "scanner", "report", "--config", str(cfg), "--format", "json"])
        assert rep.returncode == 0, rep.stderr
        plan_json = in_scanner(lab, ["-c", PLAN, str(cfg)])
        assert plan_json.returncode == 0, plan_json.stderr
        plan_cli = in_scanner(lab, ["-m", "scanner", "scan", "--plan", "--config", str(cfg)])
        assert plan_cli.returncode == 0, plan_cli.stderr
        db = tmp / "discovery.db"
        with Store.open(db, create=False) as store:
            observations = store.observations()
        report = json.loads(rep.stdout)
        wire: Counter[tuple[str, str, str, str, int]] = Counter()
        for key, n in counts.items():
            iface, way, kind, dst, port = key.split()
            wire[(iface, way, kind, dst, int(port))] += n
        yield Scan(
            lab=lab,
            db=db,
            stdout=r.stdout,
            stderr=r.stderr,
            report=report,
            report_text=rep.stdout,
            devices={d["mac"]: d for d in report["devices"]},
            observations=observations,
            onvif_logs=logs,
            far_rx=(far_before, far_after, far_control),
            wire=wire,
            plan=json.loads(plan_json.stdout),
            plan_text=plan_cli.stdout,
        )
    finally:
        lab.down()


def observations_of(scan: Scan, device: DeviceSpec, source: str) -> list[dict[str, Any]]:
    return [o for o in scan.observations if o["ip"] == device.ip and o["source"] == source]


# --- the scenario is what the scenario says it is --------------------------------------


def test_the_scenario_covers_every_protocol_and_case() -> None:
    assert len(IN_SCOPE) >= 10
    seen = {p for d in IN_SCOPE for p in d.expect["sources"]}
    assert seen == set(PROTOCOLS)
    assert {d.expect["verdict"] for d in IN_SCOPE} == set(VERDICTS)
    # visible only through SADP / only through DHIP (ARP sees every host)
    assert any(d.expect["sources"] == ["arp", "sadp"] for d in IN_SCOPE)
    assert any(d.expect["sources"] == ["arp", "dhip"] for d in IN_SCOPE)
    assert {d.expect.get("onvif_auth") for d in IN_SCOPE} >= {"none", "ok", "failed"}
    # relabels resolve to the real maker; a trusted maker stays unflagged
    assert any(d.expect["vendor"] != d.expect["maker"] for d in IN_SCOPE)
    trusted = [d for d in IN_SCOPE if d.expect["maker"] in TRUSTED]
    assert trusted and all(d.expect["verdict"] != "flagged" for d in trusted)
    far = SCENARIO.segment(FAR[0].segment)
    assert IPv4Address(FAR[0].ip) not in IPv4Network(SCENARIO.network.cidr)
    assert far.scanner_ip is not None  # the scanner is attached there: only the scope keeps out


# --- every device, from its expect table -------------------------------------------------


@pytest.mark.netns
def test_scan_finds_exactly_the_in_scope_devices(scan: Scan) -> None:
    assert f"complete: {len(IN_SCOPE)} devices" in scan.stdout
    assert set(scan.devices) == {d.mac for d in IN_SCOPE}
    for dev in IN_SCOPE:
        assert scan.devices[dev.mac]["ip"] == dev.ip, dev.name
    assert not [d for d in scan.report["devices"] if d["ip"] == FAR[0].ip]


@pytest.mark.netns
@pytest.mark.parametrize("name", [d.name for d in IN_SCOPE])
def test_device_matches_its_expect_table(scan: Scan, name: str) -> None:
    dev = SCENARIO.device(name)
    want, got = dev.expect, scan.devices[dev.mac]
    for field in FIELDS:
        if field in want:
            assert got[field] == want[field], (name, field, got["evidence"])
    assert got["sources"] == sorted(want["sources"]), name
    assert got["verdict"] == want["verdict"], (name, got["reasons"])
    assert got["flagged"] is (want["verdict"] == "flagged")
    policies = set(default_db().policies)
    cited = re.findall(r"\[([a-z0-9-]+)\]", " ".join(got["reasons"]))
    if want["verdict"] == "flagged":
        assert got["reasons"][0].startswith(f"maker {want['maker']} is on: "), got["reasons"]
        assert cited and set(cited) <= policies, got["reasons"]
        if want["vendor"] != want["maker"]:
            relabel = f"sold as {want['vendor']}: relabelled {want['maker']} hardware"
            assert relabel in got["reasons"]
    else:
        assert not set(cited) & policies, got["reasons"]
        assert "flagged" not in " ".join(got["reasons"])


# --- ONVIF credentials ---------------------------------------------------------------------


@pytest.mark.netns
@pytest.mark.parametrize("name", [d.name for d in IN_SCOPE if "onvif_auth" in d.expect])
def test_onvif_outcome_is_recorded(scan: Scan, name: str) -> None:
    dev = SCENARIO.device(name)
    [obs] = observations_of(scan, dev, "onvif")
    assert obs["attrs"]["auth"] == dev.expect["onvif_auth"], obs
    assert obs["error"] is None, obs


@pytest.mark.netns
def test_right_credentials_are_used_and_wrong_ones_tried_exactly_once(scan: Scan) -> None:
    assert requests_seen(scan.onvif_logs["cam-auth"]) == [
        ("GetSystemDateAndTime", "none"),  # PRE_AUTH: asked without credentials
        ("GetDeviceInformation", "valid"),
        ("GetNetworkInterfaces", "valid"),
    ]
    [auth] = observations_of(scan, SCENARIO.device("cam-auth"), "onvif")
    assert auth["attrs"]["mac"] == SCENARIO.device("cam-auth").mac  # ONVIF's budget came first
    assert "network_error" not in auth["attrs"]
    # one refused attempt, then nothing more: no retry, no other password
    assert requests_seen(scan.onvif_logs["cam-wrongpw"]) == [
        ("GetSystemDateAndTime", "none"),
        ("GetDeviceInformation", "invalid"),
    ]
    # an open device is never sent credentials it did not ask for
    assert {a for _op, a in requests_seen(scan.onvif_logs["hik-relabel"])} == {"none"}


@pytest.mark.netns
def test_credentials_never_leave_the_credentials_file(scan: Scan) -> None:
    stored = scan.db.read_bytes() + b"".join(
        p.read_bytes() for p in scan.db.parent.glob("discovery.db-*")
    )
    for secret in (RIGHT, WRONG):
        assert secret not in scan.stderr and secret not in scan.stdout
        assert secret not in scan.report_text
        assert secret.encode() not in stored


# --- scope: nothing outside it, in any form --------------------------------------------------


@pytest.mark.netns
def test_off_scope_segment_receives_no_packet_at_all(scan: Scan) -> None:
    before, after, control = scan.far_rx
    assert after == before, "far-cam's eth0 received frames during the scan"
    assert control > after  # the counter works: the control datagram after the scan shows
    assert requests_seen(scan.onvif_logs["far-cam"]) == []
    far_iface = scan.lab.scanner_ifaces[FAR[0].segment]
    sent = {k: n for k, n in scan.wire.items() if k[0] == far_iface and k[1] == "out"}
    assert sent == {}, sent
    assert not [k for k in scan.wire if k[3] == FAR[0].ip]


@pytest.mark.netns
def test_out_of_scope_location_and_xaddr_are_recorded_not_followed(scan: Scan) -> None:
    nat = SCENARIO.device("nat-cam")
    far_ip = FAR[0].ip
    [ssdp] = observations_of(scan, nat, "ssdp")
    assert ssdp["attrs"]["location_out_of_scope"] == "true"
    assert ssdp["attrs"]["location_host"] == far_ip
    [wsd] = observations_of(scan, nat, "wsd")
    assert wsd["attrs"]["xaddrs_out_of_scope"] == f"http://{far_ip}/onvif/device_service"
    assert "xaddrs_in_scope" not in wsd["attrs"]
    assert observations_of(scan, nat, "onvif") == []


# --- politeness: the wire against the plan --------------------------------------------------


@pytest.mark.netns
def test_the_plan_printed_is_the_plan_computed(scan: Scan) -> None:
    total_row = scan.plan_text.splitlines()[-2].split()
    assert total_row == ["total", str(scan.plan["total"])]
    assert scan.plan["hosts"] == IPv4Network(SCENARIO.network.cidr).num_addresses - 3
    assert scan.plan["per_host"] == scan.plan["per_host_budget"] == 40


@pytest.mark.netns
def test_what_each_host_was_sent_stays_within_the_plan_and_budget(scan: Scan) -> None:
    plan, wire = scan.plan, scan.wire
    lan = IPv4Network(SCENARIO.network.cidr)
    lab0 = scan.lab.scanner_iface
    out = Counter({k: n for k, n in wire.items() if k[0] == lab0 and k[1] == "out"})
    unicast: Counter[str] = Counter()
    arp: Counter[str] = Counter()
    groups: Counter[str] = Counter()
    for (_iface, _way, kind, dst, port), n in out.items():
        if kind == "arp":
            assert IPv4Address(dst) in lan, dst
            arp[dst] += n
        elif IPv4Address(dst) in lan:
            if kind in ("udp", "tcp"):  # what the budget counts; pure ACKs are not charged
                unicast[dst] += n
        else:
            key = (dst, port if kind == "udp" else 0)
            assert key in GROUPS, (kind, dst, port)  # nothing unicast leaves the scope
            groups[GROUPS[key]] += n

    devices = {d.ip for d in IN_SCOPE}
    assert set(unicast) == devices  # silent addresses get ARP only
    for ip, n in unicast.items():
        assert n <= plan["per_host"] <= plan["per_host_budget"], (ip, n)
    for ip, n in arp.items():
        assert n <= plan["arp_per_host"], (ip, n)
    lines = {(ln["protocol"], ln["budgeted"]): ln for ln in plan["lines"]}
    for proto, n in groups.items():
        assert n <= lines[(proto, False)]["packets"], (proto, n)
    assert set(groups) >= {"sadp", "dhip", "xmeye", "ssdp", "mdns", "wsd"}
    # WS-Discovery: all three multicast Probes, and both unicast Probes to every device
    assert groups["wsd"] == lines[("wsd", False)]["packets"] == 3
    for ip in devices:
        assert out[(lab0, "out", "udp", ip, 3702)] == 2, ip
    assert sum(out.values()) <= plan["total"]
