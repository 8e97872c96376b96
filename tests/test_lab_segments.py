"""Multi-segment labs (segments, routers, gateways) and the lab DNS server.

Scenario checks and the DNS codec need no root; the rest builds labs.
"""

from __future__ import annotations

import copy
import json
import socket
import struct
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lab import Lab, Scenario, ScenarioError, load_scenario
from lab.netns import NETNS_RUN_DIR
from lab.responders.dns import UDP_LIMIT, DnsResponder, Zone, answer
from lab.state import is_responder, state_dir
from tests.conftest import LabFactory

BASE: dict[str, Any] = {
    "network": {
        "cidr": "198.51.100.0/24",
        "scanner_ip": "198.51.100.1",
        "scanner_mac": "02:00:5e:10:00:01",
    },
    "segment": [{"name": "far", "cidr": "203.0.113.0/24"}],
    "router": [
        {
            "name": "gw",
            "interface": [
                {"segment": "lan", "ip": "198.51.100.254", "mac": "02:00:5e:20:00:01"},
                {"segment": "far", "ip": "203.0.113.254", "mac": "02:00:5e:20:00:02"},
            ],
        }
    ],
    "device": [
        {
            "name": "cam",
            "mac": "44:19:b6:00:00:02",
            "ip": "198.51.100.10",
            "gateway": "198.51.100.254",
        },
        {
            "name": "farcam",
            "segment": "far",
            "mac": "e0:50:8b:00:00:03",
            "ip": "203.0.113.10",
            "gateway": "203.0.113.254",
        },
    ],
}

# A scanner with a second interface (lab1) on "side", and a router that also
# runs a web server; "back" is reached only through it.
TWO_LEGGED: dict[str, Any] = {
    "network": {
        "cidr": "198.51.100.0/24",
        "scanner_ip": "198.51.100.1",
        "scanner_mac": "02:00:5e:10:00:01",
        "scanner_gateway": "198.51.100.254",
    },
    "segment": [
        {"name": "side", "cidr": "203.0.113.0/24", "scanner_ip": "203.0.113.1"},
        {"name": "back", "cidr": "10.20.0.0/24"},
    ],
    "router": [
        {
            "name": "edge",
            "capture": True,
            "interface": [
                {"segment": "lan", "ip": "198.51.100.254", "mac": "02:00:5e:20:00:01"},
                {"segment": "back", "ip": "10.20.0.254", "mac": "02:00:5e:20:00:02"},
            ],
            "service": [{"kind": "http", "port": 80, "server": "lab-router", "body": "edge"}],
        }
    ],
    "device": [
        {"name": "lan-cam", "mac": "44:19:b6:00:00:02", "ip": "198.51.100.10"},
        {
            "name": "side-cam",
            "segment": "side",
            "mac": "e0:50:8b:00:00:03",
            "ip": "203.0.113.10",
            "service": [{"kind": "http", "port": 80, "server": "side"}],
        },
        {
            "name": "back-cam",
            "segment": "back",
            "mac": "ac:cc:8e:00:00:04",
            "ip": "10.20.0.10",
            "gateway": "10.20.0.254",
            "service": [{"kind": "http", "port": 80, "server": "back", "body": "back"}],
        },
    ],
}

ARP_SCAN = """
import json, sys
from scapy.all import ARP, Ether, conf, srp
conf.verb = 0
ans, _ = srp(Ether(dst="ff:ff:ff:ff:ff:ff") / ARP(pdst=sys.argv[2:]), iface=sys.argv[1],
             timeout=1, retry=1)
print(json.dumps({r[ARP].psrc: r[ARP].hwsrc for _, r in ans}))
"""

HTTP_GET = """
import json, sys, urllib.request
out = {}
for url in sys.argv[1:]:
    resp = urllib.request.urlopen(url, timeout=5)
    out[url] = [resp.status, resp.headers.get("Server"), resp.read().decode()]
print(json.dumps(out))
"""

TCP_CONNECT = """
import json, socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)
print(json.dumps({"peer": s.getpeername()[0], "local": s.getsockname()[0]}))
"""

