"""RTSP banners (RFC 2326): OPTIONS then DESCRIBE, without credentials.

On one connection: `OPTIONS rtsp://ip:port/ RTSP/1.0` (CSeq 1), then
`DESCRIBE rtsp://ip:port/` (CSeq 2, Accept: application/sdp). Nothing else:
no SETUP/PLAY, no guessed stream paths, no credentials. What cameras say:

  Dahua      Server: Rtsp Server/3.0 (openhab ipcamera handler comments);
             recog knows "Dahua Rtsp Server"; 401 realm "Login to <serial>"
             (scottlamb/retina#62)
  Hikvision  no Server header; 401 realm "IP Camera(C2189)", Basic and Digest
             (frigate#9006, mpromonet/webrtc-streamer#138); SDP
             "s=Media Presentation", "a=Media_header:MEDIAINFO=494D4B48..." (IMKH)
  Axis       Server: GStreamer RTSP server; 401 realm "AXIS_<serial>"; SDP
             "s=Session streamed with GStreamer", "a=tool:GStreamer" (HA core#122159)
  Hanwha     401 realm "iPOLiS"; SDP "i=samsung" (Ullaakut/cameradar#199)
  Reolink    live555: "a=tool:LIVE555 Streaming Media v2013.04.08" (scottlamb/retina#17)

Observation attrs (source=Source.RTSP): port, scheme ("rtsp"), open, status
(of OPTIONS), describe_status, server, public (the Public methods), realm,
auth_scheme, sdp_session (s=), sdp_info (i=), sdp_tool (a=tool:),
sdp_media_header (start of a=Media_header), rtsp_url (Content-Base without
credentials), serial/mac (from Dahua and Axis realms), vendor_hint, raw
(hex of an unreadable reply). `error` as in scanner.probe.http.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit, urlunsplit

from scanner import __version__
from scanner.discovery.base import ProbeContext
from scanner.errors import ParseError
from scanner.model import Observation, Source, utcnow
from scanner.probe import (
    BudgetExhausted,
    Headers,
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
    vendor_hints,
)

RTSP_REQUESTS = 2  # OPTIONS and DESCRIBE
USER_AGENT = f"scanner/{__version__} (camera inventory; read-only)"


@dataclass(frozen=True, slots=True)
class RtspReply:
    version: str
    status: int
    reason: str
    headers: Headers
    body: bytes
    complete: bool = True


def parse_response(data: bytes) -> RtspReply:
    """Bytes of one RTSP response to an RtspReply; ParseError if it is not RTSP."""
    msg = parse_message(data, b"RTSP")
    return RtspReply(
        version=msg.version,
        status=msg.status,
        reason=msg.reason,
        headers=msg.headers,
        body=msg.body,
        complete=msg.complete,
    )


def parse_sdp(body: bytes) -> dict[str, str]:
    """The self-describing lines of an SDP body (RFC 8866): s=, i=, a=tool:."""
    out: dict[str, str] = {}
    for raw in decode(body[:65536]).splitlines()[:2000]:
        line = raw.strip()
        if line.startswith("s=") and "sdp_session" not in out:
            value = line[2:].strip()
            if value and value != "-":
                out["sdp_session"] = clip(value)
        elif line.startswith("i=") and "sdp_info" not in out:
            if line[2:].strip():
                out["sdp_info"] = clip(line[2:].strip())
        elif line.startswith("a=tool:") and "sdp_tool" not in out:
            out["sdp_tool"] = clip(line[7:].strip())
        elif line.startswith("a=Media_header:") and "sdp_media_header" not in out:
            out["sdp_media_header"] = clip(line[15:].strip(), 48)
    return out


_SDP_HINTS = (
    ("MEDIAINFO=494D4B48", "hikvision"),  # "IMKH", the Hikvision media header magic
    ("HIK Media Server", "hikvision"),  # bluenviron/mediamtx#2908 relaying a Hik NVR
    ("samsung", "hanwha"),
)


def _without_credentials(url: str) -> str:
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
    except ValueError:
        return clip(url)
    return clip(urlunsplit((parts.scheme, netloc, parts.path, parts.query, "")))


def observe(
    ip: str,
    port: int,
    options: RtspReply | None,
    describe: RtspReply | None,
    seen_at: datetime,
    *,
    error: str | None = None,
) -> Observation:
    """What the OPTIONS and DESCRIBE replies say about the device; pure."""
    attrs: dict[str, str] = {"port": str(port), "scheme": "rtsp", "open": "true"}
    if options is not None:
        attrs["status"] = str(options.status)
        public = options.headers.get("Public")
        if public:
            attrs["public"] = clip(" ".join(m.strip() for m in public.split(",") if m.strip()))
    if describe is not None:
        attrs["describe_status"] = str(describe.status)
    replies = [r for r in (options, describe) if r is not None]
    for reply in replies:
        server = reply.headers.get("Server")
        if server and "server" not in attrs:
            attrs["server"] = clip(server)
        for key, value in auth_attrs(reply.headers).items():
            if key == "vendor_hint":
                attrs[key] = merge_hints(attrs.get(key), value)
            else:
                attrs.setdefault(key, value)
    if describe is not None and describe.status == 200:
        attrs.update(parse_sdp(describe.body))
        base = describe.headers.get("Content-Base") or describe.headers.get("Content-Location")
        if base:
            attrs["rtsp_url"] = _without_credentials(base)
    hints = vendor_hints(server=attrs.get("server"), realm=attrs.get("realm"))
    sdp_text = " ".join(attrs.get(k, "") for k in ("sdp_session", "sdp_info", "sdp_media_header"))
    hints += [family for needle, family in _SDP_HINTS if needle.lower() in sdp_text.lower()]
    hint = merge_hints(attrs.get("vendor_hint"), " ".join(hints))
    if hint:
        attrs["vendor_hint"] = hint
    incomplete = any(not r.complete for r in replies)
    return Observation(
        source=Source.RTSP,
        ip=ip,
        seen_at=seen_at,
        attrs=attrs,
        error=error or ("truncated" if incomplete else None),
    )


def request(method: str, ip: str, port: int, cseq: int) -> bytes:
    lines = [f"{method} rtsp://{ip}:{port}/ RTSP/1.0", f"CSeq: {cseq}", f"User-Agent: {USER_AGENT}"]
    if method == "DESCRIBE":
        lines.append("Accept: application/sdp")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


def _rtsp_done(data: bytes) -> bool:
    if not data.lstrip().startswith(b"RTSP/") and len(data) >= 8:
        return True  # not RTSP: stop reading, we will not understand more of it
    return message_length(data, eof_delimited=False) is not None


def _exchange(
    ctx: ProbeContext, sock: socket.socket, data: bytes, deadline: float, prefix: bytes
) -> tuple[bytes, bytes, str | None]:
    """Send one request, read one reply; (reply bytes, leftover, stop reason)."""
    send(sock, data, deadline)
    first = first_line_by(ctx, deadline)
    raw, why = receive(sock, deadline, _rtsp_done, prefix=prefix, first_line=first)
    length = message_length(raw, eof_delimited=False)
    if length is None:
        return raw, b"", why
    return raw[:length], raw[length:], why


def _failure(ip: str, port: int, raw: bytes, error: str) -> Observation:
    attrs = {"port": str(port), "scheme": "rtsp", "open": "true"}
    if raw:
        attrs["raw"] = preview(raw)
    else:
        attrs["silent"] = "true"
    return Observation(source=Source.RTSP, ip=ip, seen_at=utcnow(), attrs=attrs, error=error)


def probe(ctx: ProbeContext, ip: str, port: int) -> Observation | None:
    """OPTIONS and DESCRIBE on one port; None if closed. BudgetExhausted passes through."""
    try:
        sock = connect(ctx, ip, port, requests=RTSP_REQUESTS)
    except BudgetExhausted:
        raise
    except OSError:
        return None
    deadline = deadline_for(ctx)
    try:
        try:
            raw, rest, why = _exchange(ctx, sock, request("OPTIONS", ip, port, 1), deadline, b"")
        except OSError as exc:
            return _failure(ip, port, b"", f"send: {type(exc).__name__}")
        try:
            options = parse_response(raw)
        except ParseError:
            start = raw.lstrip()[:5]
            if raw and why and (b"RTSP/".startswith(start) or start == b"RTSP/"):
                return _failure(ip, port, raw, why)  # RTSP, just too slow or too long
            return _failure(ip, port, raw, f"not rtsp: {why}" if why else "not rtsp")
        describe: RtspReply | None = None
        error = why
        if why is None:  # a slow or cut-off OPTIONS answer gets no second request
            try:
                raw2, _rest, why2 = _exchange(
                    ctx, sock, request("DESCRIBE", ip, port, 2), deadline, rest
                )
                describe = parse_response(raw2) if raw2 else None
                error = why2
            except OSError as exc:
                error = f"send: {type(exc).__name__}"
            except ParseError:
                error = "describe: not rtsp"
        return observe(ip, port, options, describe, utcnow(), error=error)
    finally:
        close(sock)
