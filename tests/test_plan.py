"""`scanner scan --plan`: the counts follow the scope, the settings and the probes' constants.

The lab half (what a real scan sends, per host, against these bounds) is in
tests/test_discovery_lab.py.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network
from typing import Any

import pytest

from scanner.config import PROTOCOLS, Config, parse_cidr, with_overrides
from scanner.discovery import dhip, mdns, onvif, sadp, ssdp, wsd, xmeye
from scanner.discovery.arp import InterfaceInfo
from scanner.discovery.base import TCP_CONNECT_PACKETS
from scanner.plan import (
    IGMP_REPORTS_PER_GROUP,
    KERNEL_ARP_PER_HOST,
    Plan,
    PlanLine,
    banner_packets,
    render_plan,
    scan_plan,
)
from scanner.probe import http, rtsp
from scanner.probe.banners import CAMERA_PORTS

LAB0 = InterfaceInfo(
    "lab0", "02:00:5e:10:00:01", IPv4Address("198.51.100.1"), IPv4Network("198.51.100.0/24")
)
LAB1 = InterfaceInfo(
    "lab1", "02:00:5e:10:01:01", IPv4Address("203.0.113.1"), IPv4Network("203.0.113.0/24")
)


def plan_for(
    cidrs: list[str],
    ifaces: list[InterfaceInfo] | None = None,
    protocols: tuple[str, ...] = PROTOCOLS,
    **settings: Any,
) -> Plan:
    ifaces = ifaces or [LAB0]
    cfg = with_overrides(Config(), interfaces=[i.name for i in ifaces], cidrs=cidrs)
    cfg = replace(cfg, scan=replace(cfg.scan, protocols=protocols, **settings))
    return scan_plan(cfg, ifaces)


def line(plan: Plan, protocol: str, *, unicast: bool | None = None) -> PlanLine:
    found = [x for x in plan.lines if x.protocol == protocol]
    if unicast is not None:
        found = [x for x in found if x.budgeted is unicast]
    assert len(found) == 1, (protocol, plan.lines)
    return found[0]


def test_a_slash_24_with_every_protocol() -> None:
    plan = plan_for(["198.51.100.0/24"])
    assert plan.hosts == 253  # .0, .255 and the scanner's own .1 are not probed
    assert line(plan, "arp").packets == 253 * 2  # one request and one retry round
    assert line(plan, "arp (kernel)").packets == 253 * KERNEL_ARP_PER_HOST
    # multicast and broadcast searches, per interface, from the modules' own constants
    assert line(plan, "sadp").packets == len(sadp.DESTINATIONS) == 1
    assert line(plan, "dhip").packets == len(dhip.DESTINATIONS) == 2  # group + broadcast
    assert line(plan, "xmeye").packets == len(xmeye.DESTINATIONS) == 1
    assert line(plan, "ssdp", unicast=False).packets == len(ssdp.SEARCH_TARGETS) == 3
    # mDNS: the browse's queries, then at most MAX_RESOLVE_QUERIES follow-ups
    assert line(plan, "mdns").packets == mdns.planned_queries(mdns.MIN_BROWSE_S) == 3 + 12
    # WS-Discovery: typed (NVT, Device) and untyped multicast Probes, then two per host
    assert line(plan, "wsd", unicast=False).packets == len(wsd.MULTICAST_PROBES) == 3
    unicast_wsd = line(plan, "wsd", unicast=True)
    assert (unicast_wsd.per_host, unicast_wsd.packets) == (2, 253 * 2)
    assert len(wsd.UNICAST_PROBES) == 2
    assert line(plan, "igmp").packets == 3 * IGMP_REPORTS_PER_GROUP  # SADP, DHIP, mDNS groups
    # ONVIF: three SOAP requests per device service, one connection each, over TLS at worst
    assert onvif.SOAP_REQUESTS == 3
    assert line(plan, "onvif").per_host == 3 * (TCP_CONNECT_PACKETS + 1 + 2) == 18
    # every banner port and the vendor paths together are more than the budget allows
    banners = line(plan, "http+rtsp+tls")
    assert banners.per_host == banner_packets(set(PROTOCOLS)) > 40
    assert plan.per_host == 40 == plan.per_host_budget
    fixed = 253 * 2 + 253 * 3 + 1 + 2 + 1 + 3 + 15 + 3 + 12
    assert plan.total == fixed + 253 * 40
    assert plan.arp_per_host == 2 + KERNEL_ARP_PER_HOST


def test_banner_costs_per_port() -> None:
    per_vendor_path = TCP_CONNECT_PACKETS + http.HTTPS_REQUESTS
    assert len(CAMERA_PORTS) == 13
    # 5 HTTP ports x 4, 2 HTTPS x 6, 3 RTSP x 5, 3 connect-only x 3, 6 vendor paths x 6
    assert banner_packets({"http", "tls", "rtsp"}) == 20 + 12 + 15 + 9 + 6 * per_vendor_path
    assert banner_packets({"rtsp"}) == 3 * (TCP_CONNECT_PACKETS + rtsp.RTSP_REQUESTS) == 15
    assert banner_packets({"tls"}) == 2 * 5  # the certificate alone, on 443 and 8443
    assert banner_packets(set()) == 0


def test_the_budget_caps_only_what_exceeds_it() -> None:
    plan = plan_for(["198.51.100.0/28"], protocols=("arp", "wsd", "onvif"))
    assert plan.hosts == 13
    assert plan.per_host == 2 + 18  # under the budget: the lines' sum
    assert "min(20, budget 40)" in render_plan(plan)
    small = plan_for(["198.51.100.0/28"], per_host_packets=10)
    assert small.per_host == 10
    assert small.total < plan_for(["198.51.100.0/28"]).total


def test_onvif_needs_wsd_and_no_arp_no_arp_lines() -> None:
    plan = plan_for(["198.51.100.0/28"], protocols=("onvif", "http"))
    assert line(plan, "onvif").packets == 0
    assert "needs wsd" in line(plan, "onvif").targets
    assert not [x for x in plan.lines if x.protocol == "arp"]
    assert not [x for x in plan.lines if x.protocol == "igmp"]
    assert plan.arp_per_host == KERNEL_ARP_PER_HOST


def test_routed_targets_and_exclusions_and_two_interfaces() -> None:
    # a routed /28 (no interface there): probed by unicast, never ARPed
    plan = plan_for(["198.51.100.0/24", "10.10.0.0/28"])
    assert plan.hosts == 253 + 14
    assert line(plan, "arp").packets == 253 * 2
    assert line(plan, "arp (kernel)").packets == (253 + 1) * KERNEL_ARP_PER_HOST  # + the gateway
    assert line(plan, "wsd", unicast=True).packets == (253 + 14) * 2

    cfg = with_overrides(Config(), interfaces=["lab0"], cidrs=["198.51.100.0/24"])
    cfg = replace(cfg, scope=replace(cfg.scope, exclude=(parse_cidr("198.51.100.128/25"),)))
    excluded = scan_plan(cfg, [LAB0])
    assert excluded.hosts == 126  # .1 is the scanner; .128-.255 are excluded
    assert line(excluded, "arp").packets == 126 * 2

    both = plan_for(["198.51.100.0/24", "203.0.113.0/24"], [LAB0, LAB1])
    assert both.hosts == 253 * 2
    assert line(both, "wsd", unicast=False).packets == 2 * 3  # per interface
    assert line(both, "dhip").packets == 2 * 2
    assert line(both, "igmp").packets == 2 * 3 * IGMP_REPORTS_PER_GROUP


def test_render_names_every_line_and_the_total() -> None:
    plan = plan_for(["198.51.100.0/24"])
    text = render_plan(plan)
    assert "tcp/80,554,443,8000,37777,34567,8080,8443,8554,8899,9000,81,10554" in text
    assert text.splitlines()[-2].split()[-1] == str(plan.total)
    assert "min(160, budget 40)" in text
    assert text.endswith("outside `exclude`\n")


def test_cli_plan_sends_nothing_and_prints_the_table() -> None:
    # `lo` holds no scope address: every target counts as routed, nothing is sent
    argv = ["scan", "--plan", "--interface", "lo", "--cidr", "198.51.100.0/28"]
    r = subprocess.run(
        [sys.executable, "-m", "scanner", *argv, "--protocol", "wsd", "--protocol", "onvif"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    rows = {ln.split()[0]: ln.split() for ln in r.stdout.splitlines() if ln}
    assert rows["total"][-1] == str(3 + 3 + 14 * 20)  # multicast, kernel ARP, 14 hosts x 20
    assert "nothing was sent" in r.stdout


@pytest.mark.parametrize("timeout", [0.5, 2.0, 10.0])
def test_mdns_queries_follow_the_browse_time(timeout: float) -> None:
    plan = plan_for(["198.51.100.0/28"], protocols=("mdns",), timeout=timeout)
    browse = min(max(timeout, mdns.MIN_BROWSE_S), mdns.MAX_BROWSE_S)
    assert line(plan, "mdns").packets == mdns._estimated_queries(browse) + mdns.MAX_RESOLVE_QUERIES


def test_an_mdns_follow_up_is_charged_for_every_query_it_can_send() -> None:
    # zeroconf's ServiceInfo.request asks at 0 s, ~0.2 s, then about once a second
    assert mdns._request_queries(50) == 1
    assert mdns._request_queries(200) == 1
    assert mdns._request_queries(201) == 2
    assert mdns._request_queries(mdns.RESOLVE_S * 1000) == 3
    assert mdns._request_queries(3000) == 4
