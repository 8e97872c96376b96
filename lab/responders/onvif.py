"""``kind = "onvif"``: an ONVIF device service, SOAP 1.2 over HTTP at /onvif/device_service.

Answers what a scanner (and the stock onvif-zeep ``ONVIFCamera()``) asks:
GetSystemDateAndTime, GetCapabilities and GetServices without authentication
(ONVIF Core's PRE_AUTH access class), GetDeviceInformation and
GetNetworkInterfaces either openly or, when ``username``/``password`` are set,
only with a valid WS-Security UsernameToken PasswordDigest
(base64(sha1(nonce + created + password))) whose Created is within 5 minutes
of the device's clock. Anything else gets the SOAP 1.2 fault real gSOAP-based
cameras send: env:Sender / ter:NotAuthorized, "Sender not Authorized", with
HTTP 400 (or ``fault_status``) -- as quoted in AlexBrochu/CameraManager#1
and agsh/onvif#301. Unknown operations get ter:ActionNotSupported.

Options (all optional):
  manufacturer, model, firmware, serial, hardware_id   GetDeviceInformation fields
  mac            HwAddress in GetNetworkInterfaces (default: the device's eth0 MAC)
  username, password   require a valid digest for the protected operations
  clock_offset_s the device clock minus true UTC, in seconds (int or float)
  fault_status   HTTP status of an auth fault: 400 (gSOAP default) or 401
  server         a Server header (none by default, as on most gSOAP builds)
  page           an HTML page served to GET/HEAD on every other path (the web
                 UI sharing port 80 with ONVIF, as on most cameras); else 404
  mode           "normal" | "slow" (reads the request, then trickles its answer
                 one byte a second: a tar-pit) | "xml-bomb" (a billion-laughs DTD
                 in every answer) | "malformed" (truncated XML, HTTP 200) |
                 "oversized" (a 2 MiB answer) | "xxe" (every answer's DTD names a
                 file:// entity and an external parameter entity on this host)
  log_path       a file to append one JSON line per SOAP request to:
                 {"op": ..., "auth": "none"|"valid"|"invalid", "peer": ip, "t": unix}.
                 "auth" is "valid"/"invalid" whenever the request carried a
                 UsernameToken, so a test can count authentication attempts.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import fcntl
import hashlib
import hmac
import json
import socket
import struct
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar
from xml.etree.ElementTree import Element
from xml.etree.ElementTree import ParseError as XMLParseError
from xml.sax.saxutils import escape

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring as safe_fromstring

from lab.responders.base import (
    DEVICE_IFACE,
    OptionError,
    OptionType,
    StreamResponder,
    child,
    local_name,
    log,
    register,
)
from lab.responders.http import build_response
from lab.scenario import ServiceSpec

PATH = "/onvif/device_service"
NS_SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
NS_SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
NS_WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
NS_TDS = "http://www.onvif.org/ver10/device/wsdl"
NS_TRT = "http://www.onvif.org/ver10/media/wsdl"
MODES = ("normal", "slow", "xml-bomb", "malformed", "oversized", "xxe")
PRE_AUTH = frozenset(
    {
        "GetSystemDateAndTime",
        "GetCapabilities",
        "GetServices",
        "GetServiceCapabilities",
        "GetWsdlUrl",
        "GetEndpointReference",
    }
)
PROTECTED = frozenset({"GetDeviceInformation", "GetNetworkInterfaces"})
MAX_HEAD = 16 * 1024
MAX_BODY = 64 * 1024
IO_TIMEOUT = 10.0
CREATED_WINDOW = timedelta(minutes=5)
SLOW_INTERVAL = 1.0
SLOW_LIMIT = 600.0  # even a tar-pit lets go eventually
OVERSIZE = 2 * 1024 * 1024
_SIOCGIFHWADDR = 0x8927

ENVELOPE_HEAD = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    f'<SOAP-ENV:Envelope xmlns:SOAP-ENV="{NS_SOAP12}" '
    'xmlns:tt="http://www.onvif.org/ver10/schema" '
    f'xmlns:tds="{NS_TDS}" xmlns:trt="{NS_TRT}" '
    'xmlns:ter="http://www.onvif.org/ver10/error">'
)


def envelope(body: str) -> bytes:
    return (f"{ENVELOPE_HEAD}<SOAP-ENV:Body>{body}</SOAP-ENV:Body></SOAP-ENV:Envelope>\n").encode()


def fault(subcode: str, reason: str, code: str = "SOAP-ENV:Sender") -> bytes:
    return envelope(
        "<SOAP-ENV:Fault><SOAP-ENV:Code>"
        f"<SOAP-ENV:Value>{code}</SOAP-ENV:Value>"
        f"<SOAP-ENV:Subcode><SOAP-ENV:Value>{subcode}</SOAP-ENV:Value></SOAP-ENV:Subcode>"
        "</SOAP-ENV:Code>"
        f'<SOAP-ENV:Reason><SOAP-ENV:Text xml:lang="en">{escape(reason)}</SOAP-ENV:Text>'
        "</SOAP-ENV:Reason></SOAP-ENV:Fault>"
    )


def password_digest(nonce: bytes, created: str, password: str) -> str:
    """WS-Security UsernameToken Profile 1.0 §3.1: base64(sha1(nonce + created + password))."""
    raw = hashlib.sha1(nonce + created.encode() + password.encode()).digest()
    return base64.b64encode(raw).decode()


def _text(parent: Element | None, name: str) -> str:
    el = child(parent, name)
    return (el.text or "").strip() if el is not None else ""


def interface_mac(name: str = DEVICE_IFACE) -> str | None:
    """The MAC of an interface in the current netns (called from bind())."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        raw = fcntl.ioctl(sock.fileno(), _SIOCGIFHWADDR, struct.pack("256s", name.encode()[:15]))
    except OSError:
        return None
    finally:
        sock.close()
    return ":".join(f"{b:02x}" for b in raw[18:24])


