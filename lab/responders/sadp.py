"""``kind = "sadp"``: a Hikvision device answering SADP inquiries on UDP 37020.

Answers only a well-formed ``<Probe>`` with ``<Types>inquiry</Types>``, echoing
its Uuid in a ``<ProbeMatch>`` modelled on real replies
(julienblitte/UniversalScanner:UniversalScanner/Hikvision.selftest and the
DS-2CD2320D-I reply quoted in tests/test_sadp.py). Like the real devices it
sends the reply to the prober and to 239.255.255.250:37020
(https://www.itread01.com/content/1544974924.html).

Options (all optional): model, serial, firmware, dsp_version, device_type,
activated (bool), http_port, sdk_port, boot_time, oem_info, subnet_mask,
gateway, dhcp (bool), analog_channels, digital_channels, and the ones every
vendor responder here shares:
  mac, ip       what the reply claims (default: eth0's real MAC and address)
  reply_to      "both" (default) | "unicast" | "multicast"
  mode          "normal" | "malformed" | "truncated" | "oversized" | "non_utf8" | "flood"
  flood_count   distinct fake devices per probe in flood mode (default 2000)
  spoof_from    answer from this forged source address (see base.DatagramResponder)

This module also holds VendorResponder, the base of the dhip and xmeye kinds.
"""

from __future__ import annotations

import fcntl
import ipaddress
import socket
import struct
from abc import abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar
from xml.etree.ElementTree import ParseError as XmlParseError
from xml.sax.saxutils import escape

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from lab.responders.base import (
    DEVICE_IFACE,
    DatagramResponder,
    OptionError,
    OptionType,
    join_group,
    register,
)
from lab.scenario import normalise_mac

MODES = ("normal", "malformed", "truncated", "oversized", "non_utf8", "flood")
FLOOD_DEFAULT = 2000
FLOOD_MAX = 20_000
OVERSIZE = 60_000  # bytes of padding: still one UDP datagram, far above any parser's cap
BAD_MARK = "ZZBADZZ"  # put where the name goes, then swapped for invalid UTF-8 of equal length
BAD_BYTES = b"Cam\xff\xfe\xc3!"
BROADCAST = "255.255.255.255"
_SIOCGIFADDR = 0x8915
_SIOCGIFHWADDR = 0x8927

COMMON_OPTIONS: dict[str, OptionType] = {
    "mac": str,
    "ip": str,
    "reply_to": str,
    "mode": str,
    "flood_count": int,
}


def _interface_address(sock: socket.socket) -> tuple[str, str]:
    """eth0's IPv4 address and MAC, read through ``sock`` so its namespace answers."""
    req = struct.pack("256s", DEVICE_IFACE.encode())
    addr = fcntl.ioctl(sock.fileno(), _SIOCGIFADDR, req)
    hw = fcntl.ioctl(sock.fileno(), _SIOCGIFHWADDR, req)
    return socket.inet_ntoa(addr[20:24]), ":".join(f"{b:02x}" for b in hw[18:24])


def fake_mac(base: str, index: int) -> str:
    """The i-th flood device's MAC: the real OUI, the index in the low three octets."""
    octets = base.split(":")[:3] + [f"{(index >> s) & 0xFF:02x}" for s in (16, 8, 0)]
    return ":".join(octets)


