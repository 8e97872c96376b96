"""HTTP(S) banners: Server header, auth realm, page title and read-only vendor paths.

`GET /` on a camera's web port, then (for one port per host, chosen by
banners.py) at most MAX_VENDOR_PATHS GETs of well-known vendor paths that
identify a maker without credentials. Only GET, no credentials, no POST: the
Dahua RPC2 login and the Axis basicdeviceinfo JSON API are POST and are never
used. Redirects are recorded (`location`), never followed, so a device can
not send the probe outside the scope.

Observation attrs (source=Source.HTTP; values cut to 512 characters):
  port, scheme ("http", "https", or "tcp" for a non-HTTP answer), path ("/"),
  status, reason, server, realm, auth_scheme, title, location, content_type,
  open ("true": the port accepted a connection), silent ("true": it said
  nothing before the deadline), raw (first 64 reply bytes as hex, when the
  reply was not HTTP), paths ("/ISAPI/System/deviceInfo=401 /SDK/activateStatus=200";
  "=page" is a 200 that was not the path's document (a catch-all login page);
  a path that gave no HTTP answer shows "=timeout", "=error" or "=budget"),
  vendor_hint (space-joined families the banner points at: see
  scanner.probe.FAMILIES), budget_exhausted ("true" when the host's budget ran
  out before every chosen path was asked), and from open vendor answers the
  canonical manufacturer, model, firmware, serial, name, mac plus xmlns
  (the ISAPI XML namespace), activated (Hikvision /SDK/activateStatus),
  device_type, hardware; serial and mac also come from Dahua/Axis realms.
`error` is set ("deadline", "oversized", "reset", "truncated", "malformed",
"not http: …", "tls: …", "send: …") when the reply could not be read whole;
what was read is kept. Connections: 3 + 1 budget packets per plain GET,
3 + 3 per HTTPS GET (handshake included); each connects within ctx.timeout
and then has 2 x ctx.timeout for the exchange.
"""

from __future__ import annotations

import html
import json
import re
import socket
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from xml.etree.ElementTree import Element
from xml.etree.ElementTree import ParseError as XmlParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring as xml_fromstring

from scanner import __version__
from scanner.discovery.base import (
    ATTR_FIRMWARE,
    ATTR_MAC,
    ATTR_MANUFACTURER,
    ATTR_MODEL,
    ATTR_NAME,
    ATTR_SERIAL,
    TLS_HANDSHAKE_PACKETS,
    ProbeContext,
)
from scanner.errors import ParseError
from scanner.model import Observation, Source, utcnow
from scanner.probe import (
    BudgetExhausted,
    Headers,
    Message,
    auth_attrs,
    clip,
    close,
    connect,
    deadline_for,
    decode,
    first_line_by,
    merge_hints,
    message_length,
    parse_message,
    preview,
    receive,
    send,
    squash,
    vendor_hints,
)
from scanner.probe import tls as tls_probe

MAX_VENDOR_PATHS = 6  # per host; most hosts get two or three
HTTP_REQUESTS = 1  # packets we send per plain GET beyond the connect (the request)
HTTPS_REQUESTS = TLS_HANDSHAKE_PACKETS + 1  # the handshake, then the request
USER_AGENT = f"scanner/{__version__} (camera inventory; read-only)"

