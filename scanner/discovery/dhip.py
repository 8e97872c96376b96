"""Dahua DHIP discovery: the JSON search that Dahua devices and their OEMs answer.

Dahua's ConfigTool finds devices with ``DHDiscover.search`` on UDP 37810,
multicast 239.255.255.251 and broadcast, behind a 32-byte binary header
(rroller/dahua:custom_components/dahua/discovery.py measured that bare JSON
gets no reply). The header, little-endian:

  0..4    header size, 32
  4..8    magic, the bytes "DHIP"
  8..16   session and request id, zero for discovery
  16..24  body length (u64; older tools write u32 + 4 zero bytes)
  24..32  body length again

Devices answer ``client.notifyDevInfo`` with the same header and a JSON body:
the MAC at the top level, everything else under ``params.deviceInfo``
(julienblitte/UniversalScanner:UniversalScanner/Dahua2.cs; the amplification
write-ups quoted in tests/test_dhip.py). OEM firmware (Amcrest, Lorex,
Intelbras…) puts its own brand in ``Vendor``; it is recorded as the device
says it, and matching decides what it means.

Observation attrs (strings, at most 512 characters each):
  manufacturer       deviceInfo.Vendor, or "Dahua" when the reply names none
  model              DeviceType, e.g. "IPC-HDW5421S"
  serial             SerialNo
  firmware           Version, e.g. "2.400.0.8"
  name               MachineName
  mac                top-level "mac", normalised (mac_raw if unreadable)
  dhip_vendor        Vendor as sent ("General", "Intelbras", "Amcrest"…)
  dhip_manufacturer  Manufacturer as sent ("Private" is seen on Dahua units)
  device_class       DeviceClass: IPC, NVR, VTO, MHDX…
  http_port, https_port, sdk_port (Port, the DVRIP/TCP 37777 service)
  reported_ip        IPv4Address.IPAddress when it differs from the source address
  subnet_mask, gateway, dhcp
  video_inputs, remote_video_inputs, init_status (Init, as sent)
  iface              the scanner interface the reply arrived on (added by discover)
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from datetime import datetime
from typing import Final

from scanner.discovery.base import (
    ATTR_FIRMWARE,
    ATTR_MANUFACTURER,
    ATTR_MODEL,
    ATTR_NAME,
    ATTR_SERIAL,
    ProbeContext,
)
from scanner.discovery.sadp import (
    MAX_REPLY_BYTES,
    add_mac,
    add_reported_ip,
    clip,
    decode_text,
    join_errors,
    load_json_object,
    salvage_json,
    search,
)
from scanner.model import Observation, Source

PORT: Final = 37810
GROUP: Final = "239.255.255.251"
BROADCAST: Final = "255.255.255.255"
# where one search goes on each scoped interface (scanner/plan.py counts these)
DESTINATIONS: Final = (GROUP, BROADCAST)
MAGIC: Final = b"DHIP"
HEADER_SIZE: Final = 32
DEFAULT_MANUFACTURER: Final = "Dahua"
SEARCH_METHOD: Final = "DHDiscover.search"
REPLY_METHOD: Final = "client.notifyDevInfo"

_HEADER = struct.Struct("<I4sIIQQ")  # size, magic, session, request id, length, length

# deviceInfo key -> attribute key
_FIELDS: Final[tuple[tuple[str, str], ...]] = (
    ("DeviceType", ATTR_MODEL),
    ("SerialNo", ATTR_SERIAL),
    ("Version", ATTR_FIRMWARE),
    ("MachineName", ATTR_NAME),
    ("Vendor", "dhip_vendor"),
    ("Manufacturer", "dhip_manufacturer"),
    ("DeviceClass", "device_class"),
    ("HttpPort", "http_port"),
    ("HttpsPort", "https_port"),
    ("Port", "sdk_port"),
    ("VideoInputChannels", "video_inputs"),
    ("RemoteVideoInputChannels", "remote_video_inputs"),
    ("Init", "init_status"),
)
_ADDRESS_FIELDS: Final = (("SubnetMask", "subnet_mask"), ("DefaultGateway", "gateway"))
_SALVAGE_KEYS: Final = frozenset(
    {k for k, _ in _FIELDS}
    | {k for k, _ in _ADDRESS_FIELDS}
    | {"mac", "MAC", "method", "IPAddress", "DhcpEnable"}
)


def build_probe() -> bytes:
    """One ``DHDiscover.search`` datagram: the 32-byte header, then the JSON body."""
    body = json.dumps(
        {"method": SEARCH_METHOD, "params": {"mac": "", "uni": 1}}, separators=(",", ":")
    ).encode()
    return _HEADER.pack(HEADER_SIZE, MAGIC, 0, 0, len(body), len(body)) + body


def _body(data: bytes) -> tuple[bytes, str | None]:
    """The JSON part of a DHIP frame, and why it is suspect (if it is)."""
    size, _magic, _session, _request, length, _again = _HEADER.unpack_from(data)
    start = size if HEADER_SIZE <= size <= len(data) else HEADER_SIZE
    available = len(data) - start
    if length > available:
        return data[start:], f"truncated: header says {length} body bytes, {available} arrived"
    return data[start : start + length] if length else data[start:], None


def _obj(value: object) -> Mapping[str, object]:
    return value if isinstance(value, dict) else {}


def parse_reply(data: bytes, ip: str, seen_at: datetime) -> Observation | None:
    """One DHIP datagram as an Observation; None for search requests (ours too) and non-DHIP.

    Truncated, malformed, oversized or non-UTF-8 replies give an Observation
    with ``error`` set and whatever fields could still be read.
    """
    if len(data) < 8 or data[4:8] != MAGIC:
        return None
    if len(data) > MAX_REPLY_BYTES:
        return Observation(
            source=Source.DHIP,
            ip=ip,
            seen_at=seen_at,
            error=f"oversized reply: {len(data)} bytes (cap {MAX_REPLY_BYTES})",
        )
    if len(data) < HEADER_SIZE:
        return Observation(
            source=Source.DHIP,
            ip=ip,
            seen_at=seen_at,
            error=f"truncated: {len(data)}-byte datagram, shorter than the DHIP header",
        )
    raw, frame_error = _body(data)
    text, clean = decode_text(raw)
    text = text.strip("\x00 \t\r\n")
    message, json_error = load_json_object(text)
    if message is not None:
        method = message.get("method")
        if method is not None and method != REPLY_METHOD:
            return None  # a search request (our own echo, or another tool's) or other traffic
        info = _obj(_obj(message.get("params")).get("deviceInfo"))
        if not info:
            json_error = "no params.deviceInfo in the reply"
        mac_value = message.get("mac") or info.get("MAC") or info.get("mac") or ""
        address = _obj(info.get("IPv4Address"))
    else:
        flat = salvage_json(text, _SALVAGE_KEYS)
        if flat.get("method") == SEARCH_METHOD:
            return None
        info = address = flat
        mac_value = flat.get("mac") or flat.get("MAC") or ""
    attrs: dict[str, str] = {}
    for key, attr in _FIELDS:
        value = info.get(key)
        if value is not None and not isinstance(value, dict | list) and clip(value):
            attrs[attr] = clip(value)
    attrs[ATTR_MANUFACTURER] = attrs.get("dhip_vendor") or DEFAULT_MANUFACTURER
    for key, attr in _ADDRESS_FIELDS:
        if address.get(key) is not None and clip(address[key]):
            attrs[attr] = clip(address[key])
    if isinstance(address.get("DhcpEnable"), bool):
        attrs["dhcp"] = clip(address["DhcpEnable"])
    reported = address.get("IPAddress")
    add_reported_ip(attrs, clip(reported) if isinstance(reported, str) else None, ip)
    mac = add_mac(attrs, mac_value if isinstance(mac_value, str) else "")
    return Observation(
        source=Source.DHIP,
        ip=ip,
        seen_at=seen_at,
        mac=mac,
        attrs=attrs,
        error=join_errors(frame_error, None if clean else "reply is not valid UTF-8", json_error),
    )


def discover(ctx: ProbeContext) -> list[Observation]:
    """Multicast and broadcast one search per scoped interface; one Observation per reply."""
    probe = build_probe()
    return search(
        ctx,
        name=Source.DHIP,
        port=PORT,
        probes=[(probe, dest) for dest in DESTINATIONS],
        parse=parse_reply,
        group=GROUP,
    )
