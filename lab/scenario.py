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
        # 192.0.2.0/24 (TEST-NET-1) is left out on purpose: the development
        # machine's real interface sits in it, so a scanner run by mistake
        # outside the lab must never find a lab-shaped scope there.
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


PRIMARY_SEGMENT = "lan"  # the [network] table's segment; the scanner's lab0 is on it
MAX_ROUTER_INTERFACES = 16  # eth0..eth15
MAX_SEGMENTS = 64  # one bridge each


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
    segment: str = PRIMARY_SEGMENT
    gateway: str | None = None  # default route via a router on the device's segment

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "mac": self.mac, "ip": self.ip}
        if self.segment != PRIMARY_SEGMENT:
            out["segment"] = self.segment
        if self.gateway:
            out["gateway"] = self.gateway
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
    scanner_gateway: str | None = None  # the scanner's default route (a lab router)

    @property
    def prefixlen(self) -> int:
        return ipaddress.IPv4Network(self.cidr).prefixlen


@dataclass(frozen=True, slots=True)
class SegmentSpec:
    """One L2 segment (a bridge); the scanner has an interface on it if scanner_ip is set."""

    name: str
    cidr: str
    scanner_ip: str | None = None
    scanner_mac: str | None = None

    @property
    def prefixlen(self) -> int:
        return ipaddress.IPv4Network(self.cidr).prefixlen

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "cidr": self.cidr}
        if self.scanner_ip:
            out["scanner_ip"] = self.scanner_ip
        if self.scanner_mac:
            out["scanner_mac"] = self.scanner_mac
        return out


@dataclass(frozen=True, slots=True)
class RouterInterfaceSpec:
    segment: str
    ip: str
    mac: str

    def to_dict(self) -> dict[str, Any]:
        return {"segment": self.segment, "ip": self.ip, "mac": self.mac}


@dataclass(frozen=True, slots=True)
class RouterSpec:
    """A namespace that forwards between its segments (ip_forward=1 there only)."""

    name: str
    interfaces: tuple[RouterInterfaceSpec, ...]
    services: tuple[ServiceSpec, ...] = ()
    description: str = ""
    capture: bool = False  # documents a place to sniff; no behaviour
    gateway: str | None = None  # default route via another router

    def interface(self, segment: str) -> RouterInterfaceSpec:
        for iface in self.interfaces:
            if iface.segment == segment:
                return iface
        raise KeyError(f"router {self.name!r} has no interface on segment {segment!r}")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.description:
            out["description"] = self.description
        if self.capture:
            out["capture"] = True
        if self.gateway:
            out["gateway"] = self.gateway
        out["interface"] = [i.to_dict() for i in self.interfaces]
        out["service"] = [s.to_dict() for s in self.services]
        return out


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    network: NetworkSpec
    devices: tuple[DeviceSpec, ...]
    description: str = ""
    source: str = "<memory>"  # file it came from, for error messages
    segments: tuple[SegmentSpec, ...] = ()  # extra segments; "lan" is ``network``
    routers: tuple[RouterSpec, ...] = ()

    @property
    def cidr(self) -> str:
        return self.network.cidr

    @property
    def all_segments(self) -> tuple[SegmentSpec, ...]:
        """Every segment, the primary "lan" (from ``[network]``) first."""
        lan = SegmentSpec(
            name=PRIMARY_SEGMENT,
            cidr=self.network.cidr,
            scanner_ip=self.network.scanner_ip,
            scanner_mac=self.network.scanner_mac,
        )
        return (lan, *self.segments)

    def segment(self, name: str) -> SegmentSpec:
        for seg in self.all_segments:
            if seg.name == name:
                return seg
        raise KeyError(f"no segment named {name!r} in scenario {self.name!r}")

    def segment_cidr(self, name: str) -> str:
        return self.segment(name).cidr

    def device(self, name: str) -> DeviceSpec:
        for dev in self.devices:
            if dev.name == name:
                return dev
        raise KeyError(f"no device named {name!r} in scenario {self.name!r}")

    def router(self, name: str) -> RouterSpec:
        for router in self.routers:
            if router.name == name:
                return router
        raise KeyError(f"no router named {name!r} in scenario {self.name!r}")

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
        if self.network.scanner_gateway:
            out["network"]["scanner_gateway"] = self.network.scanner_gateway
        if self.segments:
            out["segment"] = [s.to_dict() for s in self.segments]
        if self.routers:
            out["router"] = [r.to_dict() for r in self.routers]
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


