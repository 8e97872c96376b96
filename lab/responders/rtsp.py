"""``kind = "rtsp"``: a camera's RTSP server (RFC 2326), as far as banners go.

Answers OPTIONS with ``Public``, DESCRIBE with an SDP body, or with 401 and a
``WWW-Authenticate`` challenge when ``realm`` is set, and keeps the connection
for further requests, as cameras do. Anything that is not an ``RTSP/1.0``
request line ends the connection without a word (what camera RTSP servers do
with junk). Options (all optional):

  server        Server header ("Rtsp Server/3.0"); none if absent, as on Hikvision
  public        the Public header (default: the usual camera method list)
  realm         require auth for DESCRIBE: 401 with this realm
  auth          "digest" (default), "basic" or "both" (Digest then Basic, Hikvision)
  options_auth  true: OPTIONS needs auth too (some Dahua/Amcrest firmware)
  sdp           the SDP body of a 200 DESCRIBE (LF or CRLF lines)
  content_base  Content-Base of a 200 DESCRIBE (default rtsp://<local addr>:<port>/)
  mode          "normal" (default); "slowloris": the reply trickles out one byte
                every ``interval`` seconds and never ends; "endless": a 200 whose
                body never ends; "huge": a 200 DESCRIBE declaring, and sending,
                a 100 MB body; "malformed": a broken status line and header bytes
                that are not text, then the connection closes
  interval      seconds between slowloris bytes (default 1.0)
"""

from __future__ import annotations

import asyncio
import email.utils
import secrets
from collections.abc import Mapping
from typing import Any, ClassVar

from lab.responders.base import OptionError, OptionType, StreamResponder, register
from lab.responders.http_hostile import HUGE_BYTES, stream_bytes

MAX_HEAD = 16 * 1024
HEAD_TIMEOUT = 30.0
MAX_REQUESTS = 32  # per connection
MAX_BODY = 64 * 1024
HOSTILE_SECONDS = 300.0  # a hostile reply gives up after this long
HOSTILE_BYTES = 64 << 20  # ... or after this much
MODES = ("normal", "slowloris", "endless", "huge", "malformed")
AUTHS = ("digest", "basic", "both")
DEFAULT_PUBLIC = "OPTIONS, DESCRIBE, SETUP, PLAY, PAUSE, TEARDOWN, SET_PARAMETER, GET_PARAMETER"
DEFAULT_SDP = (
    "v=0\r\no=- 0 0 IN IP4 0.0.0.0\r\ns=Media Presentation\r\nt=0 0\r\n"
    "m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=control:trackID=1\r\n"
)
REASONS = {200: "OK", 401: "Unauthorized", 405: "Method Not Allowed", 454: "Session Not Found"}