def bomb_body() -> bytes:
    ents = ['<!ENTITY lol "lol">'] + [
        f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">'
        for i in range(1, 10)
    ]
    head = '<?xml version="1.0" encoding="UTF-8"?>\n'
    dtd = f"<!DOCTYPE SOAP-ENV:Envelope [{''.join(ents)}]>\n"
    doc = envelope(
        "<tds:GetDeviceInformationResponse><tds:Manufacturer>&lol9;</tds:Manufacturer>"
        "</tds:GetDeviceInformationResponse>"
    ).decode()
    return (head + dtd + doc.split("\n", 1)[1]).encode()


def xxe_body(ip: str) -> bytes:
    """GetDeviceInformation whose Manufacturer is a file:// external entity (XXE)."""
    head = '<?xml version="1.0" encoding="UTF-8"?>\n'
    dtd = (
        '<!DOCTYPE SOAP-ENV:Envelope [<!ENTITY xxe SYSTEM "file:///etc/passwd">'
        f'<!ENTITY % remote SYSTEM "http://{ip}/xxe.dtd"> %remote;]>\n'
    )
    doc = envelope(
        "<tds:GetDeviceInformationResponse><tds:Manufacturer>&xxe;</tds:Manufacturer>"
        "<tds:Model>XXE</tds:Model></tds:GetDeviceInformationResponse>"
    ).decode()
    return (head + dtd + doc.split("\n", 1)[1]).encode()


