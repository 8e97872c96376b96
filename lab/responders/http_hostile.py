"""``kind = "http_hostile"``: a TCP service that misbehaves on purpose.

For the scanner's deadline and size caps. Options:

  mode      "slowloris" (default): after the request head, an HTTP reply
            trickles out one byte every ``interval`` seconds and never ends;
            "endless": a 200 with no length whose HTML body never ends;
            "huge": a 200 with a Content-Length of 100 MB, and all 100 MB sent;
            "silent": accepts, reads, never says a word (also a stand-in for
            binary SDK ports such as Dahua's 37777, which wait to be spoken to
            in their own protocol);
            "garbage": answers the first bytes it gets with ``reply_hex`` (or
            a few binary bytes) and closes, as a non-HTTP port does
  server    Server header of the slowloris/endless reply
  interval  seconds between slowloris bytes (default 1.0)
  reply_hex the garbage reply, hex

Every hostile connection gives up after HOSTILE_SECONDS or HOSTILE_BYTES
(HUGE_BYTES for "huge"),
so a client that never reads cannot keep the responder busy for ever.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, ClassVar

from lab.responders.base import OptionError, OptionType, StreamResponder, register

MODES = ("slowloris", "endless", "huge", "silent", "garbage")
MAX_HEAD = 16 * 1024
HEAD_TIMEOUT = 30.0
HOSTILE_SECONDS = 300.0
HOSTILE_BYTES = 64 << 20
HUGE_BYTES = 100 << 20  # the "huge" reply's declared and delivered body
DEFAULT_GARBAGE = bytes.fromhex("00000010000000010000000000000000")


@register
class HostileHttpResponder(StreamResponder):
    kind = "http_hostile"
    options: ClassVar[Mapping[str, OptionType]] = {
        "mode": str,
        "server": str,
        "interval": (int, float),
        "reply_hex": str,
    }
    read_limit = MAX_HEAD

    @classmethod
    def check(cls, options: Mapping[str, Any]) -> None:
        super().check(options)
        if options.get("mode", "slowloris") not in MODES:
            raise OptionError("mode", f"must be one of {', '.join(MODES)}")
        interval = options.get("interval", 1.0)
        if not 0 < interval <= 60:
            raise OptionError("interval", "must be above 0 and at most 60 seconds")
        if "reply_hex" in options:
            try:
                bytes.fromhex(options["reply_hex"])
            except ValueError:
                raise OptionError("reply_hex", "not hex") from None
        server = options.get("server", "")
        if "\r" in server or "\n" in server:
            raise OptionError("server", "not a valid header value")

    def _head(self, extra: str = "") -> bytes:
        server = self.opts.get("server")
        lines = ["HTTP/1.1 200 OK"]
        if server:
            lines.append(f"Server: {server}")
        lines.append("Content-Type: text/html")
        return ("\r\n".join(lines) + "\r\n" + extra).encode("latin-1")

    async def _slowloris(self, writer: asyncio.StreamWriter) -> None:
        interval = float(self.opts.get("interval", 1.0))
        loop = asyncio.get_running_loop()
        end = loop.time() + HOSTILE_SECONDS
        data = self._head() + b"X-Padding: " + b"a" * 100_000
        for i in range(len(data)):
            if loop.time() > end:
                return
            writer.write(data[i : i + 1])
            await writer.drain()
            await asyncio.sleep(interval)

    async def _endless(self, writer: asyncio.StreamWriter) -> None:
        writer.write(self._head("\r\n<html><head><title>Endless</title></head><body>"))
        chunk = b"<p>" + b"A" * 4093 + b"</p>"
        loop = asyncio.get_running_loop()
        end = loop.time() + HOSTILE_SECONDS
        sent = 0
        while sent < HOSTILE_BYTES and loop.time() < end:
            writer.write(chunk * 4)
            sent += len(chunk) * 4
            await writer.drain()

    async def _huge(self, writer: asyncio.StreamWriter) -> None:
        writer.write(self._head(f"Content-Length: {HUGE_BYTES}\r\n\r\n"))
        await stream_bytes(writer, b"<html><head><title>Huge</title></head><body>", HUGE_BYTES)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        mode = self.opts.get("mode", "slowloris")
        if mode == "garbage":
            await asyncio.wait_for(reader.read(1024), HEAD_TIMEOUT)
            reply = bytes.fromhex(self.opts.get("reply_hex", DEFAULT_GARBAGE.hex()))
            writer.write(reply)
            await writer.drain()
            return
        if mode == "silent":
            # read whatever comes until the peer gives up (or we do)
            await asyncio.wait_for(self._drain_reader(reader), HOSTILE_SECONDS)
            return
        try:
            await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT)
        except (asyncio.LimitOverrunError, asyncio.IncompleteReadError):
            return
        if mode == "endless":
            await self._endless(writer)
        elif mode == "huge":
            await self._huge(writer)
        else:
            await self._slowloris(writer)

    @staticmethod
    async def _drain_reader(reader: asyncio.StreamReader) -> None:
        while await reader.read(4096):
            pass


async def stream_bytes(writer: asyncio.StreamWriter, first: bytes, total: int) -> None:
    """Send ``first`` then filler up to ``total`` bytes, as fast as the peer reads."""
    writer.write(first)
    chunk = b"A" * 65536
    loop = asyncio.get_running_loop()
    end = loop.time() + HOSTILE_SECONDS
    sent = len(first)
    while sent < total and loop.time() < end:
        piece = chunk[: total - sent]
        writer.write(piece)
        sent += len(piece)
        await writer.drain()
