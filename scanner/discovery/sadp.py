"""Hikvision SADP: the XML search that Hikvision cameras, NVRs and their OEMs answer.

SADP ("Search Active Devices Protocol", UDP 37020, multicast 239.255.255.250)
keeps answering when ONVIF and the web UI are switched off, and its reply
carries model, serial, firmware and MAC without a login. The probe is
``<Probe><Uuid>…</Uuid><Types>inquiry</Types></Probe>``; each device answers
with one ``<ProbeMatch>`` document, both to the sender and to the group on
port 37020 (julienblitte/UniversalScanner:UniversalScanner/Hikvision.cs;
https://www.itread01.com/content/1544974924.html), so we listen on the group
port as well as on the probe's own.

Observation attrs (all strings, each at most 512 characters):
  manufacturer  "Hikvision" (SADP is Hikvision's own; OEM relabels answer it too)
  model         DeviceDescription, e.g. "DS-7804HQH-K1"
  serial        DeviceSN, the long form that embeds the model and build date
  firmware      SoftwareVersion, e.g. "V5.2.3build 180804"
  mac           MAC, normalised aa:bb:cc:dd:ee:ff (mac_raw if unreadable)
  name          DeviceName, where a firmware sends one
  device_type   DeviceType, Hikvision's numeric class code
  dsp_version   DSPVersion
  boot_time     BootTime, device local time
  activated     Activated: "true" | "false" (false = no admin password set yet)
  http_port     HttpPort
  sdk_port      CommandPort, the HCNetSDK "server port" (8000 by default)
  sdk_tls_port  SDKOverTLSPort
  reported_ip   IPv4Address when it differs from the source address
  subnet_mask, gateway, dhcp, oem_info, analog_channels, digital_channels
  iface         the scanner interface the reply arrived on (added by discover)

This module also holds the socket engine the three vendor searches share
(SADP, DHIP, Xiongmai): one socket per scoped interface, bound to the
protocol's port so replies sent to the group or to the port arrive too, a
tight drain into memory under hard caps, and parsing after the deadline.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import select
import socket
import time
import uuid as uuidlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Final
from xml.etree.ElementTree import Element
from xml.etree.ElementTree import ParseError as XmlParseError
from xml.sax.saxutils import unescape

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from scanner.discovery.arp import InterfaceInfo
from scanner.discovery.base import (
    ATTR_FIRMWARE,
    ATTR_MAC,
    ATTR_MANUFACTURER,
    ATTR_MODEL,
    ATTR_NAME,
    ATTR_SERIAL,
    MAX_DATAGRAM,
    ProbeContext,
    local_name,
)
from scanner.errors import ParseError
from scanner.model import Observation, Source, utcnow
from scanner.oui import is_multicast, normalise_mac

_LOGGER = logging.getLogger(__name__)

PORT: Final = 37020
GROUP: Final = "239.255.255.250"
# where one inquiry goes on each scoped interface (scanner/plan.py counts these)
DESTINATIONS: Final = (GROUP,)
MANUFACTURER: Final = "Hikvision"

MAX_VALUE: Final = 512  # characters per attribute value (project convention)
MAX_REPLY_BYTES: Final = 32 * 1024  # real replies are ~1.5 KB; anything far larger is hostile
MAX_REPLIES: Final = 20_000  # datagrams kept per search: bounds memory under a flood
MAX_REPLY_TOTAL: Final = 64 << 20  # bytes kept per search, for the same reason
RCVBUF_FORCE: Final = 16 << 20  # tried with CAP_NET_ADMIN, above net.core.rmem_max
_SO_RCVBUFFORCE: Final = getattr(socket, "SO_RCVBUFFORCE", 33)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

# ProbeMatch child element -> attribute key, in the order they are reported.
_FIELDS: Final[tuple[tuple[str, str], ...]] = (
    ("DeviceDescription", ATTR_MODEL),
    ("DeviceSN", ATTR_SERIAL),
    ("SoftwareVersion", ATTR_FIRMWARE),
    ("DeviceName", ATTR_NAME),
    ("DeviceType", "device_type"),
    ("DSPVersion", "dsp_version"),
    ("BootTime", "boot_time"),
    ("Activated", "activated"),
    ("HttpPort", "http_port"),
    ("CommandPort", "sdk_port"),
    ("SDKOverTLSPort", "sdk_tls_port"),
    ("IPv4SubnetMask", "subnet_mask"),
    ("IPv4Gateway", "gateway"),
    ("DHCP", "dhcp"),
    ("OEMInfo", "oem_info"),
    ("AnalogChannelNum", "analog_channels"),
    ("DigitalChannelNum", "digital_channels"),
)
_WANTED: Final = frozenset({tag for tag, _ in _FIELDS} | {"MAC", "IPv4Address"})
_SALVAGE = re.compile(r"<([A-Za-z0-9]{1,40})>([^<]{0,2048})</\1>")
_XML_ENTITIES: Final = {"&quot;": '"', "&apos;": "'"}  # unescape() adds &amp; &lt; &gt;
_LOWER_VALUES: Final = frozenset({"activated", "dhcp"})

Parser = Callable[[bytes, str, datetime], Observation | None]


# --------------------------------------------------------------------------- text helpers


def clip(value: object) -> str:
    """A short, printable attribute value: control characters dropped, 512 chars at most."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, list | tuple):
        text = " ".join(clip(v) for v in value)
    else:
        text = str(value)
    return _CONTROL.sub("", text).strip()[:MAX_VALUE]