# One question per argument "udp|tcp:name:qtype", replies printed as hex; RFC 1035 §4.1
# header + question, and the two-byte length prefix on TCP (§4.2.2).
DNS_ASK = """
import json, socket, struct, sys
def ask(server, transport, name, qtype):
    q = struct.pack("!6H", 0x2a2a, 0x0100, 1, 0, 0, 0)
    q += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\\0"
    q += struct.pack("!HH", qtype, 1)
    if transport == "udp":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(3)
        s.sendto(q, (server, 53))
        return s.recv(4096)
    s = socket.create_connection((server, 53), timeout=3)
    s.sendall(struct.pack("!H", len(q)) + q)
    buf = b""
    while len(buf) < 2 or len(buf) < 2 + struct.unpack("!H", buf[:2])[0]:
        chunk = s.recv(4096)
        if not chunk:
            break
        buf += chunk
    return buf[2:]
out = []
for arg in sys.argv[2:]:
    transport, name, qtype = arg.split(":")
    out.append(ask(sys.argv[1], transport, name, int(qtype)).hex())
print(json.dumps(out))
"""

# A raw AF_PACKET socket in the router: the first IPv4 frame src -> dst on iface.
SNIFF = """
import json, socket, struct, sys, time
iface, src, dst = sys.argv[1:4]
# ETH_P_ALL, not ETH_P_IP: only ETH_P_ALL taps see frames the router sends out
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
s.bind((iface, 0))
s.settimeout(0.5)
print("READY", flush=True)
deadline = time.monotonic() + 20
while time.monotonic() < deadline:
    try:
        frame, addr = s.recvfrom(65535)
    except socket.timeout:
        continue
    ip = frame[14:]
    if frame[12:14] != bytes([8, 0]) or len(ip) < 24:  # IPv4 only
        continue
    if socket.inet_ntoa(ip[12:16]) != src or socket.inet_ntoa(ip[16:20]) != dst:
        continue
    ihl = (ip[0] & 15) * 4
    print(json.dumps({
        "eth_src": frame[6:12].hex(":"), "eth_dst": frame[0:6].hex(":"),
        "proto": ip[9], "dport": struct.unpack("!H", ip[ihl + 2:ihl + 4])[0],
    }), flush=True)
    break
"""

A, CNAME, AAAA = 1, 5, 28


