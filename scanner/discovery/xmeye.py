"""Xiongmai (XMEye / "Sofia" / NETSurveillance) search on UDP 34569.

Xiongmai-based cameras and DVRs, sold under hundreds of brands, answer a
broadcast search with their ``NetWork.NetCommon`` settings: MAC, serial
(the XMEye cloud id), host name and firmware. The request is a bare 20-byte
DVRIP header with message id 1530 (OpenIPC/python-dvr:DeviceManager.py,
``SearchXM``); the header, little-endian:

  0     0xff
  1     version (0 in requests, 1 in device replies)
  2..4  reserved
  4..8  session id
  8..12 sequence number
  12    total packets, 13 current packet
  14..16 message id: 1530 search, 1531 its reply
  16..20 body length (the JSON, often followed by "\\n" and a NUL)

Devices broadcast the reply to port 34569 from port 34569 (the Besder
capture in KostasEreksonas/Besder-6024PB-XMA501-ip-camera-security-
investigation:README.md), which is why every tool binds that port.
Addresses are hex strings of a little-endian u32: "0x6700A8C0" is
192.168.0.103.

Observation attrs (strings, at most 512 characters each):
  manufacturer   "Xiongmai" (the reply never names the brand on the box)
  serial         SN, the XMEye cloud id
  firmware       Version, e.g. "V5.00.R02.00030747.10010.349f17.0000000"
  name           HostName
  mac            MAC, normalised (mac_raw if unreadable)
  build_date     BuildDate
  device_type    DeviceType, Xiongmai's numeric class
  channels       ChannelNum
  http_port, sdk_port (TCPPort, the DVRIP service), udp_port, ssl_port
  reported_ip    HostIP decoded, when it differs from the source address
  subnet_mask, gateway (decoded), other_function (OtherFunction), ret (Ret)
  iface          the scanner interface the reply arrived on (added by discover)
"""

from __future__ import annotations

import ipaddress
import re
import struct
from collections.abc import Mapping
from datetime import datetime
from typing import Final

from scanner.discovery.base import (
    ATTR_FIRMWARE,
    ATTR_MANUFACTURER,
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

PORT: Final = 34569
BROADCAST: Final = "255.255.255.255"
# where one search goes on each scoped interface (scanner/plan.py counts these)
DESTINATIONS: Final = (BROADCAST,)
HEAD: Final = 0xFF
MSG_SEARCH: Final = 1530  # 0x05fa
MSG_SEARCH_REPLY: Final = 1531  # 0x05fb
SECTION: Final = "NetWork.NetCommon"
MANUFACTURER: Final = "Xiongmai"

HEADER = struct.Struct("<BBHIIBBHI")  # head, version, reserved, session, seq, tot, cur, msg, len

_FIELDS: Final[tuple[tuple[str, str], ...]] = (
    ("SN", ATTR_SERIAL),
    ("Version", ATTR_FIRMWARE),
    ("HostName", ATTR_NAME),
    ("BuildDate", "build_date"),
    ("DeviceType", "device_type"),
    ("ChannelNum", "channels"),
    ("HttpPort", "http_port"),
    ("TCPPort", "sdk_port"),
    ("UDPPort", "udp_port"),
    ("SSLPort", "ssl_port"),
    ("OtherFunction", "other_function"),
)
_HEX_ADDRESS: Final = re.compile(r"0[xX][0-9a-fA-F]{1,8}")
_ADDRESS_FIELDS: Final = (("Submask", "subnet_mask"), ("GateWay", "gateway"))
_SALVAGE_KEYS: Final = frozenset(
    {k for k, _ in _FIELDS} | {k for k, _ in _ADDRESS_FIELDS} | {"MAC", "HostIP", "Ret"}
)


def build_probe(session: int = 0, sequence: int = 0) -> bytes:
    """The 20-byte search request: message 1530, no body."""
    return HEADER.pack(HEAD, 0, 0, session, sequence, 0, 0, MSG_SEARCH, 0)


def decode_address(value: object) -> str | None:
    """Dotted quad of an XM address: "0x6700A8C0" (little-endian u32) or already dotted."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    if _HEX_ADDRESS.fullmatch(text):
        return str(ipaddress.IPv4Address(int(text[2:], 16).to_bytes(4, "little")))
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        return None


def parse_reply(data: bytes, ip: str, seen_at: datetime) -> Observation | None:
    """One datagram on 34569 as an Observation; None for searches (ours too) and other traffic.

    Truncated, malformed, oversized or non-UTF-8 replies give an Observation
    with ``error`` set and whatever fields could still be read.
    """
    if not data or data[0] != HEAD:
        return None
    if len(data) < HEADER.size:
        return Observation(
            source=Source.XMEYE,
            ip=ip,
            seen_at=seen_at,
            error=f"truncated: {len(data)}-byte datagram, shorter than the 20-byte header",
        )
    _head, _version, _res, _session, _seq, _tot, _cur, msg, length = HEADER.unpack_from(data)
    if msg != MSG_SEARCH_REPLY:
        return None  # a search (our own broadcast echoed back) or another DVRIP message
    if len(data) > MAX_REPLY_BYTES:
        return Observation(
            source=Source.XMEYE,
            ip=ip,
            seen_at=seen_at,
            attrs={ATTR_MANUFACTURER: MANUFACTURER},
            error=f"oversized reply: {len(data)} bytes (cap {MAX_REPLY_BYTES})",
        )
    available = len(data) - HEADER.size
    frame_error = None
    if length > available:
        frame_error = f"truncated: header says {length} body bytes, {available} arrived"
    raw = data[HEADER.size : HEADER.size + min(length, available)]
    text, clean = decode_text(raw)
    text = text.strip("\x00 \t\r\n")
    message, json_error = load_json_object(text)
    fields: Mapping[str, object]
    if message is not None:
        section = message.get(SECTION)
        fields = section if isinstance(section, dict) else {}
        if not fields:
            json_error = f"no {SECTION} object in the reply"
        ret = message.get("Ret")
    else:
        fields = salvage_json(text, _SALVAGE_KEYS)
        ret = fields.get("Ret")
    attrs: dict[str, str] = {ATTR_MANUFACTURER: MANUFACTURER}
    for key, attr in _FIELDS:
        value = fields.get(key)
        if value is not None and not isinstance(value, dict | list) and clip(value):
            attrs[attr] = clip(value)
    for key, attr in _ADDRESS_FIELDS:
        decoded = decode_address(fields.get(key))
        if decoded:
            attrs[attr] = decoded
    if ret is not None and not isinstance(ret, dict | list):
        attrs["ret"] = clip(ret)
    add_reported_ip(attrs, decode_address(fields.get("HostIP")), ip)
    mac_value = fields.get("MAC")
    mac = add_mac(attrs, mac_value if isinstance(mac_value, str) else "")
    return Observation(
        source=Source.XMEYE,
        ip=ip,
        seen_at=seen_at,
        mac=mac,
        attrs=attrs,
        error=join_errors(frame_error, None if clean else "reply is not valid UTF-8", json_error),
    )


def discover(ctx: ProbeContext) -> list[Observation]:
    """Broadcast one search per scoped interface; one Observation per reply."""
    return search(
        ctx,
        name=Source.XMEYE,
        port=PORT,
        probes=[(build_probe(), dest) for dest in DESTINATIONS],
        parse=parse_reply,
    )