def decode_text(data: bytes) -> tuple[str, bool]:
    """UTF-8 text of a reply and whether it was clean; bad bytes become U+FFFD."""
    try:
        return data.decode("utf-8"), True
    except UnicodeDecodeError:
        return data.decode("utf-8", errors="replace"), False


def add_mac(attrs: dict[str, str], raw: object) -> str | None:
    """Put a self-reported MAC in attrs; the normalised unicast MAC, or None."""
    text = clip(raw)
    if not text:
        return None
    try:
        mac = normalise_mac(text)
    except ValueError:
        attrs["mac_raw"] = text
        return None
    if mac == "00:00:00:00:00:00" or is_multicast(mac):
        attrs["mac_raw"] = text
        return None
    attrs[ATTR_MAC] = mac
    return mac


def add_reported_ip(attrs: dict[str, str], reported: str | None, source_ip: str) -> None:
    if reported and reported != source_ip:
        attrs["reported_ip"] = clip(reported)


def join_errors(*errors: str | None) -> str | None:
    text = "; ".join(e for e in errors if e)
    return text or None


def load_json_object(text: str) -> tuple[dict[str, object] | None, str | None]:
    """A JSON object, or None and a short reason (bad syntax, too deep, not an object)."""
    try:
        value = json.loads(text)
    except RecursionError:
        return None, "malformed JSON: nested too deep"
    except ValueError as err:  # JSONDecodeError, and int() digit limits
        return None, f"malformed or truncated JSON: {clip(err)[:120]}"
    if not isinstance(value, dict):
        return None, f"JSON body is a {type(value).__name__}, not an object"
    return value, None


_JSON_PAIR = re.compile(
    r'"([A-Za-z][A-Za-z0-9_.]{0,40})"\s*:\s*(?:"((?:[^"\\]|\\.){0,2048})"|(-?\d{1,20})|(true|false))'
)


def salvage_json(text: str, keys: Iterable[str]) -> dict[str, object]:
    """Scalar ``"Key": value`` pairs of a broken JSON text, first occurrence of each key."""
    wanted = frozenset(keys)
    out: dict[str, object] = {}
    for m in _JSON_PAIR.finditer(text):
        key = m.group(1)
        if key not in wanted or key in out:
            continue
        if m.group(2) is not None:
            try:
                out[key] = json.loads(f'"{m.group(2)}"')
            except ValueError:
                out[key] = m.group(2)
        elif m.group(3) is not None:
            out[key] = m.group(3)
        else:
            out[key] = m.group(4) == "true"
    return out


# --------------------------------------------------------------------------- SADP codec


def build_probe(probe_uuid: str) -> bytes:
    """The inquiry SADPTool multicasts; ``probe_uuid`` is echoed back in each reply."""
    text = str(uuidlib.UUID(probe_uuid)).upper()  # refuses anything that is not a UUID
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        f"<Probe><Uuid>{text}</Uuid><Types>inquiry</Types></Probe>"
    ).encode()