@register
class OnvifResponder(StreamResponder):
    kind = "onvif"
    options: ClassVar[Mapping[str, OptionType]] = {
        "manufacturer": str,
        "model": str,
        "firmware": str,
        "serial": str,
        "hardware_id": str,
        "mac": str,
        "username": str,
        "password": str,
        "clock_offset_s": (int, float),
        "fault_status": int,
        "server": str,
        "page": str,
        "mode": str,
        "log_path": str,
    }
    read_limit = MAX_HEAD

    @classmethod
    def check(cls, options: Mapping[str, Any]) -> None:
        super().check(options)
        if ("username" in options) != ("password" in options):
            raise OptionError("password", "give both username and password, or neither")
        if options.get("mode", "normal") not in MODES:
            raise OptionError("mode", f"must be one of {', '.join(MODES)}")
        if options.get("fault_status", 400) not in (400, 401):
            raise OptionError("fault_status", "must be 400 or 401")
        if "log_path" in options and not Path(options["log_path"]).is_absolute():
            raise OptionError("log_path", "must be an absolute path")

    def __init__(self, device: str, service: ServiceSpec) -> None:
        super().__init__(device, service)
        o = self.opts
        self.info = {
            "Manufacturer": o.get("manufacturer", "ONVIF"),
            "Model": o.get("model", "IPC"),
            "FirmwareVersion": o.get("firmware", "V1.0.0"),
            "SerialNumber": o.get("serial", "00000000"),
            "HardwareId": o.get("hardware_id", "1.0"),
        }
        self.mac: str | None = o.get("mac")
        self.username: str | None = o.get("username")
        self.password: str | None = o.get("password")
        self.offset = timedelta(seconds=float(o.get("clock_offset_s", 0)))
        self.mode: str = o.get("mode", "normal")
        self.log_path = Path(o["log_path"]) if "log_path" in o else None
        self.attempts = {"valid": 0, "invalid": 0}

    def bind(self) -> None:
        super().bind()
        if self.mac is None:
            self.mac = interface_mac()

    # --- helpers ------------------------------------------------------------------

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def record(self, op: str, auth: str, peer: str) -> None:
        if auth in self.attempts:
            self.attempts[auth] += 1
        log.info("%r: %s from %s (auth %s)", self, op, peer, auth)
        if self.log_path is not None:
            line = json.dumps({"op": op, "auth": auth, "peer": peer, "t": round(time.time(), 3)})
            with self.log_path.open("a") as fh:
                fh.write(line + "\n")

    def check_token(self, header: Element | None) -> str:
        """ "none" (no UsernameToken), "valid" or "invalid"."""
        token = child(child(header, "Security"), "UsernameToken")
        if token is None:
            return "none"
        if self.username is None or self.password is None:
            return "valid"  # an open device ignores whatever it is sent
        password_el = child(token, "Password")
        kind = password_el.get("Type", "") if password_el is not None else ""
        if _text(token, "Username") != self.username or not kind.endswith("#PasswordDigest"):
            return "invalid"
        created = _text(token, "Created")
        try:
            nonce = base64.b64decode(_text(token, "Nonce"), validate=True)
            when = datetime.fromisoformat(created.replace("Z", "+00:00"))
        except (binascii.Error, ValueError):
            return "invalid"
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        if abs(when - self.now()) > CREATED_WINDOW:
            return "invalid"  # the clock-skew failure adjust_time exists for
        expected = password_digest(nonce, created, self.password)
        got = (password_el.text or "").strip() if password_el is not None else ""
        return "valid" if hmac.compare_digest(expected, got) else "invalid"

    # --- operations ---------------------------------------------------------------

    def answer(self, op: str, ip: str) -> bytes:
        base = f"http://{ip}:{self.port}"
        if op == "GetSystemDateAndTime":
            return envelope(self._date_and_time())
        if op == "GetCapabilities":
            return envelope(
                "<tds:GetCapabilitiesResponse><tds:Capabilities>"
                f"<tt:Device><tt:XAddr>{base}{PATH}</tt:XAddr></tt:Device>"
                f"<tt:Media><tt:XAddr>{base}/onvif/Media</tt:XAddr>"
                "<tt:StreamingCapabilities><tt:RTPMulticast>false</tt:RTPMulticast>"
                "<tt:RTP_TCP>true</tt:RTP_TCP><tt:RTP_RTSP_TCP>true</tt:RTP_RTSP_TCP>"
                "</tt:StreamingCapabilities></tt:Media>"
                "</tds:Capabilities></tds:GetCapabilitiesResponse>"
            )
        if op == "GetServices":
            services = [(NS_TDS, PATH, 2, 60), (NS_TRT, "/onvif/Media", 2, 60)]
            return envelope(
                "<tds:GetServicesResponse>"
                + "".join(
                    f"<tds:Service><tds:Namespace>{ns}</tds:Namespace>"
                    f"<tds:XAddr>{base}{path}</tds:XAddr>"
                    f"<tds:Version><tt:Major>{major}</tt:Major><tt:Minor>{minor}</tt:Minor>"
                    "</tds:Version></tds:Service>"
                    for ns, path, major, minor in services
                )
                + "</tds:GetServicesResponse>"
            )
        if op == "GetDeviceInformation":
            fields = "".join(f"<tds:{k}>{escape(v)}</tds:{k}>" for k, v in self.info.items())
            return envelope(
                f"<tds:GetDeviceInformationResponse>{fields}</tds:GetDeviceInformationResponse>"
            )
        if op == "GetNetworkInterfaces":
            mac = f"<tt:HwAddress>{escape(self.mac)}</tt:HwAddress>" if self.mac else ""
            return envelope(
                '<tds:GetNetworkInterfacesResponse><tds:NetworkInterfaces token="eth0">'
                "<tt:Enabled>true</tt:Enabled>"
                f"<tt:Info><tt:Name>eth0</tt:Name>{mac}<tt:MTU>1500</tt:MTU></tt:Info>"
                "<tt:IPv4><tt:Enabled>true</tt:Enabled><tt:Config>"
                f"<tt:Manual><tt:Address>{ip}</tt:Address><tt:PrefixLength>24</tt:PrefixLength>"
                "</tt:Manual><tt:DHCP>false</tt:DHCP></tt:Config></tt:IPv4>"
                "</tds:NetworkInterfaces></tds:GetNetworkInterfacesResponse>"
            )
        raise KeyError(op)

    def _date_and_time(self) -> str:
        now = self.now()

        def stamp(tag: str, t: datetime) -> str:
            return (
                f"<tt:{tag}><tt:Time><tt:Hour>{t.hour}</tt:Hour><tt:Minute>{t.minute}</tt:Minute>"
                f"<tt:Second>{t.second}</tt:Second></tt:Time><tt:Date><tt:Year>{t.year}</tt:Year>"
                f"<tt:Month>{t.month}</tt:Month><tt:Day>{t.day}</tt:Day></tt:Date></tt:{tag}>"
            )

        return (
            "<tds:GetSystemDateAndTimeResponse><tds:SystemDateAndTime>"
            "<tt:DateTimeType>Manual</tt:DateTimeType><tt:DaylightSavings>false</tt:DaylightSavings>"
            "<tt:TimeZone><tt:TZ>GMT0</tt:TZ></tt:TimeZone>"
            f"{stamp('UTCDateTime', now)}{stamp('LocalDateTime', now)}"
            "</tds:SystemDateAndTime></tds:GetSystemDateAndTimeResponse>"
        )

    def soap(self, body: bytes, ip: str, peer: str) -> tuple[int, bytes, dict[str, str]]:
        """(status, body, extra headers) for one SOAP request."""
        try:
            root = safe_fromstring(body, forbid_dtd=True)
        except (DefusedXmlException, XMLParseError, ValueError, LookupError):
            return 400, fault("ter:WellFormed", "the xml format error"), {}
        if root.tag not in (f"{{{NS_SOAP12}}}Envelope", f"{{{NS_SOAP11}}}Envelope"):
            return 400, fault("ter:WellFormed", "not a SOAP envelope"), {}
        payload = child(root, "Body")
        request = next(iter(payload), None) if payload is not None else None
        if request is None:
            return 400, fault("ter:WellFormed", "empty SOAP Body"), {}
        op = local_name(request.tag)
        auth = self.check_token(child(root, "Header"))
        self.record(op, auth, peer)
        if self.mode == "xml-bomb":
            return 200, bomb_body(), {}
        if self.mode == "xxe":
            return 200, xxe_body(ip), {}
        if self.mode == "malformed":
            return 200, envelope("<tds:GetDeviceInformationResponse>")[:-40], {}
        if op in PROTECTED and self.username is not None and auth != "valid":
            status = int(self.opts.get("fault_status", 400))
            extra = {"WWW-Authenticate": 'Digest realm="IP Camera", qop="auth"'}
            return (
                status,
                fault("ter:NotAuthorized", "Sender not Authorized"),
                (extra if status == 401 else {}),
            )
        if op not in PRE_AUTH | PROTECTED:
            return 400, fault("ter:ActionNotSupported", "Optional Action Not Implemented"), {}
        try:
            return 200, self.answer(op, ip), {}
        except KeyError:
            return 400, fault("ter:ActionNotSupported", "Optional Action Not Implemented"), {}

    # --- HTTP ---------------------------------------------------------------------

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sockname = writer.get_extra_info("sockname") or ("0.0.0.0", 0)
        peername = writer.get_extra_info("peername") or ("?", 0)
        ip, peer = str(sockname[0]), str(peername[0])
        for _ in range(100):  # keep-alive, as gSOAP allows; bounded
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), IO_TIMEOUT)
            except asyncio.LimitOverrunError:
                await self._send(writer, build_response(status=431))
                return
            except asyncio.IncompleteReadError:
                return
            lines = head.decode("latin-1").split("\r\n")
            parts = lines[0].split()
            headers = {}
            for line in lines[1:]:
                name, sep, value = line.partition(":")
                if sep:
                    headers[name.strip().lower()] = value.strip()
            if len(parts) != 3 or not parts[2].startswith("HTTP/"):
                await self._send(writer, build_response(status=400))
                return
            method, target = parts[0].upper(), parts[1].split("?", 1)[0]
            try:
                length = int(headers.get("content-length", "0"))
            except ValueError:
                length = -1
            if not 0 <= length <= MAX_BODY:
                await self._send(writer, build_response(status=413))
                return
            body = await asyncio.wait_for(reader.readexactly(length), IO_TIMEOUT)
            if target != PATH:
                page = self.opts.get("page")
                if page is not None and method in ("GET", "HEAD"):
                    response = build_response(
                        status=200,
                        server=self.opts.get("server"),
                        body=page.encode(),
                        head_only=method == "HEAD",
                    )
                else:
                    response = build_response(status=404, server=self.opts.get("server"))
                await self._send(writer, response)
                return
            if method != "POST":
                await self._send(writer, build_response(status=405, headers={"Allow": "POST"}))
                return
            status, answer, extra = self.soap(body, ip, peer)
            if self.mode == "slow":
                await self._trickle(writer)
                return
            if self.mode == "oversized":
                await self._oversized(writer)
                return
            response = build_response(
                status=status,
                server=self.opts.get("server"),
                content_type="application/soap+xml; charset=utf-8",
                headers={**extra, "Connection": "keep-alive"},
                body=answer,
            )
            await self._send(writer, response)
            if headers.get("connection", "").lower() == "close":
                return

    @staticmethod
    async def _send(writer: asyncio.StreamWriter, data: bytes) -> None:
        writer.write(data)
        await asyncio.wait_for(writer.drain(), IO_TIMEOUT)

    @staticmethod
    async def _trickle(writer: asyncio.StreamWriter) -> None:
        """A tar-pit: a plausible response head, one byte a second, never finished."""
        start = time.monotonic()
        data = b"HTTP/1.1 200 OK\r\nContent-Type: application/soap+xml\r\nX-Pad: "
        i = 0
        while time.monotonic() - start < SLOW_LIMIT:
            writer.write(data[i : i + 1] if i < len(data) else b"a")
            await asyncio.wait_for(writer.drain(), IO_TIMEOUT)
            i += 1
            await asyncio.sleep(SLOW_INTERVAL)

    @staticmethod
    async def _oversized(writer: asyncio.StreamWriter) -> None:
        head = envelope("<tds:GetDeviceInformationResponse><tds:Manufacturer>")
        head = head.split(b"</SOAP-ENV:Body>")[0]
        tail = (
            b"</tds:Manufacturer></tds:GetDeviceInformationResponse>"
            b"</SOAP-ENV:Body></SOAP-ENV:Envelope>"
        )
        total = len(head) + OVERSIZE + len(tail)
        writer.write(
            f"HTTP/1.1 200 OK\r\nContent-Type: application/soap+xml; charset=utf-8\r\n"
            f"Content-Length: {total}\r\nConnection: close\r\n\r\n".encode()
            + head
        )
        chunk = b"A" * 65536
        for _ in range(OVERSIZE // len(chunk)):
            writer.write(chunk)
            await asyncio.wait_for(writer.drain(), IO_TIMEOUT)
        writer.write(tail)
        with contextlib.suppress(ConnectionError):
            await asyncio.wait_for(writer.drain(), IO_TIMEOUT)
