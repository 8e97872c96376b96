"""mDNS/DNS-SD discovery (RFC 6762/6763, UDP 5353, 224.0.0.251) with python-zeroconf.

Zeroconf is bound only to the scoped interfaces' own addresses
(``Zeroconf(interfaces=[ip, ...], ip_version=V4Only)``): its queries leave by
those interfaces only; packets from senders outside the scope never reach
zeroconf's cache (so nobody outside can announce a camera "at" an address
inside), and answers naming an address outside the scope are dropped.
``parse_service`` is pure and turns one resolved service instance into
Observations; ``discover`` is the only I/O and is bounded in time.
Zeroconf decodes the packets itself and drops what it cannot decode
(truncated, compression loops, bad lengths), so a hostile responder leaves no
Observation rather than an error one; TXT bytes reach ``parse_service`` raw
and are decoded here with errors="replace".

Service types browsed, and why (who advertises them):
  _axis-video._tcp   Axis cameras/encoders; TXT macaddress=<12 hex>, instance
                     "AXIS M1065-LW - 00408C123456" (home-assistant/core
                     tests/components/axis/test_config_flow.py; DoorBird
                     reuses it with "Doorstation - <mac>")
  _axis-nvr._tcp     Axis recorders (julienblitte/UniversalScanner Axis.cs)
  _CGI._tcp          Hikvision cameras: instance "HIKVISION DS-2CD2722FWD-IZS -
                     733050075", SRV target = full serial
                     (128keaton/hikvision-mdns test/cameras.json)
  _psia._tcp         PSIA cameras (Hikvision ISAPI descends from PSIA); browsed by
                     camera tools next to _CGI._tcp
  _http._tcp, _https._tcp, _rtsp._tcp, _onvif._tcp
                     web UI / streams; Axis and many NVRs announce _http._tcp
  _arec._tcp         Arecont Vision (UniversalScanner)
  _hap._tcp          HomeKit cameras: TXT md=<model>, ci=17 (IP camera)
  _device-info._tcp  TXT model= (rapid7/recog xml/mdns_device-info_txt.xml)
  _workstation._tcp  avahi hosts: instance "name [aa:bb:cc:dd:ee:ff]"
  _ipp._tcp, _printer._tcp
                     printers (not cameras): TXT ty=, usb_MFG=, usb_MDL=,
                     product=(...), mac=, UUID= (Bonjour Printing 1.2)

Observation.attrs (source ``mdns``): service_type, instance, host, port, txt
("k=v" entries joined by one space, decoded with errors="replace", capped),
plus canonical keys when the TXT or names carry them: manufacturer, model,
model_number, serial, serial_suffix (Hikvision's partial serial), firmware,
uuid, name, mac (also set as Observation.mac), hap_category (HomeKit ci=).
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from ipaddress import IPv4Address
from typing import TYPE_CHECKING, Any

from scanner.discovery.base import (
    ATTR_FIRMWARE,
    ATTR_MAC,
    ATTR_MANUFACTURER,
    ATTR_MODEL,
    ATTR_NAME,
    ATTR_SERIAL,
    ATTR_UUID,
    ProbeContext,
)
from scanner.model import Observation, Source, utcnow

if TYPE_CHECKING:
    from zeroconf import Zeroconf

_LOGGER = logging.getLogger(__name__)

SERVICE_TYPES: tuple[str, ...] = (
    "_axis-video._tcp.local.",
    "_axis-nvr._tcp.local.",
    "_CGI._tcp.local.",
    "_psia._tcp.local.",
    "_onvif._tcp.local.",
    "_rtsp._tcp.local.",
    "_http._tcp.local.",
    "_https._tcp.local.",
    "_arec._tcp.local.",
    "_hap._tcp.local.",
    "_device-info._tcp.local.",
    "_workstation._tcp.local.",
    "_ipp._tcp.local.",
    "_printer._tcp.local.",
)
MIN_BROWSE_S = 2.0  # RFC 6762 §6: shared answers come 20-120 ms after a query, 500 ms worst
MAX_BROWSE_S = 30.0
RESOLVE_S = 1.5  # extra time to resolve instances whose SRV/TXT/A were not volunteered
# follow-up queries for those instances, per scan and interface; past it, the cache alone
MAX_RESOLVE_QUERIES = 12
MAX_INSTANCES = 2_000  # bounds memory if a hostile segment invents instances
MAX_VALUE = 512
MAX_TXT_ENTRY = 200  # one "k=v" entry is cut to this before joining
MAX_TXT_KEYS = 64  # TXT entries read from one record

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_WS = re.compile(r"\s+")
_HEX12 = re.compile(r"^[0-9A-Fa-f]{12}$")
_MAC_SEP = re.compile(r"^[0-9A-Fa-f]{2}([:-])(?:[0-9A-Fa-f]{2}\1){4}[0-9A-Fa-f]{2}$")
# "AXIS M3045-V - ACCC8E123456", "AXIS M2026-LE Mk II - B8A44F0A98A1"
_AXIS = re.compile(r"^(AXIS)\s+(\S.*?)\s+-\s+([0-9A-Fa-f]{12})$", re.IGNORECASE)
# "HIKVISION DS-2CD2722FWD-IZS - 733050075" (the tail is the serial's last 9 digits)
_HIK = re.compile(r"^(HIKVISION)\s+(\S+)\s+-\s+(\d{6,12})$", re.IGNORECASE)
# "readynas [a0:21:b7:c1:8c:3a]" (avahi/esp-idf _workstation names)
_BRACKET_MAC = re.compile(r"^(.*?)\s*\[([0-9A-Fa-f:.-]{12,17})\]$")
# "<anything> - <12 hex>"
_DASH_MAC = re.compile(r"^(.*\S)\s+-\s+([0-9A-Fa-f]{12})$")
# Hikvision serial: <model><yyyymmdd><4 letters><9 digits>, e.g.
# DS-2CD2722FWD-IZS20170321BBWR733050075 (also the SRV target host of _CGI._tcp)
_HIK_SERIAL = re.compile(r"^((?:DS|IDS|iDS)-[A-Z0-9-]+?)(20\d{6})([A-Z]{4})(\d{9})$")

# TXT keys (lower-cased) -> canonical attribute, by evidence in real records
_TXT_KEYS: dict[str, str] = {
    "macaddress": ATTR_MAC,  # Axis, DoorBird
    "mac": ATTR_MAC,  # HP printers (_ipp/_ipps), ESPHome
    "mac_address": ATTR_MAC,
    "model": ATTR_MODEL,  # _device-info, QNAP qdiscover
    "usb_mdl": ATTR_MODEL,  # Bonjour Printing
    "product": ATTR_MODEL,  # Bonjour Printing: "(HP Color LaserJet Pro M252dw)"
    "manufacturer": ATTR_MANUFACTURER,
    "vendor": ATTR_MANUFACTURER,
    "usb_mfg": ATTR_MANUFACTURER,  # Bonjour Printing
    "mfg": ATTR_MANUFACTURER,
    "sn": ATTR_SERIAL,
    "serial": ATTR_SERIAL,
    "serialnumber": ATTR_SERIAL,
    "serial_number": ATTR_SERIAL,
    "serialno": ATTR_SERIAL,
    "fw": ATTR_FIRMWARE,
    "firmware": ATTR_FIRMWARE,
    "fwver": ATTR_FIRMWARE,  # QNAP qdiscover: fwVer=5.2.9
    "fwversion": ATTR_FIRMWARE,
    "fw_version": ATTR_FIRMWARE,
    "firmware_version": ATTR_FIRMWARE,
    "uuid": ATTR_UUID,  # printers, Kodi
}
# keys that mean "model" only for one service type: _raop's md=0,1,2 is a codec list
_TXT_KEYS_BY_TYPE: dict[str, dict[str, str]] = {
    "_hap._tcp.local.": {"md": ATTR_MODEL, "ci": "hap_category"},
}
# ty= (printer make-and-model) is only a fallback: product=/usb_MDL= are cleaner
_TXT_FALLBACK = {"ty": ATTR_MODEL}


def clean(value: str, limit: int = MAX_VALUE) -> str:
    """A device-supplied string made safe to store: no control chars, one-line, capped."""
    return _WS.sub(" ", _CONTROL.sub("", value)).strip()[:limit]


def normalise_mac(text: str) -> str | None:
    """aa:bb:cc:dd:ee:ff from "ACCC8E123456" / "ac-cc-8e-12-34-56", else None."""
    text = text.strip()
    if _HEX12.match(text):
        raw = text
    elif _MAC_SEP.match(text):
        raw = re.sub(r"[:-]", "", text)
    else:
        return None
    raw = raw.lower()
    if raw == "0" * 12 or int(raw[:2], 16) & 1:  # null, multicast or broadcast
        return None
    return ":".join(raw[i : i + 2] for i in range(0, 12, 2))


def instance_of(name: str, service_type: str) -> str:
    """The instance label of a full service name ("X._http._tcp.local." -> "X")."""
    for suffix in (service_type, service_type.rstrip(".")):
        if suffix and name.lower().endswith("." + suffix.lower()):
            return name[: -len(suffix) - 1]
    return name.rstrip(".")


def facts_from_instance(name: str) -> dict[str, str]:
    """Facts vendors put in instance names (Axis model + MAC, Hikvision model, avahi MAC)."""
    name = clean(name)
    facts: dict[str, str] = {}
    if not name:
        return facts
    if m := _AXIS.match(name):
        mac = normalise_mac(m.group(3))
        facts[ATTR_MANUFACTURER] = "AXIS"
        facts[ATTR_MODEL] = f"AXIS {m.group(2)}"
        facts["model_number"] = m.group(2)
        facts[ATTR_NAME] = name
        if mac:
            facts[ATTR_MAC] = mac
        return facts
    if m := _HIK.match(name):
        facts[ATTR_MANUFACTURER] = "HIKVISION"
        facts[ATTR_MODEL] = m.group(2)
        facts["serial_suffix"] = m.group(3)
        facts[ATTR_NAME] = name
        return facts
    if (m := _BRACKET_MAC.match(name)) and (mac := normalise_mac(m.group(2))):
        facts[ATTR_MAC] = mac
        if m.group(1):
            facts[ATTR_NAME] = m.group(1)
        return facts
    if (m := _DASH_MAC.match(name)) and (mac := normalise_mac(m.group(2))):
        facts[ATTR_MAC] = mac
    facts[ATTR_NAME] = name
    return facts


def facts_from_host(host: str) -> dict[str, str]:
    """Facts in the SRV target host name: Hikvision uses its full serial as host name."""
    label = host.rstrip(".")
    if label.lower().endswith(".local"):
        label = label[: -len(".local")]
    m = _HIK_SERIAL.match(label)
    if not m:
        return {}
    return {ATTR_SERIAL: label, ATTR_MODEL: m.group(1), ATTR_MANUFACTURER: "HIKVISION"}


def _decode(raw: bytes | str | None) -> str:
    if raw is None:
        return ""
    if isinstance(raw, str):
        return raw
    return raw.decode("utf-8", errors="replace")


def txt_text(txt: Mapping[bytes, bytes | None]) -> str:
    """TXT as "k=v k2=v2" (bare keys for boolean attributes), hostile-safe and capped."""
    entries: list[str] = []
    total = 0
    for key, value in txt.items():
        k = clean(_decode(key), MAX_TXT_ENTRY)
        if not k:
            continue
        entry = k if value is None else f"{k}={clean(_decode(value), MAX_TXT_ENTRY)}"
        entries.append(entry[:MAX_TXT_ENTRY])
        total += len(entry) + 1
        if total > MAX_VALUE:
            break
    return " ".join(entries)[:MAX_VALUE]


def facts_from_txt(service_type: str, txt: Mapping[bytes, bytes | None]) -> dict[str, str]:
    """Canonical facts from TXT keys known to carry them (see _TXT_KEYS for sources)."""
    facts: dict[str, str] = {}
    fallback: dict[str, str] = {}
    by_type = _TXT_KEYS_BY_TYPE.get(service_type.lower(), {})
    for key, value in txt.items():
        if value is None:
            continue
        k = _decode(key).strip().lower()
        v = clean(_decode(value))
        if not v:
            continue
        attr = by_type.get(k) or _TXT_KEYS.get(k)
        if attr is None:
            if k in _TXT_FALLBACK:
                fallback.setdefault(_TXT_FALLBACK[k], v)
            continue
        if attr == ATTR_MAC:
            mac = normalise_mac(v)
            if mac is None:
                continue
            v = mac
        elif attr == ATTR_MODEL and k == "product":
            v = v.strip("()").strip()
            if not v:
                continue
        facts.setdefault(attr, v)
    for attr, v in fallback.items():
        facts.setdefault(attr, v)
    return facts


def parse_service(
    service_type: str,
    name: str,
    server: str | None,
    addresses: list[str],
    port: int | None,
    txt: Mapping[bytes, bytes | None],
    seen_at: datetime,
) -> list[Observation]:
    """One resolved DNS-SD instance as one Observation per IPv4 address it names.

    Precedence: TXT facts, then instance-name facts, then host-name facts.
    """
    instance = instance_of(name, service_type)
    attrs: dict[str, str] = {
        "service_type": clean(service_type, 255),
        "instance": clean(instance),
    }
    if server:
        attrs["host"] = clean(server, 255)
    if port is not None and 0 < port < 65536:
        attrs["port"] = str(port)
    text = txt_text(txt)
    if text:
        attrs["txt"] = text
    facts: dict[str, str] = {}
    for source in (facts_from_host(server or ""), facts_from_instance(instance)):
        facts.update(source)  # instance overrides host, TXT overrides both (below)
    facts.update(facts_from_txt(service_type, txt))
    attrs.update(facts)
    mac = attrs.get(ATTR_MAC)
    out: list[Observation] = []
    seen: set[str] = set()
    for addr in addresses:
        try:
            ip = str(IPv4Address(addr))
        except ValueError:
            continue  # IPv6 or junk: this scanner's scopes are IPv4
        if ip in seen:
            continue
        seen.add(ip)
        out.append(Observation(source=Source.MDNS, ip=ip, seen_at=seen_at, mac=mac, attrs=attrs))
    return out


# ----------------------------------------------------------------------- I/O


def _estimated_queries(browse_s: float) -> int:
    """Queries a ServiceBrowser sends in browse_s: at 0 s, then 1 s, 2 s, 4 s ... apart."""
    return 2 + max(0, math.ceil(math.log2(max(browse_s, 1.0))))


def _request_queries(window_ms: float) -> int:
    """Queries one ServiceInfo.request sends in window_ms: at 0, ~0.2 s, then ~1 s apart."""
    first_gap, repeat_gap = 200, 999
    if window_ms <= first_gap:
        return 1
    return 2 + int((window_ms - first_gap) // repeat_gap)


def planned_queries(browse_s: float) -> int:
    """Most mDNS queries one interface sends in a scan: the browse, then follow-ups."""
    return _estimated_queries(browse_s) + MAX_RESOLVE_QUERIES


def discover(ctx: ProbeContext, browse_s: float | None = None) -> list[Observation]:
    """Browse camera/NVR service types on the scoped interfaces for a bounded time."""
    from zeroconf import Error as ZeroconfError
    from zeroconf import IPVersion, ServiceBrowser, ServiceInfo, ServiceStateChange, Zeroconf

    ips = sorted({str(i.ip) for i in ctx.interfaces})
    if not ips:
        return []
    duration = browse_s if browse_s is not None else max(ctx.timeout, MIN_BROWSE_S)
    duration = min(max(duration, 0.1), MAX_BROWSE_S)
    # zeroconf paces its own queries; account for them up front, per interface
    ctx.budget.take(None, _estimated_queries(duration) * len(ips))
    found: dict[tuple[str, str], None] = {}
    lock = threading.Lock()

    def on_change(
        zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        if state_change is ServiceStateChange.Removed:
            return
        with lock:
            if len(found) < MAX_INSTANCES:
                found[(service_type, name)] = None

    try:
        zc = Zeroconf(interfaces=list(ips), ip_version=IPVersion.V4Only)
    except OSError as exc:  # e.g. another mDNS stack holding 5353 without SO_REUSEPORT
        _LOGGER.warning("mDNS: cannot listen on UDP 5353 (%s); skipped this scan", exc)
        return []
    senders = _SenderFilter(ctx.in_scope)
    try:
        senders.install(zc)
        browser = ServiceBrowser(zc, list(SERVICE_TYPES), handlers=[on_change])
        try:
            time.sleep(duration)
        finally:
            browser.cancel()
        with lock:
            wanted = list(found)
        deadline = time.monotonic() + RESOLVE_S
        resolve_left = MAX_RESOLVE_QUERIES
        out: list[Observation] = []
        for service_type, name in wanted:
            try:
                info = ServiceInfo(service_type, name)
            except (ZeroconfError, ValueError, UnicodeError) as exc:
                # zeroconf refuses names with control characters (a hostile or broken
                # responder); what it volunteered is still in the cache
                _LOGGER.debug("mDNS %r: %s; reading the cache instead", name, exc)
                server, addresses, port, txt = _from_cache(zc, name)
            else:
                if not info.load_from_cache(zc):
                    remaining_ms = (deadline - time.monotonic()) * 1000
                    queries = _request_queries(remaining_ms)
                    if remaining_ms > 50 and queries <= resolve_left:
                        resolve_left -= queries
                        ctx.budget.take(None, queries * len(ips))  # sent on every interface
                        info.request(zc, remaining_ms)
                server, port, txt = info.server, info.port, info.properties
                addresses = info.parsed_addresses(IPVersion.V4Only)
            obs = parse_service(service_type, name, server, addresses, port, txt, utcnow())
            out.extend(o for o in obs if ctx.in_scope(o.ip))
            dropped = len(obs) - sum(1 for o in obs if ctx.in_scope(o.ip))
            if dropped:
                _LOGGER.info("mDNS %s: ignored %d address(es) outside the scope", name, dropped)
            if not addresses:
                _LOGGER.debug("mDNS %s: no IPv4 address resolved", name)
    finally:
        zc.close()
    if senders.dropped:
        _LOGGER.info(
            "mDNS: ignored %d packet(s) from senders outside the scope (%s)",
            senders.dropped,
            " ".join(sorted(senders.dropped_from)),
        )
    return sorted(out, key=_sort_key)


class _FilteredProtocol(asyncio.DatagramProtocol):
    """Stands between an asyncio datagram transport and zeroconf's listener.

    Zeroconf hands its handlers records, never who sent them; the transport
    still knows. A packet from outside the scope never reaches zeroconf's
    cache, so a host outside the scope cannot announce a camera "at" an
    address inside it.
    """

    def __init__(self, inner: Any, owner: _SenderFilter) -> None:
        self.inner = inner
        self.owner = owner

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        if self.owner.accepts(str(addr[0])):
            self.inner.datagram_received(data, addr)

    def error_received(self, exc: Exception) -> None:
        self.inner.error_received(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.inner.connection_lost(exc)


class _SenderFilter:
    MAX_NOTED = 16  # sender addresses kept for the log line

    def __init__(self, in_scope: Callable[[str], bool]) -> None:
        self.in_scope = in_scope
        self.dropped = 0
        self.dropped_from: set[str] = set()

    def accepts(self, ip: str) -> bool:
        try:
            ok = self.in_scope(ip)
        except ValueError:  # not IPv4 text
            ok = False
        if not ok:
            self.dropped += 1
            if len(self.dropped_from) < self.MAX_NOTED:
                self.dropped_from.add(ip)
        return ok

    def install(self, zc: Zeroconf) -> None:
        """Wrap every receiving transport's protocol, on zeroconf's own loop.

        Uses zeroconf's engine.readers (not public API); if a release moves
        it, the scan goes on without the filter and says so once.
        """

        async def wrap() -> int:
            n = 0
            for reader in zc.engine.readers:
                transport = reader.transport
                inner = transport.get_protocol()
                if not isinstance(inner, _FilteredProtocol):
                    transport.set_protocol(_FilteredProtocol(inner, self))
                    n += 1
            return n

        try:
            loop = zc.loop
            if loop is None:
                raise RuntimeError("zeroconf has no event loop")
            n = asyncio.run_coroutine_threadsafe(wrap(), loop).result(timeout=5)
        except Exception as exc:  # degrade, never fail the scan
            _LOGGER.warning(
                "mDNS: cannot check answer senders with this zeroconf (%s); "
                "answers are still limited to addresses in the scope",
                exc,
            )
            return
        if n == 0:
            _LOGGER.warning("mDNS: zeroconf has no receiving socket to check senders on")


def txt_properties(raw: bytes) -> dict[bytes, bytes | None]:
    """RFC 6763 §6 TXT rdata (length-prefixed "key=value" strings) as a mapping.

    The first occurrence of a key wins (§6.4); a key without "=" is a boolean
    attribute (value None). Never raises: a length running past the end stops it.
    """
    out: dict[bytes, bytes | None] = {}
    i = 0
    while i < len(raw) and len(out) < MAX_TXT_KEYS:
        n = raw[i]
        entry = raw[i + 1 : i + 1 + n]
        i += 1 + n
        if not entry:
            continue
        key, eq, value = entry.partition(b"=")
        if key and key.lower() not in {k.lower() for k in out}:
            out[key] = value if eq else None
    return out


def _from_cache(
    zc: Zeroconf, name: str
) -> tuple[str | None, list[str], int | None, dict[bytes, bytes | None]]:
    """(server, IPv4 addresses, port, TXT) of an instance from zeroconf's cache alone."""
    from zeroconf import DNSAddress, DNSService, DNSText

    server: str | None = None
    port: int | None = None
    txt: dict[bytes, bytes | None] = {}
    addresses: list[str] = []
    try:
        for rec in list(zc.cache.entries_with_name(name)):
            if isinstance(rec, DNSService) and server is None:
                server, port = rec.server, rec.port
            elif isinstance(rec, DNSText) and not txt:
                txt = txt_properties(rec.text)
        if server is not None:
            for rec in list(zc.cache.entries_with_name(server)):
                if isinstance(rec, DNSAddress) and len(rec.address) == 4:
                    addresses.append(str(IPv4Address(rec.address)))
    except RuntimeError:  # the cache changed under us (zeroconf's thread): use what we have
        pass
    return server, addresses, port, txt


def _sort_key(o: Observation) -> tuple[IPv4Address, str, str]:
    return IPv4Address(o.ip), o.attrs.get("service_type", ""), o.attrs.get("instance", "")