def _fields_from_tree(root: Element) -> dict[str, str]:
    out: dict[str, str] = {}
    for child in root:
        name = local_name(child.tag)
        if name in _WANTED and name not in out:
            out[name] = clip(child.text or "")
    return out


def _fields_from_text(text: str) -> dict[str, str]:
    """Complete ``<Tag>value</Tag>`` pairs of a broken document, as far as they go."""
    out: dict[str, str] = {}
    for m in _SALVAGE.finditer(text):
        name = m.group(1)
        if name in _WANTED and name not in out:
            out[name] = clip(unescape(m.group(2), _XML_ENTITIES))
    return out


def parse_reply(data: bytes, ip: str, seen_at: datetime) -> Observation | None:
    """One SADP datagram as an Observation; None for probes (ours included) and non-SADP.

    A ProbeMatch that is truncated, malformed, oversized or not UTF-8 still
    gives an Observation, with ``error`` set and whatever fields could be read.
    """
    if len(data) > MAX_REPLY_BYTES:
        if b"<ProbeMatch" not in data[:4096]:
            return None
        return Observation(
            source=Source.SADP,
            ip=ip,
            seen_at=seen_at,
            attrs={ATTR_MANUFACTURER: MANUFACTURER},
            error=f"oversized reply: {len(data)} bytes (cap {MAX_REPLY_BYTES})",
        )
    text, clean = decode_text(data)
    text = text.strip("\x00 \t\r\n")
    if "<ProbeMatch" not in text:
        return None  # a Probe (our own echo or another tool's), or not SADP at all
    error: str | None = None
    try:
        root = SafeET.fromstring(text, forbid_dtd=True)
    except DefusedXmlException:
        fields, error = _fields_from_text(text), "forbidden XML (DTD or entity)"
    except (XmlParseError, ValueError) as err:
        fields, error = _fields_from_text(text), f"malformed or truncated XML: {clip(err)[:120]}"
    else:
        if local_name(root.tag) != "ProbeMatch":
            return None
        fields = _fields_from_tree(root)
    attrs: dict[str, str] = {ATTR_MANUFACTURER: MANUFACTURER}
    for tag, key in _FIELDS:
        value = fields.get(tag)
        if value:
            attrs[key] = value.lower() if key in _LOWER_VALUES else value
    mac = add_mac(attrs, fields.get("MAC", ""))
    add_reported_ip(attrs, fields.get("IPv4Address"), ip)
    return Observation(
        source=Source.SADP,
        ip=ip,
        seen_at=seen_at,
        mac=mac,
        attrs=attrs,
        error=join_errors(None if clean else "reply is not valid UTF-8", error),
    )


# --------------------------------------------------------------------------- shared engine


def _join_group(sock: socket.socket, group: str, iface: InterfaceInfo) -> None:
    """Join ``group`` on exactly this interface (by index, so no route is consulted)."""
    mreqn = socket.inet_aton(group) + socket.inet_aton(str(iface.ip))
    mreqn += socket.if_nametoindex(iface.name).to_bytes(4, "little")
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreqn)


def open_search_socket(
    ctx: ProbeContext, iface: InterfaceInfo, port: int, group: str | None = None
) -> socket.socket:
    """A non-blocking socket pinned to ``iface``, on ``port`` if free, in ``group`` if given.

    Vendor devices answer to the protocol's port or group rather than to the
    probe's source port, so the socket takes that port when it can; if
    something else holds it, an ephemeral port still hears unicast answers.
    """
    try:
        sock = ctx.multicast_socket(iface, port)
    except OSError as err:
        _LOGGER.info(
            "%s: UDP %d is taken (%s); only direct replies will be heard", iface.name, port, err
        )
        sock = ctx.multicast_socket(iface)
    try:
        if group is not None:
            try:
                _join_group(sock, group, iface)
            except OSError as err:
                _LOGGER.info("%s: cannot join %s (%s)", iface.name, group, err)
        with contextlib.suppress(OSError):  # needs CAP_NET_ADMIN; SO_RCVBUF was already asked
            sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, RCVBUF_FORCE)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def scoped_interfaces(ctx: ProbeContext) -> list[InterfaceInfo]:
    """The context's interfaces that the scope names (all of them if it names none)."""
    names = set(ctx.scope.interfaces)
    return [i for i in ctx.interfaces if not names or i.name in names]