# Read-only vendor paths, by family, most telling first. Each identifies the maker's
# firmware without credentials: an open answer gives model/serial, a 401 still shows
# the path exists (and Dahua/Axis realms carry the serial).
VENDOR_PATHS: Mapping[str, tuple[str, ...]] = {
    # ISAPI DeviceInfo (T11: jvmf1/hikvision, StoneAssemblies.Hikvision); activateStatus
    # answers without auth on many Hik devices ("không cần auth", code index 67241350819);
    # /doc/page/login.asp is the web UI entry (Ingram/hikvision tooling).
    "hikvision": ("/ISAPI/System/deviceInfo", "/SDK/activateStatus", "/doc/page/login.asp"),
    # magicBox CGI (T9: rroller/dahua, python-amcrest); /RPC2_Login is POST: never used.
    "dahua": (
        "/cgi-bin/magicBox.cgi?action=getDeviceType",
        "/cgi-bin/magicBox.cgi?action=getSystemInfo",
    ),
    # VAPIX param.cgi list is GET (Kane610/axis tests); basicdeviceinfo.cgi is POST: unused.
    "axis": ("/axis-cgi/param.cgi?action=list&group=Brand",),
    "uniview": ("/LAPI/V1.0/System/DeviceInfo",),  # T14b
    "hanwha": ("/stw-cgi/system.cgi?msubmenu=deviceinfo&action=view",),  # SUNAPI
}
PATHS_PER_FAMILY = 2
# With no hint at all, ask the three makers most often met (and two of them flagged).
DEFAULT_PATHS = (
    "/ISAPI/System/deviceInfo",
    "/cgi-bin/magicBox.cgi?action=getDeviceType",
    "/axis-cgi/param.cgi?action=list&group=Brand",
)


@dataclass(frozen=True, slots=True)
class HttpReply:
    """One HTTP response as read off the wire (body already de-chunked)."""

    version: str
    status: int
    reason: str
    headers: Headers
    body: bytes
    complete: bool = True


@dataclass(slots=True)
class Fetched:
    """What one GET produced: a reply, or raw bytes and why they are not one."""

    raw: bytes = b""
    reply: HttpReply | None = None
    error: str | None = None
    opened: bool = False
    cert: bytes | None = None
    tls_version: str | None = None
    cipher: str | None = None
    seen_at: datetime = field(default_factory=utcnow)


def parse_response(data: bytes) -> HttpReply:
    """Bytes of an HTTP response to an HttpReply; ParseError if it is not HTTP."""
    msg: Message = parse_message(data, b"HTTP")
    return HttpReply(
        version=msg.version,
        status=msg.status,
        reason=msg.reason,
        headers=msg.headers,
        body=msg.body,
        complete=msg.complete,
    )


# ------------------------------------------------------------------ titles

_TITLE = re.compile(rb"<title[^>]*>(.*?)(?:</title\s*>|<|$)", re.I | re.S)
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([A-Za-z0-9_.:-]{1,40})""", re.I)
_CT_CHARSET = re.compile(r"charset\s*=\s*\"?([A-Za-z0-9_.:-]{1,40})", re.I)


def _charset(headers: Headers, body: bytes) -> str | None:
    ctype = headers.get("Content-Type") or ""
    if m := _CT_CHARSET.search(ctype):
        return m.group(1)
    if mb := _META_CHARSET.search(body[:4096]):
        return mb.group(1).decode("ascii")
    return None


def html_title(body: bytes, headers: Headers | None = None) -> str | None:
    """The page's <title>, entity-decoded and whitespace-collapsed; None if absent/empty."""
    m = _TITLE.search(body[:65536])
    if m is None:
        return None
    raw = m.group(1)[:4096]
    text: str | None = None
    charset = _charset(headers or Headers(), body)
    if charset:
        try:
            text = raw.decode(charset)
        except (LookupError, UnicodeDecodeError):
            text = None
    if text is None:
        text = decode(raw)
    title = clip(squash(html.unescape(text)))
    return title or None


# ------------------------------------------------------------- observation


def _scheme(tls: bool) -> str:
    return "https" if tls else "http"


def observe(
    ip: str, port: int, tls: bool, reply: HttpReply, path: str, seen_at: datetime
) -> Observation:
    """What one HTTP reply says about the device; pure."""
    headers = reply.headers
    attrs: dict[str, str] = {
        "port": str(port),
        "scheme": _scheme(tls),
        "path": clip(path),
        "status": str(reply.status),
        "open": "true",
    }
    if reply.reason:
        attrs["reason"] = clip(reply.reason)
    server = headers.get("Server")
    if server:
        attrs["server"] = clip(server)
    attrs.update(auth_attrs(headers))
    title = html_title(reply.body, headers)
    if title:
        attrs["title"] = title
    location = headers.get("Location")
    if location:
        attrs["location"] = clip(location)
    ctype = headers.get("Content-Type")
    if ctype:
        attrs["content_type"] = clip(ctype, 128)
    facts = vendor_facts(path, reply)
    hints = vendor_hints(server=server, realm=attrs.get("realm"), title=title, body=reply.body)
    hint = merge_hints(attrs.get("vendor_hint"), facts.pop("vendor_hint", None), " ".join(hints))
    for key, value in facts.items():
        attrs.setdefault(key, value)
    if hint:
        attrs["vendor_hint"] = hint
    return Observation(
        source=Source.HTTP,
        ip=ip,
        seen_at=seen_at,
        attrs=attrs,
        error=None if reply.complete else "truncated",
    )