def mutated(base: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """``base`` with one change: set ``a.0.b``, or delete it (value KeyError)."""
    data = copy.deepcopy(base)
    node: Any = data
    keys = path.split(".")
    for key in keys[:-1]:
        node = node[int(key)] if key.isdigit() else node[key]
    last = keys[-1]
    if value is KeyError:
        del node[last]
    elif last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value
    return data


def py_in(lab: Lab, where: tuple[str, str], code: str, *args: str) -> Any:
    """Run a snippet in ("scanner", "") / ("device", name) / ("router", name); JSON out."""
    kind, name = where
    argv = [sys.executable, "-c", code, *args]
    kw: dict[str, Any] = {"capture_output": True, "timeout": 60}
    if kind == "scanner":
        res = lab.run_in_scanner(argv, **kw)
    elif kind == "device":
        res = lab.run_in_device(name, argv, **kw)
    else:
        res = lab.run_in_router(name, argv, **kw)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def dns_parse(hexdata: str) -> tuple[int, bool, list[tuple[str, int, str]]]:
    """(rcode, TC, [(owner, type, rdata)]) with scapy's codec, not the server's."""
    from scapy.layers.dns import DNS

    msg = DNS(bytes.fromhex(hexdata))
    records = []
    for rr in msg.an or []:
        rdata = rr.rdata.decode() if isinstance(rr.rdata, bytes) else str(rr.rdata)
        records.append((rr.rrname.decode().lower().rstrip("."), rr.type, rdata.rstrip(".")))
    return msg.rcode, bool(msg.tc), records


def netns_names() -> set[str]:
    return {p.name for p in NETNS_RUN_DIR.iterdir()} if NETNS_RUN_DIR.is_dir() else set()


# --- scenarios (no root needed) ------------------------------------------------------


def test_routed_scenario_shape_and_round_trip() -> None:
    scen = load_scenario("routed")
    assert [s.name for s in scen.all_segments] == ["lan", "internet", "far"]
    assert scen.segment_cidr("far") == "10.10.0.0/24"
    assert scen.network.scanner_gateway == "198.51.100.254"
    gw = scen.router("gw")
    assert [i.segment for i in gw.interfaces] == ["lan", "internet", "far"]
    assert gw.capture
    assert scen.device("far-cam").segment == "far"
    assert all(s.scanner_ip is None for s in scen.segments)  # far is routed only
    dns = scen.device("dns").services[0]
    assert dns.kind == "dns"
    assert dns.options["records"]["dev.hik-connect.com"] == "203.0.113.10"
    assert Scenario.from_dict(scen.to_dict(), source=scen.source) == scen


def test_two_legged_scenario_round_trips_with_derived_mac() -> None:
    scen = Scenario.from_dict(TWO_LEGGED)
    side = scen.segment("side")
    assert side.scanner_ip == "203.0.113.1"
    assert side.scanner_mac == "02:00:5e:10:01:01"  # derived: segment index 1
    assert Scenario.from_dict(scen.to_dict()) == scen


def test_single_segment_scenarios_are_unchanged() -> None:
    scen = load_scenario("foundation")
    assert scen.segments == () and scen.routers == ()
    assert all(d.segment == "lan" and d.gateway is None for d in scen.devices)
    assert "segment" not in scen.to_dict() and "router" not in scen.to_dict()


@pytest.mark.parametrize(
    ("path", "value", "field", "words"),
    [
        (
            "device.1.ip",
            "198.51.100.20",
            'device[1] "farcam".ip',
            'not inside segment "far" cidr 203.0.113.0/24',
        ),
        ("device.0.ip", "203.0.113.20", 'device[0] "cam".ip', "not inside network.cidr"),
        ("device.1.segment", "nowhere", 'device[1] "farcam".segment', "unknown segment 'nowhere'"),
        (
            "router.0.interface.1.segment",
            "nowhere",
            'router[0] "gw".interface[1].segment',
            "unknown segment 'nowhere' (known: lan, far)",
        ),
        (
            "router.0.interface.1.ip",
            "198.51.100.253",
            'router[0] "gw".interface[1].ip',
            'not inside segment "far"',
        ),
        (
            "router.0.interface.1.segment",
            "lan",
            'router[0] "gw".interface[1].segment',
            "already has an interface on 'lan'",
        ),
        (
            "router.0.interface.1.mac",
            "02:00:5e:10:00:01",
            'router[0] "gw".interface[1].mac',
            "already used by network.scanner_mac",
        ),
        ("router.0.interface", [], 'router[0] "gw".interface', "needs 1 to 16"),
        ("router.0.capture", "yes", 'router[0] "gw".capture', "must be true or false"),
        ("router.0.colour", "red", 'router[0] "gw".colour', "unknown key"),
        ("router.0.gateway", "198.51.100.254", 'router[0] "gw".gateway', "not the address"),
        (
            "device.0.ip",
            "198.51.100.254",
            'device[0] "cam".ip',
            'already used by router[0] "gw".interface[0].ip',
        ),
        ("device.0.name", "gw", 'device[0] "gw".name', "duplicate name 'gw'"),
        (
            "device.0.gateway",
            "198.51.100.99",
            'device[0] "cam".gateway',
            "not the address of a router interface on 'lan'",
        ),
        (
            "device.1.gateway",
            "198.51.100.254",
            'device[1] "farcam".gateway',
            "not the address of a router interface on 'far'",
        ),
        ("network.scanner_gateway", "198.51.100.77", "network.scanner_gateway", "not the address"),
        ("network.scanner_gateway", 7, "network.scanner_gateway", "must be a string"),
        ("segment.0.cidr", "198.51.100.128/25", 'segment[0] "far".cidr', "overlaps segment 'lan'"),
        ("segment.0.cidr", "192.0.2.0/24", 'segment[0] "far".cidr', "not inside one of"),
        ("segment.0.name", "lan", 'segment[0] "lan".name', "duplicate segment name"),
        ("segment.0.name", "Far Side", 'segment[0] "Far Side".name', "must match"),
        ("segment.0.colour", "red", 'segment[0] "far".colour', "unknown key"),
        ("segment.0.scanner_mac", "02:00:5e:10:01:01", 'segment[0] "far".scanner_mac', "needs"),
        ("segment.0.scanner_ip", "198.51.100.2", 'segment[0] "far".scanner_ip', "not inside"),
        ("segment", {"name": "x"}, "segment", "must be an array of tables"),
        (
            "device.0.service",
            [{"kind": "dns", "port": 53, "records": {"a.example": "8.8.8.8"}}],
            'device[0] "cam".service[0].records.a.example',
            "outside the documentation/private ranges",
        ),
        (
            "device.0.service",
            [{"kind": "dns", "port": 53}, {"kind": "http", "port": 53}],
            'device[0] "cam".service[1].port',
            "tcp/53 is already used",
        ),
        (
            "device.0.service",
            [
                {
                    "kind": "dns",
                    "port": 53,
                    "cnames": {"a.example": "b.example"},
                    "records": {"A.example.": "10.0.0.1"},
                }
            ],
            'device[0] "cam".service[0].cnames.a.example',
            "a CNAME must stand alone",
        ),
        (
            "device.0.service",
            [{"kind": "dns", "port": 53, "records": {"bad name": "10.0.0.1"}}],
            'device[0] "cam".service[0].records.bad name',
            "not a DNS host name",
        ),
        (
            "device.0.service",
            [{"kind": "dns", "port": 53, "mode": "evil"}],
            'device[0] "cam".service[0].mode',
            "not one of",
        ),
    ],
)
def test_segment_validation_names_file_and_field(
    path: str, value: Any, field: str, words: str
) -> None:
    with pytest.raises(ScenarioError) as info:
        Scenario.from_dict(mutated(BASE, path, value), source="lab/scenarios/x.toml")
    msg = str(info.value)
    assert msg.startswith(f"lab/scenarios/x.toml: {field}: "), msg
    assert words in msg, msg


def test_dns_without_tcp_leaves_tcp_port_free() -> None:
    services = [{"kind": "dns", "port": 53, "tcp": False}, {"kind": "http", "port": 53}]
    Scenario.from_dict(mutated(BASE, "device.0.service", services))


def test_router_gateway_chains_to_another_router() -> None:
    data = copy.deepcopy(BASE)
    data["segment"].append({"name": "back", "cidr": "10.30.0.0/24"})
    data["router"].append(
        {
            "name": "inner",
            "gateway": "203.0.113.254",
            "interface": [
                {"segment": "far", "ip": "203.0.113.253", "mac": "02:00:5e:20:01:01"},
                {"segment": "back", "ip": "10.30.0.254", "mac": "02:00:5e:20:01:02"},
            ],
        }
    )
    scen = Scenario.from_dict(data)
    assert scen.router("inner").gateway == "203.0.113.254"
    assert Scenario.from_dict(scen.to_dict()) == scen


# --- the DNS codec (no root) -----------------------------------------------------------

ZONE_OPTS: dict[str, Any] = {
    "records": {"dev.hik-connect.com": "203.0.113.10", "multi.example": ["10.0.0.1", "10.0.0.2"]},
    "cnames": {
        "www.hik-connect.com": "dev.hik-connect.com",
        "dangling.example": "gone.example",
        "loop-a.example": "loop-b.example",
        "loop-b.example": "loop-a.example",
    },
    "ttl": 60,
}


def query(name: str, qtype: int = A, qid: int = 0x2A2A, flags: int = 0x0100) -> bytes:
    """An RFC 1035 §4.1 query, as a stub resolver sends it."""
    head = struct.pack("!6H", qid, flags, 1, 0, 0, 0)
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split("."))
    return head + labels + b"\x00" + struct.pack("!HH", qtype, 1)


