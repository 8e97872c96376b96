"""``kind = "mdns"``: a small mDNS/DNS-SD responder (RFC 6762/6763) on UDP 5353.

A full ``zeroconf.Zeroconf()`` per device does not fit the lab: it wants its
own thread and event loop and binds its sockets when created, while the lab
creates every socket inside a device namespace with setns(2) and serves them
all from one asyncio loop. So this answers by hand, using zeroconf's wire
codec (DNSIncoming/DNSOutgoing and the record classes) only.

It joins 224.0.0.251 on eth0 and answers queries (never responses) for:
PTR <type>.local (with SRV, TXT and A as additional records, RFC 6763 §12.1),
PTR _services._dns-sd._udp.local, SRV/TXT/ANY <instance>.<type>.local and
A/ANY <hostname>.local. Known answers in the query suppress a PTR answer
(RFC 6762 §7.1). Answers go to the group after 20-120 ms (§6); QU questions
get a unicast answer; a query from a port other than 5353 gets a legacy
unicast answer with the query's id and question and TTL 10 (§6.7).

Options:
  services  list of tables {type = "_axis-video._tcp", instance = "AXIS M3045-V -
            ACCC8E123456", port = 80, txt = {macaddress = "ACCC8E123456"}}; a txt
            value of true makes a bare key
  hostname  host label without ".local" (default: the device name)
  address   the IPv4 address its A records give (default: the address it answers
            from); another lets it claim a neighbour's address, as a spoofer would
  mode      "normal" | "malformed" (a self-pointing name: a compression loop) |
            "truncated" (the answer cut in half) | "oversized" (8 KB of TXT with
            control characters and invalid UTF-8) | "silent"
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
import re
import socket
import struct
from collections.abc import Mapping
from typing import Any, ClassVar

from zeroconf import (
    DNSAddress,
    DNSIncoming,
    DNSOutgoing,
    DNSPointer,
    DNSQuestion,
    DNSRecord,
    DNSService,
    DNSText,
)

from lab.responders.base import (
    DatagramResponder,
    OptionError,
    OptionType,
    check_type,
    join_group,
    register,
)
from lab.responders.ssdp import own_ip
from lab.scenario import ServiceSpec

MDNS_GROUP = "224.0.0.251"
MDNS_PORT = 5353
# RFC 1035/6762 numbers, spelt out rather than taken from zeroconf's private const
TYPE_A, TYPE_PTR, TYPE_TXT, TYPE_SRV, TYPE_ANY = 1, 12, 16, 33, 255
CLASS_IN, CLASS_UNIQUE = 1, 0x8000
FLAGS_RESPONSE = 0x8400  # QR + AA
HOST_TTL, OTHER_TTL, LEGACY_TTL = 120, 4500, 10  # RFC 6762 §10 and §6.7
SERVICES_META = "_services._dns-sd._udp.local."
MODES = ("normal", "malformed", "truncated", "oversized", "silent")
_TYPE_RE = re.compile(r"^_[A-Za-z0-9-]{1,15}\._(tcp|udp)(\.local\.?)?$")
_LABEL_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


def fqdn_type(service_type: str) -> str:
    t = service_type.rstrip(".")
    return (t if t.endswith(".local") else f"{t}.local") + "."


def txt_bytes(txt: Mapping[str, Any]) -> bytes:
    """RFC 6763 §6 TXT rdata: length-prefixed "key=value" strings."""
    out = bytearray()
    for key, value in txt.items():
        entry = key.encode() if value is True else f"{key}={value}".encode()
        out += bytes([min(len(entry), 255)]) + entry[:255]
    return bytes(out) or b"\x00"


@register
class MdnsResponder(DatagramResponder):
    kind = "mdns"
    options: ClassVar[Mapping[str, OptionType]] = {
        "services": list,
        "hostname": str,
        "mode": str,
        "address": str,
    }
    required = frozenset({"services"})

    @classmethod
    def check(cls, options: Mapping[str, Any]) -> None:
        super().check(options)
        if options.get("mode", "normal") not in MODES:
            raise OptionError("mode", f"must be one of {', '.join(MODES)}")
        if "hostname" in options and not _LABEL_RE.match(options["hostname"]):
            raise OptionError("hostname", "must be one DNS label (no dots, no .local)")
        if "address" in options:
            try:
                ipaddress.IPv4Address(options["address"])
            except ValueError:
                raise OptionError("address", "not an IPv4 address") from None
        services = options["services"]
        if not services:
            raise OptionError("services", "at least one service")
        for i, svc in enumerate(services):
            where = f"services[{i}]"
            check_type(where, svc, dict)
            for key in svc:
                if key not in ("type", "instance", "port", "txt"):
                    raise OptionError(f"{where}.{key}", "unknown key (type, instance, port, txt)")
            for key in ("type", "instance", "port"):
                if key not in svc:
                    raise OptionError(f"{where}.{key}", "required")
            check_type(f"{where}.type", svc["type"], str)
            check_type(f"{where}.instance", svc["instance"], str)
            check_type(f"{where}.port", svc["port"], int)
            if not _TYPE_RE.match(svc["type"]):
                raise OptionError(f"{where}.type", 'must look like "_http._tcp"')
            if not 1 <= len(svc["instance"].encode()) <= 63:
                raise OptionError(f"{where}.instance", "must be 1..63 bytes (one DNS label)")
            if not 0 <= svc["port"] <= 65535:
                raise OptionError(f"{where}.port", "not a port number")
            txt = svc.get("txt", {})
            check_type(f"{where}.txt", txt, dict)
            for key, value in txt.items():
                check_type(f"{where}.txt.{key}", value, (str, bool, int))
                if not key or "=" in key:
                    raise OptionError(f"{where}.txt.{key}", "TXT keys are non-empty, without '='")

    def __init__(self, device: str, service: ServiceSpec) -> None:
        super().__init__(device, service)
        self.mode: str = self.opts.get("mode", "normal")
        self.host = f"{self.opts.get('hostname', device)}.local."
        self.services: list[dict[str, Any]] = []
        for svc in self.opts["services"]:
            stype = fqdn_type(svc["type"])
            txt = txt_bytes(dict(svc.get("txt", {})))
            if self.mode == "oversized":  # ~7.5 KB: bell, ANSI escape, invalid UTF-8
                txt += b"".join(
                    bytes([250]) + (b"x%02d=\x07\x1b[31m\xff\xfe\xc3(" % i).ljust(250, b"A")
                    for i in range(30)
                )
            self.services.append(
                {
                    "type": stype,
                    "name": f"{svc['instance']}.{stype}",
                    "port": svc["port"],
                    "txt": txt,
                }
            )
        self._probe: socket.socket | None = None

    def bind(self) -> None:
        super().bind()
        sock = self.sockets[0]
        join_group(sock, MDNS_GROUP)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, struct.pack("B", 255))
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
        self._probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    async def stop(self) -> None:
        if self._probe is not None:
            self._probe.close()
        await super().stop()

    # --- answering -----------------------------------------------------------------

    def _records(self, ip: str, legacy: bool) -> list[tuple[dict[str, Any], list[DNSRecord]]]:
        packed = socket.inet_aton(ip)
        host_ttl = LEGACY_TTL if legacy else HOST_TTL
        other_ttl = LEGACY_TTL if legacy else OTHER_TTL
        out = []
        for s in self.services:
            unique = CLASS_IN | CLASS_UNIQUE
            out.append(
                (
                    s,
                    [
                        DNSPointer(s["type"], TYPE_PTR, CLASS_IN, other_ttl, s["name"]),
                        DNSService(
                            s["name"], TYPE_SRV, unique, host_ttl, 0, 0, s["port"], self.host
                        ),
                        DNSText(s["name"], TYPE_TXT, unique, other_ttl, s["txt"]),
                        DNSAddress(self.host, TYPE_A, unique, host_ttl, packed),
                    ],
                )
            )
        return out

    def answer(
        self, msg: DNSIncoming, ip: str, legacy: bool
    ) -> tuple[list[DNSRecord], list[DNSRecord]]:
        """(answers, additionals) for one query."""
        known = {
            (r.name.lower(), r.alias.lower())
            for r in msg.answers()
            if isinstance(r, DNSPointer) and r.ttl >= OTHER_TTL // 2
        }
        answers: list[DNSRecord] = []
        extra: list[DNSRecord] = []

        def add(bucket: list[DNSRecord], rec: DNSRecord) -> None:
            if rec not in answers and rec not in extra:
                bucket.append(rec)

        records = self._records(ip, legacy)
        for q in msg.questions:
            qname = q.name.lower()
            for s, (ptr, srv, txt, a) in records:
                if qname == SERVICES_META.lower() and q.type in (TYPE_PTR, TYPE_ANY):
                    meta = DNSPointer(SERVICES_META, TYPE_PTR, CLASS_IN, ptr.ttl, s["type"])
                    add(answers, meta)
                if qname == s["type"].lower() and q.type in (TYPE_PTR, TYPE_ANY):
                    if (qname, s["name"].lower()) in known:
                        continue
                    add(answers, ptr)
                    for rec in (srv, txt, a):
                        add(extra, rec)
                if qname == s["name"].lower():
                    if q.type in (TYPE_SRV, TYPE_ANY):
                        add(answers, srv)
                        add(extra, a)
                    if q.type in (TYPE_TXT, TYPE_ANY):
                        add(answers, txt)
                if qname == self.host.lower() and q.type in (TYPE_A, TYPE_ANY):
                    add(answers, a)
        return answers, [r for r in extra if r not in answers]

    def reply(self, data: bytes, addr: tuple[str, int]) -> bytes | None:
        if self.mode == "silent":
            return None
        msg = DNSIncoming(data)
        if not msg.valid or not msg.is_query() or not msg.questions:
            return None
        legacy = addr[1] != MDNS_PORT
        ip = (
            self.opts.get("address")
            or self.spoof_from
            or (own_ip(self._probe, addr[0]) if self._probe is not None else "0.0.0.0")
        )
        answers, extra = self.answer(msg, ip, legacy)
        if not answers:
            return None
        out = DNSOutgoing(FLAGS_RESPONSE, multicast=not legacy, id_=msg.id if legacy else 0)
        if legacy:
            for q in msg.questions:
                out.add_question(DNSQuestion(q.name, q.type, CLASS_IN))
        for rec in answers:
            out.add_answer_at_time(rec, 0)
        for rec in extra:
            out.add_additional_answer(rec)
        packets = [self._spoil(p) for p in out.packets()]
        unicast = legacy or any(q.unicast for q in msg.questions)
        dest = addr if unicast else (MDNS_GROUP, MDNS_PORT)
        delay = 0.0 if legacy else random.uniform(0.02, 0.12)
        asyncio.get_running_loop().call_later(delay, self._send_all, packets, dest)
        return None

    def _spoil(self, packet: bytes) -> bytes:
        """The hostile variants of a good answer."""
        if self.mode == "truncated":
            return packet[: max(12, len(packet) // 2)]
        if self.mode == "malformed":
            # header: a response with one answer whose name points at itself
            return packet[:4] + b"\x00\x00\x00\x01\x00\x00\x00\x00" + b"\xc0\x0c" + b"\x00" * 10
        return packet

    def _send_all(self, packets: list[bytes], dest: tuple[str, int]) -> None:
        for p in packets:
            self.send(p, dest)
