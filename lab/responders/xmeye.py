"""``kind = "xmeye"``: a Xiongmai DVR/camera answering the XMEye search on UDP 34569.

Answers only a 20-byte DVRIP header with head 0xff and message id 1530
(OpenIPC/python-dvr:DeviceManager.py, ``SearchXM``), with message 1531 and a
``NetWork.NetCommon`` JSON body shaped like the replies quoted in
tests/test_xmeye.py. Real devices broadcast that reply to port 34569 (the
Besder capture: "packets from camera to broadcast address (cameras port
34569/UDP was used for it)"), so that is the default here.

Options (all optional): name (HostName), serial (SN), firmware (Version),
build_date (BuildDate), device_type (DeviceType, 43), channels (ChannelNum),
http_port (80), tcp_port (TCPPort, 34567), and the shared mac, ip, reply_to
("broadcast" | "unicast" | "both"), mode ("normal" | "malformed" |
"truncated" | "oversized" | "non_utf8" | "flood") and flood_count; see
lab/responders/sadp.py.
"""

from __future__ import annotations

import json
import socket
import struct
from collections.abc import Mapping
from typing import Any, ClassVar

from lab.responders.base import OptionType, register
from lab.responders.sadp import COMMON_OPTIONS, VendorResponder

HEADER = struct.Struct("<BBHIIBBHI")  # head, version, reserved, session, seq, tot, cur, msg, len
MSG_SEARCH = 1530
MSG_SEARCH_REPLY = 1531


def hex_address(ip: str) -> str:
    """XM's address text: the little-endian u32 in hex, "0x6700A8C0" for 192.168.0.103."""
    return f"0x{int.from_bytes(socket.inet_aton(ip), 'little'):08X}"


@register
class XmeyeResponder(VendorResponder):
    kind = "xmeye"
    options: ClassVar[Mapping[str, OptionType]] = {
        **COMMON_OPTIONS,
        "name": str,
        "serial": str,
        "firmware": str,
        "build_date": str,
        "device_type": int,
        "channels": int,
        "http_port": int,
        "tcp_port": int,
    }
    reply_targets = ("broadcast", "unicast", "both")
    default_reply_to = "broadcast"
    name_key = "HostName"
    serial_key = "SN"
    mac_key = "MAC"

    def match(self, data: bytes) -> Any:
        if len(data) < HEADER.size or len(data) > 4096:
            return None
        head, _ver, _res, session, seq, _tot, _cur, msg, _length = HEADER.unpack_from(data)
        if head != 0xFF or msg != MSG_SEARCH:
            return None
        return (session, seq)

    def fields(self, request: Any, ip: str, mac: str) -> dict[str, Any]:
        o = self.opts
        return {
            "BuildDate": o.get("build_date", "2018-09-17 10:47:30"),
            "ChannelNum": o.get("channels", 1),
            "DeviceType": o.get("device_type", 43),
            "GateWay": hex_address(".".join([*ip.split(".")[:3], "1"])),
            "HostIP": hex_address(ip),
            "HostName": o.get("name", "LocalHost"),
            "HttpPort": o.get("http_port", 80),
            "MAC": mac,
            "MaxBps": 0,
            "MonMode": "TCP",
            "NetConnectState": 0,
            "OtherFunction": "D=2022-08-12 11:14:35 V=0832fc42ad047dc",
            "SN": o.get("serial", "a5b23b431b14712e"),
            "SSLPort": 8443,
            "Submask": hex_address("255.255.255.0"),
            "TCPMaxConn": 10,
            "TCPPort": o.get("tcp_port", 34567),
            "TransferPlan": "Quality",
            "UDPPort": 34568,
            "UseHSDownLoad": False,
            "Version": o.get("firmware", "V4.02.R12.E7335520.12012.047502.00000"),
        }

    def _frame(self, request: Any, text: str) -> bytes:
        session, seq = request
        body = text.encode() + b"\n\x00"  # XM bodies end with a newline and a NUL
        return HEADER.pack(0xFF, 1, 0, session, seq, 0, 0, MSG_SEARCH_REPLY, len(body)) + body

    def render(self, request: Any, fields: dict[str, Any], pad: int = 0) -> bytes:
        common = dict(fields)
        if pad:
            common["Reserved"] = "x" * pad
        message = {"NetWork.NetCommon": common, "Ret": 100, "SessionID": "0x00000000"}
        return self._frame(request, json.dumps(message, separators=(", ", " : ")))

    def malformed(self, request: Any, fields: dict[str, Any]) -> bytes:
        # Unquoted keys and a missing brace, as a broken firmware might write it.
        pairs = ", ".join(f"{k} : {json.dumps(v)}" for k, v in fields.items())
        return self._frame(request, f'{{ "NetWork.NetCommon" : {{ {pairs}, "Ret" : 100 ')