@pytest.fixture
def zone() -> Zone:
    DnsResponder.check(ZONE_OPTS)
    return Zone.from_options(ZONE_OPTS)


def test_dns_answers_records_cnames_and_nxdomain(zone: Zone) -> None:
    def ask(name: str, qtype: int = A) -> tuple[int, bool, list[tuple[str, int, str]]]:
        out = answer(query(name, qtype), zone)
        assert out is not None
        assert out[:2] == b"\x2a\x2a"  # the query's ID
        return dns_parse(out.hex())

    assert ask("dev.hik-connect.com") == (0, False, [("dev.hik-connect.com", A, "203.0.113.10")])
    assert ask("DEV.Hik-Connect.com")[2][0][2] == "203.0.113.10"  # names match in any case
    assert ask("www.hik-connect.com")[2] == [
        ("www.hik-connect.com", CNAME, "dev.hik-connect.com"),
        ("dev.hik-connect.com", A, "203.0.113.10"),
    ]
    assert [r[2] for r in ask("multi.example")[2]] == ["10.0.0.1", "10.0.0.2"]
    assert ask("nothing.example") == (3, False, [])  # NXDOMAIN
    rcode, _, recs = ask("dangling.example")
    assert rcode == 3 and recs == [("dangling.example", CNAME, "gone.example")]
    assert ask("loop-a.example")[0] == 2  # SERVFAIL
    assert ask("dev.hik-connect.com", AAAA) == (0, False, [])  # NODATA
    assert ask("www.hik-connect.com", CNAME)[2] == [
        ("www.hik-connect.com", CNAME, "dev.hik-connect.com")
    ]


