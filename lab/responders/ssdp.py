"""``kind = "ssdp"``: a UPnP device: SSDP search replies on UDP 1900 plus its description.

One service opens both sockets a real libupnp camera has: UDP 1900 joined to
239.255.255.250 on eth0, and a TCP listener on ``description_port`` (49152
by default, libupnp's first port) serving the device description XML. It
answers only well-formed M-SEARCH requests (``M-SEARCH * HTTP/1.1``, a
``HOST``, ``MAN: "ssdp:discover"``, numeric ``MX``, an ``ST``) whose ST it has,
with one unicast ``HTTP/1.1 200 OK`` per matching target after a random delay
of at most min(MX, ``reply_delay_max``), as UDA 1.1 §1.3.3 says.
The reply headers follow an AXIS camera's (ivanempire/lighthouse issue #4).

Options (all optional):
  uuid            UDN without "uuid:" (default: derived from the device name)
  server          SERVER header (default libupnp on Linux)
  device_type     default "urn:schemas-upnp-org:device:Basic:1"
  st              extra search targets answered, e.g. service types
  location        LOCATION override, "{ip}"/"{port}"/"{path}"-templated; may point
                  anywhere (an address outside the scanner's scope, say)
  description_port (49152), description_path ("/description.xml"); keep the
                  port clear of the device's other TCP services: the scenario
                  checker only knows each service's own ``port``
  manufacturer, manufacturer_url, model_name, model_number, model_description,
  model_url, serial, friendly_name, presentation_url  -> the description XML
  extra_devices   list of tables {uuid, device_type, friendly_name, manufacturer,
                  model_name, model_number, serial, description_path}: more root
                  devices behind the same address, each with its own LOCATION
  mode            the description: "normal" | "malformed" (cut-off XML) |
                  "xml-bomb" (billion laughs DTD) | "xxe" (external entities: a
                  file:// one in friendlyName, a parameter entity fetching a DTD
                  from this host) | "oversized" (> 256 KiB) |
                  "endless" (an unending body, no Content-Length) | "slow"
                  (one byte every 0.5 s) | "redirect" (302 to ``redirect_to``)
  redirect_to     the Location of mode "redirect"
  reply_mode      the UDP reply: "normal" | "malformed" (no headers, binary junk) |
                  "oversized" (a 60 KB header) | "silent" (never answers)
  reply_delay_max seconds, default 0.2 (the lab keeps MX waits short)
The description server logs each request ("ssdp <device>: description GET ...")
so tests can see from the device side whether it was fetched.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import random
import socket
import uuid as uuidlib
from collections.abc import Mapping
from typing import Any, ClassVar
from xml.sax.saxutils import escape

from lab.responders.base import (
    DatagramResponder,
    OptionError,
    OptionType,
    check_type,
    join_group,
    register,
    tcp_listener,
)
from lab.responders.http import build_response
from lab.scenario import ServiceSpec

log = logging.getLogger("lab.responders")

SSDP_GROUP = "239.255.255.250"
DEFAULT_SERVER = "Linux/3.10, UPnP/1.0, Portable SDK for UPnP devices/1.6.18"
DESCRIPTION_MODES = (
    "normal",
    "malformed",
    "xml-bomb",
    "xxe",
    "oversized",
    "endless",
    "slow",
    "redirect",
)
REPLY_MODES = ("normal", "malformed", "oversized", "silent")
_TEXT_FIELDS = (
    "manufacturer",
    "manufacturer_url",
    "model_name",
    "model_number",
    "model_description",
    "model_url",
    "serial",
    "friendly_name",
    "presentation_url",
)
_EXTRA_FIELDS = frozenset(
    {
        "uuid",
        "device_type",
        "friendly_name",
        "manufacturer",
        "model_name",
        "model_number",
        "serial",
        "description_path",
    }
)
_XML_TAGS = {
    "friendly_name": "friendlyName",
    "manufacturer": "manufacturer",
    "manufacturer_url": "manufacturerURL",
    "model_description": "modelDescription",
    "model_name": "modelName",
    "model_number": "modelNumber",
    "model_url": "modelURL",
    "serial": "serialNumber",
}
ENDLESS_CAP = 64 * 1024 * 1024  # even "endless" stops somewhere: the lab must not spin forever
HEAD_TIMEOUT = 10.0


def own_ip(probe: socket.socket, peer: str) -> str:
    """This device's address towards ``peer``: a UDP connect() sends nothing.

    ``probe`` was made inside the device namespace, so the kernel answers from
    that namespace's routes even though the loop runs elsewhere, and the
    answer follows ``set_device_ip``.
    """
    try:
        probe.connect((peer, 9))
        return str(probe.getsockname()[0])
    except OSError:
        return "0.0.0.0"


def description_xml(dev: Mapping[str, Any], ip: str, port: int) -> str:
    """A UDA 1.1 §2.3 device description for one root device."""
    parts = [
        '<?xml version="1.0"?>',
        '<root xmlns="urn:schemas-upnp-org:device-1-0">',
        "<specVersion><major>1</major><minor>0</minor></specVersion>",
        "<device>",
        f"<deviceType>{escape(dev['device_type'])}</deviceType>",
    ]
    for key, tag in _XML_TAGS.items():
        if dev.get(key):
            parts.append(f"<{tag}>{escape(str(dev[key]))}</{tag}>")
    parts.append(f"<UDN>uuid:{escape(dev['uuid'])}</UDN>")
    if dev.get("presentation_url"):
        url = str(dev["presentation_url"]).replace("{ip}", ip).replace("{port}", str(port))
        parts.append(f"<presentationURL>{escape(url)}</presentationURL>")
    parts += ["</device>", "</root>", ""]
    return "\n".join(parts)


_BOMB = (
    '<?xml version="1.0"?>\n<!DOCTYPE root [\n<!ENTITY a "aaaaaaaaaa">\n'
    + "".join(f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">\n' for i in range(9))
    + ']>\n<root xmlns="urn:schemas-upnp-org:device-1-0"><device>'
    "<friendlyName>&j;</friendlyName></device></root>\n"
)


@register
class SsdpResponder(DatagramResponder):
    kind = "ssdp"
    options: ClassVar[Mapping[str, OptionType]] = {
        "uuid": str,
        "server": str,
        "device_type": str,
        "st": list,
        "location": str,
        "description_port": int,
        "description_path": str,
        **dict.fromkeys(_TEXT_FIELDS, str),
        "extra_devices": list,
        "mode": str,
        "redirect_to": str,
        "reply_mode": str,
        "reply_delay_max": (int, float),
    }

    @classmethod
    def check(cls, options: Mapping[str, Any]) -> None:
        super().check(options)
        if options.get("mode", "normal") not in DESCRIPTION_MODES:
            raise OptionError("mode", f"must be one of {', '.join(DESCRIPTION_MODES)}")
        if options.get("reply_mode", "normal") not in REPLY_MODES:
            raise OptionError("reply_mode", f"must be one of {', '.join(REPLY_MODES)}")
        if options.get("mode") == "redirect" and "redirect_to" not in options:
            raise OptionError("redirect_to", 'required with mode = "redirect"')
        port = options.get("description_port", 49152)
        if not 1 <= port <= 65535:
            raise OptionError("description_port", f"{port} is not a port number")
        for key in ("description_path",):
            if key in options and not str(options[key]).startswith("/"):
                raise OptionError(key, "must start with /")
        delay = options.get("reply_delay_max", 0.2)
        if not 0 <= delay <= 5:
            raise OptionError("reply_delay_max", "must be 0..5 seconds")
        for i, st in enumerate(options.get("st", [])):
            check_type(f"st[{i}]", st, str)
        paths = {options.get("description_path", "/description.xml")}
        for i, extra in enumerate(options.get("extra_devices", [])):
            where = f"extra_devices[{i}]"
            check_type(where, extra, dict)
            for key, value in extra.items():
                if key not in _EXTRA_FIELDS:
                    raise OptionError(f"{where}.{key}", "unknown key")
                check_type(f"{where}.{key}", value, str)
            for key in ("uuid", "description_path"):
                if key not in extra:
                    raise OptionError(f"{where}.{key}", "required")
            if extra["description_path"] in paths or not extra["description_path"].startswith("/"):
                raise OptionError(f"{where}.description_path", "must be a new path starting /")
            paths.add(extra["description_path"])
        for text_key in ("server", "location", "uuid", "device_type"):
            value = options.get(text_key, "")
            if "\r" in value or "\n" in value:
                raise OptionError(text_key, "must be one line")

    def __init__(self, device: str, service: ServiceSpec) -> None:
        super().__init__(device, service)
        o = self.opts
        self.description_port: int = o.get("description_port", 49152)
        self.mode: str = o.get("mode", "normal")
        self.reply_mode: str = o.get("reply_mode", "normal")
        self.delay_max: float = float(o.get("reply_delay_max", 0.2))
        root: dict[str, Any] = {
            "uuid": o.get("uuid") or str(uuidlib.uuid5(uuidlib.NAMESPACE_DNS, f"{device}.lab")),
            "device_type": o.get("device_type", "urn:schemas-upnp-org:device:Basic:1"),
            "description_path": o.get("description_path", "/description.xml"),
            "st": list(o.get("st", [])),
            "location": o.get("location"),
        }
        for key in _TEXT_FIELDS:
            if key in o:
                root[key] = o[key]
        self.roots: list[dict[str, Any]] = [root]
        for extra in o.get("extra_devices", []):
            dev = {"device_type": root["device_type"], "st": [], "location": None, **extra}
            self.roots.append(dev)
        self._probe: socket.socket | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    # --- sockets ----------------------------------------------------------------

    def bind(self) -> None:
        super().bind()
        join_group(self.sockets[0], SSDP_GROUP)
        self.sockets.append(tcp_listener(self.description_port))
        self._probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    async def start(self) -> None:
        await super().start()
        self._server = await asyncio.start_server(
            self._serve_description, sock=self.sockets[1], limit=16 * 1024
        )

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._probe is not None:
            self._probe.close()
        await super().stop()

    # --- SSDP ---------------------------------------------------------------------

    def _targets(self, dev: Mapping[str, Any]) -> list[tuple[str, str]]:
        """(ST, USN) pairs a device answers, in libupnp's order for ssdp:all."""
        udn = f"uuid:{dev['uuid']}"
        pairs = [("upnp:rootdevice", f"{udn}::upnp:rootdevice"), (udn, udn)]
        for st in [dev["device_type"], *dev["st"]]:
            pairs.append((st, f"{udn}::{st}"))
        return pairs

    def location(self, dev: Mapping[str, Any], ip: str) -> str:
        template = dev.get("location") or "http://{ip}:{port}{path}"
        return (
            template.replace("{ip}", ip)
            .replace("{port}", str(self.description_port))
            .replace("{path}", dev["description_path"])
        )

    def reply(self, data: bytes, addr: tuple[str, int]) -> bytes | None:
        request = parse_msearch(data)
        if request is None or self.reply_mode == "silent":
            return None
        st, mx = request
        ip = self.spoof_from or (
            own_ip(self._probe, addr[0]) if self._probe is not None else "0.0.0.0"
        )
        answers: list[bytes] = []
        for dev in self.roots:
            for target, usn in self._targets(dev):
                if st in ("ssdp:all", target):
                    answers.append(self.build_reply(dev, target, usn, ip))
        if not answers:
            return None
        delay = random.uniform(0, min(float(mx), self.delay_max))
        loop = asyncio.get_running_loop()
        loop.call_later(delay, self._send_all, answers, addr)
        return None

    def _send_all(self, answers: list[bytes], addr: tuple[str, int]) -> None:
        for payload in answers:
            self.send(payload, addr)

    def build_reply(self, dev: Mapping[str, Any], st: str, usn: str, ip: str) -> bytes:
        if self.reply_mode == "malformed":
            return b"HTTP/1.1 200 OK\r\n\xff\xfe\x00LOCATION\r\nST\x00: " + bytes(range(256))
        headers = [
            "HTTP/1.1 200 OK",
            "CACHE-CONTROL: max-age=1800",
            f"DATE: {email.utils.formatdate(usegmt=True)}",
            "EXT:",
            f"LOCATION: {self.location(dev, ip)}",
            'OPT: "http://schemas.upnp.org/upnp/1/0/"; ns=01',
            f"01-NLS: {dev['uuid']}",
            f"SERVER: {self.opts.get('server', DEFAULT_SERVER)}",
            "X-User-Agent: redsonic",
            f"ST: {st}",
            f"USN: {usn}",
        ]
        if self.reply_mode == "oversized":
            headers.append("X-PADDING: " + "A" * 60_000)
        return ("\r\n".join(headers) + "\r\n\r\n").encode("utf-8")

    # --- description over HTTP ----------------------------------------------------

    async def _serve_description(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        peer = writer.get_extra_info("peername") or ("?", 0)
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT)
            line = head.split(b"\r\n", 1)[0].decode("latin-1")
            parts = line.split()
            log.info("ssdp %s: description %s from %s", self.device, line[:200], peer[0])
            if len(parts) != 3 or parts[0] not in ("GET", "HEAD"):
                writer.write(build_response(status=400))
                await writer.drain()
                return
            path = parts[1].split("?", 1)[0]
            dev = next((d for d in self.roots if d["description_path"] == path), None)
            if dev is None:
                writer.write(build_response(status=404))
                await writer.drain()
                return
            sockname = writer.get_extra_info("sockname") or ("0.0.0.0", 0)
            await self._write_description(writer, dev, str(sockname[0]), parts[0] == "HEAD")
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.LimitOverrunError:
            writer.write(build_response(status=431))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%r: description handler failed", self)
        finally:
            if task is not None:
                self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _write_description(
        self, writer: asyncio.StreamWriter, dev: Mapping[str, Any], ip: str, head_only: bool
    ) -> None:
        server = self.opts.get("server", DEFAULT_SERVER)
        xml_type = 'text/xml; charset="utf-8"'
        if self.mode == "redirect":
            writer.write(
                build_response(
                    status=302, server=server, headers={"Location": self.opts["redirect_to"]}
                )
            )
            await writer.drain()
            return
        if self.mode in ("endless", "slow"):
            writer.write(
                f"HTTP/1.1 200 OK\r\nSERVER: {server}\r\nCONTENT-TYPE: {xml_type}\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            await writer.drain()
            if head_only:
                return
            body = description_xml(dev, ip, self.description_port).encode()
            if self.mode == "slow":
                for byte in body:
                    writer.write(bytes([byte]))
                    await writer.drain()
                    await asyncio.sleep(0.5)
                return
            sent = 0
            chunk = b"<!-- " + b"x" * 65_000 + b" -->\n"
            writer.write(body[: len(body) // 2])
            while sent < ENDLESS_CAP:
                writer.write(chunk)
                await writer.drain()
                sent += len(chunk)
            return
        if self.mode == "malformed":
            text = description_xml(dev, ip, self.description_port)
            body = text[: len(text) * 2 // 3].encode() + b"<manufacturer>\xff\xfe"
        elif self.mode == "xml-bomb":
            body = _BOMB.encode()
        elif self.mode == "xxe":
            text = description_xml(dev, ip, self.description_port)
            dtd = (
                '<!DOCTYPE root [<!ENTITY xxe SYSTEM "file:///etc/passwd">'
                f'<!ENTITY % remote SYSTEM "http://{ip}/xxe.dtd"> %remote;]>\n'
            )
            text = text.replace("\n", "\n" + dtd, 1).replace(
                "<device>", "<device><friendlyName>&xxe;</friendlyName>", 1
            )
            body = text.encode()
        elif self.mode == "oversized":
            text = description_xml(dev, ip, self.description_port)
            body = text.replace("</root>", "<!-- " + "p" * 300_000 + " --></root>").encode()
        else:
            body = description_xml(dev, ip, self.description_port).encode()
        writer.write(
            build_response(
                status=200,
                server=server,
                content_type=xml_type,
                body=body,
                head_only=head_only,
            )
        )
        await writer.drain()


def parse_msearch(data: bytes) -> tuple[str, int] | None:
    """(ST, MX) of a well-formed multicast M-SEARCH, else None (stay silent)."""
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        return None
    lines = text.split("\r\n")
    if lines[0].strip() != "M-SEARCH * HTTP/1.1" or "\r\n\r\n" not in text:
        return None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers.setdefault(name.strip().lower(), value.strip())
    if headers.get("man") != '"ssdp:discover"':
        return None
    st, mx = headers.get("st", ""), headers.get("mx", "")
    if not st or not mx.isdigit():
        return None
    if not headers.get("host"):
        return None
    return st, int(mx)
