"""Sending alert mail against a real aiosmtpd server on 127.0.0.1.

STARTTLS with login, implicit TLS, plain to a relay, refused logins, a dead
server and a silent one; the SmtpSink here is reused by the other alert tests.
"""

from __future__ import annotations

import email
import email.policy
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from scanner.alerts.compose import Text
from scanner.alerts.email import DeliveryError, SmtpSession, build_message, send_one
from scanner.alerts.settings import EmailSettings

USER, PASSWORD = "scanner", "correct horse battery staple"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.sink.refuse_data:
            return "451 4.3.0 try again later"
        raw = envelope.original_content or envelope.content
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        with self.sink.lock:
            self.sink.messages.append(msg)  # type: ignore[arg-type]
            self.sink.sessions.append(
                {"authenticated": session.authenticated, "tls": session.ssl is not None}
            )
        return "250 2.0.0 OK"


def _auth(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
    ok = (
        isinstance(data, LoginPassword)
        and data.login == USER.encode()
        and data.password == PASSWORD.encode()
    )
    return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd says 535


class SmtpSink:
    """A real SMTP server on loopback that keeps what it receives."""

    def __init__(self, port: int | None = None, **kwargs: Any) -> None:
        self.port = port or free_port()
        self.kwargs = kwargs
        self.messages: list[EmailMessage] = []
        self.sessions: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.refuse_data = False
        self.controller: Controller | None = None

    def start(self) -> SmtpSink:
        self.controller = Controller(
            _Handler(self), hostname="127.0.0.1", port=self.port, **self.kwargs
        )
        self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def settings(self, **kw: Any) -> EmailSettings:
        base: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": self.port,
            "security": "none",
            "from_addr": "scanner@force.example",
            "to": ("soc@force.example",),
            "timeout": 5.0,
        }
        base.update(kw)
        return EmailSettings(**base)

    def wait_for(self, n: int, timeout: float = 5.0) -> list[EmailMessage]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(self.messages) < n:
            time.sleep(0.02)
        return list(self.messages)


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    s = SmtpSink().start()
    yield s
    s.stop()


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (client verifies it as its CA)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    argv = "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1"
    argv += " -addext subjectAltName=IP:127.0.0.1"
    subprocess.run(
        [*argv.split(), "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True
    )
    return cert, key


def _server_ctx(tls_files: tuple[Path, Path]) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(*tls_files)
    return ctx


def _msg(settings: EmailSettings, subject: str = "[scanner] hello") -> EmailMessage:
    return build_message(
        settings, Text(subject, "plain body\n", "<p>html body</p>"), msg_id="<t-1@force.example>"
    )


def test_starttls_with_login(tls_files: tuple[Path, Path], tmp_path: Path) -> None:
    sink = SmtpSink(
        tls_context=_server_ctx(tls_files),
        require_starttls=True,
        authenticator=_auth,
        auth_required=True,
    ).start()
    try:
        pw = tmp_path / "smtp"
        pw.write_text(PASSWORD + "\n")
        s = sink.settings(
            security="starttls", username=USER, password_file=pw, ca_file=tls_files[0]
        )
        send_one(s, _msg(s))
        [m] = sink.wait_for(1)
        assert sink.sessions == [{"authenticated": True, "tls": True}]
        assert m["Subject"] == "[scanner] hello"
        # a wrong password is refused with the server's reason, never echoed
        pw.write_text("wrong\n")
        with pytest.raises(DeliveryError, match="login as 'scanner' refused: 535") as exc:
            send_one(s, _msg(s))
        assert "wrong" not in str(exc.value)
    finally:
        sink.stop()


def test_starttls_refuses_an_untrusted_certificate(tls_files: tuple[Path, Path]) -> None:
    sink = SmtpSink(tls_context=_server_ctx(tls_files), require_starttls=True).start()
    try:
        s = sink.settings(security="starttls")  # system CAs: self-signed is not trusted
        with pytest.raises(DeliveryError, match="certificate"):
            send_one(s, _msg(s))
        assert sink.messages == []
    finally:
        sink.stop()


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_implicit_tls(tls_files: tuple[Path, Path], tmp_path: Path) -> None:
    sink = SmtpSink(
        ssl_context=_server_ctx(tls_files),
        authenticator=_auth,
        auth_required=True,
        auth_require_tls=False,  # aiosmtpd cannot see implicit TLS; it is there
    ).start()
    try:
        pw = tmp_path / "smtp"
        pw.write_text(PASSWORD)
        s = sink.settings(security="ssl", username=USER, password_file=pw, ca_file=tls_files[0])
        send_one(s, _msg(s))
        assert len(sink.wait_for(1)) == 1
    finally:
        sink.stop()


def test_plain_relay_and_message_shape(sink: SmtpSink) -> None:
    s = sink.settings()
    send_one(s, _msg(s))
    [m] = sink.wait_for(1)
    assert m.get_content_type() == "multipart/alternative"
    parts = [p.get_content_type() for p in m.iter_parts()]
    assert parts == ["text/plain", "text/html"]
    assert m["Message-ID"] == "<t-1@force.example>"
    assert m["Auto-Submitted"] == "auto-generated"
    assert m["From"] == "scanner@force.example" and m["To"] == "soc@force.example"


def test_dead_server_fails_fast_with_a_reason() -> None:
    s = SmtpSink().settings(timeout=2.0)  # never started: nothing listens
    t0 = time.monotonic()
    with pytest.raises(DeliveryError, match="connection refused"):
        send_one(s, _msg(s))
    assert time.monotonic() - t0 < 2


def test_silent_server_times_out() -> None:
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)  # accepts the TCP connection, never says 220
        s = SmtpSink(port=srv.getsockname()[1]).settings(timeout=1.0)
        t0 = time.monotonic()
        with pytest.raises(DeliveryError, match="timed out"):
            send_one(s, _msg(s))
        assert time.monotonic() - t0 < 4


def test_refused_data_is_an_error_and_the_session_survives(sink: SmtpSink) -> None:
    s = sink.settings()
    with SmtpSession(s) as smtp:
        sink.refuse_data = True
        with pytest.raises(DeliveryError, match="451"):
            smtp.send(_msg(s))
        assert smtp.connected
        sink.refuse_data = False
        smtp.send(_msg(s))
    assert len(sink.wait_for(1)) == 1
