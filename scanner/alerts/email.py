"""Alert mails: EmailMessage building and smtplib sending.

STARTTLS (587), implicit TLS (465) or plain SMTP to a trusted relay (25);
login only over TLS (settings refuse the rest), the server's certificate
always verified (system CAs, or `ca_file` for an internal CA), every socket
operation under `timeout`. Message-IDs derive from the outbox row, so a
resend after a crash mid-send carries the same ID and can be recognised.
"""

from __future__ import annotations

import logging
import os
import smtplib
import socket
import ssl
from collections.abc import Mapping
from email.message import EmailMessage
from email.utils import formatdate
from types import TracebackType
from typing import Any

from scanner.alerts.compose import Text, clean, document
from scanner.alerts.settings import EmailSettings
from scanner.errors import ScannerError

_LOGGER = logging.getLogger(__name__)


class DeliveryError(ScannerError):
    """The mail server could not be reached or refused the mail; the outbox keeps it."""

    exit_code = os.EX_TEMPFAIL


def message_id(alert_id: int, created_at: str, domain: str) -> str:
    """The same ID for every attempt at one outbox row."""
    stamp = "".join(ch for ch in created_at if ch.isalnum())
    return f"<scanner-alert-{alert_id}-{stamp}@{domain}>"


def build_message(
    settings: EmailSettings,
    text: Text,
    *,
    msg_id: str,
    headers: Mapping[str, str] | None = None,
) -> EmailMessage:
    """A multipart/alternative mail: plain text first, the escaped HTML second."""
    msg = EmailMessage()
    msg["Subject"] = clean(text.subject, 200)
    msg["From"] = settings.from_addr
    msg["To"] = ", ".join(settings.to)
    msg["Date"] = formatdate(usegmt=True)
    msg["Message-ID"] = msg_id
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to this
    for name, value in (headers or {}).items():
        msg[name] = clean(value, 200)
    msg.set_content(text.body)
    if text.html:
        msg.add_alternative(document(msg["Subject"], text.html), subtype="html")
    return msg


def message_for_row(settings: EmailSettings, row: Mapping[str, Any]) -> EmailMessage:
    """The mail for one outbox row; a retry after a lost claim says it may be a repeat."""
    headers = {"X-Scanner-Alert": f"{row['id']} {row['kind']}"}
    if int(row.get("attempts") or 0) > 1:
        headers["X-Scanner-Attempt"] = str(row["attempts"])
    return build_message(
        settings,
        Text(str(row["subject"]), str(row["body"]), str(row.get("html") or "")),
        msg_id=message_id(int(row["id"]), str(row["created_at"]), settings.domain),
        headers=headers,
    )


def _tls_context(settings: EmailSettings) -> ssl.SSLContext:
    cafile = str(settings.ca_file) if settings.ca_file else None
    try:
        return ssl.create_default_context(cafile=cafile)
    except (OSError, ssl.SSLError) as exc:
        raise DeliveryError(f"{settings.ca_file}: cannot load CA file: {exc}") from None


class SmtpSession:
    """One SMTP connection: connect, secure, log in; send several; quit."""

    def __init__(self, settings: EmailSettings) -> None:
        self.settings = settings
        self._smtp: smtplib.SMTP | None = None

    def __enter__(self) -> SmtpSession:
        s = self.settings
        password = s.read_password()  # ConfigError: unreadable credential
        where = f"{s.host}:{s.port}"
        # an explicit EHLO name: smtplib's default getfqdn() can stall on DNS
        local = socket.gethostname() or "localhost"
        try:
            if s.security == "ssl":
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                    s.host, s.port, timeout=s.timeout, context=_tls_context(s), local_hostname=local
                )
            else:
                smtp = smtplib.SMTP(s.host, s.port, timeout=s.timeout, local_hostname=local)
            self._smtp = smtp
            smtp.ehlo()
            if s.security == "starttls":
                if not smtp.has_extn("starttls"):
                    raise DeliveryError(f"{where}: server does not offer STARTTLS")
                smtp.starttls(context=_tls_context(s))
                smtp.ehlo()
            if s.username and password is not None:
                _login(smtp, s.username, password)
        except DeliveryError:
            self.close()
            raise
        except smtplib.SMTPAuthenticationError as exc:
            self.close()
            why = _reply(exc)
            raise DeliveryError(f"{where}: login as {s.username!r} refused: {why}") from None
        except (smtplib.SMTPException, OSError) as exc:
            self.close()
            raise DeliveryError(f"{where}: {_describe(exc)}") from None
        return self

    def send(self, msg: EmailMessage) -> None:
        """Hand one mail over; returns once the server accepted it for someone."""
        if self._smtp is None:
            raise DeliveryError("not connected")
        try:
            refused = self._smtp.send_message(msg)
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(
                f"{self.settings.host}:{self.settings.port}: {_describe(exc)}"
            ) from None
        if refused:  # accepted for the others: it is sent; say who missed out
            _LOGGER.warning("mail %s refused for %s", msg["Message-ID"], ", ".join(sorted(refused)))

    @property
    def connected(self) -> bool:
        """Still talking to the server (a refused mail does not end the session)."""
        if self._smtp is None:
            return False
        try:
            return self._smtp.noop()[0] == 250
        except (smtplib.SMTPException, OSError):
            return False

    def close(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is None:
            return
        try:
            smtp.quit()
        except (smtplib.SMTPException, OSError):
            smtp.close()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _login(smtp: smtplib.SMTP, username: str, password: str) -> None:
    """AUTH PLAIN when offered (one round trip, one clear answer), else smtplib's choice.

    smtplib.login() moves on to the next mechanism after a refusal, which
    turns a wrong password into a hang on some servers instead of a 535.
    """
    mechanisms = smtp.esmtp_features.get("auth", "").upper().split()
    if "PLAIN" not in mechanisms:
        smtp.login(username, password)
        return
    smtp.user, smtp.password = username, password
    smtp.auth("PLAIN", smtp.auth_plain)


def _reply(exc: smtplib.SMTPResponseException) -> str:
    msg = exc.smtp_error
    text = msg.decode("utf-8", "replace") if isinstance(msg, bytes) else str(msg)
    return f"{exc.smtp_code} {clean(text, 200)}"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return "every recipient refused: " + ", ".join(sorted(exc.recipients))
    if isinstance(exc, smtplib.SMTPResponseException):
        return _reply(exc)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate not trusted: {exc.verify_message}"
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return clean(f"{type(exc).__name__}: {exc}", 200)


def send_one(settings: EmailSettings, msg: EmailMessage) -> None:
    """Connect, send one mail, quit; DeliveryError with the reason otherwise."""
    with SmtpSession(settings) as session:
        session.send(msg)
