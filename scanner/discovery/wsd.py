"""WS-Discovery: ONVIF Probe on UDP 3702, ProbeMatches parsed into Observations.

Protocol: SOAP 1.2 over UDP, WS-Addressing 2004/08, WS-Discovery 2005/04
(the version ONVIF Core "Discovery" requires). A Probe goes to the multicast
group 239.255.255.250:3702 from a socket pinned to one scoped interface, and
to each known host directly (unicast works across routers); devices answer
with ProbeMatches *unicast to the probe's source port*, with RelatesTo set to
the probe's MessageID. Only such solicited answers count: anything whose
RelatesTo is not one of our MessageIDs is dropped, and so is any reply from an
address outside the scope.

Probes sent: typed ``dn:NetworkVideoTransmitter`` (the legacy NVT type most
cameras answer), typed ``tds:Device`` (what the ONVIF spec says a device shall
list), and an untyped Probe (matches every target service, so printers and
PCs answer too: they are recorded with is_camera=false). Unicast: untyped and
``dn:NetworkVideoTransmitter``, 2 packets per host.

Observation.attrs (source ``wsd``), besides the canonical keys uuid, name,
manufacturer, model and mac:
  types        the Types QNames, space-joined ("dn:NetworkVideoTransmitter tds:Device")
  scopes       the Scopes URIs, space-joined
  xaddrs       every XAddr the device gave, space-joined (in scope or not)
  hardware     onvif://www.onvif.org/hardware/<v> (URL-decoded)
  location     every onvif://www.onvif.org/location/<v> value, space-joined
  is_camera    "true" for video transmitter types/scopes, else "false"
  onvif        "true" when the device speaks ONVIF (tds:Device, NVT or onvif:// scopes)
  metadata_version  the MetadataVersion, when given
  mac_raw      a mac/ scope that is not a usable MAC
Set by ``discover`` (the I/O layer, which knows the scope):
  xaddrs_in_scope      XAddrs whose host is inside the scope (the only ones ever followed)
  xaddrs_out_of_scope  XAddrs whose host is outside it: recorded, never followed
  probe        "multicast" or "unicast"; iface: the interface a multicast reply came in on
Values are cut to 512 characters; control characters (C0 and C1) are removed.

Floods are bounded per source address: at most MAX_REPLIES_PER_HOST datagrams
from one address are kept for parsing (the rest are counted and dropped
unread, so one flooding host can neither starve the others of the global
MAX_REPLIES nor cost the scan its parse time), and at most
MAX_ENDPOINTS_PER_HOST distinct endpoints are reported for one address; both
caps log one WARNING naming the address.
"""

from __future__ import annotations

import contextlib
import logging
import re
import select
import socket
import time
import uuid as uuidlib
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import replace
from datetime import datetime
from ipaddress import IPv4Address
from urllib.parse import unquote, urlsplit
from xml.etree.ElementTree import Element
from xml.etree.ElementTree import ParseError as XMLParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring as safe_fromstring

from scanner.discovery.arp import InterfaceInfo
from scanner.discovery.base import (
    ATTR_MAC,
    ATTR_MANUFACTURER,
    ATTR_MODEL,
    ATTR_NAME,
    ATTR_UUID,
    MAX_DATAGRAM,
    ProbeContext,
    child,
    local_name,
)
from scanner.errors import ScopeError
from scanner.model import Observation, Source, utcnow
from scanner.oui import is_multicast, normalise_mac

_LOGGER = logging.getLogger(__name__)

WSD_GROUP = "239.255.255.250"
WSD_PORT = 3702
NS_SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
NS_WSA = "http://schemas.xmlsoap.org/ws/2004/08/addressing"
NS_WSD = "http://schemas.xmlsoap.org/ws/2005/04/discovery"
NS_DN = "http://www.onvif.org/ver10/network/wsdl"
NS_TDS = "http://www.onvif.org/ver10/device/wsdl"
ACTION_PROBE = NS_WSD + "/Probe"
ACTION_PROBE_MATCHES = NS_WSD + "/ProbeMatches"
TO_DISCOVERY = "urn:schemas-xmlsoap-org:ws:2005:04:discovery"
WSA_ANONYMOUS = NS_WSA + "/role/anonymous"

