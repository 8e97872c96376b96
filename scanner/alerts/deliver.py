"""Outbox delivery: pick due mails, send them, mark each sent once accepted.

Each mail is claimed (status 'sending', a lease in next_attempt_at) in its
own small transaction before the SMTP conversation and marked 'sent' only
after the server accepted it, so two senders never send one row and a crash
mid-send leaves it to be retried when the lease runs out (same Message-ID).
A failure puts it back to 'pending' with an exponential back-off: 1, 2, 4 …
minutes, at most an hour; nothing is ever dropped.

Storm brake: at most `max_per_hour` mails an hour. When more are due, the
surplus goes out as one "k alerts suppressed" mail listing them all, which
still carries every alert exactly once.
"""

from __future__ import annotations

import logging
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from scanner.alerts.compose import hello_text, overflow_text
from scanner.alerts.email import DeliveryError, SmtpSession, build_message, message_for_row
from scanner.alerts.outbox import bundle, make_digest, record_connection_findings
from scanner.alerts.settings import EmailSettings
from scanner.errors import ConfigError, ScannerError
from scanner.model import iso, utcnow
from scanner.store import Store

_LOGGER = logging.getLogger(__name__)

BACKOFF_FIRST_SECONDS = 60
BACKOFF_MAX_SECONDS = 3600
CAP_WINDOW = timedelta(hours=1)
_lock = threading.Lock()  # one delivery at a time in this process
_state = {"error": ""}  # last delivery error, to log transitions, not repetitions


@dataclass(slots=True)
class DeliveryResult:
    sent: int = 0
    failed: int = 0
    waiting: int = 0  # still in the outbox after this run
    error: str | None = None


def backoff(attempts: int) -> timedelta:
    """Delay before the next try after `attempts` failed ones."""
    return timedelta(
        seconds=min(BACKOFF_FIRST_SECONDS * 2 ** max(attempts - 1, 0), BACKOFF_MAX_SECONDS)
    )


def _lease(settings: EmailSettings) -> timedelta:
    """How long a claim holds: a whole SMTP conversation, with room to spare."""
    return timedelta(seconds=settings.timeout * 6 + 60)


def _cap(store: Store, settings: EmailSettings, now: datetime) -> list[dict[str, Any]]:
    """The due mails, with any surplus over the hourly cap folded into one."""
    t = iso(now)
    due = store.due_alerts(t)
    budget = settings.max_per_hour - store.mails_sent_since(iso(now - CAP_WINDOW))
    if len(due) <= budget:
        return due
    if budget <= 0:  # the overflow mail already said so
        _LOGGER.debug(
            "hourly cap of %d mails reached: %d wait for the next hour",
            settings.max_per_hour,
            len(due),
        )
        return []
    # rows already claimed once keep their place; the newest pending ones fold
    keep = budget - 1
    fold = [r for r in due if r["status"] == "pending"][-(len(due) - keep) :]
    if len(fold) < 2:
        return due[:budget]
    text = overflow_text(fold, settings.max_per_hour)
    bundle(store, [int(r["id"]) for r in fold], "overflow", text, t, from_status="pending")
    _LOGGER.warning(
        "hourly cap of %d mails: %d alerts suppressed into one mail",
        settings.max_per_hour,
        len(fold),
    )
    return store.due_alerts(t)[:budget]


def _log_error(error: str, waiting: int) -> None:
    if error != _state["error"]:
        _LOGGER.warning("alert mail not sent (%d wait in the outbox): %s", waiting, error)
    else:
        _LOGGER.debug("alert mail still not sent: %s", error)
    _state["error"] = error


def process_outbox(
    store: Store,
    settings: EmailSettings,
    now: datetime | None = None,
    *,
    session: Callable[[EmailSettings], SmtpSession] = SmtpSession,
) -> DeliveryResult:
    """Make a digest if one is due, then send every due mail within the cap."""
    with _lock:
        now = now or utcnow()
        t = iso(now)
        make_digest(store, settings, t)
        due = _cap(store, settings, now)
        result = DeliveryResult()
        if due:
            smtp = session(settings)
            try:
                smtp.__enter__()  # connect, TLS, login
            except (DeliveryError, ConfigError) as exc:
                for row in due:
                    tries = int(row["attempts"]) + 1
                    store.alert_failed(
                        int(row["id"]), str(exc), iso(now + backoff(tries)), count_attempt=True
                    )
                result.failed, result.error = len(due), str(exc)
            else:
                try:
                    _send_all(store, settings, smtp, due, now, result)
                finally:
                    smtp.close()
        result.waiting = len(store.alerts(status="pending")) + len(store.alerts(status="sending"))
        if result.error:
            _log_error(result.error, result.waiting)
        elif result.sent:
            if _state["error"]:
                _LOGGER.info("alert mail delivery works again")
            _state["error"] = ""
            _LOGGER.info("sent %d alert mails", result.sent)
        return result


def _send_all(
    store: Store,
    settings: EmailSettings,
    smtp: SmtpSession,
    due: list[dict[str, Any]],
    now: datetime,
    result: DeliveryResult,
) -> None:
    t = iso(now)
    for row in due:
        alert_id = int(row["id"])
        if not store.claim_alert(alert_id, t, iso(now + _lease(settings))):
            continue  # another sender has it
        row = {**row, "attempts": int(row["attempts"]) + 1}
        try:
            smtp.send(message_for_row(settings, row))
        except DeliveryError as exc:
            store.alert_failed(alert_id, str(exc), iso(now + backoff(row["attempts"])))
            result.failed += 1
            result.error = str(exc)
            if not smtp.connected:
                break  # the rest keep their place; next run reconnects
            continue
        store.alert_sent(alert_id, t)
        result.sent += 1


def flush(store: Store, settings: EmailSettings, now: datetime | None = None) -> DeliveryResult:
    """Send everything waiting now: back-offs dropped, digest made early."""
    store.retry_alerts_now()
    make_digest(store, settings, iso(now or utcnow()), force=True)
    return process_outbox(store, settings, now)


def after_scan(db: Path, settings: EmailSettings | None) -> DeliveryResult | None:
    """New connection findings, then delivery; never raises: the scan's result stands."""
    try:
        with Store.open(db) as store:
            record_connection_findings(store, settings, iso(utcnow()))
            if settings is None:
                return None
            return process_outbox(store, settings)
    except ScannerError as exc:
        _LOGGER.error("alert delivery skipped: %s", exc)
    except Exception:  # a bug here must not turn a recorded scan into a failed one
        _LOGGER.exception("alert delivery failed; the outbox keeps the mails")
    return None


def send_test(settings: EmailSettings) -> str:
    """Send one test mail now, not through the outbox; returns its Message-ID."""
    msg_id = f"<scanner-test-{uuid.uuid4().hex}@{settings.domain}>"
    msg = build_message(settings, hello_text(socket.gethostname()), msg_id=msg_id)
    with SmtpSession(settings) as smtp:
        smtp.send(msg)
    return msg_id