class VendorResponder(DatagramResponder):
    """A discovery responder with the shared options and hostile modes.

    Subclasses say how a probe looks (``match``), what the device reports
    (``fields``) and how a reply is written (``render``/``malformed``).
    """

    reply_targets: ClassVar[tuple[str, ...]] = ("unicast",)
    default_reply_to: ClassVar[str] = "unicast"
    group: ClassVar[str | None] = None
    name_key: ClassVar[str]  # the field that carries invalid UTF-8 in non_utf8 mode
    serial_key: ClassVar[str]
    mac_key: ClassVar[str]

    @classmethod
    def check(cls, options: Mapping[str, Any]) -> None:
        super().check(options)
        mode = options.get("mode", "normal")
        if mode not in MODES:
            raise OptionError("mode", f"{mode!r} is not one of {', '.join(MODES)}")
        count = options.get("flood_count", FLOOD_DEFAULT)
        if not 1 <= count <= FLOOD_MAX:
            raise OptionError("flood_count", f"{count} is not within 1..{FLOOD_MAX}")
        if "mac" in options and normalise_mac(options["mac"]) is None:
            raise OptionError("mac", f"{options['mac']!r} is not a MAC address")
        if "ip" in options:
            try:
                ipaddress.IPv4Address(options["ip"])
            except ValueError:
                raise OptionError("ip", f"{options['ip']!r} is not an IPv4 address") from None
        reply_to = options.get("reply_to", cls.default_reply_to)
        if reply_to not in cls.reply_targets:
            raise OptionError(
                "reply_to", f"{reply_to!r} is not one of {', '.join(cls.reply_targets)}"
            )

    def bind(self) -> None:
        super().bind()
        sock = self.sockets[0]
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        if self.group is not None:
            join_group(sock, self.group)

    def identity(self) -> tuple[str, str]:
        """(ip, mac) the reply claims: options first, else what eth0 has right now."""
        ip = self.opts.get("ip") or self.spoof_from
        mac = self.opts.get("mac")
        if ip is None or mac is None:
            real_ip, real_mac = _interface_address(self.sockets[0])
            ip = ip or real_ip
            mac = mac or real_mac
        return str(ip), normalise_mac(str(mac)) or str(mac)

    def destinations(self, addr: tuple[str, int]) -> list[tuple[str, int]]:
        how = self.opts.get("reply_to", self.default_reply_to)
        out: list[tuple[str, int]] = []
        if how in ("unicast", "both"):
            out.append(addr)
        if how in ("multicast", "both") and self.group is not None:
            out.append((self.group, self.port))
        if how in ("broadcast", "both") and self.group is None:
            out.append((BROADCAST, self.port))
        return out

    def reply(self, data: bytes, addr: tuple[str, int]) -> bytes | None:
        request = self.match(data)
        if request is None:
            return None
        ip, mac = self.identity()
        fields = self.fields(request, ip, mac)
        if self._transport is None:
            return None
        for datagram in self.datagrams(request, fields, mac):
            for dest in self.destinations(addr):
                self.send(datagram, dest)
        return None  # sent above: real devices answer to the group or port, not only to addr

    def datagrams(self, request: Any, fields: dict[str, Any], mac: str) -> list[bytes]:
        mode = self.opts.get("mode", "normal")
        if mode == "flood":
            count = self.opts.get("flood_count", FLOOD_DEFAULT)
            return [self.render(request, self.fake(fields, mac, i)) for i in range(1, count + 1)]
        if mode == "oversized":
            return [self.render(request, fields, pad=OVERSIZE)]
        if mode == "non_utf8":
            text = self.render(request, {**fields, self.name_key: BAD_MARK})
            return [text.replace(BAD_MARK.encode(), BAD_BYTES)]
        if mode == "truncated":
            whole = self.render(request, fields)
            return [whole[: len(whole) // 2]]
        if mode == "malformed":
            return [self.malformed(request, fields)]
        return [self.render(request, fields)]

    def fake(self, fields: dict[str, Any], mac: str, index: int) -> dict[str, Any]:
        return {
            **fields,
            self.mac_key: self.format_mac(fake_mac(mac, index)),
            self.serial_key: f"{fields[self.serial_key]}{index:05d}",
        }

    def format_mac(self, mac: str) -> str:
        return mac

    @abstractmethod
    def match(self, data: bytes) -> Any:
        """What the reply needs from a well-formed probe, or None to stay silent."""

    @abstractmethod
    def fields(self, request: Any, ip: str, mac: str) -> dict[str, Any]:
        """The device's fields, keyed by their wire names."""

    @abstractmethod
    def render(self, request: Any, fields: dict[str, Any], pad: int = 0) -> bytes:
        """One reply datagram; ``pad`` adds that many filler characters."""

    @abstractmethod
    def malformed(self, request: Any, fields: dict[str, Any]) -> bytes:
        """A reply that is framed right but whose content does not parse."""


@register
class SadpResponder(VendorResponder):
    kind = "sadp"
    options: ClassVar[Mapping[str, OptionType]] = {
        **COMMON_OPTIONS,
        "model": str,
        "serial": str,
        "firmware": str,
        "dsp_version": str,
        "device_type": (int, str),
        "activated": bool,
        "http_port": int,
        "sdk_port": int,
        "boot_time": str,
        "oem_info": str,
        "subnet_mask": str,
        "gateway": str,
        "dhcp": bool,
        "analog_channels": int,
        "digital_channels": int,
    }
    reply_targets = ("both", "unicast", "multicast")
    default_reply_to = "both"
    group = "239.255.255.250"
    name_key = "DeviceDescription"
    serial_key = "DeviceSN"
    mac_key = "MAC"

    def match(self, data: bytes) -> Any:
        if len(data) > 4096 or b"<Probe>" not in data:
            return None
        try:
            root = SafeET.fromstring(data, forbid_dtd=True)
        except (XmlParseError, DefusedXmlException, ValueError):
            return None
        if root.tag != "Probe" or (root.findtext("Types") or "").strip() != "inquiry":
            return None
        probe_uuid = (root.findtext("Uuid") or "").strip()
        return probe_uuid or None

    def format_mac(self, mac: str) -> str:
        return mac.replace(":", "-")  # SADP writes 44-47-cc-37-ce-81

    def fields(self, request: Any, ip: str, mac: str) -> dict[str, Any]:
        o = self.opts
        model = o.get("model", "DS-2CD2320D-I")
        gateway = o.get("gateway") or ".".join([*ip.split(".")[:3], "1"])
        return {
            "Uuid": request,
            "Types": "inquiry",
            "DeviceType": o.get("device_type", 142378),
            "DeviceDescription": model,
            "DeviceSN": o.get("serial", f"{model}20180919AACHC52932642"),
            "CommandPort": o.get("sdk_port", 8000),
            "HttpPort": o.get("http_port", 80),
            "MAC": self.format_mac(mac),
            "IPv4Address": ip,
            "IPv4SubnetMask": o.get("subnet_mask", "255.255.255.0"),
            "IPv4Gateway": gateway,
            "IPv6Address": "::",
            "IPv6Gateway": "::",
            "IPv6MaskLen": 64,
            "DHCP": o.get("dhcp", False),
            "AnalogChannelNum": o.get("analog_channels", 0),
            "DigitalChannelNum": o.get("digital_channels", 1),
            "SoftwareVersion": o.get("firmware", "V5.5.6build 180326"),
            "DSPVersion": o.get("dsp_version", "V7.3 build 180326"),
            "BootTime": o.get("boot_time", "2024-09-18 09:21:28"),
            "OEMInfo": o.get("oem_info", "N/A"),
            "Activated": o.get("activated", True),
            "PasswordResetAbility": True,
            "SupportHCPlatform": True,
        }

    def render(self, request: Any, fields: dict[str, Any], pad: int = 0) -> bytes:
        parts = ['<?xml version="1.0" encoding="UTF-8"?>\n<ProbeMatch>']
        for key, value in fields.items():
            text = ("true" if value else "false") if isinstance(value, bool) else str(value)
            parts.append(f"<{key}>{escape(text)}</{key}>")
        if pad:
            parts.append(f"<Reserved>{'x' * pad}</Reserved>")
        parts.append("</ProbeMatch>\n")
        return "\n".join(parts).encode()

    def malformed(self, request: Any, fields: dict[str, Any]) -> bytes:
        # Mismatched tags: the model and serial survive, the MAC does not.
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n<ProbeMatch>'
            f"<Uuid>{escape(str(request))}</Uuid>"
            f"<DeviceDescription>{escape(str(fields['DeviceDescription']))}</DeviceDescription>"
            f"<DeviceSN>{escape(str(fields['DeviceSN']))}</DeviceSN>"
            f"<MAC>{fields['MAC']}</Mac><SoftwareVersion>V5.5.6build</DSPVersion>"
            "</ProbeMatch>\n"
        ).encode()