@register
class RtspResponder(StreamResponder):
    kind = "rtsp"
    options: ClassVar[Mapping[str, OptionType]] = {
        "server": str,
        "public": str,
        "realm": str,
        "auth": str,
        "options_auth": bool,
        "sdp": str,
        "content_base": str,
        "mode": str,
        "interval": (int, float),
    }
    read_limit = MAX_HEAD

    @classmethod
    def check(cls, options: Mapping[str, Any]) -> None:
        super().check(options)
        if options.get("mode", "normal") not in MODES:
            raise OptionError("mode", f"must be one of {', '.join(MODES)}")
        if options.get("auth", "digest") not in AUTHS:
            raise OptionError("auth", f"must be one of {', '.join(AUTHS)}")
        if options.get("options_auth") and "realm" not in options:
            raise OptionError("options_auth", "needs a realm")
        interval = options.get("interval", 1.0)
        if not 0 < interval <= 60:
            raise OptionError("interval", "must be above 0 and at most 60 seconds")
        for key in ("server", "public", "realm", "content_base"):
            value = options.get(key, "")
            if "\r" in value or "\n" in value or ('"' in value and key == "realm"):
                raise OptionError(key, "not a valid header value")

    # ------------------------------------------------------------ replies

    def _challenge(self) -> list[tuple[str, str]]:
        realm = self.opts["realm"]
        auth = self.opts.get("auth", "digest")
        out = []
        if auth in ("digest", "both"):
            nonce = secrets.token_hex(16)
            out.append(
                ("WWW-Authenticate", f'Digest realm="{realm}", nonce="{nonce}", stale="FALSE"')
            )
        if auth in ("basic", "both"):
            out.append(("WWW-Authenticate", f'Basic realm="{realm}"'))
        return out

    def reply(
        self,
        status: int,
        cseq: str,
        fields: list[tuple[str, str]] | None = None,
        body: bytes = b"",
    ) -> bytes:
        lines = [f"RTSP/1.0 {status} {REASONS.get(status, 'Error')}", f"CSeq: {cseq}"]
        for name, value in fields or []:
            lines.append(f"{name}: {value}")
        if "server" in self.opts:
            lines.append(f"Server: {self.opts['server']}")
        lines.append(f"Date: {email.utils.formatdate(usegmt=True)}")
        if body:
            lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body

    def answer(self, method: str, cseq: str, local: str) -> bytes:
        realm = self.opts.get("realm")
        if method == "OPTIONS":
            if realm and self.opts.get("options_auth"):
                return self.reply(401, cseq, self._challenge())
            return self.reply(200, cseq, [("Public", self.opts.get("public", DEFAULT_PUBLIC))])
        if realm:  # every other method wants credentials first
            return self.reply(401, cseq, self._challenge())
        if method == "DESCRIBE":
            sdp = self.opts.get("sdp", DEFAULT_SDP).replace("\r\n", "\n").replace("\n", "\r\n")
            base = self.opts.get("content_base", f"rtsp://{local}:{self.port}/")
            return self.reply(
                200,
                cseq,
                [("Content-Type", "application/sdp"), ("Content-Base", base)],
                sdp.encode(),
            )
        if method in ("PLAY", "PAUSE", "TEARDOWN", "GET_PARAMETER", "SET_PARAMETER"):
            return self.reply(454, cseq)
        return self.reply(405, cseq, [("Allow", self.opts.get("public", DEFAULT_PUBLIC))])

    # ------------------------------------------------------ hostile modes

    async def _trickle(self, writer: asyncio.StreamWriter, first: bytes) -> None:
        interval = float(self.opts.get("interval", 1.0))
        loop = asyncio.get_running_loop()
        end = loop.time() + HOSTILE_SECONDS
        data = first + b"X-Padding: " + b"a" * 100_000
        for i in range(len(data)):
            if loop.time() > end:
                return
            writer.write(data[i : i + 1])
            await writer.drain()
            await asyncio.sleep(interval)

    async def _endless(self, writer: asyncio.StreamWriter, cseq: str) -> None:
        head = (
            f"RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\nContent-Type: application/sdp\r\n"
            "Content-Length: 999999999999\r\n\r\nv=0\r\ns=Endless\r\n"
        ).encode()
        writer.write(head)
        chunk = b"a=x-padding:" + b"z" * 1000 + b"\r\n"
        loop = asyncio.get_running_loop()
        end = loop.time() + HOSTILE_SECONDS
        sent = 0
        while sent < HOSTILE_BYTES and loop.time() < end:
            writer.write(chunk * 16)
            sent += len(chunk) * 16
            await writer.drain()

    async def _malformed(self, writer: asyncio.StreamWriter, cseq: str) -> None:
        writer.write(
            b"RTSP/1.0 2OO 0K\r\nCSeq: " + cseq.encode("latin-1") + b"\r\n"
            b'Server: \xff\xfe\x00broken\x80\r\nWWW-Authenticate: Digest realm="unterminated\r\n'
            b"Content-Length: -5\r\n\r\n\x00\x01\x02"
        )
        await writer.drain()

    # ------------------------------------------------------------- serve

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sockname = writer.get_extra_info("sockname")
        local = sockname[0] if sockname else "0.0.0.0"
        mode = self.opts.get("mode", "normal")
        for _ in range(MAX_REQUESTS):
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT)
            except (asyncio.LimitOverrunError, asyncio.IncompleteReadError):
                return
            lines = head.decode("latin-1").split("\r\n")
            parts = lines[0].split()
            if len(parts) != 3 or parts[2] != "RTSP/1.0" or not parts[1].startswith("rtsp://"):
                return  # not RTSP: drop it, as cameras do
            fields = {}
            for line in lines[1:]:
                name, sep, value = line.partition(":")
                if sep:
                    fields[name.strip().lower()] = value.strip()
            cseq = fields.get("cseq", "0")
            length = fields.get("content-length", "0")
            if length.isdigit() and 0 < int(length) <= MAX_BODY:
                await reader.readexactly(int(length))
            method = parts[0].upper()
            if mode == "slowloris":
                await self._trickle(writer, f"RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\n".encode())
                return
            if mode == "endless":
                await self._endless(writer, cseq)
                return
            if mode == "huge":
                huge = (
                    f"RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\nContent-Type: application/sdp\r\n"
                    f"Content-Length: {HUGE_BYTES}\r\n\r\n"
                ).encode()
                await stream_bytes(writer, huge, len(huge) + HUGE_BYTES)
                return
            if mode == "malformed":
                await self._malformed(writer, cseq)
                return
            writer.write(self.answer(method, cseq, local))
            await writer.drain()