def test_dns_refuses_what_it_should(zone: Zone) -> None:
    assert answer(b"\x00" * 11, zone) is None  # not even a header
    reply = answer(query("dev.hik-connect.com", flags=0x8100), zone)
    assert reply is None  # a response: never answered
    notimp = answer(query("x.example", flags=0x2900), zone)  # opcode 5 (UPDATE)
    assert notimp is not None and notimp[3] & 0x0F == 4
    bad = query("x.example")[:-3]  # question cut off
    formerr = answer(bad, zone)
    assert formerr is not None and formerr[3] & 0x0F == 1
    chaos = query("version.bind")[:-2] + b"\x00\x03"  # class CH
    refused = answer(chaos, zone)
    assert refused is not None and refused[3] & 0x0F == 5


def test_dns_hostile_modes(zone: Zone) -> None:
    q = query("www.hik-connect.com")
    tc = answer(q, zone, "tc")
    assert tc is not None
    assert dns_parse(tc.hex()) == (0, True, [])
    full = answer(q, zone, "tc", udp=False)  # TCP gets the whole answer
    assert full is not None and len(dns_parse(full.hex())[2]) == 2
    cut = answer(q, zone, "truncated")
    normal = answer(q, zone)
    assert cut is not None and normal is not None
    assert normal.startswith(cut) and len(cut) < len(normal)
    assert struct.unpack("!H", cut[6:8])[0] == 2  # still claims two answers
    bad = answer(q, zone, "malformed")
    assert bad is not None
    here = len(q)  # the answer starts right after the echoed question
    assert struct.unpack("!H", bad[here : here + 2])[0] == 0xC000 | here  # points at itself


def test_dns_big_answers_set_tc_over_udp() -> None:
    opts = {"records": {"many.example": [f"10.1.{i // 250}.{i % 250 + 1}" for i in range(40)]}}
    DnsResponder.check(opts)
    zone = Zone.from_options(opts)
    udp = answer(query("many.example"), zone)
    assert udp is not None and len(udp) <= UDP_LIMIT
    assert dns_parse(udp.hex())[1]
    tcp = answer(query("many.example"), zone, udp=False)
    assert tcp is not None and len(dns_parse(tcp.hex())[2]) == 40


@given(st.binary(max_size=700))
def test_dns_answer_never_raises(data: bytes) -> None:
    zone = Zone.from_options(ZONE_OPTS)
    for mode in ("normal", "malformed", "truncated", "tc"):
        out = answer(data, zone, mode)
        assert out is None or (len(out) >= 12 and out[:2] == data[:2])