def _drain(
    socks: Mapping[socket.socket, str],
    deadline: float,
    max_replies: int,
    max_bytes: int,
) -> tuple[list[tuple[bytes, str, datetime, str]], bool]:
    """Read every datagram until the deadline or a cap; parsing waits until after."""
    out: list[tuple[bytes, str, datetime, str]] = []
    buf = bytearray(MAX_DATAGRAM)
    view = memoryview(buf)
    kept = 0
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return out, False
        ready, _, _ = select.select(list(socks), [], [], remaining)
        for sock in ready:
            while True:
                try:
                    n, addr = sock.recvfrom_into(buf)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError as err:  # e.g. an ICMP error queued on the socket
                    _LOGGER.debug("%s: receive failed: %s", socks[sock], err)
                    break
                if len(out) >= max_replies or kept + n > max_bytes:
                    return out, True
                out.append((bytes(view[:n]), addr[0], utcnow(), socks[sock]))
                kept += n


def search(
    ctx: ProbeContext,
    *,
    name: str,
    port: int,
    probes: Sequence[tuple[bytes, str]],
    parse: Parser,
    group: str | None = None,
    max_replies: int = MAX_REPLIES,
    max_bytes: int = MAX_REPLY_TOTAL,
) -> list[Observation]:
    """Send each (payload, destination) on every scoped interface and parse what comes back.

    Destinations are multicast groups or 255.255.255.255, sent to ``port``
    through a socket pinned to one interface (TTL 1). Replies are collected
    for ``ctx.timeout`` seconds; those from outside the scope are dropped and
    counted, and identical datagrams from one address are kept once.
    """
    socks: dict[socket.socket, str] = {}
    own: set[str] = set()
    try:
        for iface in scoped_interfaces(ctx):
            sock = open_search_socket(ctx, iface, port, group)
            socks[sock] = iface.name
            own.add(str(iface.ip))
            for payload, dest in probes:
                try:
                    ctx.send_multicast(sock, payload, dest, port)
                except OSError as err:
                    _LOGGER.warning("%s: %s probe to %s failed: %s", iface.name, name, dest, err)
        if not socks:
            return []
        raw, capped = _drain(socks, time.monotonic() + ctx.timeout, max_replies, max_bytes)
    finally:
        for sock in socks:
            sock.close()
    if capped:
        _LOGGER.warning("%s: stopped after %d replies (cap reached)", name, len(raw))
    return _parse_all(name, raw, parse, ctx, own)


def _parse_all(
    name: str,
    raw: Iterable[tuple[bytes, str, datetime, str]],
    parse: Parser,
    ctx: ProbeContext,
    own: set[str],
) -> list[Observation]:
    out: list[Observation] = []
    seen: set[tuple[str, bytes]] = set()
    outside: set[str] = set()
    ignored = duplicates = 0
    for data, ip, at, iface in raw:
        if ip in own:
            continue  # our own broadcast or multicast, looped back
        if not ctx.in_scope(ip):
            ignored += 1
            outside.add(ip)
            continue
        if (ip, data) in seen:
            duplicates += 1  # the same answer to our multicast and broadcast probes
            continue
        seen.add((ip, data))
        try:
            obs = parse(data, ip, at)
        except ParseError as err:
            obs = Observation(source=Source(name), ip=ip, seen_at=at, error=clip(err))
        if obs is None:
            continue
        out.append(replace(obs, attrs={**obs.attrs, "iface": iface}))
    if ignored:
        _LOGGER.info(
            "%s: ignored %d replies from %d addresses outside the scope",
            name,
            ignored,
            len(outside),
        )
    _LOGGER.debug("%s: %d observations, %d duplicate replies", name, len(out), duplicates)
    return out


def discover(ctx: ProbeContext) -> list[Observation]:
    """Multicast one SADP inquiry per scoped interface; one Observation per ProbeMatch."""
    probe = build_probe(str(uuidlib.uuid4()))
    return search(
        ctx,
        name=Source.SADP,
        port=PORT,
        probes=[(probe, dest) for dest in DESTINATIONS],
        parse=parse_reply,
        group=GROUP,
    )