TYPE_NVT = "dn:NetworkVideoTransmitter"
TYPE_DEVICE = "tds:Device"
MULTICAST_PROBES: tuple[str | None, ...] = (TYPE_NVT, TYPE_DEVICE, None)
UNICAST_PROBES: tuple[str | None, ...] = (None, TYPE_NVT)

MAX_VALUE = 512
MAX_MATCHES = 16  # ProbeMatch elements read from one datagram
MAX_ITEMS = 64  # Types/Scopes/XAddrs tokens kept per match
MAX_REPLIES = 20_000  # datagrams kept per scan: bounds memory on a flooding segment
# A camera answers each of our 5 probes once (3 multicast, 2 unicast), a few
# twice (a Hello); an NVR proxying its channels names a handful of endpoints.
MAX_REPLIES_PER_HOST = 64  # datagrams kept from one address per scan
MAX_ENDPOINTS_PER_HOST = 16  # distinct endpoints (Observations) reported for one address

_PREFIXES = {"dn": NS_DN, "tds": NS_TDS}
_QNAME = re.compile(r"^(dn|tds):[A-Za-z_][A-Za-z0-9_.-]*$")
_MESSAGE_ID = re.compile(r"^[A-Za-z0-9:._-]{1,200}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # C0, DEL and C1 (0x9b is CSI)
_WS = re.compile(r"\s+")
_ONVIF_SCOPE = re.compile(r"^onvif://www\.onvif\.org/([^/]+)/(.*)$", re.IGNORECASE)

# Types (local names) and onvif type/ scope values that mean "a camera".
# ONVIF Core 7.3.2.2: type/video_encoder (1.x) and type/Network_Video_Transmitter;
# some firmwares spell the latter without underscores; PTZ heads are cameras too.
_CAMERA_TYPES = frozenset({"networkvideotransmitter"})
_CAMERA_SCOPE_TYPES = frozenset(
    {"video_encoder", "network_video_transmitter", "networkvideotransmitter", "ptz"}
)
# Where vendors put their own name in scopes: manufacturer/ (Hikvision-made and
# Hanwha firmwares, seen as "Manufacturer/" too), mfr/ and mfg/ (short forms).
_MANUFACTURER_SCOPES = frozenset({"manufacturer", "mfr", "mfg"})


def clean(value: str, limit: int = MAX_VALUE) -> str:
    """A device-supplied string made safe to store: one line, no control chars, capped."""
    return _WS.sub(" ", _CONTROL.sub(" ", value)).strip()[:limit]


def _join(items: Iterable[str]) -> str:
    return clean(" ".join(items))


def strip_uuid(value: str) -> str:
    """``urn:uuid:X`` / ``uuid:X`` -> ``X`` (lower-cased when it is a real UUID)."""
    text = value.strip()
    for prefix in ("urn:uuid:", "uuid:"):
        if text[: len(prefix)].lower() == prefix:
            text = text[len(prefix) :]
            break
    try:
        return str(uuidlib.UUID(text))
    except ValueError:
        return clean(text)


def new_message_id() -> str:
    return f"urn:uuid:{uuidlib.uuid4()}"


def build_probe(types: str | None, message_id: str) -> bytes:
    """A WS-Discovery 2005/04 Probe; ``types`` is "dn:…"/"tds:…" QNames or None (untyped)."""
    if not _MESSAGE_ID.match(message_id):
        raise ValueError(f"bad message id {message_id!r}")
    if types is not None:
        names = types.split()
        if not names or not all(_QNAME.match(n) for n in names):
            raise ValueError(f"bad probe types {types!r} (want dn:/tds: QNames)")
        body = f"<d:Probe><d:Types>{' '.join(names)}</d:Types></d:Probe>"
    else:
        body = "<d:Probe/>"
    ns = " ".join(f'xmlns:{p}="{u}"' for p, u in _PREFIXES.items())
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<s:Envelope xmlns:s="{NS_SOAP12}" xmlns:a="{NS_WSA}" xmlns:d="{NS_WSD}" {ns}>'
        "<s:Header>"
        f'<a:Action s:mustUnderstand="1">{ACTION_PROBE}</a:Action>'
        f"<a:MessageID>{message_id}</a:MessageID>"
        f"<a:ReplyTo><a:Address>{WSA_ANONYMOUS}</a:Address></a:ReplyTo>"
        f'<a:To s:mustUnderstand="1">{TO_DISCOVERY}</a:To>'
        "</s:Header>"
        f"<s:Body>{body}</s:Body>"
        "</s:Envelope>"
    ).encode()