@given(st.from_regex(r"[a-z0-9]{1,20}(\.[a-z0-9-]{1,20}){0,3}", fullmatch=True))
def test_dns_any_name_gets_a_wellformed_reply(name: str) -> None:
    out = answer(query(name), Zone.from_options(ZONE_OPTS))
    assert out is not None
    rcode, tc, _ = dns_parse(out.hex())
    assert rcode in (0, 2, 3) and not tc


# --- the namespace labs (root) -----------------------------------------------------------


def test_routed_lab_builds_and_names_things(lab_factory: LabFactory) -> None:
    lab = lab_factory("routed")
    assert lab.build_seconds is not None
    assert lab.scanner_ifaces == {"lan": "lab0"}
    assert lab.segment_cidr("internet") == "203.0.113.0/24"
    assert lab.router_ns("gw") in lab.namespaces
    assert lab.router_iface("gw", "lan") == "eth0"
    assert lab.router_iface("gw", "internet") == "eth1"
    assert lab.bridge("far") == "br2"
    env = lab.env({})
    assert env["LAB_IFACE"] == "lab0" and env["LAB_CIDR"] == "198.51.100.0/24"
    assert env["LAB_IFACES"] == "lab0"
    assert env["LAB_CIDRS"] == "198.51.100.0/24 203.0.113.0/24 10.10.0.0/24"
    with pytest.raises(KeyError):
        lab.router_ns("nope")
    with pytest.raises(KeyError):
        lab.router_iface("gw", "nope")
    # Forwarding is on in the router only; routers never ARP (static entries).
    fwd = lab.run_in_router("gw", ["cat", "/proc/sys/net/ipv4/ip_forward"], capture_output=True)
    assert fwd.stdout.strip() == "1"
    for cmd in (lab.run_in_scanner, lambda argv, **kw: lab.run_in_device("hik-cam", argv, **kw)):
        assert cmd(["cat", "/proc/sys/net/ipv4/ip_forward"], capture_output=True).stdout == "0\n"
    neigh = lab.run_in_router("gw", ["ip", "neigh", "show"], capture_output=True).stdout
    for dev in lab.devices:
        assert f"{dev.ip} dev {lab.router_iface('gw', dev.segment)} lladdr {dev.mac} PERMANENT" in (
            neigh
        )


def test_camera_reaches_cloud_and_dns_through_the_router(lab_factory: LabFactory) -> None:
    lab = lab_factory("routed")
    got = py_in(lab, ("device", "hik-cam"), HTTP_GET, "http://203.0.113.10/")
    assert got["http://203.0.113.10/"] == [200, "nginx", '{"status":"ok","service":"lab cloud"}']
    dns_ip = lab.device("dns").ip
    replies = py_in(
        lab,
        ("device", "dahua-cam"),
        DNS_ASK,
        dns_ip,
        "udp:dev.hik-connect.com:1",
        "udp:www.hik-connect.com:1",
        "udp:ntp.force.example:1",
        "udp:nothing.example:1",
        "tcp:dev.hik-connect.com:1",
    )
    parsed = [dns_parse(h) for h in replies]
    assert parsed[0] == (0, False, [("dev.hik-connect.com", A, "203.0.113.10")])
    assert parsed[1][2][-1] == ("dev.hik-connect.com", A, "203.0.113.10")
    assert parsed[2][2] == [("ntp.force.example", A, "203.0.113.123")]
    assert parsed[3][0] == 3
    assert parsed[4] == parsed[0]
    # The far camera reaches the internet side too (gw joins all three).
    got = py_in(lab, ("device", "far-cam"), HTTP_GET, "http://203.0.113.10/")
    assert got["http://203.0.113.10/"][0] == 200
    # and nothing in the router had to ARP for it
    neigh = lab.run_in_router("gw", ["ip", "neigh", "show", "nud", "all"], capture_output=True)
    lines = [ln for ln in neigh.stdout.splitlines() if ln.strip()]
    assert lines and all("PERMANENT" in ln for ln in lines), neigh.stdout


