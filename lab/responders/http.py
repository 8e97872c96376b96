"""``kind = "http"``: a web server with a fixed answer, as camera logins are.

Options (all optional):
  status = 200, reason = "OK", server = "App-webs/" (the Server header; none if
  absent), content_type = "text/html", headers = {Name = "value"}, body = "...",
  paths = {"/exact/path" = {status, reason, content_type, headers, body}}
A path entry overrides the top-level answer for that exact path (query
ignored); keys it leaves out, and headers it does not name, come from the
top level. Every other path gets the top-level answer.
"""

from __future__ import annotations

import asyncio
import email.utils
import http
from collections.abc import Mapping
from typing import Any, ClassVar

from lab.responders.base import OptionError, OptionType, StreamResponder, check_type, register

MAX_HEAD = 16 * 1024  # request head cap; beyond it we answer 431 and close
HEAD_TIMEOUT = 10.0

_RESPONSE_OPTIONS: dict[str, OptionType] = {
    "status": int,
    "reason": str,
    "content_type": str,
    "headers": dict,
    "body": str,
}


def _check_response(opts: Mapping[str, Any], where: str) -> None:
    status = opts.get("status", 200)
    if not 100 <= status <= 999:
        raise OptionError(f"{where}status", f"{status} is not an HTTP status code")
    for name, value in opts.get("headers", {}).items():
        if not isinstance(value, str):
            raise OptionError(f"{where}headers.{name}", "header values must be strings")
        if not name or any(c in name for c in ":\r\n ") or "\r" in value or "\n" in value:
            raise OptionError(f"{where}headers.{name}", "not a valid header line")


@register
class HttpResponder(StreamResponder):
    kind = "http"
    options: ClassVar[Mapping[str, OptionType]] = {
        **_RESPONSE_OPTIONS,
        "server": str,
        "paths": dict,
    }
    read_limit = MAX_HEAD

    @classmethod
    def check(cls, options: Mapping[str, Any]) -> None:
        super().check(options)
        _check_response(options, "")
        for path, sub in options.get("paths", {}).items():
            where = f"paths.{path!r}."
            if not path.startswith("/"):
                raise OptionError(f"paths.{path!r}", "paths must start with /")
            if not isinstance(sub, Mapping):
                raise OptionError(f"paths.{path!r}", "must be a table")
            for key, value in sub.items():
                if key not in _RESPONSE_OPTIONS:
                    raise OptionError(f"{where}{key}", "unknown option for a path")
                check_type(f"{where}{key}", value, _RESPONSE_OPTIONS[key])
            _check_response(sub, where)

    def response(self, method: str, target: str) -> bytes:
        path = target.split("?", 1)[0].split("#", 1)[0]
        override = self.opts.get("paths", {}).get(path, {})
        headers = {**self.opts.get("headers", {}), **override.get("headers", {})}
        opts: dict[str, Any] = {**self.opts, **override, "headers": headers}
        return build_response(
            status=opts.get("status", 200),
            reason=opts.get("reason"),
            server=self.opts.get("server"),
            content_type=opts.get("content_type", "text/html"),
            headers=opts.get("headers", {}),
            body=opts.get("body", "").encode(),
            head_only=method == "HEAD",
        )

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT)
        except asyncio.LimitOverrunError:
            writer.write(build_response(status=431, server=self.opts.get("server")))
            await writer.drain()
            return
        request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = request_line.split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            writer.write(build_response(status=400, server=self.opts.get("server")))
        else:
            writer.write(self.response(parts[0].upper(), parts[1]))
        await writer.drain()


def build_response(
    *,
    status: int,
    reason: str | None = None,
    server: str | None = None,
    content_type: str = "text/html",
    headers: Mapping[str, str] | None = None,
    body: bytes = b"",
    head_only: bool = False,
) -> bytes:
    """A complete HTTP/1.1 response; ``headers`` replace defaults of the same name."""
    if reason is None:
        try:
            reason = http.HTTPStatus(status).phrase
        except ValueError:
            reason = "Unknown"
    fields: dict[str, tuple[str, str]] = {}  # lower name -> (name, value)

    def put(name: str, value: str) -> None:
        fields[name.lower()] = (name, value)

    if server is not None:
        put("Server", server)
    put("Date", email.utils.formatdate(usegmt=True))
    if body or content_type != "text/html":
        put("Content-Type", content_type)
    put("Content-Length", str(len(body)))
    put("Connection", "close")
    for name, value in (headers or {}).items():
        put(name, value)
    lines = [f"HTTP/1.1 {status} {reason}"] + [f"{n}: {v}" for n, v in fields.values()]
    out = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return out if head_only else out + body