_Nets = dict[str, tuple[ipaddress.IPv4Network, str]]  # segment -> (cidr, label for errors)


class _Parser:
    """Walks the TOML keeping a path like ``device[2] "cam".service[0]``."""

    def __init__(self, source: str) -> None:
        self.source = source
        # Every address, MAC and host name in the lab -> the field that claimed it.
        self.ips: dict[str, str] = {}
        self.macs: dict[str, str] = {}
        self.names: dict[str, str] = {}

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

    def array(self, value: Any, where: str, hint: str) -> list[Any]:
        if not isinstance(value, list):
            raise self.fail(where, f"must be an array of tables ([[{hint}]])")
        return value

    def string(self, value: Any, where: str) -> str:
        if not isinstance(value, str):
            raise self.fail(where, f"must be a string, not {type(value).__name__}")
        return value

    def name(self, value: Any, where: str) -> str:
        name = self.string(value, where)
        if not _NAME_RE.match(name):
            raise self.fail(where, f"{name!r} must match {_NAME_RE.pattern}")
        return name

    @staticmethod
    def labelled(where: str, raw: Any) -> str:
        """``device[2]`` -> ``device[2] "cam"`` when the table names itself."""
        if isinstance(raw, Mapping) and isinstance(raw.get("name"), str):
            return f'{where} "{raw["name"]}"'
        return where

    def cidr(self, value: Any, where: str) -> ipaddress.IPv4Network:
        text = self.string(value, where)
        try:
            net = ipaddress.IPv4Network(text)
        except ValueError as exc:
            raise self.fail(where, f"{text!r}: {exc}") from None
        if allowed_range(net) is None:
            allowed = ", ".join(f"{n} ({why})" for n, why in ALLOWED_RANGES)
            raise self.fail(where, f"{net} is not inside one of: {allowed}")
        if net.prefixlen > 30:
            raise self.fail(where, f"{net} is too small for a LAN")
        return net

    def ip(
        self, value: Any, where: str, net: ipaddress.IPv4Network, label: str = "network.cidr"
    ) -> str:
        text = self.string(value, where)
        try:
            ip = ipaddress.IPv4Address(text)
        except ValueError:
            raise self.fail(where, f"{text!r} is not an IPv4 address") from None
        if allowed_range(ip) is None:
            raise self.fail(where, f"{text} is outside the documentation/private ranges")
        if ip not in net:
            raise self.fail(where, f"{text} is not inside {label} {net}")
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

    def claim(self, seen: dict[str, str], value: str, where: str) -> None:
        """Record an IP or MAC as used by ``where``; refuse a second user."""
        if value in seen:
            raise self.fail(where, f"{value} is already used by {seen[value]}")
        seen[value] = where

    def claim_name(self, name: str, where: str) -> None:
        """Device and router names share one namespace (they name lab hosts)."""
        if name in self.names:
            raise self.fail(where, f"duplicate name {name!r} (also {self.names[name]})")
        self.names[name] = where

    def segment_ref(self, value: Any, where: str, nets: _Nets) -> str:
        name = self.string(value, where)
        if name not in nets:
            raise self.fail(where, f"unknown segment {name!r} (known: {', '.join(nets)})")
        return name

    def scenario(self, data: Mapping[str, Any], name: str | None) -> Scenario:
        top = self.table(
            data,
            "scenario",
            {"name", "description", "network", "segment", "router", "device"},
            {"network"},
        )
        net_t = self.table(
            top["network"],
            "network",
            {"cidr", "scanner_ip", "scanner_mac", "scanner_gateway"},
            {"cidr", "scanner_ip", "scanner_mac"},
        )
        net = self.cidr(net_t["cidr"], "network.cidr")
        nets: _Nets = {PRIMARY_SEGMENT: (net, "network.cidr")}
        scanner_ip = self.ip(net_t["scanner_ip"], "network.scanner_ip", net)
        scanner_mac = self.mac(net_t["scanner_mac"], "network.scanner_mac")
        self.claim(self.ips, scanner_ip, "network.scanner_ip")
        self.claim(self.macs, scanner_mac, "network.scanner_mac")
        segments = self.segments(top.get("segment", []), nets)
        routers = self.routers(top.get("router", []), nets)
        gateway = None
        if "scanner_gateway" in net_t:
            gateway = self.gateway(
                net_t["scanner_gateway"], "network.scanner_gateway", [PRIMARY_SEGMENT], routers
            )
        network = NetworkSpec(
            cidr=str(net), scanner_ip=scanner_ip, scanner_mac=scanner_mac, scanner_gateway=gateway
        )
        devices = []
        for i, raw in enumerate(self.array(top.get("device", []), "device", "device")):
            where = self.labelled(f"device[{i}]", raw)
            dev = self.device(raw, where, nets, routers)
            self.claim_name(dev.name, f"{where}.name")
            self.claim(self.ips, dev.ip, f"{where}.ip")
            self.claim(self.macs, dev.mac, f"{where}.mac")
            devices.append(dev)
        scen_name = top.get("name", name or Path(self.source).stem)
        return Scenario(
            name=self.string(scen_name, "name"),
            network=network,
            devices=tuple(devices),
            description=self.string(top.get("description", ""), "description"),
            source=self.source,
            segments=tuple(segments),
            routers=tuple(routers),
        )

    def segments(self, raw: Any, nets: _Nets) -> list[SegmentSpec]:
        out: list[SegmentSpec] = []
        items = self.array(raw, "segment", "segment")
        if len(items) > MAX_SEGMENTS:
            raise self.fail("segment", f"{len(items)} segments: at most {MAX_SEGMENTS}")
        for i, raw_s in enumerate(items):
            where = self.labelled(f"segment[{i}]", raw_s)
            t = self.table(
                raw_s, where, {"name", "cidr", "scanner_ip", "scanner_mac"}, {"name", "cidr"}
            )
            name = self.name(t["name"], f"{where}.name")
            if name in nets:
                what = "the [network] segment" if name == PRIMARY_SEGMENT else "already a segment"
                raise self.fail(f"{where}.name", f"duplicate segment name: {name!r} is {what}")
            net = self.cidr(t["cidr"], f"{where}.cidr")
            for other, (onet, olabel) in nets.items():
                if net.overlaps(onet):
                    raise self.fail(
                        f"{where}.cidr", f"{net} overlaps segment {other!r} ({olabel} {onet})"
                    )
            label = f'segment "{name}" cidr'
            nets[name] = (net, label)
            scanner_ip = scanner_mac = None
            if "scanner_ip" in t:
                scanner_ip = self.ip(t["scanner_ip"], f"{where}.scanner_ip", net, label)
                self.claim(self.ips, scanner_ip, f"{where}.scanner_ip")
            if "scanner_mac" in t:
                if scanner_ip is None:
                    raise self.fail(f"{where}.scanner_mac", "needs scanner_ip")
                scanner_mac = self.mac(t["scanner_mac"], f"{where}.scanner_mac")
            elif scanner_ip is not None:
                scanner_mac = f"02:00:5e:10:{i + 1:02x}:01"  # derived, stable
            if scanner_mac is not None:
                self.claim(self.macs, scanner_mac, f"{where}.scanner_mac")
            out.append(SegmentSpec(name, str(net), scanner_ip, scanner_mac))
        return out

    def routers(self, raw: Any, nets: _Nets) -> list[RouterSpec]:
        out: list[RouterSpec] = []
        gateways: list[tuple[Any, str]] = []
        for i, raw_r in enumerate(self.array(raw, "router", "router")):
            where = self.labelled(f"router[{i}]", raw_r)
            t = self.table(
                raw_r,
                where,
                {"name", "description", "interface", "service", "capture", "gateway"},
                {"name", "interface"},
            )
            name = self.name(t["name"], f"{where}.name")
            self.claim_name(name, f"{where}.name")
            raw_ifaces = self.array(t["interface"], f"{where}.interface", "router.interface")
            if not 1 <= len(raw_ifaces) <= MAX_ROUTER_INTERFACES:
                raise self.fail(
                    f"{where}.interface", f"needs 1 to {MAX_ROUTER_INTERFACES} interfaces"
                )
            ifaces: list[RouterInterfaceSpec] = []
            for j, raw_i in enumerate(raw_ifaces):
                iwhere = f"{where}.interface[{j}]"
                it = self.table(raw_i, iwhere, {"segment", "ip", "mac"}, {"segment", "ip", "mac"})
                seg = self.segment_ref(it["segment"], f"{iwhere}.segment", nets)
                if any(x.segment == seg for x in ifaces):
                    raise self.fail(
                        f"{iwhere}.segment", f"this router already has an interface on {seg!r}"
                    )
                net, label = nets[seg]
                ip = self.ip(it["ip"], f"{iwhere}.ip", net, label)
                mac = self.mac(it["mac"], f"{iwhere}.mac")
                self.claim(self.ips, ip, f"{iwhere}.ip")
                self.claim(self.macs, mac, f"{iwhere}.mac")
                ifaces.append(RouterInterfaceSpec(seg, ip, mac))
            capture = t.get("capture", False)
            if not isinstance(capture, bool):
                raise self.fail(f"{where}.capture", "must be true or false")
            gateways.append((t.get("gateway"), f"{where}.gateway"))
            out.append(
                RouterSpec(
                    name=name,
                    interfaces=tuple(ifaces),
                    services=self.services(t.get("service", []), where, "router.service"),
                    description=self.string(t.get("description", ""), f"{where}.description"),
                    capture=capture,
                )
            )
        # Gateways point at other routers, so they are checked once all are known.
        for k, (raw_gw, gwhere) in enumerate(gateways):
            if raw_gw is not None:
                router = out[k]
                segs = [x.segment for x in router.interfaces]
                others = [r for r in out if r is not router]
                out[k] = replace(router, gateway=self.gateway(raw_gw, gwhere, segs, others))
        return out

    def gateway(
        self, value: Any, where: str, segments: list[str], routers: list[RouterSpec]
    ) -> str:
        """A default route's next hop: a router's address on one of ``segments``."""
        text = self.string(value, where)
        for router in routers:
            for iface in router.interfaces:
                if iface.ip == text and iface.segment in segments:
                    return text
        on = ", ".join(repr(s) for s in segments)
        raise self.fail(where, f"{text} is not the address of a router interface on {on}")

    def device(self, raw: Any, where: str, nets: _Nets, routers: list[RouterSpec]) -> DeviceSpec:
        d = self.table(
            raw,
            where,
            {"name", "mac", "ip", "description", "expect", "service", "segment", "gateway"},
            {"name", "mac", "ip"},
        )
        name = self.name(d["name"], f"{where}.name")
        expect = d.get("expect", {})
        if not isinstance(expect, Mapping):
            raise self.fail(f"{where}.expect", "must be a table")
        services = self.services(d.get("service", []), where, "device.service")
        segment = self.segment_ref(d.get("segment", PRIMARY_SEGMENT), f"{where}.segment", nets)
        net, label = nets[segment]
        gateway = None
        if "gateway" in d:
            gateway = self.gateway(d["gateway"], f"{where}.gateway", [segment], routers)
        return DeviceSpec(
            name=name,
            mac=self.mac(d["mac"], f"{where}.mac"),
            ip=self.ip(d["ip"], f"{where}.ip", net, label),
            services=services,
            description=self.string(d.get("description", ""), f"{where}.description"),
            expect=dict(expect),
            segment=segment,
            gateway=gateway,
        )

    def services(self, raw: Any, where: str, hint: str) -> tuple[ServiceSpec, ...]:
        services = []
        seen_ports: dict[tuple[str, int], str] = {}
        for j, raw_s in enumerate(self.array(raw, f"{where}.service", hint)):
            swhere = f"{where}.service[{j}]"
            svc, transports = self.service(raw_s, swhere)
            for transport in transports:
                key = (transport, svc.port)
                if key in seen_ports:
                    raise self.fail(
                        f"{swhere}.port",
                        f"{transport}/{svc.port} is already used by {seen_ports[key]}",
                    )
                seen_ports[key] = swhere
            services.append(svc)
        return tuple(services)

    def service(self, raw: Any, where: str) -> tuple[ServiceSpec, tuple[str, ...]]:
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
        # A kind serving more than one transport on its port (dns: udp and tcp) says
        # so with ``transports_for(options)``; the default is its one ``transport``.
        transports_for = getattr(cls, "transports_for", None)
        transports = tuple(transports_for(options)) if transports_for else (cls.transport,)
        return ServiceSpec(kind=kind, port=port, options=options), transports
