"""Scenario files: the simulated LAN described as data (TOML), checked hard.

The lab only ever uses documentation, benchmarking or private addresses, so a
scenario that names anything else is refused before a single namespace exists.
Errors name the file and the field, e.g.
``lab/scenarios/x.toml: device[2] "hik-cam".mac: ...``.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

SCENARIO_DIR = Path(__file__).resolve().parent / "scenarios"

# Ranges a lab may use. RFC 6890 lists all of these as special-purpose, never
# globally routed: documentation (RFC 5737), private (RFC 1918) and
# benchmarking (RFC 2544, handy for the 250-device bench lab).
ALLOWED_RANGES: tuple[tuple[ipaddress.IPv4Network, str], ...] = tuple(
    (ipaddress.IPv4Network(net), why)
    for net, why in (
        ("198.51.100.0/24", "RFC 5737 TEST-NET-1"),
        ("198.51.100.0/24", "RFC 5737 TEST-NET-2"),
        ("203.0.113.0/24", "RFC 5737 TEST-NET-3"),
        ("10.0.0.0/8", "RFC 1918"),
        ("172.16.0.0/12", "RFC 1918"),
        ("192.168.0.0/16", "RFC 1918"),
        ("198.18.0.0/15", "RFC 2544 benchmarking"),
    )
)

_MAC_RE = re.compile(r"^[0-9a-f]{2}([:-])[0-9a-f]{2}(\1[0-9a-f]{2}){4}$")
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")


class ScenarioError(ValueError):
    """A scenario that is malformed or names an address the lab may not use."""


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """One listening service of a device; ``options`` is the rest of its table."""

    kind: str
    port: int
    options: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "port": self.port, **self.options}


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    name: str
    mac: str  # normalised aa:bb:cc:dd:ee:ff
    ip: str
    services: tuple[ServiceSpec, ...] = ()
    description: str = ""
    # Ground truth for tests ("vendor", "country", ...); the lab ignores it.
    expect: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "mac": self.mac, "ip": self.ip}
        if self.description:
            out["description"] = self.description
        if self.expect:
            out["expect"] = dict(self.expect)
        out["service"] = [s.to_dict() for s in self.services]
        return out


@dataclass(frozen=True, slots=True)
class NetworkSpec:
    cidr: str
    scanner_ip: str
    scanner_mac: str

    @property
    def prefixlen(self) -> int:
        return ipaddress.IPv4Network(self.cidr).prefixlen


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    network: NetworkSpec
    devices: tuple[DeviceSpec, ...]
    description: str = ""
    source: str = "<memory>"  # file it came from, for error messages

    @property
    def cidr(self) -> str:
        return self.network.cidr

    def device(self, name: str) -> DeviceSpec:
        for dev in self.devices:
            if dev.name == name:
                return dev
        raise KeyError(f"no device named {name!r} in scenario {self.name!r}")

    def with_device_ip(self, name: str, ip: str) -> Scenario:
        """The same scenario with one device moved to a new IP (checked)."""
        self.device(name)
        devices = tuple(replace(d, ip=ip) if d.name == name else d for d in self.devices)
        return Scenario.from_dict(replace(self, devices=devices).to_dict(), source=self.source)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.description:
            out["description"] = self.description
        out["network"] = {
            "cidr": self.network.cidr,
            "scanner_ip": self.network.scanner_ip,
            "scanner_mac": self.network.scanner_mac,
        }
        out["device"] = [d.to_dict() for d in self.devices]
        return out

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], *, source: str = "<memory>", name: str | None = None
    ) -> Scenario:
        """Build and validate a scenario from parsed TOML (or generated data)."""
        return _Parser(source).scenario(data, name)


def load_scenario(path_or_name: str | Path) -> Scenario:
    """Load ``lab/scenarios/<name>.toml`` by name, or any TOML file by path."""
    path = resolve_scenario_path(path_or_name)
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ScenarioError(f"{path}: no such scenario file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{path}: not valid TOML: {exc}") from None
    return Scenario.from_dict(data, source=str(path), name=path.stem)


def resolve_scenario_path(path_or_name: str | Path) -> Path:
    text = str(path_or_name)
    if isinstance(path_or_name, Path) or "/" in text or text.endswith(".toml"):
        return Path(path_or_name)
    if not _NAME_RE.match(text):
        raise ScenarioError(f"{text!r}: not a scenario name or path")
    return SCENARIO_DIR / f"{text}.toml"


def allowed_range(ip: ipaddress.IPv4Address | ipaddress.IPv4Network) -> str | None:
    """Why the lab may use this address or network, or None if it may not."""
    for net, why in ALLOWED_RANGES:
        if ip.subnet_of(net) if isinstance(ip, ipaddress.IPv4Network) else ip in net:
            return why
    return None


def normalise_mac(text: str) -> str | None:
    """``aa:bb:cc:dd:ee:ff`` for a usable unicast MAC, else None."""
    mac = text.strip().lower()
    if not _MAC_RE.match(mac):
        return None
    mac = mac.replace("-", ":")
    first = int(mac[:2], 16)
    if first & 1 or mac == "00:00:00:00:00:00":  # multicast/broadcast or null
        return None
    return mac


class _Parser:
    """Walks the TOML keeping a path like ``device[2] "cam".service[0]``."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, msg: str) -> ScenarioError:
        return ScenarioError(f"{self.source}: {where}: {msg}")

    def table(
        self, value: Any, where: str, allowed: set[str], required: set[str]
    ) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(where, "must be a table")
        unknown = sorted(set(value) - allowed)
        if unknown:
            raise self.fail(
                f"{where}.{unknown[0]}", f"unknown key (allowed: {', '.join(sorted(allowed))})"
            )
        missing = sorted(required - set(value))
        if missing:
            raise self.fail(f"{where}.{missing[0]}", "missing")
        return dict(value)

    def string(self, value: Any, where: str) -> str:
        if not isinstance(value, str):
            raise self.fail(where, f"must be a string, not {type(value).__name__}")
        return value

    def ip(self, value: Any, where: str, net: ipaddress.IPv4Network) -> str:
        text = self.string(value, where)
        try:
            ip = ipaddress.IPv4Address(text)
        except ValueError:
            raise self.fail(where, f"{text!r} is not an IPv4 address") from None
        if allowed_range(ip) is None:
            raise self.fail(where, f"{text} is outside the documentation/private ranges")
        if ip not in net:
            raise self.fail(where, f"{text} is not inside network.cidr {net}")
        if net.prefixlen < 31 and ip in (net.network_address, net.broadcast_address):
            raise self.fail(where, f"{text} is the network or broadcast address of {net}")
        return str(ip)

    def mac(self, value: Any, where: str) -> str:
        text = self.string(value, where)
        mac = normalise_mac(text)
        if mac is None:
            raise self.fail(
                where, f"{text!r} is not a unicast MAC address (want aa:bb:cc:dd:ee:ff)"
            )
        return mac

    def scenario(self, data: Mapping[str, Any], name: str | None) -> Scenario:
        top = self.table(
            data, "scenario", {"name", "description", "network", "device"}, {"network"}
        )
        net_t = self.table(
            top["network"],
            "network",
            {"cidr", "scanner_ip", "scanner_mac"},
            {"cidr", "scanner_ip", "scanner_mac"},
        )
        cidr_text = self.string(net_t["cidr"], "network.cidr")
        try:
            net = ipaddress.IPv4Network(cidr_text)
        except ValueError as exc:
            raise self.fail("network.cidr", f"{cidr_text!r}: {exc}") from None
        if allowed_range(net) is None:
            allowed = ", ".join(f"{n} ({why})" for n, why in ALLOWED_RANGES)
            raise self.fail("network.cidr", f"{net} is not inside one of: {allowed}")
        if net.prefixlen > 30:
            raise self.fail("network.cidr", f"{net} is too small for a LAN")
        network = NetworkSpec(
            cidr=str(net),
            scanner_ip=self.ip(net_t["scanner_ip"], "network.scanner_ip", net),
            scanner_mac=self.mac(net_t["scanner_mac"], "network.scanner_mac"),
        )
        ips = {network.scanner_ip: "network.scanner_ip"}
        macs = {network.scanner_mac: "network.scanner_mac"}
        names: set[str] = set()
        raw_devices = top.get("device", [])
        if not isinstance(raw_devices, list):
            raise self.fail("device", "must be an array of tables ([[device]])")
        devices = []
        for i, raw in enumerate(raw_devices):
            where = f"device[{i}]"
            if isinstance(raw, Mapping) and isinstance(raw.get("name"), str):
                where += f' "{raw["name"]}"'
            dev = self.device(raw, where, net)
            if dev.name in names:
                raise self.fail(f"{where}.name", f"duplicate device name {dev.name!r}")
            if dev.ip in ips:
                raise self.fail(f"{where}.ip", f"{dev.ip} is already used by {ips[dev.ip]}")
            if dev.mac in macs:
                raise self.fail(f"{where}.mac", f"{dev.mac} is already used by {macs[dev.mac]}")
            names.add(dev.name)
            ips[dev.ip] = f"{where}.ip"
            macs[dev.mac] = f"{where}.mac"
            devices.append(dev)
        scen_name = top.get("name", name or Path(self.source).stem)
        return Scenario(
            name=self.string(scen_name, "name"),
            network=network,
            devices=tuple(devices),
            description=self.string(top.get("description", ""), "description"),
            source=self.source,
        )

    def device(self, raw: Any, where: str, net: ipaddress.IPv4Network) -> DeviceSpec:
        d = self.table(
            raw,
            where,
            {"name", "mac", "ip", "description", "expect", "service"},
            {"name", "mac", "ip"},
        )
        name = self.string(d["name"], f"{where}.name")
        if not _NAME_RE.match(name):
            raise self.fail(f"{where}.name", f"{name!r} must match {_NAME_RE.pattern}")
        expect = d.get("expect", {})
        if not isinstance(expect, Mapping):
            raise self.fail(f"{where}.expect", "must be a table")
        raw_services = d.get("service", [])
        if not isinstance(raw_services, list):
            raise self.fail(f"{where}.service", "must be an array of tables ([[device.service]])")
        services = []
        seen_ports: dict[tuple[str, int], str] = {}
        for j, raw_s in enumerate(raw_services):
            swhere = f"{where}.service[{j}]"
            svc, transport = self.service(raw_s, swhere)
            key = (transport, svc.port)
            if key in seen_ports:
                raise self.fail(
                    f"{swhere}.port", f"{transport}/{svc.port} is already used by {seen_ports[key]}"
                )
            seen_ports[key] = swhere
            services.append(svc)
        return DeviceSpec(
            name=name,
            mac=self.mac(d["mac"], f"{where}.mac"),
            ip=self.ip(d["ip"], f"{where}.ip", net),
            services=tuple(services),
            description=self.string(d.get("description", ""), f"{where}.description"),
            expect=dict(expect),
        )

    def service(self, raw: Any, where: str) -> tuple[ServiceSpec, str]:
        from lab.responders import OptionError, registry  # registry imports this module

        if not isinstance(raw, Mapping):
            raise self.fail(where, "must be a table")
        for key in ("kind", "port"):
            if key not in raw:
                raise self.fail(f"{where}.{key}", "missing")
        kind = self.string(raw["kind"], f"{where}.kind")
        kinds = registry()
        if kind not in kinds:
            raise self.fail(
                f"{where}.kind", f"unknown kind {kind!r} (known: {', '.join(sorted(kinds))})"
            )
        port = raw["port"]
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise self.fail(f"{where}.port", f"{port!r} is not a port number 1..65535")
        options = {k: v for k, v in raw.items() if k not in ("kind", "port")}
        cls = kinds[kind]
        try:
            cls.check(options)
        except OptionError as exc:
            raise self.fail(f"{where}.{exc.field}" if exc.field else where, exc.message) from None
        return ServiceSpec(kind=kind, port=port, options=options), cls.transport
