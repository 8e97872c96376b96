"""SSDP/UPnP discovery: M-SEARCH on UDP 1900, then the device description over HTTP.

Protocol: UPnP Device Architecture 1.1, section 1 (SSDP, HTTP over UDP to
239.255.255.250:1900) and section 2 (the XML device description that the
LOCATION header points at). Cameras answer this widely: Axis (libupnp,
``uuid:Upnp-BasicDevice-1_0-<MAC>``), Dahua ("ZheJiang Dahua Technology CO.,LTD.
Upnp SDK", ``uuid:www.dahuatech.com.device_3_0-<serial>``), and Hikvision-made
DVRs/NVRs and their relabels (libupnp, ``device:EmbeddedNetDevice:1``).

Pure parsers turn bytes into Observations; ``discover`` is the only I/O. It
never follows a LOCATION whose host is outside the scope (recorded instead as
``location_out_of_scope``), never follows a redirect outside it, and reads at
most MAX_REPLY bytes of any description within a hard deadline: ctx.timeout
from its request, redirects included. A description is fetched as soon as
the reply naming it arrives, while the search still listens, so a device that
serves it one byte at a time costs the scan little more than the search.

Observation.attrs (source ``ssdp``), besides the canonical keys
(manufacturer, model, serial, uuid, name):
  server, location, st (every search target seen, space-joined), usn,
  nt/nts (NOTIFY only), model_number, model_description, manufacturer_url,
  presentation_url, device_type, location_out_of_scope="true" (not fetched),
  location_host (the LOCATION host, when it is not the replying address),
  description_status (HTTP status of the description fetch when not 200).
``model`` is modelName, or modelNumber when the name is generic ("IP Camera")
and the number looks like a product code; both are kept.
"""

from __future__ import annotations

import contextlib
import logging
import re
import select
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime
from ipaddress import IPv4Address
from urllib.parse import urljoin, urlsplit
from xml.etree.ElementTree import Element
from xml.etree.ElementTree import ParseError as XMLParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring as safe_fromstring

from scanner.discovery.base import (
    ATTR_MANUFACTURER,
    ATTR_MODEL,
    ATTR_NAME,
    ATTR_SERIAL,
    ATTR_UUID,
    MAX_DATAGRAM,
    MAX_REPLY,
    ProbeContext,
    child,
    local_name,
)
from scanner.errors import ParseError, ScopeError
from scanner.model import Observation, Source, utcnow

_LOGGER = logging.getLogger(__name__)

SSDP_GROUP = "239.255.255.250"
SSDP_PORT = 1900
# ssdp:all is what libupnp stacks (Axis, Hikvision OEM firmware) answer in full;
# some embedded stacks only answer upnp:rootdevice or their own device type,
# and Basic:1 is the device type Axis and many camera stacks publish.
SEARCH_TARGETS: tuple[str, ...] = (
    "ssdp:all",
    "upnp:rootdevice",
    "urn:schemas-upnp-org:device:Basic:1",
)
MAX_VALUE = 512  # every attribute value is cut to this many characters
MAX_HEADERS = 64  # header lines read from one datagram
MAX_REPLIES = 20_000  # datagrams kept per scan: bounds memory on a flooding segment
MAX_LOCATIONS_PER_HOST = 4  # descriptions fetched per address (NVRs may publish several)
MAX_FETCHES = 512  # descriptions fetched per scan
FETCH_WORKERS = 16
MAX_REDIRECTS = 2  # in-scope redirects followed; none outside the scope, ever
MAX_HTTP_HEAD = 16 * 1024  # a description response head larger than this is refused
MAX_DEVICES = 32  # devices read from one description (root plus embedded)
USER_AGENT = "scanner/0.1 UPnP/1.1"

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_WS = re.compile(r"\s+")
_GENERIC_MODEL_NAMES = frozenset(
    {
        "ip camera",
        "ipcamera",
        "network camera",
        "camera",
        "ip dome",
        "nvr",
        "dvr",
        "network video recorder",
        "digital video recorder",
        "embedded net dvr",
        "ipc",
        "ip-camera",
    }
)


def clean(value: str, limit: int = MAX_VALUE) -> str:
    """A device-supplied string made safe to store: no control chars, one-line, capped."""
    return _WS.sub(" ", _CONTROL.sub("", value)).strip()[:limit]


