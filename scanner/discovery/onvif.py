"""ONVIF device information: SOAP over HTTP(S) to the device service WS-Discovery named.

Spec: ONVIF Core (Device Management: GetSystemDateAndTime, GetDeviceInformation,
GetNetworkInterfaces); authentication is WS-Security UsernameToken with
PasswordDigest. The client is onvif-zeep 0.2.12 (``onvif.client.ONVIFService``,
the per-service client ``ONVIFCamera`` builds) on zeep, with these guards:

* Only the device-management service is built, at the XAddr WS-Discovery gave
  when it names this very host, else ``http://ip:port/onvif/device_service``.
  ``ONVIFCamera()`` is not used: its constructor calls GetCapabilities and then
  follows the device's Events XAddr, which may point anywhere.
* zeep's transport is replaced by one that speaks HTTP itself through
  ``ctx.connect`` (scope check + packet budget on every request), refuses any
  other host and any remote schema, reads at most MAX_REPLY bytes, and holds
  every request to a hard deadline (a tar-pit cannot stall it: a reply whose
  status line has not begun within ctx.timeout is given up), checks the
  reply is well-formed XML without DTD/entities before zeep sees it, and never
  logs a message (zeep's would log the WS-Security digest and nonce).
* The WSDL files are found robustly (the install RECORD, then site-packages,
  then sysconfig data dirs; ``SCANNER_ONVIF_WSDL_DIR`` overrides); no cache.
* Credentials: one attempt. GetSystemDateAndTime is asked without them (it is
  PRE_AUTH), the device's clock offset is applied to the token's Created (what
  ``adjust_time=True`` does), then GetDeviceInformation is sent once with the
  credentials for the most specific CIDR containing the address. If it is
  refused, nothing more is sent. Credentials never appear in logs, attrs or
  errors (any device text echoing them is scrubbed).

Observation.attrs (source ``onvif``): the canonical manufacturer, model,
firmware, serial, mac, plus
  hardware_id    GetDeviceInformation HardwareId
  clock_skew_s   device UTC minus ours, whole seconds
  auth           "none" (answered without credentials), "ok" (answered with
                 them), "required" (refused, none given), "failed" (refused
                 the credentials given)
  port, xaddr    where the device service was asked; xaddr_ignored: a
                 discovered XAddr that was not used (another host or scheme)
  time_error, network_error   why GetSystemDateAndTime / GetNetworkInterfaces failed
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import io
import ipaddress
import logging
import math
import os
import re
import select
import socket
import ssl
import sysconfig
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit
from xml.etree.ElementTree import ParseError as XMLParseError

import requests
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring as safe_fromstring
from requests.structures import CaseInsensitiveDict
from zeep.transports import Transport

from scanner import __version__
from scanner.discovery.base import (
    ATTR_FIRMWARE,
    ATTR_MAC,
    ATTR_MANUFACTURER,
    ATTR_MODEL,
    ATTR_SERIAL,
    MAX_REPLY,
    TLS_HANDSHAKE_PACKETS,
    ProbeContext,
)
from scanner.errors import ScannerError, ScopeError
from scanner.model import Observation, Source, utcnow
from scanner.oui import is_multicast, normalise_mac

_LOGGER = logging.getLogger(__name__)

DEVICE_PATH = "/onvif/device_service"
QUERY_DEADLINE_S = 20.0  # default for a single query()
# requests one device service is sent at most: GetSystemDateAndTime, GetDeviceInformation,
# GetNetworkInterfaces, each on its own connection (scanner/plan.py counts these)
SOAP_REQUESTS = 3
REQUEST_TIMEOUT_FACTOR = 2.5  # one SOAP request may take this many ctx.timeouts
MAX_HEAD = 32 * 1024  # HTTP response head cap, on top of MAX_REPLY for the body
MAX_VALUE = 512
MAX_ERROR = 200
USER_AGENT = f"scanner/{__version__} ONVIF"
WSDL_ENV = "SCANNER_ONVIF_WSDL_DIR"

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_WS = re.compile(r"\s+")
_SAFE_PATH = re.compile(r"^/[\x21-\x7e]{0,1000}$")
_AUTH_MARKERS = re.compile(
    rb"NotAuthorized|not\s+authori[sz]ed|FailedAuthentication|InvalidSecurity|"
    rb"AuthorizationRequired|Unauthori[sz]ed",
    re.IGNORECASE,
)
_XML_TYPES = ("xml", "soap")


class ReplyError(Exception):
    """A device reply we will not use; the message is short and safe to record."""


def clean(value: object, limit: int = MAX_VALUE) -> str:
    """A device-supplied value made safe to store: one line, no control chars, capped."""
    return _WS.sub(" ", _CONTROL.sub(" ", str(value))).strip()[:limit]


# --------------------------------------------------------------------------- library


@functools.lru_cache(maxsize=1)
def wsdl_dir() -> Path:
    """Where onvif-zeep's WSDL files are, wherever this install put them.

    setup.py installs them as data_files under ``lib/pythonX.Y/site-packages/wsdl``
    with X.Y frozen at build time, so the version in the path may not be ours.
    """
    candidates: list[Path] = []
    env = os.environ.get(WSDL_ENV)
    if env:
        candidates.append(Path(env))
    with contextlib.suppress(metadata.PackageNotFoundError):
        for f in metadata.files("onvif-zeep") or ():
            if f.name == "devicemgmt.wsdl":
                candidates.append(Path(str(f.locate())).parent)
    with contextlib.suppress(ImportError):
        import onvif

        candidates.append(Path(onvif.__file__).resolve().parent.parent / "wsdl")
    for key in ("purelib", "platlib"):
        candidates.append(Path(sysconfig.get_paths()[key]) / "wsdl")
    data = Path(sysconfig.get_paths()["data"])
    candidates += sorted(data.glob("lib/python3*/site-packages/wsdl"), reverse=True)
    candidates.append(data / "share" / "onvif" / "wsdl")
    for cand in candidates:
        if (cand / "devicemgmt.wsdl").is_file():
            return cand
    raise ScannerError(
        f"onvif-zeep's WSDL files were not found (looked in {len(candidates)} places); "
        f"set {WSDL_ENV} to the directory holding devicemgmt.wsdl"
    )


_IMPORT_LOCK = threading.Lock()


@functools.lru_cache(maxsize=1)
def _library() -> SimpleNamespace:
    """onvif-zeep's pieces, imported once without its logging side effects.

    onvif/client.py calls ``logging.basicConfig(level=INFO)`` at import, which
    would give the daemon a second root handler: a placeholder handler makes
    that call a no-op.
    """
    with _IMPORT_LOCK:
        root = logging.getLogger()
        guard = logging.NullHandler()
        root.addHandler(guard)
        try:
            from onvif.client import ONVIFService, UsernameDigestTokenDtDiff
            from onvif.definition import SERVICES
            from onvif.exceptions import ONVIFError
        except ImportError as exc:
            raise ScannerError(f"onvif-zeep is not installed: {exc}") from None
        finally:
            root.removeHandler(guard)
    spec = SERVICES["devicemgmt"]
    return SimpleNamespace(
        ONVIFService=ONVIFService,
        ONVIFError=ONVIFError,
        Token=UsernameDigestTokenDtDiff,
        wsdl=wsdl_dir() / spec["wsdl"],
        binding=f"{{{spec['ns']}}}{spec['binding']}",
    )


# --------------------------------------------------------------------------- transport


def _tls_context() -> ssl.SSLContext:
    # Cameras serve self-signed certificates; we read public device facts, not secrets
    # worth a MITM, and the password never travels in clear (PasswordDigest).
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _wait(sock: socket.socket, deadline: float, *, write: bool) -> None:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise ReplyError("timed out")
    rlist, wlist = ([], [sock]) if write else ([sock], [])
    ready = select.select(rlist, wlist, [], remaining)
    if not any(ready):
        raise ReplyError("timed out")


def _handshake(sock: socket.socket, deadline: float) -> ssl.SSLSocket:
    tls = _tls_context().wrap_socket(sock, do_handshake_on_connect=False)
    tls.setblocking(False)
    while True:
        try:
            tls.do_handshake()
            return tls
        except ssl.SSLWantReadError:
            _wait(tls, deadline, write=False)
        except ssl.SSLWantWriteError:
            _wait(tls, deadline, write=True)
        except ssl.SSLError as exc:
            raise ReplyError(f"TLS handshake failed: {exc.reason or 'error'}") from None


def _complete(buf: bytes) -> bool:
    """Whether a response is whole, so we need not wait for the close."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return False
    head = buf[:end].decode("latin-1").lower()
    status = head[9:12]
    if status.startswith("1"):  # 100 Continue: the real answer follows
        return _complete(buf[end + 4 :])
    body = buf[end + 4 :]
    if status in ("204", "304"):
        return True
    m = re.search(r"^content-length:\s*(\d+)\s*$", head, re.MULTILINE)
    if m:
        return len(body) >= int(m.group(1))
    if re.search(r"^transfer-encoding:.*chunked", head, re.MULTILINE):
        return body.endswith(b"0\r\n\r\n")
    return False