def observe_failure(ip: str, port: int, tls: bool, fetched: Fetched, path: str) -> Observation:
    """An open port whose answer was not HTTP, or never came whole; pure."""
    attrs = {"port": str(port), "scheme": _scheme(tls), "path": clip(path), "open": "true"}
    error = fetched.error
    raw = fetched.raw
    if raw:
        attrs["raw"] = preview(raw)
        start = raw.lstrip()[:5]
        looks_http = b"HTTP/".startswith(start) or start == b"HTTP/"
        if fetched.reply is None and not looks_http and not (error or "").startswith("tls"):
            attrs["scheme"] = "tcp"
            error = f"not http: {error}" if error else "not http"
        elif error is None:
            error = "malformed"
    else:
        attrs["silent"] = "true"
    return Observation(source=Source.HTTP, ip=ip, seen_at=fetched.seen_at, attrs=attrs, error=error)


# ------------------------------------------------------------ vendor answers


def _strip_ns(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _xml_fields(root: Element) -> dict[str, str]:
    out: dict[str, str] = {}
    for child in list(root)[:200]:
        text = (child.text or "").strip()
        if text:
            out.setdefault(_strip_ns(child.tag), text)
    return out


def _parse_xml(body: bytes) -> Element | None:
    try:
        return xml_fromstring(body, forbid_dtd=True, forbid_entities=True, forbid_external=True)  # type: ignore[no-any-return]
    except (XmlParseError, DefusedXmlException, ValueError, RecursionError):
        return None


def _key_values(text: str) -> dict[str, str]:
    """key=value lines (Dahua magicBox, Axis param.cgi, Hanwha SUNAPI)."""
    out: dict[str, str] = {}
    for line in text.splitlines()[:500]:
        key, sep, value = line.partition("=")
        key = key.strip()
        if sep and key and len(key) <= 128 and " " not in key:
            out.setdefault(key, value.strip())
    return out


def _json(body: bytes) -> Any:
    try:
        return json.loads(decode(body))
    except (ValueError, RecursionError):
        return None


def _isapi(body: bytes) -> dict[str, str]:
    # <DeviceInfo xmlns="http://www.hikvision.com/ver20/XMLSchema"> with deviceName, model,
    # serialNumber, macAddress, firmwareVersion, firmwareReleasedDate (T11; code index
    # 10998947318); some devices add <manufacturer> (OEM firmware names the relabeller).
    root = _parse_xml(body)
    if root is None or _strip_ns(root.tag) != "DeviceInfo":
        return {}
    f = _xml_fields(root)
    out = {"vendor_hint": "hikvision"} if "hikvision.com" in root.tag.lower() else {}
    if root.tag.startswith("{"):
        out["xmlns"] = root.tag[1:].split("}", 1)[0]
    if f.get("model"):
        out[ATTR_MODEL] = f["model"]
    if f.get("serialNumber"):
        out[ATTR_SERIAL] = f["serialNumber"]
    if f.get("firmwareVersion"):
        build = f.get("firmwareReleasedDate", "")
        out[ATTR_FIRMWARE] = f"{f['firmwareVersion']} {build}".strip()
    if f.get("macAddress"):
        out[ATTR_MAC] = f["macAddress"].lower()
    if f.get("deviceName"):
        out[ATTR_NAME] = f["deviceName"]
    if f.get("manufacturer"):
        out[ATTR_MANUFACTURER] = f["manufacturer"]
    if f.get("deviceType"):
        out["device_type"] = f["deviceType"]
    return out


def _activate_status(body: bytes) -> dict[str, str]:
    # <ActivateStatus xmlns="http://www.hikvision.com/ver20/XMLSchema"><Activated>true</Activated>
    # (code index 15251382388, 47787625236)
    root = _parse_xml(body)
    if root is None or _strip_ns(root.tag) != "ActivateStatus":
        return {}
    out = {"vendor_hint": "hikvision"}
    activated = _xml_fields(root).get("Activated")
    if activated in ("true", "false"):
        out["activated"] = activated
    if root.tag.startswith("{"):
        out["xmlns"] = root.tag[1:].split("}", 1)[0]
    return out


def _magicbox(body: bytes) -> dict[str, str]:
    # getDeviceType: "type=IPC-HDW4631C-A"; getSystemInfo: deviceType=, processor=,
    # serialNumber=, updateSerial= (Lorex NVRs say deviceType=31 and put the model in
    # updateSerial: rroller/dahua client, code index 448093976)
    kv = _key_values(decode(body))
    if not ({"type", "deviceType", "serialNumber", "updateSerial"} & kv.keys()):
        return {}
    out = {"vendor_hint": "dahua"}
    model = kv.get("type") or kv.get("deviceType")
    if not model or model.isdigit() or model == "IP Camera":
        model = kv.get("updateSerial") or model
    if model:
        out[ATTR_MODEL] = model
    if kv.get("serialNumber"):
        out[ATTR_SERIAL] = kv["serialNumber"]
    if kv.get("hardwareVersion"):
        out["hardware"] = kv["hardwareVersion"]
    return out


def _axis_brand(body: bytes) -> dict[str, str]:
    # root.Brand.Brand=AXIS / ProdFullName / ProdNbr / ProdType (Kane610/axis
    # tests/parameters/test_brand.py)
    kv = _key_values(decode(body))
    if "root.Brand.Brand" not in kv and "root.Brand.ProdNbr" not in kv:
        return {}
    out = {"vendor_hint": "axis"}
    if kv.get("root.Brand.Brand"):
        out[ATTR_MANUFACTURER] = kv["root.Brand.Brand"]
    if kv.get("root.Brand.ProdNbr"):
        out[ATTR_MODEL] = kv["root.Brand.ProdNbr"]
    if kv.get("root.Brand.ProdFullName"):
        out[ATTR_NAME] = kv["root.Brand.ProdFullName"]
    return out


def _lapi(body: bytes) -> dict[str, str]:
    # {"Response": {"ResponseURL": "/LAPI/V1.0/System/DeviceInfo", "Data": {"DeviceModel":
    #  "NVR302-16S2", "SerialNumber": "...", "FirmwareVersion": "..."}}} (code index 57784706191)
    doc = _json(body)
    if not isinstance(doc, dict) or not isinstance(doc.get("Response"), dict):
        return {}
    data = doc["Response"].get("Data")
    if not isinstance(data, dict):
        return {"vendor_hint": "uniview"}
    out = {"vendor_hint": "uniview"}
    for key, attr in (
        ("DeviceModel", ATTR_MODEL),
        ("SerialNumber", ATTR_SERIAL),
        ("FirmwareVersion", ATTR_FIRMWARE),
        ("Manufacturer", ATTR_MANUFACTURER),
        ("DeviceName", ATTR_NAME),
    ):
        value = data.get(key)
        if isinstance(value, str | int) and str(value).strip():
            out[attr] = str(value).strip()
    return out


def _sunapi(body: bytes) -> dict[str, str]:
    # system.cgi deviceinfo: Model, SerialNumber, FirmwareVersion, DeviceType as
    # key=value text or JSON (SUNAPI clients in the code index, e.g. 62582717147)
    doc = _json(body)
    kv: dict[str, str] = (
        {k: str(v) for k, v in doc.items() if isinstance(v, str | int)}
        if isinstance(doc, dict)
        else _key_values(decode(body))
    )
    if "Model" not in kv and "SerialNumber" not in kv:
        return {}
    out = {"vendor_hint": "hanwha"}
    for key, attr in (
        ("Model", ATTR_MODEL),
        ("SerialNumber", ATTR_SERIAL),
        ("FirmwareVersion", ATTR_FIRMWARE),
    ):
        if kv.get(key):
            out[attr] = kv[key]
    return out


_PARSERS = (
    ("/ISAPI/System/deviceInfo", _isapi),
    ("/SDK/activateStatus", _activate_status),
    ("/cgi-bin/magicBox.cgi", _magicbox),
    ("/axis-cgi/param.cgi", _axis_brand),
    ("/LAPI/V1.0/System/DeviceInfo", _lapi),
    ("/stw-cgi/system.cgi", _sunapi),
)


def vendor_facts(path: str, reply: HttpReply) -> dict[str, str]:
    """Canonical identity parsed from an open (200) answer on a known vendor path.

    A device that answers every path with its login page gives nothing here:
    each parser insists on its own document shape.
    """
    if reply.status != 200 or not reply.body:
        return {}
    base = path.split("?", 1)[0]
    for prefix, parser in _PARSERS:
        if base == prefix:
            return {k: clip(v) for k, v in parser(reply.body).items() if v}
    if base == "/doc/page/login.asp" and b"<" in reply.body[:4096]:
        return {"vendor_hint": "hikvision"}
    return {}


def choose_paths(hints: Iterable[str], limit: int = MAX_VENDOR_PATHS) -> list[str]:
    """The vendor paths worth a GET given the hints; generic ones when there are none."""
    families = [h for h in hints if h in VENDOR_PATHS]
    known = [h for h in hints if h]
    if not known:
        return list(DEFAULT_PATHS[:limit])
    out: list[str] = []
    for family in families:
        out += VENDOR_PATHS[family][:PATHS_PER_FAMILY]
    return list(dict.fromkeys(out))[:limit]


# --------------------------------------------------------------------- I/O


def request(ip: str, port: int, path: str, *, tls: bool) -> bytes:
    default = 443 if tls else 80
    host = ip if port == default else f"{ip}:{port}"
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {USER_AGENT}\r\n"
        "Accept: */*\r\nConnection: close\r\n\r\n"
    ).encode("ascii")