def test_scanner_reaches_far_camera_only_by_routing(lab_factory: LabFactory) -> None:
    lab = lab_factory("routed")
    far = lab.device("far-cam")
    got = py_in(lab, ("scanner", ""), TCP_CONNECT, far.ip, "80")
    assert got == {"peer": far.ip, "local": lab.scanner_ip}
    got = py_in(lab, ("scanner", ""), HTTP_GET, f"http://{far.ip}/")
    assert got[f"http://{far.ip}/"][1] == "Apache/2.4.62 (Unix)"
    # ARP for it on lab0 gets nothing: it is not on the scanner's wire. The router
    # answers for its own lan address only.
    seen = py_in(lab, ("scanner", ""), ARP_SCAN, "lab0", far.ip, "203.0.113.254", "198.51.100.254")
    assert seen == {"198.51.100.254": lab.router("gw").interface("lan").mac}
    neigh = lab.run_in_scanner(["ip", "neigh", "show"], capture_output=True).stdout
    assert far.mac not in neigh and far.ip not in neigh


def test_router_sniffer_sees_camera_traffic(lab_factory: LabFactory) -> None:
    lab = lab_factory("routed")
    cam, cloud = lab.device("hik-cam"), lab.device("cloud")
    iface = lab.router_iface("gw", "internet")
    sniffer = lab.popen_in_router(
        "gw",
        [sys.executable, "-c", SNIFF, iface, cam.ip, cloud.ip],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert sniffer.stdout is not None
        assert sniffer.stdout.readline().strip() == "READY"
        py_in(lab, ("device", "hik-cam"), HTTP_GET, f"http://{cloud.ip}/")
        out, err = sniffer.communicate(timeout=30)
    finally:
        if sniffer.poll() is None:
            sniffer.kill()
            sniffer.communicate()
    seen = json.loads(out)
    # Routed, not NATed: the camera's own address, the router's internet-side MAC.
    assert seen == {
        "eth_src": lab.router("gw").interface("internet").mac,
        "eth_dst": cloud.mac,
        "proto": socket.IPPROTO_TCP,
        "dport": 80,
    }, err


def test_second_scanner_interface_and_router_services(lab_factory: LabFactory) -> None:
    lab = lab_factory(Scenario.from_dict(TWO_LEGGED, source="two-legged"))
    assert lab.scanner_ifaces == {"lan": "lab0", "side": "lab1"}
    assert lab.env({})["LAB_IFACES"] == "lab0 lab1"
    addrs = lab.run_in_scanner(["ip", "-o", "-4", "addr"], capture_output=True).stdout
    assert "lab1    inet 203.0.113.1/24" in addrs
    side = lab.device("side-cam")
    assert py_in(lab, ("scanner", ""), ARP_SCAN, "lab1", side.ip) == {side.ip: side.mac}
    assert py_in(lab, ("scanner", ""), ARP_SCAN, "lab0", side.ip) == {}
    # the side device holds a static entry for the scanner's derived lab1 MAC
    neigh = lab.run_in_device("side-cam", ["ip", "neigh", "show"], capture_output=True).stdout
    assert "203.0.113.1 dev eth0 lladdr 02:00:5e:10:01:01 PERMANENT" in neigh
    got = py_in(lab, ("scanner", ""), TCP_CONNECT, side.ip, "80")
    assert got == {"peer": side.ip, "local": "203.0.113.1"}  # on-link, out of lab1


def test_router_runs_services_and_routes_the_back_segment(lab_factory: LabFactory) -> None:
    lab = lab_factory(Scenario.from_dict(TWO_LEGGED, source="two-legged"))
    urls = ["http://198.51.100.254/", "http://10.20.0.254/", "http://10.20.0.10/"]
    got = py_in(lab, ("scanner", ""), HTTP_GET, *urls)
    assert got[urls[0]] == [200, "lab-router", "edge"]
    assert got[urls[1]] == [200, "lab-router", "edge"]  # the router's far side, routed to
    assert got[urls[2]] == [200, "back", "back"]


def test_set_device_ip_moves_neighbour_entries_on_its_segment(lab_factory: LabFactory) -> None:
    lab = lab_factory("routed")
    far = lab.device("far-cam")
    lab.set_device_ip("far-cam", "10.10.0.21")
    assert lab.device("far-cam").segment == "far"
    neigh = lab.run_in_router("gw", ["ip", "neigh", "show"], capture_output=True).stdout
    assert f"10.10.0.21 dev eth2 lladdr {far.mac} PERMANENT" in neigh
    assert f"{far.ip} " not in neigh
    route = lab.run_in_device("far-cam", ["ip", "route"], capture_output=True).stdout
    assert "default via 10.10.0.254 dev eth0" in route
    got = py_in(lab, ("scanner", ""), TCP_CONNECT, "10.10.0.21", "80")
    assert got["peer"] == "10.10.0.21"
    with pytest.raises(ScenarioError, match='not inside segment "far"'):
        lab.set_device_ip("far-cam", "198.51.100.50")


def test_dns_hostile_modes_live(lab_factory: LabFactory) -> None:
    records = {"cam.example": "198.51.100.77"}
    devices = [
        {
            "name": f"dns-{mode}",
            "mac": f"02:00:5e:30:00:{i + 1:02x}",
            "ip": f"198.51.100.{50 + i}",
            "service": [{"kind": "dns", "port": 53, "records": records, "mode": mode}],
        }
        for i, mode in enumerate(("normal", "tc", "truncated", "malformed"))
    ]
    data = {"network": BASE["network"], "device": devices}
    lab = lab_factory(Scenario.from_dict(data, source="dns-modes"))
    out = {}
    for dev in lab.devices:
        out[dev.name] = py_in(
            lab, ("scanner", ""), DNS_ASK, dev.ip, "udp:cam.example:1", "tcp:cam.example:1"
        )
    want = [("cam.example", A, "198.51.100.77")]
    assert dns_parse(out["dns-normal"][0])[2] == want
    assert dns_parse(out["dns-tc"][0]) == (0, True, [])
    assert dns_parse(out["dns-tc"][1])[2] == want  # the TCP retry gets it all
    for name in ("dns-truncated", "dns-malformed"):
        raw = bytes.fromhex(out[name][0])
        assert raw[:2] == b"\x2a\x2a" and struct.unpack("!H", raw[6:8])[0] == 1


def root_view() -> tuple[str, str, str]:
    run = [
        subprocess.run(["ip", *args], capture_output=True, text=True, check=True).stdout
        for args in (["-o", "link"], ["-o", "-4", "addr"], ["route", "show", "table", "all"])
    ]
    links = "\n".join(sorted(line.split(":")[1].strip() for line in run[0].splitlines()))
    return links, run[1], run[2]


def test_nothing_in_the_root_namespace(lab_factory: LabFactory) -> None:
    before = root_view()
    lab = lab_factory("routed")
    lab2 = lab_factory(Scenario.from_dict(TWO_LEGGED, source="two-legged"))
    assert root_view() == before
    full = subprocess.run(["ip", "-d", "link"], capture_output=True, text=True).stdout
    macs = [d.mac for d in lab.devices + lab2.devices]
    macs += [i.mac for r in lab.routers + lab2.routers for i in r.interfaces]
    for mac in macs:
        assert mac not in full
    for name in ("lab1", "br1", "br2", "r01e0", "scan1"):
        assert f" {name}:" not in full and f" {name}@" not in full
    assert not any(ns in full for ns in lab.namespaces)


def test_teardown_removes_every_namespace(lab_factory: LabFactory) -> None:
    lab = lab_factory("routed")
    names, pid, prefix = set(lab.namespaces), lab.responder_pid, lab.prefix
    assert lab.router_ns("gw") in names and len(names) == 2 + 6 + 1
    assert names <= netns_names()
    lab.down()
    assert not names & netns_names()
    assert not is_responder(pid, prefix)
    assert not list(state_dir().glob(f"{prefix}.*"))
    lab.down()


def test_attach_sees_routers(lab_factory: LabFactory) -> None:
    lab = lab_factory("routed")
    again = Lab.attach(lab._state())
    assert again.router_ns("gw") == lab.router_ns("gw")
    assert again.namespaces == lab.namespaces
    assert again.scanner_ifaces == lab.scanner_ifaces