def uuid_from(text: str) -> str | None:
    """The UUID part of a USN or UDN ("uuid:XYZ::urn:..." -> "XYZ")."""
    text = text.strip()
    if text[:5].lower() != "uuid:":
        return None
    value = clean(text[5:].split("::", 1)[0])
    return value or None


def build_msearch(st: str = "ssdp:all", mx: int = 2) -> bytes:
    """A multicast M-SEARCH for one search target (UDA 1.1 §1.3.2)."""
    if not st or any(c in st for c in "\r\n"):
        raise ValueError(f"bad search target {st!r}")
    mx = max(1, min(5, int(mx)))  # UDA: 1..5 seconds
    return (
        "M-SEARCH * HTTP/1.1\r\n"
        f"HOST: {SSDP_GROUP}:{SSDP_PORT}\r\n"
        'MAN: "ssdp:discover"\r\n'
        f"MX: {mx}\r\n"
        f"ST: {st}\r\n"
        f"USER-AGENT: Linux UPnP/1.1 {USER_AGENT}\r\n"
        "\r\n"
    ).encode("ascii")


def _headers(lines: Iterable[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for i, line in enumerate(lines):
        if i >= MAX_HEADERS:
            break
        name, sep, value = line.partition(":")
        if not sep:
            continue
        key = name.strip().lower()
        if key and key not in out:  # first one wins: a repeated header is not an override
            out[key] = value.strip()
    return out


def parse_response(data: bytes, ip: str, seen_at: datetime) -> Observation | None:
    """An SSDP search reply (or NOTIFY) as an Observation; None for anything else.

    A datagram that starts like SSDP but is malformed still gives an
    Observation, with ``error`` saying what was wrong and whatever was read.
    """
    errors: list[str] = []
    if len(data) > MAX_DATAGRAM:
        data = data[:MAX_DATAGRAM]
        errors.append("oversized datagram")
    head = data.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    start = head[:32].upper()
    is_reply = start.startswith(b"HTTP/1.")
    is_notify = start.startswith(b"NOTIFY ")
    if not (is_reply or is_notify):
        return None  # an M-SEARCH from someone else, or not SSDP at all
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = head.decode("utf-8", errors="replace")
        errors.append("not valid UTF-8")
    lines = text.replace("\r\n", "\n").split("\n")
    status_line = lines[0].strip()
    if is_reply:
        parts = status_line.split(None, 2)
        if len(parts) < 2 or not _digits(parts[1]):
            errors.append("bad status line")
        elif parts[1] != "200":
            errors.append(f"status {clean(parts[1], 3)}")
    hdr = _headers(lines[1:])
    attrs: dict[str, str] = {}
    for key in ("server", "location", "usn"):
        if hdr.get(key):
            attrs[key] = clean(hdr[key])
    if is_notify:
        for key in ("nt", "nts"):
            if hdr.get(key):
                attrs[key] = clean(hdr[key])
        if "nt" in attrs:
            attrs["st"] = attrs["nt"]
    elif hdr.get("st"):
        attrs["st"] = clean(hdr["st"])
    uuid = uuid_from(hdr.get("usn", ""))
    if uuid:
        attrs[ATTR_UUID] = uuid
    missing = [k.upper() for k in ("location", "usn") if k not in attrs]
    if is_reply and "st" not in attrs:
        missing.append("ST")
    if missing and not (is_notify and attrs.get("nts") == "ssdp:byebye"):
        errors.append("missing " + ", ".join(missing))
    return Observation(
        source=Source.SSDP,
        ip=ip,
        seen_at=seen_at,
        attrs=attrs,
        error="; ".join(errors)[:MAX_VALUE] or None,
    )


# --------------------------------------------------------------- description


def _text(el: Element, name: str) -> str:
    c = child(el, name)
    if c is None:
        return ""
    return clean("".join(c.itertext()))


def _has_model_code(value: str) -> bool:
    """True for product-code-like strings ("DS-2CD2143G0-I", "M1065-LW"), not "1.0"."""
    return (
        len(value) >= 3 and any(ch.isdigit() for ch in value) and any(ch.isalpha() for ch in value)
    )


def pick_model(model_name: str, model_number: str) -> str:
    """modelName, unless it is generic and modelNumber is the real product code.

    OEM relabels often keep the maker's code in modelNumber under a brand's
    generic modelName (e.g. "IP Camera" / "DS-2CD2343G2-IU").
    """
    name, number = model_name.strip(), model_number.strip()
    if not name:
        return number
    if not number or not _has_model_code(number):
        return name
    if number.casefold() in name.casefold():
        return name
    generic = name.casefold() in _GENERIC_MODEL_NAMES or not any(ch.isdigit() for ch in name)
    return number if generic else name


def _device_attrs(dev: Element) -> dict[str, str]:
    fields = {
        "manufacturer": _text(dev, "manufacturer"),
        "manufacturer_url": _text(dev, "manufacturerURL"),
        "model_description": _text(dev, "modelDescription"),
        "model_number": _text(dev, "modelNumber"),
        "presentation_url": _text(dev, "presentationURL"),
        "device_type": _text(dev, "deviceType"),
    }
    attrs = {k: v for k, v in fields.items() if v}
    model = pick_model(_text(dev, "modelName"), fields["model_number"])
    if model:
        attrs[ATTR_MODEL] = model
    serial = _text(dev, "serialNumber")
    if serial:
        attrs[ATTR_SERIAL] = serial
    name = _text(dev, "friendlyName")
    if name:
        attrs[ATTR_NAME] = name
    uuid = uuid_from(_text(dev, "UDN"))
    if uuid:
        attrs[ATTR_UUID] = uuid
    if "manufacturer" in attrs:
        attrs[ATTR_MANUFACTURER] = attrs.pop("manufacturer")
    return attrs


def _walk_devices(dev: Element, out: list[Element], depth: int = 0) -> None:
    if len(out) >= MAX_DEVICES or depth > 8:
        return
    out.append(dev)
    dl = child(dev, "deviceList")
    if dl is None:
        return
    for sub in dl:
        if local_name(sub.tag) == "device":
            _walk_devices(sub, out, depth + 1)


# What expat, defusedxml and odd encodings raise on hostile input; nothing else escapes.
_XML_ERRORS = (XMLParseError, DefusedXmlException, ValueError, LookupError, RecursionError)


def parse_description_all(xml: bytes, ip: str, seen_at: datetime) -> list[Observation]:
    """Every device in a UPnP description (root first, then embedded), one each.

    Bad XML, DTDs/entities (billion laughs), oversize and a missing <device>
    give a single Observation carrying ``error``.
    """

    def fail(reason: str) -> list[Observation]:
        return [Observation(source=Source.SSDP, ip=ip, seen_at=seen_at, error=reason)]

    if len(xml) > MAX_REPLY:
        return fail(f"description larger than {MAX_REPLY} bytes")
    if not xml.strip():
        return fail("empty description")
    try:
        root = safe_fromstring(xml, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        return fail(f"description refused: {type(exc).__name__}")
    except _XML_ERRORS as exc:
        return fail(clean(f"description is not XML: {exc}", 200))
    top = root if local_name(root.tag) == "device" else child(root, "device")
    if top is None:
        return fail(f"no <device> in description (root <{clean(local_name(root.tag), 40)}>)")
    devices: list[Element] = []
    _walk_devices(top, devices)
    return [
        Observation(source=Source.SSDP, ip=ip, seen_at=seen_at, attrs=_device_attrs(d))
        for d in devices
    ]


def parse_description(xml: bytes, ip: str, seen_at: datetime) -> Observation:
    """The root device of a UPnP description (UDA 1.1 §2.3) as an Observation."""
    return parse_description_all(xml, ip, seen_at)[0]


# ----------------------------------------------------------------------- I/O


@dataclass
class _Found:
    """One device (ip, uuid) as its search replies describe it."""

    ip: str
    seen_at: datetime
    attrs: dict[str, str]
    sts: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def _key(obs: Observation) -> tuple[str, str]:
    a = obs.attrs
    return obs.ip, a.get(ATTR_UUID) or a.get("location") or a.get("usn") or ""


def _collect(
    replies: Iterable[tuple[bytes, str]], ctx: ProbeContext
) -> dict[tuple[str, str], _Found]:
    found: dict[tuple[str, str], _Found] = {}
    ignored = 0
    for data, ip in replies:
        if not ctx.in_scope(ip):
            ignored += 1
            continue
        obs = parse_response(data, ip, utcnow())
        if obs is None:
            continue
        key = _key(obs)
        f = found.get(key)
        if f is None:
            f = found[key] = _Found(ip=ip, seen_at=obs.seen_at, attrs=dict(obs.attrs))
        for k, v in obs.attrs.items():
            f.attrs.setdefault(k, v)
        # keep the root device's USN ("uuid:X::upnp:rootdevice"), else the first one seen
        usn = obs.attrs.get("usn", "")
        if usn.lower().endswith("::upnp:rootdevice"):
            f.attrs["usn"] = usn
        st = obs.attrs.get("st")
        if st and st not in f.sts:
            f.sts.append(st)
        if obs.error and obs.error not in f.errors:
            f.errors.append(obs.error)
    if ignored:
        _LOGGER.info("ignored %d SSDP replies from addresses outside the scope", ignored)
    return found


def _search(
    ctx: ProbeContext,
    targets: Sequence[str],
    on_reply: Callable[[bytes, str], None] | None = None,
) -> list[tuple[bytes, str]]:
    """M-SEARCH on every scoped interface; every datagram until ctx.timeout.

    ``on_reply(data, ip)`` sees each datagram as it arrives.
    """
    socks: list[socket.socket] = []
    try:
        for iface in ctx.interfaces:
            try:
                socks.append(ctx.multicast_socket(iface))
            except OSError as exc:
                _LOGGER.warning("SSDP: cannot open a socket on %s: %s", iface.name, exc)
        mx = max(1, min(5, int(ctx.timeout)))
        for sock in socks:
            for st in targets:
                with contextlib.suppress(OSError):  # one interface down must not stop the rest
                    ctx.send_multicast(sock, build_msearch(st, mx), SSDP_GROUP, SSDP_PORT)
        deadline = time.monotonic() + ctx.timeout
        out: list[tuple[bytes, str]] = []
        while socks and len(out) < MAX_REPLIES:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            ready, _, _ = select.select(socks, [], [], remaining)
            for sock in ready:
                try:
                    data, (ip, _port) = sock.recvfrom(MAX_DATAGRAM)
                except OSError:
                    continue
                out.append((data, ip))
                if on_reply is not None:
                    on_reply(data, ip)
        return out
    finally:
        for sock in socks:
            sock.close()


@dataclass(frozen=True)
class Fetched:
    """One description fetch: the body, or why there is none (``error``)."""

    body: bytes | None
    status: int | None = None
    error: str | None = None


def _http_get(
    ctx: ProbeContext, host: str, port: int, target: str, deadline: float
) -> tuple[int, dict[str, str], bytes, str | None]:
    """One GET with Connection: close, all of it by `deadline`, the body capped at MAX_REPLY."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise _FetchError("description read timed out")
    sock = ctx.connect(host, port, timeout=min(ctx.timeout, left))
    try:
        request = (
            f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: {USER_AGENT}\r\n"
            "Accept: text/xml, application/xml\r\nConnection: close\r\n\r\n"
        )
        sock.sendall(request.encode("ascii"))
        buf = bytearray()
        limit = MAX_HTTP_HEAD + MAX_REPLY + 1
        error = None
        while len(buf) < limit:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                error = "description read timed out"
                break
            sock.settimeout(remaining)
            try:
                chunk = sock.recv(min(65536, limit - len(buf)))
            except TimeoutError:
                error = "description read timed out"
                break
            if not chunk:
                break
            buf += chunk
            if _complete(buf):
                break
    finally:
        sock.close()
    head, sep, body = bytes(buf).partition(b"\r\n\r\n")
    if not sep:
        if len(head) > MAX_HTTP_HEAD:
            raise _FetchError("description response head too large")
        raise _FetchError(error or "no HTTP response head")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(None, 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not _digits(parts[1]):
        raise _FetchError("not an HTTP response")
    hdr = _headers(lines[1:])
    if "chunked" in hdr.get("transfer-encoding", "").lower():
        body, chunk_error = _dechunk(body)
        error = error or chunk_error
    elif _digits(hdr.get("content-length", "")):
        length = int(hdr["content-length"])
        if length > MAX_REPLY:
            raise _FetchError(f"description larger than {MAX_REPLY} bytes")
        if len(body) < length and error is None:
            error = "description truncated"
        body = body[:length]
    if len(body) > MAX_REPLY:
        raise _FetchError(f"description larger than {MAX_REPLY} bytes")
    return int(parts[1]), hdr, body, error


def _digits(text: str) -> bool:
    """ASCII digits only: latin-1 text has "\u00b2".isdigit() true and int() refuses it."""
    return text.isascii() and text.isdigit()


def _complete(buf: bytearray) -> bool:
    """True once the head is in and the body is all there, or declared too big to read.

    A device that ignores "Connection: close" must not cost the whole deadline.
    """
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return False
    hdr = _headers(bytes(buf[:end]).decode("latin-1").split("\r\n")[1:])
    length = hdr.get("content-length", "")
    if not _digits(length) or "chunked" in hdr.get("transfer-encoding", "").lower():
        return False
    return int(length) > MAX_REPLY or len(buf) - end - 4 >= int(length)


def _dechunk(data: bytes) -> tuple[bytes, str | None]:
    out = bytearray()
    pos = 0
    while True:
        end = data.find(b"\r\n", pos)
        if end < 0:
            return bytes(out), "description truncated"
        size_text = data[pos:end].split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            return bytes(out), "bad chunked encoding"
        if size < 0:  # "-6": int() takes a sign, and pos would walk backwards for ever
            return bytes(out), "bad chunked encoding"
        if size == 0:
            return bytes(out), None
        start = end + 2
        out += data[start : start + size]
        if len(out) > MAX_REPLY:
            return bytes(out), None  # the caller refuses it as oversized
        if start + size > len(data):
            return bytes(out), "description truncated"
        pos = start + size + 2


class _FetchError(Exception):
    """A description response we refuse to use; its text becomes the error."""


def _split_http_url(url: str) -> tuple[str, int, str] | None:
    """(host, port, request-target) of a plain http:// URL, or None if unusable."""
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
        return None  # spaces/CR/LF would let a hostile LOCATION inject header lines
    try:
        parts = urlsplit(url)
        port = parts.port or 80
    except ValueError:
        return None
    if parts.scheme.lower() != "http" or not parts.hostname:
        return None
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    return parts.hostname, port, target


def location_host(url: str) -> str | None:
    """The host part of a LOCATION URL, if it has one."""
    try:
        return urlsplit(url.strip()).hostname
    except ValueError:
        return None


def is_in_scope_host(ctx: ProbeContext, host: str | None) -> bool:
    """An IPv4 literal inside the scope; names are never resolved, so never in scope."""
    if not host:
        return False
    try:
        IPv4Address(host)
    except ValueError:
        return False
    return ctx.in_scope(host)


def fetch_description(ctx: ProbeContext, url: str) -> Fetched:
    """GET a description URL within ctx.timeout, following only in-scope http:// redirects.

    A description is a few kilobytes on a LAN: a device that cannot serve it in
    the time it had to answer the search is a tar-pit, not a slow camera.
    """
    deadline = time.monotonic() + ctx.timeout
    for _hop in range(MAX_REDIRECTS + 1):
        split = _split_http_url(url)
        if split is None:
            return Fetched(None, error="LOCATION is not a usable http:// URL")
        host, port, target = split
        if not is_in_scope_host(ctx, host):
            return Fetched(
                None, error=f"redirect to {clean(url, 200)} not followed (outside the scope)"
            )
        try:
            status, hdr, body, error = _http_get(ctx, host, port, target, deadline)
        except _FetchError as exc:
            return Fetched(None, error=str(exc))
        except ScopeError as exc:
            return Fetched(None, error=clean(str(exc), 200))
        except TimeoutError:
            return Fetched(None, error="description read timed out")
        except OSError as exc:
            return Fetched(
                None, error=clean(f"description fetch failed: {exc.strerror or exc}", 200)
            )
        if status in (301, 302, 303, 307, 308) and hdr.get("location"):
            url = urljoin(url, hdr["location"].strip())
            continue
        if status != 200:
            return Fetched(None, status=status, error=f"description: HTTP {status}")
        return Fetched(body, status=status, error=error)
    return Fetched(None, error="too many redirects")


def _merge(found: _Found, desc: Observation | None, fetched: Fetched | None) -> Observation:
    attrs = dict(found.attrs)
    attrs.pop("st", None)
    if found.sts:
        attrs["st"] = clean(" ".join(found.sts))
    errors = list(found.errors)
    if fetched is not None:
        if fetched.status not in (None, 200):
            attrs["description_status"] = str(fetched.status)
        if fetched.error:
            errors.append(fetched.error)
    if desc is not None:
        uuid = attrs.get(ATTR_UUID)
        attrs.update(desc.attrs)
        if uuid:  # the advertised identity wins over a description that disagrees
            attrs[ATTR_UUID] = uuid
        if desc.error:
            errors.append(desc.error)
    return Observation(
        source=Source.SSDP,
        ip=found.ip,
        seen_at=found.seen_at,
        attrs=attrs,
        error="; ".join(dict.fromkeys(errors))[:MAX_VALUE] or None,
    )


class _Fetcher:
    """Starts each description fetch the moment a search reply names its LOCATION.

    Which LOCATIONs are followed: in scope, http, at most MAX_LOCATIONS_PER_HOST
    per host and MAX_FETCHES per scan, each URL once, in the order replies come.
    """

    def __init__(self, ctx: ProbeContext, pool: ThreadPoolExecutor) -> None:
        self.ctx = ctx
        self.pool = pool
        self.started: dict[str, Future[Fetched]] = {}
        self.per_host: Counter[str] = Counter()

    def offer(self, data: bytes, ip: str) -> None:
        if not self.ctx.in_scope(ip):
            return
        try:
            obs = parse_response(data, ip, utcnow())
        except ParseError:
            return
        loc = obs.attrs.get("location") if obs is not None else None
        if not loc or loc in self.started:
            return
        host = location_host(loc)
        if host is None or not is_in_scope_host(self.ctx, host):
            return  # never resolved, never followed outside the scope
        if self.per_host[host] >= MAX_LOCATIONS_PER_HOST or len(self.started) >= MAX_FETCHES:
            return
        self.per_host[host] += 1
        self.started[loc] = self.pool.submit(fetch_description, self.ctx, loc)

    def results(self) -> dict[str, Fetched]:
        return {loc: fut.result() for loc, fut in self.started.items()}


def discover(ctx: ProbeContext, targets: Sequence[str] = SEARCH_TARGETS) -> list[Observation]:
    """Search every scoped interface, reading each in-scope device description meanwhile.

    One Observation per (address, UUID) that answered; a description that
    cannot be read leaves its ``error`` on that Observation and the rest go on.
    """
    with ThreadPoolExecutor(max_workers=FETCH_WORKERS, thread_name_prefix="ssdp") as pool:
        fetcher = _Fetcher(ctx, pool)
        found = _collect(_search(ctx, targets, fetcher.offer), ctx)
        fetched = fetcher.results()
    if not found:
        return []
    for f in found.values():
        loc = f.attrs.get("location")
        if not loc:
            continue
        host = location_host(loc)
        if host is None:
            f.errors.append("LOCATION has no host")
            continue
        if host != f.ip:
            f.attrs["location_host"] = clean(host, 255)
        if not is_in_scope_host(ctx, host):  # includes every DNS name: we never resolve one
            f.attrs["location_out_of_scope"] = "true"
        elif loc not in fetched:
            f.errors.append("description not fetched (per-host limit)")
    out: list[Observation] = []
    seen_uuids: set[tuple[str, str]] = {(f.ip, f.attrs.get(ATTR_UUID, "")) for f in found.values()}
    for f in found.values():
        loc = f.attrs.get("location", "")
        got = fetched.get(loc)
        if got is None:
            out.append(_merge(f, None, None))
            continue
        if got.body is None:
            out.append(_merge(f, None, got))
            continue
        devices = parse_description_all(got.body, f.ip, f.seen_at)
        uuid = f.attrs.get(ATTR_UUID)
        match = next((d for d in devices if uuid and d.attrs.get(ATTR_UUID) == uuid), devices[0])
        out.append(_merge(f, match, got))
        # embedded devices nobody advertised on their own are still devices behind this IP
        for d in devices:
            key = (f.ip, d.attrs.get(ATTR_UUID, ""))
            if d is match or not key[1] or key in seen_uuids:
                continue
            seen_uuids.add(key)
            extra = dict(d.attrs)
            extra["location"] = loc
            out.append(replace(d, attrs=extra))
    return sorted(out, key=lambda o: (IPv4Address(o.ip), o.attrs.get(ATTR_UUID, "")))