def _text(parent: Element | None, name: str) -> str:
    if parent is None:
        return ""
    el = child(parent, name)
    return (el.text or "").strip() if el is not None else ""


def _id_key(value: str) -> str:
    """MessageID/RelatesTo compared loosely: some firmwares drop the urn: prefix."""
    return strip_uuid(value).lower()


_UUIDISH = re.compile(
    rb"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)


def _mentions(data: bytes, keys: frozenset[str]) -> bool:
    """Whether raw bytes name one of our MessageIDs (for replies too broken to parse)."""
    if any(m.group().decode().lower() in keys for m in _UUIDISH.finditer(data)):
        return True
    if len(keys) > 64:  # a long unicast sweep: our ids are all UUIDs, checked above
        return False
    low = data.lower()
    return any(k.encode(errors="ignore") in low for k in keys)


def _scope_facts(scopes: Sequence[str]) -> tuple[dict[str, str], bool]:
    """Canonical attrs decoded from onvif:// scopes, and whether a type scope says camera."""
    facts: dict[str, str] = {}
    locations: list[str] = []
    camera = False
    for scope in scopes:
        m = _ONVIF_SCOPE.match(scope)
        if not m:
            continue
        category = m.group(1).lower()
        value = clean(unquote(m.group(2)).strip("/"))
        if not value:
            continue
        if category == "name":
            facts.setdefault(ATTR_NAME, value)
        elif category == "hardware":
            facts.setdefault("hardware", value)
        elif category == "location":
            locations.append(value)
        elif category == "model":
            facts.setdefault(ATTR_MODEL, value)
        elif category in _MANUFACTURER_SCOPES:
            facts.setdefault(ATTR_MANUFACTURER, value)
        elif category == "mac" and ATTR_MAC not in facts:
            try:
                mac = normalise_mac(value)
            except ValueError:
                facts.setdefault("mac_raw", value)
                continue
            if mac == "00:00:00:00:00:00" or is_multicast(mac):
                facts.setdefault("mac_raw", value)
            else:
                facts[ATTR_MAC] = mac
        elif category == "type" and value.lower() in _CAMERA_SCOPE_TYPES:
            camera = True
    if locations:
        facts["location"] = _join(locations)
    return facts, camera


_XMLNS = re.compile(rb"""xmlns:([A-Za-z_][A-Za-z0-9_.-]{0,63})\s*=\s*["']([^"'<>]{1,512})["']""")


def _namespaces(data: bytes) -> dict[str, str]:
    """Prefix -> namespace as declared anywhere in the reply (first declaration wins).

    ElementTree drops declarations, but Types holds QNames whose prefixes must be
    resolved: ``wsdp:Device`` (a printer) and ``tds:Device`` (ONVIF) differ only so.
    """
    out: dict[str, str] = {}
    for m in _XMLNS.finditer(data[:MAX_DATAGRAM]):
        out.setdefault(m.group(1).decode(), m.group(2).decode(errors="replace"))
    return out


def _resolve(qname: str, nsmap: dict[str, str]) -> tuple[str, str]:
    prefix, sep, local = qname.rpartition(":")
    if not sep:
        return "", qname
    # an undeclared "tds"/"dn" prefix (sloppy firmware) still means what ONVIF says
    return nsmap.get(prefix) or _PREFIXES.get(prefix, ""), local


def _match_attrs(match: Element, nsmap: dict[str, str]) -> dict[str, str]:
    attrs: dict[str, str] = {}
    epr = child(match, "EndpointReference")
    address = _text(epr, "Address")
    if address:
        attrs[ATTR_UUID] = strip_uuid(address)
    types = _text(match, "Types").split()[:MAX_ITEMS]
    scopes = _text(match, "Scopes").split()[:MAX_ITEMS]
    xaddrs = _text(match, "XAddrs").split()[:MAX_ITEMS]
    if types:
        attrs["types"] = _join(types)
    if scopes:
        attrs["scopes"] = _join(scopes)
    if xaddrs:
        attrs["xaddrs"] = _join(xaddrs)
    version = _text(match, "MetadataVersion")
    if version:
        attrs["metadata_version"] = clean(version, 32)
    facts, camera_scope = _scope_facts(scopes)
    attrs.update(facts)
    resolved = [_resolve(t, nsmap) for t in types]
    is_camera = camera_scope or any(local.lower() in _CAMERA_TYPES for _ns, local in resolved)
    attrs["is_camera"] = "true" if is_camera else "false"
    onvif = (
        is_camera
        or (NS_TDS, "Device") in resolved
        or any(s.lower().startswith("onvif://") for s in scopes)
    )
    attrs["onvif"] = "true" if onvif else "false"
    return attrs


def parse_probe_matches(
    data: bytes, ip: str, seen_at: datetime, expected_ids: Collection[str]
) -> list[Observation]:
    """One Observation per ProbeMatch of a reply to one of our probes; [] otherwise.

    Pure and total: unsolicited or foreign datagrams give []; a reply we asked
    for that cannot be read (malformed, entity bomb, oversized) gives one
    Observation with ``error`` set. Never raises.
    """
    keys = expected_ids if isinstance(expected_ids, _Keys) else _Keys(expected_ids)
    return _parse(data, ip, seen_at, keys)


class _Keys(frozenset[str]):
    """Our MessageIDs normalised once (a /16 unicast sweep sends 131k probes)."""

    def __new__(cls, ids: Iterable[str]) -> _Keys:
        return super().__new__(cls, (k for k in (_id_key(i) for i in ids) if k))


def _parse(data: bytes, ip: str, seen_at: datetime, keys: _Keys) -> list[Observation]:
    def failed(reason: str) -> list[Observation]:
        # Only keep a broken reply when it names one of our probes: otherwise
        # it is noise we did not ask for.
        if not _mentions(data[:MAX_DATAGRAM], keys):
            return []
        return [Observation(source=Source.WSD, ip=ip, seen_at=seen_at, error=reason)]

    if len(data) > MAX_DATAGRAM:
        return failed(f"oversized reply: {len(data)} bytes")
    try:
        root = safe_fromstring(data, forbid_dtd=True)
    except DefusedXmlException as exc:
        return failed(f"forbidden XML construct: {type(exc).__name__}")
    except (XMLParseError, ValueError, LookupError):
        return failed("malformed XML")
    except RecursionError:
        return failed("XML nested too deeply")
    if local_name(root.tag) != "Envelope":
        return []
    header = child(root, "Header")
    body = child(root, "Body")
    relates = _text(header, "RelatesTo")
    if not relates or _id_key(relates) not in keys:
        return []
    action = _text(header, "Action")
    if body is None:
        return [Observation(source=Source.WSD, ip=ip, seen_at=seen_at, error="no SOAP Body")]
    fault = child(body, "Fault")
    if fault is not None:
        reason = _text(child(fault, "Reason"), "Text") or _text(fault, "faultstring")
        code = child(fault, "Code")
        sub = _text(child(code, "Subcode") if code is not None else None, "Value")
        detail = clean(" ".join(x for x in (sub, reason) if x), 200) or "unspecified"
        return [Observation(source=Source.WSD, ip=ip, seen_at=seen_at, error=f"fault: {detail}")]
    if action and not action.endswith("/ProbeMatches"):
        return []
    matches_el = child(body, "ProbeMatches")
    if matches_el is None:
        return []
    nsmap = _namespaces(data)
    out: list[Observation] = []
    for match in matches_el:
        if local_name(match.tag) != "ProbeMatch":
            continue
        if len(out) >= MAX_MATCHES:
            break
        attrs = _match_attrs(match, nsmap)
        out.append(
            Observation(
                source=Source.WSD,
                ip=ip,
                seen_at=seen_at,
                mac=attrs.get(ATTR_MAC),
                attrs=attrs,
                error=None if ATTR_UUID in attrs else "ProbeMatch without an endpoint address",
            )
        )
    return out


def _xaddr_host(xaddr: str) -> str | None:
    """The host of a usable URL (a bad port or bracket makes it unusable: None)."""
    try:
        parts = urlsplit(xaddr)
        _ = parts.port
    except ValueError:
        return None
    return parts.hostname


def split_xaddrs(ctx: ProbeContext, xaddrs: str) -> tuple[list[str], list[str]]:
    """(in scope, out of scope): only an IPv4 literal inside the scope is in; names never are."""
    inside: list[str] = []
    outside: list[str] = []
    for xaddr in xaddrs.split():
        host = _xaddr_host(xaddr)
        (inside if host is not None and ctx.in_scope(host) else outside).append(xaddr)
    return inside, outside


def _with_scope(ctx: ProbeContext, obs: Observation, extra: dict[str, str]) -> Observation:
    attrs = {**obs.attrs, **extra}
    inside, outside = split_xaddrs(ctx, obs.attrs.get("xaddrs", ""))
    if inside:
        attrs["xaddrs_in_scope"] = _join(inside)
    if outside:
        attrs["xaddrs_out_of_scope"] = _join(outside)
    return replace(obs, attrs=attrs)


def _scoped_interfaces(ctx: ProbeContext) -> list[InterfaceInfo]:
    wanted = set(ctx.scope.interfaces)
    return [i for i in ctx.interfaces if not wanted or i.name in wanted]


def discover(ctx: ProbeContext, hosts: Sequence[str]) -> list[Observation]:
    """Multicast Probes on each scoped interface plus unicast Probes to ``hosts``.

    Replies are collected until ``ctx.timeout`` after the last send. Replies
    from outside the scope are dropped; XAddrs are split into in-scope and
    out-of-scope (never followed). One Observation per (ip, endpoint uuid).
    """
    ids: list[str] = []
    socks: dict[socket.socket, tuple[str, str]] = {}  # sock -> (probe kind, iface)
    replies = _Inbox()
    last_send = time.monotonic()
    refused = skipped = 0
    try:
        for iface in _scoped_interfaces(ctx):
            try:
                msock = ctx.multicast_socket(iface)
            except OSError as exc:
                _LOGGER.warning("WS-Discovery: no multicast socket on %s: %s", iface.name, exc)
                continue
            socks[msock] = ("multicast", iface.name)
            for types in MULTICAST_PROBES:
                mid = new_message_id()
                ids.append(mid)
                try:
                    ctx.send_multicast(msock, build_probe(types, mid), WSD_GROUP, WSD_PORT)
                except OSError as exc:
                    _LOGGER.warning("WS-Discovery: multicast on %s failed: %s", iface.name, exc)
                last_send = time.monotonic()
        targets = list(dict.fromkeys(hosts))
        if targets:
            usock = ctx.unicast_socket()
            socks[usock] = ("unicast", "")
            for host in targets:
                if not ctx.in_scope(host):
                    skipped += 1
                    continue
                for types in UNICAST_PROBES:
                    mid = new_message_id()
                    ids.append(mid)
                    try:
                        sent = ctx.send_unicast(usock, build_probe(types, mid), host, WSD_PORT)
                    except ScopeError:
                        skipped += 1
                        break
                    except OSError as exc:  # unreachable, buffer full: the host stays silent
                        _LOGGER.debug("WS-Discovery: unicast to %s failed: %s", host, exc)
                        sent = True
                    if not sent:
                        refused += 1
                        break
                    last_send = time.monotonic()
                # drain while a long host list is paced out, so the queue never overflows
                _collect(socks, 0.0, replies)
        _collect(socks, last_send + ctx.timeout, replies)
    finally:
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.close()
    if skipped:
        _LOGGER.info("WS-Discovery: %d hosts outside the scope were not probed", skipped)
    if refused:
        _LOGGER.info("WS-Discovery: %d hosts had no packet budget left", refused)
    replies.report()
    return _observations(ctx, replies.kept, ids)


class _Inbox:
    """Datagrams kept for parsing, at most MAX_REPLIES_PER_HOST per source address."""

    def __init__(self) -> None:
        self.kept: list[tuple[bytes, str, str, str]] = []
        self.per_host: Counter[str] = Counter()
        self.dropped: Counter[str] = Counter()

    @property
    def full(self) -> bool:
        return len(self.kept) >= MAX_REPLIES

    def add(self, data: bytes, ip: str, kind: str, iface: str) -> None:
        if self.per_host[ip] >= MAX_REPLIES_PER_HOST:
            self.dropped[ip] += 1
            return
        self.per_host[ip] += 1
        self.kept.append((data, ip, kind, iface))

    def report(self) -> None:
        for ip, n in self.dropped.most_common():
            _LOGGER.warning(
                "WS-Discovery: %s sent %d replies; kept the first %d (a flood or a broken device)",
                ip,
                n + MAX_REPLIES_PER_HOST,
                MAX_REPLIES_PER_HOST,
            )
        if self.full:
            _LOGGER.warning("WS-Discovery: stopped reading after %d replies (cap)", MAX_REPLIES)


def _collect(
    socks: dict[socket.socket, tuple[str, str]],
    deadline: float,
    out: _Inbox,
) -> None:
    """Read datagrams from every socket until the monotonic deadline (polls at least once)."""
    if not socks:
        return
    for sock in socks:
        sock.setblocking(False)
    first = True
    while not out.full:
        remaining = deadline - time.monotonic()
        if remaining <= 0 and not first:
            break
        first = False
        try:
            ready, _, _ = select.select(list(socks), [], [], max(0.0, remaining))
        except (OSError, ValueError):
            break
        if not ready:
            if remaining <= 0:
                break
            continue
        for sock in ready:
            kind, iface = socks[sock]
            while not out.full:
                try:
                    data, addr = sock.recvfrom(MAX_DATAGRAM)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:  # ICMP errors surface here on unconnected sockets
                    break
                out.add(data, str(addr[0]), kind, iface)


def _observations(
    ctx: ProbeContext, replies: list[tuple[bytes, str, str, str]], ids: list[str]
) -> list[Observation]:
    found: dict[tuple[str, str], Observation] = {}
    per_host: Counter[str] = Counter()
    over: Counter[str] = Counter()
    keys = _Keys(ids)
    outside = 0
    for data, ip, kind, iface in replies:
        if not ctx.in_scope(ip):
            outside += 1
            continue
        extra = {"probe": kind}
        if iface:
            extra["iface"] = iface
        for obs in _parse(data, ip, utcnow(), keys):
            key = (ip, obs.attrs.get(ATTR_UUID, "") or f"error:{obs.error}")
            if key in found:
                continue
            if per_host[ip] >= MAX_ENDPOINTS_PER_HOST:
                over[ip] += 1
                continue
            per_host[ip] += 1
            found[key] = _with_scope(ctx, obs, extra)
    if outside:
        _LOGGER.info("WS-Discovery: dropped %d replies from addresses outside the scope", outside)
    for ip, n in over.most_common():
        _LOGGER.warning(
            "WS-Discovery: %s named %d endpoints beyond the %d kept (a flood or a broken device)",
            ip,
            n,
            MAX_ENDPOINTS_PER_HOST,
        )
    return sorted(found.values(), key=lambda o: (IPv4Address(o.ip), o.attrs.get(ATTR_UUID, "")))
