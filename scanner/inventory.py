"""Merge: one scan's observations into devices.

Identity order: MAC, then serial number, then ONVIF/UPnP UUID, then IP. Every
identifier an observation carries links it to the others (union-find), except
that two different MACs are never merged: one IP answering with two MACs is
two devices (or a conflict worth seeing), not one.

One address may claim at most MAX_DEVICES_PER_IP devices in one scan: a host
answering a search as thousands of distinct devices (distinct MACs, serials
or UUIDs) is a flood or a broken responder, and storing every one would let
a single LAN peer fill the inventory. The devices the address answered ARP
for come first; the cut is logged once per address at WARNING.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable

from scanner.model import Device, Observation

_LOGGER = logging.getLogger(__name__)

MAX_DEVICES_PER_IP = 16

# serials that vendors ship on every unit, or placeholders: never an identity
_GENERIC_SERIALS = frozenset(
    {
        "",
        "0",
        "00000000",
        "123456",
        "1234567890",
        "unknown",
        "none",
        "null",
        "n/a",
        "na",
        "serial",
        "xxxxxxxx",
        "default",
    }
)


def _serial(o: Observation) -> str | None:
    value = (o.attrs.get("serial") or "").strip()
    if len(value) < 4 or value.lower() in _GENERIC_SERIALS or len(set(value)) == 1:
        return None
    return value.upper()


def _uuid(o: Observation) -> str | None:
    value = (o.attrs.get("uuid") or "").strip().lower()
    if value.startswith("urn:uuid:"):
        value = value[9:]
    if value.startswith("uuid:"):
        value = value[5:]
    return value or None


def identifiers(o: Observation) -> list[str]:
    """Every identity an observation carries, strongest first."""
    ids = []
    if o.mac:
        ids.append(f"mac:{o.mac}")
    if (s := _serial(o)) is not None:
        ids.append(f"serial:{s}")
    if (u := _uuid(o)) is not None:
        ids.append(f"uuid:{u}")
    ids.append(f"ip:{o.ip}")
    return ids


class _Groups:
    """Union-find over identifiers that refuses to join two MACs."""

    def __init__(self) -> None:
        self.parent: dict[str, str] = {}
        self.mac: dict[str, str | None] = {}

    def find(self, x: str) -> str:
        self.parent.setdefault(x, x)
        self.mac.setdefault(x, x[4:] if x.startswith("mac:") else None)
        root = x
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[x] != root:
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, a: str, b: str) -> bool:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return True
        ma, mb = self.mac[ra], self.mac[rb]
        if ma and mb and ma != mb:
            return False
        self.parent[rb] = ra
        self.mac[ra] = ma or mb
        return True


def merge(observations: Iterable[Observation]) -> list[Device]:
    """Group one scan's observations into devices; sorted by IP, then key."""
    obs = list(observations)
    groups = _Groups()
    # strong identities first, so IP links cannot glue two MAC devices together
    for o in obs:
        ids = identifiers(o)
        strong = ids[:-1]
        for other in strong[1:]:
            groups.union(strong[0], other)
        groups.find(ids[-1])
    for o in obs:
        ids = identifiers(o)
        groups.union(ids[0], ids[-1])
    devices: dict[str, Device] = {}
    for o in obs:
        root = groups.find(identifiers(o)[0])
        dev = devices.get(root)
        if dev is None:
            dev = devices[root] = Device(key="", ip=o.ip, mac=groups.mac[root])
        dev.observations.append(o)
    for dev in devices.values():
        dev.key = device_key(dev)
        dev.ip = _primary_ip(dev)
    kept = _cap_per_ip(devices.values())
    return sorted(kept, key=lambda d: (_ip_sort(d.ip), d.key))


def _cap_per_ip(devices: Iterable[Device], limit: int = MAX_DEVICES_PER_IP) -> list[Device]:
    """At most `limit` devices per primary address; the ARP-answering ones first."""
    by_ip: dict[str, list[Device]] = defaultdict(list)
    for dev in devices:
        by_ip[dev.ip].append(dev)
    out: list[Device] = []
    for ip, devs in by_ip.items():
        if len(devs) > limit:
            devs.sort(key=lambda d: (not _answered_arp(d), -len(d.observations), d.key))
            dropped = devs[limit:]
            _LOGGER.warning(
                "%s claims %d devices in one scan; kept %d, dropped %d with %d observations "
                "(a flood or a broken device)",
                ip,
                len(devs),
                limit,
                len(dropped),
                sum(len(d.observations) for d in dropped),
            )
            devs = devs[:limit]
        out += devs
    return out


def _answered_arp(dev: Device) -> bool:
    return any(str(o.source) == "arp" for o in dev.observations)


def device_key(dev: Device) -> str:
    """The device's identity: its MAC, else serial, else UUID, else IP."""
    if dev.mac:
        return f"mac:{dev.mac}"
    for prefix in ("serial:", "uuid:"):
        found = sorted(
            {i for o in dev.observations for i in identifiers(o) if i.startswith(prefix)}
        )
        if found:
            return found[0]
    return f"ip:{dev.observations[0].ip}"


def _primary_ip(dev: Device) -> str:
    """The address the device answered ARP on, else the most-seen one."""
    for o in dev.observations:
        if str(o.source) == "arp":
            return o.ip
    counts: dict[str, int] = {}
    for o in dev.observations:
        counts[o.ip] = counts.get(o.ip, 0) + 1
    return max(sorted(counts), key=lambda ip: counts[ip])


def _ip_sort(ip: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in ip.split("."))
    except ValueError:
        return (999,)