def _http_done(data: bytes) -> bool:
    if not data.lstrip().startswith(b"HTTP/") and len(data) >= 8:
        return True  # not HTTP: no point waiting for a framing that will never come
    return message_length(data, eof_delimited=True) is not None


def fetch(ctx: ProbeContext, ip: str, port: int, path: str, *, tls: bool) -> Fetched:
    """One GET on one connection, within one deadline. BudgetExhausted passes through.

    A closed port gives Fetched(opened=False, error="closed: ...").
    """
    out = Fetched()
    sock: socket.socket | None = None
    try:
        sock = connect(ctx, ip, port, requests=HTTPS_REQUESTS if tls else HTTP_REQUESTS)
    except BudgetExhausted:
        raise
    except OSError as exc:
        out.error = f"closed: {type(exc).__name__}"
        return out
    deadline = deadline_for(ctx)
    out.opened = True
    try:
        if tls:
            try:
                session = tls_probe.handshake(sock, deadline)
            except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
                out.error = f"tls: {tls_probe.describe_error(exc)}"
                return out
            sock = session.sock
            out.cert, out.tls_version, out.cipher = session.cert, session.version, session.cipher
        try:
            send(sock, request(ip, port, path, tls=tls), deadline)
        except OSError as exc:
            out.error = f"send: {type(exc).__name__}"
            return out
        out.raw, out.error = receive(
            sock, deadline, _http_done, first_line=first_line_by(ctx, deadline)
        )
    finally:
        close(sock)
    out.seen_at = utcnow()
    if out.raw:
        try:
            out.reply = parse_response(out.raw)
        except ParseError:
            out.reply = None
    return out


