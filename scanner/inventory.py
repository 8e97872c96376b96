"""Merge: one scan's observations into devices.

Identity order: MAC first (a device that changes IP keeps its identity), then
IP for hosts seen without one. Later sources (serial, ONVIF/UPnP UUID) slot in
between.
"""

from __future__ import annotations

from collections.abc import Iterable

from scanner.model import Device, Observation


def device_key(mac: str | None, ip: str) -> str:
    return f"mac:{mac}" if mac else f"ip:{ip}"


def merge(observations: Iterable[Observation]) -> list[Device]:
    """Group observations into devices, MAC before IP; output sorted by IP then key."""
    obs = list(observations)
    by_key: dict[str, Device] = {}
    ip_to_key: dict[str, str] = {}
    for o in obs:
        if o.mac:
            key = device_key(o.mac, o.ip)
            dev = by_key.setdefault(key, Device(key=key, ip=o.ip, mac=o.mac))
            dev.observations.append(o)
            ip_to_key.setdefault(o.ip, key)
    for o in obs:
        if o.mac:
            continue
        key = ip_to_key.get(o.ip) or device_key(None, o.ip)
        dev = by_key.setdefault(key, Device(key=key, ip=o.ip, mac=None))
        dev.observations.append(o)
    return sorted(by_key.values(), key=lambda d: (_ip_sort(d.ip), d.key))


def _ip_sort(ip: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in ip.split("."))
    except ValueError:
        return (999,)
