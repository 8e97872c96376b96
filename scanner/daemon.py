"""`scanner daemon`: discovery cycles on a schedule, alert delivery, retention.

APScheduler 3.x, in-memory jobs added from the config at start:

discovery  interval or cron; exactly `scanner scan --once` (scan.run_scan)
alerts     every minute: new connection findings, digest when due, delivery
capture    every [capture] every_minutes, when that section is configured
retention  daily: observations and delivered mails older than retention_days
watchdog   WATCHDOG=1 from a scheduler job, so a wedged scheduler is restarted

Every job has max_instances=1, coalesce=True and a misfire grace, so a slow
scan delays the next one instead of stacking them. SIGHUP re-reads the
config; a config that fails validation is refused and the running one kept.
SIGTERM (or SIGINT) stops the scheduler and waits up to STOP_GRACE_SECONDS
for running jobs: a database write is one SQLite transaction of a few
milliseconds and commits; a scan still waiting on the network is abandoned
before it writes anything (were it cut inside the transaction, SQLite rolls
it back on the next open). Logs go to stderr; under systemd each line
carries its syslog priority (`<3>`...) so journald keeps the levels.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, timedelta
from types import FrameType
from typing import TYPE_CHECKING, Any

from scanner import sdnotify
from scanner.checks import whole
from scanner.errors import ConfigError, ScannerError
from scanner.model import iso, utcnow

if TYPE_CHECKING:
    from scanner.config import Config

_LOGGER = logging.getLogger(__name__)

# a scan's write is one transaction of milliseconds (0.3 s padded in the crash test);
# past this, a scan still on the network is abandoned unwritten (SQLite rolls back
# anything cut). Short enough that SIGTERM stops well inside 5 s on a loaded box.
STOP_GRACE_SECONDS = 1.5
ALERTS_EVERY_SECONDS = 60
RETENTION_CRON = {"hour": 3, "minute": 17}  # daily, off the hour
# scanner.capture.<CAPTURE_ENTRY>(cfg): one window of cfg.capture.seconds that
# writes the connections table (the passive-capture work provides it)
CAPTURE_ENTRY = "run_capture"


@dataclass(frozen=True, slots=True)
class DaemonSettings:
    """The `[daemon]` config section."""

    interval_minutes: float = 60.0  # discovery cycle period (fractions allowed, for labs)
    cron: str | None = None  # five-field crontab (UTC) instead of the interval
    retention_days: int = 90  # observations and sent mails kept this long

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str) -> DaemonSettings:
        """Validate the [daemon] table; ConfigError names file and key."""
        if not isinstance(d, dict):
            raise ConfigError(f"{where}: [daemon] must be a table")
        checks: dict[str, Callable[[Any], Any]] = {
            "interval_minutes": _minutes,
            "cron": _cron,
            "retention_days": whole(1, 3650, "days"),
        }
        v: dict[str, Any] = {}
        for key, value in d.items():
            if key not in checks:
                close = difflib.get_close_matches(key, list(checks), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ConfigError(f"{where}: unknown key daemon.{key}{hint}")
            try:
                v[key] = checks[key](value)
            except ValueError as exc:
                raise ConfigError(f"{where}: daemon.{key}: {exc}") from None
        if "cron" in v and "interval_minutes" in v:
            raise ConfigError(f"{where}: daemon.cron: give cron or interval_minutes, not both")
        return cls(**v)


def _minutes(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not 0.05 <= v <= 10080:
        raise ValueError("must be a number of minutes from 0.05 to 10080 (a week)")
    return float(v)


def _cron(v: Any) -> str:
    from apscheduler.triggers.cron import CronTrigger

    if not isinstance(v, str) or len(v.split()) != 5:
        raise ValueError("must be a five-field crontab such as '*/30 * * * *' (UTC)")
    try:
        CronTrigger.from_crontab(v, timezone=UTC)
    except ValueError as exc:
        raise ValueError(f"{v!r}: {exc}") from None
    return v


# ------------------------------------------------------------------ logging

_PRIORITY = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4), (logging.INFO, 6))


class JournalFormatter(logging.Formatter):
    """Each line prefixed `<N>` (sd-daemon(3)): journald stores it at that priority."""

    def format(self, record: logging.LogRecord) -> str:
        prio = next((p for level, p in _PRIORITY if record.levelno >= level), 7)
        return "\n".join(f"<{prio}>{line}" for line in super().format(record).splitlines())


def _stderr_is_journal() -> bool:
    """$JOURNAL_STREAM names our stderr when systemd connected it to the journal."""
    dev, _, ino = os.environ.get("JOURNAL_STREAM", "").partition(":")
    if not dev.isdigit() or not ino.isdigit():
        return False
    try:
        st = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError):
        return False
    return st.st_dev == int(dev) and st.st_ino == int(ino)


def setup_logging(verbose: int = 0) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if _stderr_is_journal():
        handler.setFormatter(JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    level = logging.DEBUG if verbose else logging.INFO
    root.setLevel(level)
    for noisy in ("scapy", "zeep", "urllib3", "httpx", "apscheduler"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


# ------------------------------------------------------------------- daemon


def validate(cfg: Config) -> None:
    """Everything a config must pass before the daemon runs with it."""
    cfg.require_scope()
    from scanner.fingerprint import default_db

    unknown = sorted(set(cfg.flag_policies or ()) - set(default_db().policies))
    if unknown:
        raise ConfigError(
            f"{cfg.path or 'config'}: policy.flag_policies: unknown id {unknown[0]!r}"
        )
    if cfg.exceptions_file is not None:
        from scanner.exceptions import load_exceptions

        load_exceptions(cfg.exceptions_file)
    if cfg.email is not None:
        cfg.email.read_password()  # an unreadable credential is a config error now


class Daemon:
    """The scheduler, its jobs and the signal loop."""

    def __init__(self, load: Callable[[], Config]) -> None:
        from apscheduler.schedulers.background import BackgroundScheduler

        self._load = load
        self.cfg = load()
        validate(self.cfg)
        self.scheduler = BackgroundScheduler(
            timezone=UTC, job_defaults={"coalesce": True, "max_instances": 1}
        )
        self.cycles = 0
        self._wake = threading.Event()
        self._term = False
        self._hup = False
        self._running: set[str] = set()
        self._running_lock = threading.Lock()
        self._capture_missing_logged = False

    # --- jobs

    @contextlib.contextmanager
    def _track(self, name: str) -> Iterator[None]:
        with self._running_lock:
            self._running.add(name)
        try:
            yield
        except ScannerError as exc:
            _LOGGER.error("%s: %s", name, exc)
        except Exception:  # a bug in one job must not stop the daemon
            _LOGGER.exception("%s job failed", name)
        finally:
            with self._running_lock:
                self._running.discard(name)

    def cycle(self) -> None:
        """One discovery cycle: the code of `scanner scan --once`."""
        from scanner.scan import run_scan

        with self._track("discovery"):
            cfg = self.cfg
            summary = run_scan(cfg)
            self.cycles += 1
            sdnotify.notify(
                f"STATUS=scan {summary.scan_id} at {iso(utcnow())}: "
                f"{summary.devices} devices, {summary.flagged} flagged"
            )
            _LOGGER.info(
                "cycle %d: scan %d complete: %d devices (%d flagged) in %.1f s",
                self.cycles,
                summary.scan_id,
                summary.devices,
                summary.flagged,
                summary.seconds,
            )

    def alerts(self) -> None:
        from scanner.alerts.deliver import after_scan

        with self._track("alerts"):
            after_scan(self.cfg.db, self.cfg.email)

    def capture(self) -> None:
        """One passive capture window ([capture] seconds), then its connection alerts."""
        with self._track("capture"):
            cfg = self.cfg
            run = getattr(importlib.import_module("scanner.capture"), CAPTURE_ENTRY, None)
            if run is None:
                if not self._capture_missing_logged:
                    _LOGGER.warning("[capture] configured, but this build cannot capture")
                    self._capture_missing_logged = True
                return
            run(cfg)
            from scanner.alerts.deliver import after_scan

            after_scan(cfg.db, cfg.email)

    def retention(self) -> None:
        from scanner.store import Store

        with self._track("retention"):
            cfg = self.cfg
            cutoff = iso(utcnow() - timedelta(days=cfg.daemon.retention_days))
            with Store.open(cfg.db) as store:
                removed = store.prune(cutoff)
            _LOGGER.info(
                "retention: removed %d observations and %d delivered mails older than %s",
                removed["observations"],
                removed["alerts"],
                cutoff,
            )

    @staticmethod
    def watchdog() -> None:
        sdnotify.notify("WATCHDOG=1")

    # --- scheduling

    def _discovery_trigger(self, cfg: Config) -> tuple[Any, int]:
        """The trigger and its misfire grace (seconds)."""
        from apscheduler.triggers.cron import CronTrigger
        from apscheduler.triggers.interval import IntervalTrigger

        d = cfg.daemon
        if d.cron:
            return CronTrigger.from_crontab(d.cron, timezone=UTC), 300
        seconds = d.interval_minutes * 60
        return IntervalTrigger(seconds=seconds, timezone=UTC), max(1, int(seconds / 2))

    def schedule(self) -> None:
        """Add every job from the current config (replacing any of the same id)."""
        from apscheduler.triggers.cron import CronTrigger
        from apscheduler.triggers.interval import IntervalTrigger

        cfg = self.cfg
        trigger, grace = self._discovery_trigger(cfg)
        first = None if cfg.daemon.cron else utcnow()  # an interval daemon scans at once
        add = self.scheduler.add_job
        add(
            self.cycle,
            trigger,
            id="discovery",
            replace_existing=True,
            misfire_grace_time=grace,
            next_run_time=first,
        )
        add(
            self.alerts,
            IntervalTrigger(seconds=ALERTS_EVERY_SECONDS, timezone=UTC),
            id="alerts",
            replace_existing=True,
            misfire_grace_time=ALERTS_EVERY_SECONDS,
        )
        add(
            self.retention,
            CronTrigger(timezone=UTC, **RETENTION_CRON),
            id="retention",
            replace_existing=True,
            misfire_grace_time=3600,
        )
        self._schedule_capture(cfg)
        ping = sdnotify.watchdog_seconds()
        if ping is not None:
            add(
                self.watchdog,
                IntervalTrigger(seconds=ping, timezone=UTC),
                id="watchdog",
                replace_existing=True,
                misfire_grace_time=max(1, int(ping)),
                next_run_time=utcnow(),
            )

    def _schedule_capture(self, cfg: Config) -> None:
        from apscheduler.triggers.interval import IntervalTrigger

        capture = getattr(cfg, "capture", None)
        every = getattr(capture, "every_minutes", None)
        if every is None:
            if self.scheduler.get_job("capture") is not None:
                self.scheduler.remove_job("capture")
            return
        self.scheduler.add_job(
            self.capture,
            IntervalTrigger(seconds=every * 60, timezone=UTC),
            id="capture",
            replace_existing=True,
            misfire_grace_time=max(1, int(every * 30)),
        )

    # --- signals

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGHUP:
            self._hup = True
        else:
            self._term = True
        self._wake.set()

    def reload(self) -> bool:
        """Re-read the config; keep the running one when the new one fails."""
        sdnotify.notify("RELOADING=1")
        try:
            new = self._load()
            validate(new)
        except ScannerError as exc:
            _LOGGER.error("config reload refused, keeping the running config: %s", exc)
            sdnotify.notify("READY=1\nSTATUS=config reload refused: " + str(exc)[:200])
            return False
        old, self.cfg = self.cfg, new
        if old.daemon.cron != new.daemon.cron or (
            old.daemon.interval_minutes != new.daemon.interval_minutes
        ):
            trigger, grace = self._discovery_trigger(new)
            self.scheduler.reschedule_job("discovery", trigger=trigger)
            self.scheduler.modify_job("discovery", misfire_grace_time=grace)
        if getattr(getattr(old, "capture", None), "every_minutes", None) != getattr(
            getattr(new, "capture", None), "every_minutes", None
        ):
            self._schedule_capture(new)
        _LOGGER.info("config reloaded from %s", new.path or "defaults")
        sdnotify.notify("READY=1\nSTATUS=config reloaded")
        return True

    def run(self) -> int:
        """Start, serve signals until SIGTERM/SIGINT, stop; the exit status."""
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)
        self.schedule()
        cfg = self.cfg
        how = (
            f"cron {cfg.daemon.cron!r}"
            if cfg.daemon.cron
            else (f"every {cfg.daemon.interval_minutes:g} min")
        )
        _LOGGER.info(
            "daemon started: scans %s, database %s, alert mail %s",
            how,
            cfg.db,
            f"to {', '.join(cfg.email.to)} ({cfg.email.mode})" if cfg.email else "off",
        )
        # READY before the first job runs: systemd must hear READY before any WATCHDOG
        sdnotify.notify(f"READY=1\nSTATUS=running: scans {how}")
        self.scheduler.start()
        while not self._term:
            self._wake.wait(timeout=5.0)
            self._wake.clear()
            if self._hup and not self._term:
                self._hup = False
                self.reload()
        return self.stop()

    def stop(self) -> int:
        sdnotify.notify("STOPPING=1")
        _LOGGER.info("stopping")
        self.scheduler.shutdown(wait=False)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        while time.monotonic() < deadline:
            with self._running_lock:
                busy = sorted(self._running)
            if not busy:
                _LOGGER.info("stopped after %d cycles", self.cycles)
                return 0
            time.sleep(0.05)
        _LOGGER.warning(
            "stopped; abandoned the running %s job (nothing of it was written)", ", ".join(busy)
        )
        logging.shutdown()
        os._exit(0)  # worker threads would otherwise hold the exit until the network times out


def run_daemon(load: Callable[[], Config], verbose: int = 0) -> int:
    """Entry point of `scanner daemon`: config errors raise before anything starts."""
    setup_logging(verbose)
    return Daemon(load).run()
