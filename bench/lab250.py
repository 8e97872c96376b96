"""A big lab for benchmarks: N devices in one /24, cloned from the test scenarios.

Every device of the discovery scenarios is an archetype (its MAC prefix,
services and ground truth); clones get their own MAC (same OUI, new host
bits) and address. Hostile archetypes are left out: they have their own test.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any

from lab import Scenario, load_scenario

ARCHETYPE_SCENARIOS = ("foundation", "vendor", "lan", "banners", "onvif")
CIDR = "198.18.0.0/24"  # RFC 2544 benchmarking range
HOSTILE = ("slow", "endless", "bomb", "malformed", "tarpit", "flood")


def _hostile(device: dict[str, Any]) -> bool:
    if any(word in device["name"] for word in HOSTILE):
        return True
    return any(str(s.get("mode", "normal")) not in ("normal",) for s in device.get("service", []))


def archetypes(scenarios: Sequence[str] = ARCHETYPE_SCENARIOS) -> list[dict[str, Any]]:
    out = []
    for name in scenarios:
        try:
            scen = load_scenario(name)
        except Exception:  # a scenario not written yet: bench what exists
            continue
        for dev in scen.devices:
            d = dev.to_dict()
            if dev.segment != "lan" or _hostile(d):
                continue
            d["origin"] = f"{name}/{dev.name}"
            out.append(d)
    return out


def expected_maker(device: dict[str, Any]) -> str | None:
    expect = device.get("expect") or {}
    if expect.get("camera") is False:
        return None
    return expect.get("maker") or expect.get("vendor")


def _renamed(value: Any, old_mac: str, new_mac: str) -> Any:
    """``value`` with the archetype's MAC, in any spelling, replaced by the clone's.

    Scopes (onvif://.../MAC/...), TXT records (macaddress=ACCC8E...) and serials
    derived from the MAC would otherwise make every clone claim one identity,
    and the scanner would rightly merge them into one device.
    """
    if isinstance(value, str):
        for a, b in ((old_mac, new_mac), (old_mac.replace(":", ""), new_mac.replace(":", ""))):
            value = value.replace(a.lower(), b.lower()).replace(a.upper(), b.upper())
        return value
    if isinstance(value, list):
        return [_renamed(v, old_mac, new_mac) for v in value]
    if isinstance(value, dict):
        return {k: _renamed(v, old_mac, new_mac) for k, v in value.items()}
    return value


def scenario(
    n: int = 250, scenarios: Sequence[str] = ARCHETYPE_SCENARIOS
) -> tuple[Scenario, dict[str, str | None]]:
    """The scenario and the ground truth (ip -> expected maker, None for non-cameras)."""
    arch = archetypes(scenarios)
    net = ipaddress.ip_network(CIDR)
    hosts = list(net.hosts())
    devices, truth = [], {}
    for i in range(n):
        a = arch[i % len(arch)]
        ip = str(hosts[i + 1])  # .1 is the scanner
        prefix = a["mac"].split(":")[:3]
        mac = ":".join(
            [*prefix, f"{0x40 + i // 65536:02x}", f"{(i // 256) % 256:02x}", f"{i % 256:02x}"]
        )
        services = []
        for s in a.get("service", []):
            s = _renamed(dict(s), a["mac"], mac)  # MACs a device states about itself
            for key in ("ip",):  # options naming the archetype's own address
                if key in s:
                    s[key] = ip
            services.append(s)
        devices.append(
            {
                "name": f"b{i:03d}",
                "mac": mac,
                "ip": ip,
                "description": a["origin"],
                "expect": a.get("expect", {}),
                "service": services,
            }
        )
        truth[ip] = expected_maker(a)
    data = {
        "description": f"{n} cloned camera devices for benchmarks",
        "network": {"cidr": CIDR, "scanner_ip": str(hosts[0]), "scanner_mac": "02:00:5e:18:00:01"},
        "device": devices,
    }
    return Scenario.from_dict(data, source="bench/lab250.py", name=f"bench{n}"), truth