def _status_word(fetched: Fetched, path: str) -> str:
    """How a vendor path answered, for the `paths` attribute.

    "page" is a 200 that was not the document the path serves: embedded servers
    often answer every unknown path with their login page.
    """
    reply = fetched.reply
    if reply is not None:
        if reply.status == 200 and not vendor_facts(path, reply):
            return "page"
        return str(reply.status)
    if fetched.error == "deadline" or (fetched.opened and not fetched.raw):
        return "timeout"
    return "error"


def is_usable(obs: Observation) -> bool:
    """A root answer good enough to ask vendor paths on the same port."""
    attrs = obs.attrs
    if obs.error is not None or "status" not in attrs:
        return False
    status = int(attrs["status"])
    location = attrs.get("location", "")
    return not (300 <= status < 400 and location.lower().startswith("https:"))


def _root_observation(
    ctx: ProbeContext, ip: str, port: int, tls: bool
) -> tuple[list[Observation], Observation | None]:
    fetched = fetch(ctx, ip, port, "/", tls=tls)
    if not fetched.opened:
        return [], None
    out: list[Observation] = []
    if fetched.cert is not None:
        out.append(
            tls_probe.observe(
                ip,
                port,
                fetched.cert,
                version=fetched.tls_version,
                cipher=fetched.cipher,
                seen_at=fetched.seen_at,
            )
        )
    if fetched.reply is None:
        root = observe_failure(ip, port, tls, fetched, "/")
    else:
        root = observe(ip, port, tls, fetched.reply, "/", fetched.seen_at)
        if fetched.error is not None:
            root = Observation(
                source=root.source,
                ip=ip,
                seen_at=root.seen_at,
                attrs=root.attrs,
                error=fetched.error,
            )
    out.append(root)
    return out, root