class _Bytes:
    """A socket stand-in so http.client parses a response we already hold."""

    def __init__(self, data: bytes) -> None:
        self._file = io.BytesIO(data)

    def makefile(self, *_args: object, **_kwargs: object) -> io.BytesIO:
        return self._file


def parse_http(data: bytes) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of a complete HTTP/1.x response; ReplyError if it is not one."""
    rest = data
    for _ in range(4):  # skip interim 1xx responses
        resp = http.client.HTTPResponse(_Bytes(rest))  # type: ignore[arg-type]
        try:
            resp.begin()
            if 100 <= resp.status < 200:
                rest = rest[rest.find(b"\r\n\r\n") + 4 :]
                continue
            body = resp.read()
        except http.client.IncompleteRead:
            raise ReplyError("truncated HTTP reply") from None
        except (http.client.HTTPException, ValueError):
            raise ReplyError("not an HTTP reply") from None
        return resp.status, {k: v for k, v in resp.getheaders()}, body
    raise ReplyError("not an HTTP reply")


def check_xml(body: bytes) -> None:
    """Refuse a SOAP reply that is not well-formed or carries a DTD/entities.

    zeep parses in recover mode with libxml2's limits lifted (xml_huge_tree);
    this stricter pass runs first, on a body already capped at MAX_REPLY.
    """
    try:
        safe_fromstring(body, forbid_dtd=True)
    except DefusedXmlException as exc:
        raise ReplyError(f"forbidden XML construct ({type(exc).__name__})") from None
    except (XMLParseError, ValueError, LookupError, RecursionError):
        raise ReplyError("malformed XML") from None


class LocalSchemas(Transport):
    """Loads the WSDL and XSD files zeep asks for: local files only, never a URL."""

    def load(self, url: str) -> bytes:
        if urlsplit(url).scheme.lower() in ("http", "https"):
            raise ReplyError("refusing to fetch a remote schema")
        data: bytes = super().load(url)
        return data


def _safe_settings() -> Any:
    from zeep.settings import Settings

    # onvif-zeep lifts libxml2's limits (xml_huge_tree); we put them back
    return Settings(
        strict=False,
        xml_huge_tree=False,
        forbid_dtd=True,
        forbid_entities=True,
        forbid_external=True,
    )


_DOCUMENT_LOCK = threading.Lock()


@functools.lru_cache(maxsize=1)
def _document() -> Any:
    """devicemgmt.wsdl parsed once per process and shared by every device's client.

    Parsing it with its imported schemas costs ~0.4 MB and tens of milliseconds;
    per device, a 250-camera scan spent 100 MB of RSS on copies of it.
    """
    from zeep.wsdl import Document

    with _DOCUMENT_LOCK:
        # zeep annotates the transport as a class; Client itself passes an instance
        transport: Any = LocalSchemas()
        return Document(str(_library().wsdl), transport, settings=_safe_settings())


class ScopedTransport(LocalSchemas):
    """zeep's transport, narrowed to one in-scope host with a hard deadline.

    Every POST goes through ``ctx.connect`` (scope check and packet budget),
    one TCP connection per request, ``Connection: close``.
    """

    def __init__(
        self, ctx: ProbeContext, ip: str, port: int, *, tls: bool, deadline: float
    ) -> None:
        super().__init__(cache=None, timeout=ctx.timeout, operation_timeout=ctx.timeout)
        self.session.trust_env = False  # never a proxy from the environment
        self.ctx = ctx
        self.ip = ip
        self.port = port
        self.tls = tls
        self.deadline = deadline
        self.request_timeout = max(ctx.timeout, 0.5) * REQUEST_TIMEOUT_FACTOR
        self.requests = 0
        self.last_status: int | None = None
        self.last_body = b""

    def get(self, address: str, params: Any, headers: Any) -> requests.Response:
        raise ReplyError("refusing an HTTP GET")

    def post(self, address: str, message: bytes | str, headers: Mapping[str, str]) -> Any:
        parts = urlsplit(address)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        if parts.hostname != self.ip or port != self.port:
            raise ReplyError("refusing a request to another host")  # never follow elsewhere
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        body = message.encode() if isinstance(message, str) else message
        status, resp_headers, data = self.exchange(path, body, headers)
        self.last_status, self.last_body = status, data
        content_type = CaseInsensitiveDict(resp_headers).get("Content-Type", "")
        if data.strip() and (any(t in content_type.lower() for t in _XML_TYPES) or status == 200):
            check_xml(data)
        response = requests.Response()
        response.status_code = status
        response.headers = CaseInsensitiveDict(resp_headers)
        response._content = data
        response.encoding = requests.utils.get_encoding_from_headers(response.headers)
        response.url = address
        return response

    def exchange(
        self, path: str, body: bytes, headers: Mapping[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        """One request/response with a deadline on every step; the reply capped."""
        deadline = min(self.deadline, time.monotonic() + self.request_timeout)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ReplyError("deadline reached")
        self.requests += 1
        try:
            sock: socket.socket = self.ctx.connect(
                self.ip,
                self.port,
                timeout=remaining,
                requests=1 + (TLS_HANDSHAKE_PACKETS if self.tls else 0),
            )
        except TimeoutError:
            raise ReplyError("connect timed out") from None
        except ConnectionRefusedError:
            raise ReplyError("connection refused") from None
        except OSError as exc:
            raise ReplyError(f"connect failed: {exc.strerror or type(exc).__name__}") from None
        try:
            if self.tls:
                sock = _handshake(sock, deadline)
            sock.setblocking(True)
            lines = [
                f"POST {path} HTTP/1.1",
                f"Host: {self.ip}:{self.port}",
                f"User-Agent: {USER_AGENT}",
                "Accept: application/soap+xml, text/xml",
                "Connection: close",
                f"Content-Length: {len(body)}",
            ]
            for name in ("Content-Type", "SOAPAction"):
                value = headers.get(name)
                if value and not any(c in value for c in "\r\n"):
                    lines.append(f"{name}: {value}")
            request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
            sock.settimeout(max(0.001, deadline - time.monotonic()))
            sock.sendall(request)
            # a device that has not begun its status line within ctx.timeout is a
            # tar-pit (one byte a second): it gets no more of the request's time
            first_line = min(deadline, time.monotonic() + self.ctx.timeout)
            buf = bytearray()
            while True:
                limit = deadline if b"\n" in buf else first_line
                remaining = limit - time.monotonic()
                if remaining <= 0:
                    raise ReplyError("timed out waiting for the reply")
                sock.settimeout(remaining)
                chunk = sock.recv(65536)
                if not chunk:
                    break
                buf += chunk
                if len(buf) > MAX_REPLY + MAX_HEAD:
                    raise ReplyError(f"reply larger than {MAX_REPLY} bytes")
                if _complete(bytes(buf)):
                    break
        except TimeoutError:
            raise ReplyError("timed out waiting for the reply") from None
        except ssl.SSLError as exc:
            raise ReplyError(f"TLS error: {exc.reason or 'error'}") from None
        except OSError as exc:
            raise ReplyError(f"network error: {exc.strerror or type(exc).__name__}") from None
        finally:
            with contextlib.suppress(OSError):
                sock.close()
        return parse_http(bytes(buf))


# --------------------------------------------------------------------------- query


def device_url(ip: str, port: int, xaddr: str | None) -> tuple[str, bool, bool]:
    """(device service URL, TLS?, discovered XAddr used?) for one target.

    A discovered XAddr is used only when it names this very host and port over
    http(s); otherwise the standard path on ``ip:port`` is asked.
    """
    if xaddr:
        try:
            parts = urlsplit(xaddr.strip())
            xport = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            parts, xport = None, 0
        if (
            parts is not None
            and parts.scheme in ("http", "https")
            and parts.hostname == ip
            and xport == port
        ):
            path = parts.path or DEVICE_PATH
            if parts.query:
                path += "?" + parts.query
            if _SAFE_PATH.match(path):
                return f"{parts.scheme}://{ip}:{port}{path}", parts.scheme == "https", True
    tls = port == 443
    return f"{'https' if tls else 'http'}://{ip}:{port}{DEVICE_PATH}", tls, False


def credentials_for(credentials: Mapping[str, tuple[str, str]], ip: str) -> tuple[str, str] | None:
    """The credentials of the most specific CIDR containing ``ip``, if any."""
    try:
        addr = ipaddress.IPv4Address(ip)
    except ValueError:
        return None
    best: tuple[int, tuple[str, str]] | None = None
    for cidr, pair in credentials.items():
        try:
            net = ipaddress.IPv4Network(cidr, strict=False)
        except ValueError:
            continue
        if addr in net and (best is None or net.prefixlen > best[0]):
            best = (net.prefixlen, pair)
    return best[1] if best else None


def _chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and len(out) < 10:
        out.append(cur)
        cur = cur.__cause__ or cur.__context__
    return out


def _reason(exc: BaseException) -> str:
    """A short account of what went wrong, from our own categories first."""
    chain = _chain(exc)
    for e in chain:
        if isinstance(e, ReplyError | ScopeError):
            return str(e)
    for e in chain:
        name = type(e).__name__
        if name == "Fault":
            subcodes = getattr(e, "subcodes", None) or []
            sub = " ".join(str(getattr(s, "localname", s)) for s in subcodes)
            return clean(f"fault: {sub} {getattr(e, 'message', '')}".replace("  ", " "), MAX_ERROR)
        if name == "TransportError":
            return f"HTTP {getattr(e, 'status_code', '?')}"
        if name in ("DTDForbidden", "EntitiesForbidden", "ExternalReferenceForbidden"):
            return f"forbidden XML construct ({name})"
        if name in ("XMLSyntaxError", "XMLParseError", "UnexpectedElementError"):
            return "unreadable SOAP reply"
        if isinstance(e, TimeoutError):
            return "timed out"
        if isinstance(e, OSError):
            return f"network error: {e.strerror or name}"
    return f"error: {type(chain[-1]).__name__}"


def _answered(exc: BaseException, transport: ScopedTransport) -> bool:
    """The device gave a readable refusal (SOAP fault or HTTP error), not silence or junk."""
    chain = _chain(exc)
    if any(isinstance(e, ReplyError | ScopeError) for e in chain):
        return False
    return any(type(e).__name__ == "Fault" for e in chain) or (transport.last_status or 0) >= 400


def _auth_refused(exc: BaseException, transport: ScopedTransport) -> bool:
    if any(isinstance(e, ReplyError | ScopeError) for e in _chain(exc)):
        return False
    if transport.last_status == 401:
        return True
    if transport.last_status in (400, 403, 500) and _AUTH_MARKERS.search(transport.last_body):
        return True
    for e in _chain(exc):
        if type(e).__name__ == "Fault":
            subs = " ".join(str(s) for s in getattr(e, "subcodes", None) or [])
            text = f"{subs} {getattr(e, 'message', '')}".encode(errors="replace")
            if _AUTH_MARKERS.search(text):
                return True
    return False


MIN_SCRUB = 4  # shorter secrets would mangle ordinary text; the device never sees them anyway


def _scrub(text: str, secrets: Sequence[str]) -> str:
    """Defence in depth: a device echoing a credential back must not get it stored."""
    for secret in secrets:
        if len(secret) >= MIN_SCRUB:
            text = text.replace(secret, "***")
    return text


def _device_time(reply: Any) -> datetime | None:
    utc = getattr(reply, "UTCDateTime", None)
    date, clock = getattr(utc, "Date", None), getattr(utc, "Time", None)
    if date is None or clock is None:
        return None
    try:
        return datetime(
            int(date.Year),
            int(date.Month),
            int(date.Day),
            int(clock.Hour),
            int(clock.Minute),
            int(clock.Second),
            tzinfo=UTC,
        )
    except (AttributeError, TypeError, ValueError, OverflowError):
        return None


def _first_mac(interfaces: Any) -> str | None:
    items = interfaces if isinstance(interfaces, list) else [interfaces]
    for nic in items[:16]:
        if nic is None or getattr(nic, "Enabled", True) is False:
            continue
        raw = getattr(getattr(nic, "Info", None), "HwAddress", None)
        if not raw:
            continue
        try:
            mac = normalise_mac(str(raw))
        except (ValueError, TypeError):
            continue
        if mac != "00:00:00:00:00:00" and not is_multicast(mac):
            return mac
    return None


def query(
    ctx: ProbeContext,
    ip: str,
    port: int,
    xaddr: str | None,
    credentials: tuple[str, str] | None,
) -> Observation:
    """Ask one device service for its clock, identity and MAC; never raises."""
    return _query(ctx, ip, port, xaddr, credentials, time.monotonic() + QUERY_DEADLINE_S)


def _query(
    ctx: ProbeContext,
    ip: str,
    port: int,
    xaddr: str | None,
    credentials: tuple[str, str] | None,
    deadline: float,
) -> Observation:
    seen_at = utcnow()
    # The password never leaves us in clear (PasswordDigest); the username does,
    # and a hostile device may echo it in a fault: scrub both from errors, and
    # the password from every attribute.
    password_only = [credentials[1]] if credentials else []
    secrets = list(credentials or ())
    url, tls, used = device_url(ip, port, xaddr)
    attrs: dict[str, str] = {"port": str(port), "xaddr": url}
    if xaddr and not used:
        attrs["xaddr_ignored"] = xaddr
    mac: str | None = None

    def done(error: str | None = None) -> Observation:
        safe = {k: _scrub(clean(v), password_only) for k, v in attrs.items()}
        return Observation(
            source=Source.ONVIF,
            ip=ip,
            seen_at=seen_at,
            mac=mac,
            attrs=safe,
            error=_scrub(clean(error, MAX_ERROR), secrets) if error else None,
        )

    try:
        ctx.check(ip)
    except ScopeError:
        return done("outside the scope: not queried")
    try:
        lib = _library()
    except ScannerError as exc:
        return done(str(exc))
    transport = ScopedTransport(ctx, ip, port, tls=tls, deadline=deadline)
    user, password = credentials if credentials else (None, None)
    try:
        from zeep import Client

        client = Client(
            wsdl=_document(),
            wsse=lib.Token(user, password, dt_diff=None, use_digest=True),
            transport=transport,
            settings=_safe_settings(),
        )
        service = lib.ONVIFService(
            url,
            user,
            password,
            str(lib.wsdl),
            encrypt=True,
            no_cache=True,
            binding_name=lib.binding,
            transport=transport,
            zeep_client=client,
        )
    except lib.ONVIFError as exc:
        return done(f"ONVIF client setup failed: {_reason(exc)}")
    token = service.zeep_client.wsse
    service.zeep_client.wsse = None  # PRE_AUTH first: no credentials on the wire

    skew: float | None = None
    try:
        when = _device_time(service.GetSystemDateAndTime())
        if when is None:
            attrs["time_error"] = "no UTCDateTime in the reply"
        else:
            skew = (when - datetime.now(UTC)).total_seconds()
            attrs["clock_skew_s"] = str(round(skew))
    except lib.ONVIFError as exc:
        if not _answered(exc, transport):  # silence, garbage or a bomb: ask nothing more
            return done(f"GetSystemDateAndTime: {_reason(exc)}")
        # e.g. a device that wants auth even here (Vivotek, agsh/onvif#301)
        attrs["time_error"] = "not authorized" if _auth_refused(exc, transport) else _reason(exc)

    if credentials:
        if skew is not None:
            token.dt_diff = timedelta(seconds=skew)  # adjust_time: Created in the device's clock
        service.zeep_client.wsse = token
    try:
        info = service.GetDeviceInformation()
    except lib.ONVIFError as exc:
        if _auth_refused(exc, transport):
            attrs["auth"] = "failed" if credentials else "required"
            _LOGGER.info("ONVIF %s:%d: GetDeviceInformation refused (%s)", ip, port, attrs["auth"])
            return done()  # one attempt only: nothing more is sent
        return done(f"GetDeviceInformation: {_reason(exc)}")
    attrs["auth"] = "ok" if credentials else "none"
    for name, key in (
        ("Manufacturer", ATTR_MANUFACTURER),
        ("Model", ATTR_MODEL),
        ("FirmwareVersion", ATTR_FIRMWARE),
        ("SerialNumber", ATTR_SERIAL),
        ("HardwareId", "hardware_id"),
    ):
        value = getattr(info, name, None)
        if value is not None and clean(value):
            attrs[key] = clean(value)

    try:
        mac = _first_mac(service.GetNetworkInterfaces())
        if mac:
            attrs[ATTR_MAC] = mac
    except lib.ONVIFError as exc:
        refused = _auth_refused(exc, transport)
        attrs["network_error"] = "not authorized" if refused else _reason(exc)
    return done()


def _safe_query(
    ctx: ProbeContext,
    ip: str,
    port: int,
    xaddr: str | None,
    credentials: tuple[str, str] | None,
    deadline_s: float,
) -> Observation:
    """``_query`` with its deadline starting when a worker picks the target up."""
    try:
        return _query(ctx, ip, port, xaddr, credentials, time.monotonic() + deadline_s)
    except Exception as exc:  # a bug must cost one observation, not the scan
        _LOGGER.error("ONVIF %s:%d: query failed: %s", ip, port, type(exc).__name__)
        return Observation(
            source=Source.ONVIF,
            ip=ip,
            seen_at=utcnow(),
            attrs={"port": str(port)},
            error=f"internal error: {type(exc).__name__}",
        )


def probe(
    ctx: ProbeContext,
    targets: Sequence[tuple[str, int, str | None]],
    *,
    workers: int = 8,
    deadline_s: float = 20.0,
) -> list[Observation]:
    """Query every (ip, port, xaddr) in parallel; each one is held to ``deadline_s``.

    Credentials come from ``ctx.credentials`` (most specific CIDR). Targets
    outside the scope are skipped.
    """
    todo: dict[tuple[str, int], str | None] = {}
    for ip, port, xaddr in targets:
        if not ctx.in_scope(ip):
            _LOGGER.info("ONVIF: %s is outside the scope; not queried", ip)
            continue
        todo.setdefault((ip, int(port)), xaddr)
    if not todo:
        return []
    with contextlib.suppress(ScannerError):
        _document()  # import and parse the WSDL once, before the threads
    workers = max(1, min(workers, len(todo)))
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="onvif")
    out: list[Observation] = []
    try:
        futures = {
            pool.submit(
                _safe_query,
                ctx,
                ip,
                port,
                xaddr,
                credentials_for(ctx.credentials, ip),
                deadline_s,
            ): (ip, port)
            for (ip, port), xaddr in todo.items()
        }
        # Every query ends by its own deadline; this outer bound guards against a bug.
        waves = math.ceil(len(todo) / workers)
        done, _ = wait(futures, timeout=waves * (deadline_s + 5.0) + 5.0)
        for fut, (ip, port) in futures.items():
            if fut in done:
                out.append(fut.result())
            else:
                out.append(
                    Observation(
                        source=Source.ONVIF,
                        ip=ip,
                        seen_at=utcnow(),
                        attrs={"port": str(port)},
                        error="deadline exceeded",
                    )
                )
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    return out
