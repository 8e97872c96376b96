"""``kind = "udp"``: answer every datagram on a port with one fixed payload.

Options: exactly one of ``reply`` (text, sent UTF-8) or ``reply_hex``; and
``group`` (a multicast group such as "239.255.255.250" to join on eth0, so
multicast probes to the port are heard too). The basis of later SSDP, SADP
and DHIP responders.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any, ClassVar

from lab.responders.base import DatagramResponder, OptionError, OptionType, join_group, register
from lab.scenario import ServiceSpec


@register
class UdpResponder(DatagramResponder):
    kind = "udp"
    options: ClassVar[Mapping[str, OptionType]] = {"reply": str, "reply_hex": str, "group": str}

    @classmethod
    def check(cls, options: Mapping[str, Any]) -> None:
        super().check(options)
        if ("reply" in options) == ("reply_hex" in options):
            raise OptionError("reply", "give exactly one of reply or reply_hex")
        if "reply_hex" in options:
            try:
                bytes.fromhex(options["reply_hex"])
            except ValueError:
                raise OptionError("reply_hex", "not hex") from None
        if "group" in options:
            try:
                group = ipaddress.IPv4Address(options["group"])
            except ValueError:
                raise OptionError("group", f"{options['group']!r} is not an IPv4 address") from None
            if not group.is_multicast:
                raise OptionError("group", f"{group} is not a multicast group")

    def __init__(self, device: str, service: ServiceSpec) -> None:
        super().__init__(device, service)
        if "reply_hex" in self.opts:
            self.payload = bytes.fromhex(self.opts["reply_hex"])
        else:
            self.payload = str(self.opts["reply"]).encode()

    def bind(self) -> None:
        super().bind()
        if "group" in self.opts:
            join_group(self.sockets[0], self.opts["group"])

    def reply(self, data: bytes, addr: tuple[str, int]) -> bytes | None:
        return self.payload