def probe_vendor_paths(
    ctx: ProbeContext,
    ip: str,
    port: int,
    *,
    tls: bool,
    base: Observation,
    extra_hints: Iterable[str] = (),
    until: float | None = None,
) -> Observation:
    """GET the vendor paths the hints call for; the base (root) observation, enriched.

    Hints are the base's own vendor_hint, then `extra_hints` (what the host's
    certificate or RTSP server said). Stops at the first BudgetExhausted and
    records `budget_exhausted`; starts no GET after the monotonic time `until`
    (the host's own deadline), recording the path as `late`.
    """
    attrs = dict(base.attrs)
    hints = merge_hints(attrs.get("vendor_hint"), " ".join(extra_hints)).split()
    paths = choose_paths(hints)
    answered: list[str] = [p for p in attrs.get("paths", "").split() if p]
    for path in paths:
        if until is not None and time.monotonic() >= until:
            answered.append(f"{path}=late")
            break
        try:
            fetched = fetch(ctx, ip, port, path, tls=tls)
        except BudgetExhausted:
            attrs["budget_exhausted"] = "true"
            answered.append(f"{path}=budget")
            break
        answered.append(f"{path}={_status_word(fetched, path)}")
        if fetched.reply is None:
            if fetched.error == "deadline":
                break  # a device this slow gets no more requests
            continue
        sub = observe(ip, port, tls, fetched.reply, path, fetched.seen_at)
        for key in (
            ATTR_MANUFACTURER,
            ATTR_MODEL,
            ATTR_FIRMWARE,
            ATTR_SERIAL,
            ATTR_NAME,
            ATTR_MAC,
            "xmlns",
            "activated",
            "device_type",
            "hardware",
            "realm",
            "auth_scheme",
        ):
            if key in sub.attrs:
                attrs.setdefault(key, sub.attrs[key])
        attrs["vendor_hint"] = merge_hints(attrs.get("vendor_hint"), sub.attrs.get("vendor_hint"))
    if answered:
        attrs["paths"] = clip(" ".join(answered))
    if not attrs.get("vendor_hint"):
        attrs.pop("vendor_hint", None)
    return Observation(
        source=base.source,
        ip=base.ip,
        seen_at=base.seen_at,
        mac=base.mac,
        attrs=attrs,
        error=base.error,
    )


def probe(
    ctx: ProbeContext, ip: str, port: int, *, tls: bool, vendor_paths: bool = True
) -> list[Observation]:
    """Banner of one web port: the root page, then (if `vendor_paths`) vendor paths.

    Returns [] for a closed port; with tls=True, the certificate's Source.TLS
    observation comes first. Raises BudgetExhausted only if the host's budget
    was already spent before the first connection.
    """
    out, root = _root_observation(ctx, ip, port, tls)
    if root is None:
        return out
    if vendor_paths and is_usable(root):
        out[-1] = probe_vendor_paths(ctx, ip, port, tls=tls, base=root)
    return out
