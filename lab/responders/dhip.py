"""``kind = "dhip"``: a Dahua (or Dahua-OEM) device answering DHIP discovery on UDP 37810.

Answers only a frame with the 32-byte DHIP header whose JSON body calls
``DHDiscover.search`` (rroller/dahua:custom_components/dahua/discovery.py
found devices ignore anything else), with ``client.notifyDevInfo`` framed the
same way, the MAC at the top level and the rest under ``params.deviceInfo``,
as in the replies quoted in tests/test_dhip.py. The device joins
239.255.255.251 and answers the prober's address and port, as an Intelbras
unit was seen to do; ``reply_to = "multicast"`` or ``"both"`` also sends the
answer to the group.

Options (all optional): vendor ("Dahua"; an OEM puts its brand here),
manufacturer (defaults to vendor), model (DeviceType), device_class ("IPC"),
serial (SerialNo), firmware (Version), name (MachineName; defaults to the
serial), http_port (80), sdk_port (Port, 37777), video_inputs (1), and the
shared mac, ip, reply_to ("unicast" | "multicast" | "both"), mode
("normal" | "malformed" | "truncated" | "oversized" | "non_utf8" | "flood")
and flood_count; see lab/responders/sadp.py.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from typing import Any, ClassVar

from lab.responders.base import OptionType, register
from lab.responders.sadp import COMMON_OPTIONS, VendorResponder

MAGIC = b"DHIP"
HEADER = struct.Struct("<I4sIIQQ")  # size 32, magic, session, request id, length, length


def frame(body: bytes, session: int = 0, request_id: int = 0) -> bytes:
    return HEADER.pack(HEADER.size, MAGIC, session, request_id, len(body), len(body)) + body


@register
class DhipResponder(VendorResponder):
    kind = "dhip"
    options: ClassVar[Mapping[str, OptionType]] = {
        **COMMON_OPTIONS,
        "vendor": str,
        "manufacturer": str,
        "model": str,
        "device_class": str,
        "serial": str,
        "firmware": str,
        "name": str,
        "http_port": int,
        "sdk_port": int,
        "video_inputs": int,
    }
    reply_targets = ("unicast", "multicast", "both")
    default_reply_to = "unicast"
    group = "239.255.255.251"
    name_key = "MachineName"
    serial_key = "SerialNo"
    mac_key = "mac"

    def match(self, data: bytes) -> Any:
        if len(data) < HEADER.size or len(data) > 4096 or data[4:8] != MAGIC:
            return None
        size, _magic, session, request_id, length, _again = HEADER.unpack_from(data)
        if size != HEADER.size or length > len(data) - size:
            return None
        try:
            body = json.loads(data[size : size + length].decode().strip("\x00\r\n "))
        except (UnicodeDecodeError, ValueError, RecursionError):
            return None
        if not isinstance(body, dict) or body.get("method") != "DHDiscover.search":
            return None
        return (session, request_id)

    def fields(self, request: Any, ip: str, mac: str) -> dict[str, Any]:
        o = self.opts
        vendor = o.get("vendor", "Dahua")
        serial = o.get("serial", "1F006E4PAX00075")
        return {
            "mac": mac,
            "AlarmInputChannels": 0,
            "AlarmOutputChannels": 0,
            "DeviceClass": o.get("device_class", "IPC"),
            "DeviceType": o.get("model", "IPC-HDW5421S"),
            "HttpPort": o.get("http_port", 80),
            "IPv4Address": {
                "DefaultGateway": ".".join([*ip.split(".")[:3], "1"]),
                "DhcpEnable": False,
                "IPAddress": ip,
                "SubnetMask": "255.255.255.0",
            },
            "MachineName": o.get("name", serial),
            "Manufacturer": o.get("manufacturer", vendor),
            "Port": o.get("sdk_port", 37777),
            "RemoteVideoInputChannels": 0,
            "SerialNo": serial,
            "Vendor": vendor,
            "Version": o.get("firmware", "2.400.0.8"),
            "VideoInputChannels": o.get("video_inputs", 1),
            "VideoOutputChannels": 16,
        }

    def _message(self, fields: dict[str, Any], pad: int = 0) -> dict[str, Any]:
        info = {k: v for k, v in fields.items() if k != "mac"}
        if pad:
            info["Reserved"] = "x" * pad
        return {
            "mac": fields["mac"],
            "method": "client.notifyDevInfo",
            "params": {"deviceInfo": info},
        }

    def render(self, request: Any, fields: dict[str, Any], pad: int = 0) -> bytes:
        session, request_id = request
        body = json.dumps(self._message(fields, pad), separators=(",", ":")).encode()
        return frame(body, session, request_id)

    def malformed(self, request: Any, fields: dict[str, Any]) -> bytes:
        # Commas dropped between members: a JSON parser gives up, the pairs are still there.
        text = json.dumps(self._message(fields), separators=(" ", ":"))
        session, request_id = request
        return frame(text.encode(), session, request_id)
