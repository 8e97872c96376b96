"""`scanner daemon`: settings, sd_notify, journald lines, and a live run in the lab.

The live test runs the daemon in the lab's scanner namespace with a fake
systemd notify socket: three discovery cycles, a refused and an accepted
SIGHUP reload, and a SIGTERM that stops it within 5 s with an intact DB.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab import Lab
from scanner import sdnotify
from scanner.daemon import DaemonSettings, JournalFormatter
from scanner.errors import ConfigError
from scanner.store import DeviceRecord, Store
from tests.conftest import LabFactory
from tests.test_alerts_lab import LabSink, write_config

WHERE = "/etc/scanner/scanner.toml"


# ------------------------------------------------------------------ settings


def test_daemon_settings_defaults_and_values() -> None:
    assert DaemonSettings.from_dict({}, WHERE) == DaemonSettings(interval_minutes=60.0)
    s = DaemonSettings.from_dict({"cron": "*/30 * * * *", "retention_days": 30}, WHERE)
    assert s.cron == "*/30 * * * *" and s.retention_days == 30
    assert DaemonSettings.from_dict({"interval_minutes": 0.05}, WHERE).interval_minutes == 0.05


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"interval_minutes": 0}, "daemon.interval_minutes: must be a number of minutes"),
        ({"interval_minutes": True}, "daemon.interval_minutes: must be a number"),
        ({"cron": "every hour"}, "daemon.cron: must be a five-field crontab"),
        ({"cron": "61 * * * *"}, "daemon.cron: '61 * * * *'"),
        ({"cron": "0 * * * *", "interval_minutes": 5}, "give cron or interval_minutes, not both"),
        ({"retention_days": 0}, "daemon.retention_days: must be a whole number of days"),
        ({"intervall_minutes": 5}, "unknown key daemon.intervall_minutes (did you mean"),
    ],
)
def test_daemon_settings_mistakes_name_file_and_key(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        DaemonSettings.from_dict(raw, WHERE)
    assert str(exc.value).startswith(WHERE + ": ") and message in str(exc.value)


# ------------------------------------------------------------------ sd_notify


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.settimeout(2)
    yield sock
    sock.close()


def test_notify_to_a_path_socket(
    notify_socket: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", notify_socket.getsockname())
    assert sdnotify.notify("READY=1\nSTATUS=ok") is True
    assert notify_socket.recv(4096) == b"READY=1\nSTATUS=ok"


def test_notify_to_an_abstract_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"scanner-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert sdnotify.notify("WATCHDOG=1")
        assert sock.recv(64) == b"WATCHDOG=1"


def test_notify_without_systemd_is_a_no_op(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sdnotify.notify("READY=1") is False
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone"))
    assert sdnotify.notify("READY=1") is False  # logged, never raised


def test_watchdog_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    assert sdnotify.watchdog_seconds() is None
    monkeypatch.setenv("WATCHDOG_USEC", "120000000")
    assert sdnotify.watchdog_seconds() == 60.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert sdnotify.watchdog_seconds() == 60.0
    monkeypatch.setenv("WATCHDOG_PID", "1")  # someone else's watchdog
    assert sdnotify.watchdog_seconds() is None


def test_journal_lines_carry_the_priority() -> None:
    fmt = JournalFormatter("%(name)s: %(message)s")
    rec = logging.LogRecord("scanner.daemon", logging.ERROR, __file__, 1, "a\nb", None, None)
    assert fmt.format(rec) == "<3>scanner.daemon: a\n<3>b"
    rec.levelno = logging.INFO
    assert fmt.format(rec).startswith("<6>")


# ------------------------------------------------------------------ live


class Daemon:
    """`scanner daemon` in the lab's scanner namespace, its stderr read line by line."""

    def __init__(self, lab: Lab, config: Path, notify: Path) -> None:
        env = dict(os.environ, NOTIFY_SOCKET=str(notify), WATCHDOG_USEC="1000000")
        env.pop("WATCHDOG_PID", None)
        self.proc = lab.popen_in_scanner(
            [sys.executable, "-m", "scanner", "daemon", "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.log: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, text: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.proc.poll() is not None and self.lines.empty():
                    break
                continue
            self.log.append(line)
            if text in line:
                return line
        raise AssertionError(f"no {text!r} in daemon log:\n" + "\n".join(self.log))


class Notifications:
    """What the daemon told "systemd", read as it comes (as systemd does)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.messages = sock, []  # type: list[str]
        sock.settimeout(0.2)
        self._stop = False
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop:
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except TimeoutError:
                continue
            except OSError:
                return

    def close(self) -> list[str]:
        self._stop = True
        self._thread.join(timeout=2)
        return self.messages


def test_daemon_cycles_reloads_and_stops_cleanly(
    lab_factory: LabFactory, tmp_path: Path, notify_socket: socket.socket
) -> None:
    lab = lab_factory("foundation")
    sink = LabSink(lab, tmp_path / "mail")
    sink.start()
    db = tmp_path / "daemon.db"
    config = write_config(lab, tmp_path / "scanner.toml", db)
    good = config.read_text() + "\n[daemon]\ninterval_minutes = 0.05\n"  # every 3 s
    config.write_text(good)
    notes = Notifications(notify_socket)
    d = Daemon(lab, config, Path(notify_socket.getsockname()))
    try:
        d.wait_for("daemon started: scans every 0.05 min")
        for n in (1, 2, 3):
            d.wait_for(f"cycle {n}: scan {n} complete: 8 devices (3 flagged)")
        # the datagram is sent before the log line, but our reader thread may lag it
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not any(
            m.startswith("STATUS=scan 3 at ") for m in list(notes.messages)
        ):
            time.sleep(0.05)
        messages = list(notes.messages)
        assert messages[0].startswith("READY=1\nSTATUS=running")
        assert messages.count("WATCHDOG=1") >= 2
        assert any(m.startswith("STATUS=scan 3 at ") for m in messages)
        # three cycles, one first-run summary mail, nothing repeated
        assert [m["Subject"][:30] for m in sink.mails()] == ["[scanner] First scan of 198.51"]

        # a broken config is refused, the old one kept and the daemon scans on
        config.write_text(good.replace('cidrs = ["198.51.100.0/24"]', 'cidrs = "everything"'))
        d.proc.send_signal(signal.SIGHUP)
        line = d.wait_for("config reload refused")
        assert f"keeping the running config: {config}: scope.cidrs: must be a list" in line
        d.wait_for("cycle 4: scan 4 complete: 8 devices")
        # a good one is taken
        config.write_text(good.replace("interval_minutes = 0.05", "interval_minutes = 0.1"))
        d.proc.send_signal(signal.SIGHUP)
        d.wait_for(f"config reloaded from {config}")

        t0 = time.monotonic()
        d.proc.send_signal(signal.SIGTERM)
        rc = d.proc.wait(timeout=10)
        stopped_in = time.monotonic() - t0
        assert rc == 0
        assert stopped_in < 5, stopped_in
        d.wait_for("stopped", timeout=2)
        time.sleep(0.3)
        assert "STOPPING=1" in notes.close()
    finally:
        if d.proc.poll() is None:
            d.proc.kill()
        sink.stop()
        notes.close()
    assert "Traceback" not in "\n".join(d.log)
    with Store.open(db, create=False) as store:
        assert store.integrity_ok()
        scans = store.scans()
        assert len(scans) >= 4
        assert {s["status"] for s in scans} == {"complete"}
        assert {s["devices_seen"] for s in scans} == {8}
        assert len(store.devices()) == 8
    assert len(sink.mails()) == 1


def test_daemon_refuses_to_start_on_a_bad_config(lab_factory: LabFactory, tmp_path: Path) -> None:
    lab = lab_factory("foundation")
    config = tmp_path / "scanner.toml"
    config.write_text('[daemon]\ncron = "every hour"\n')
    r = lab.run_in_scanner(
        [sys.executable, "-m", "scanner", "daemon", "--config", str(config)],
        capture_output=True,
        timeout=60,
    )
    assert r.returncode == 78  # EX_CONFIG: systemd's RestartPreventExitStatus
    assert r.stderr.strip().endswith(
        "daemon.cron: must be a five-field crontab such as '*/30 * * * *' (UTC)"
    )
    config.write_text("[daemon]\ninterval_minutes = 5\n")  # no scope
    r = lab.run_in_scanner(
        [sys.executable, "-m", "scanner", "daemon", "--config", str(config)],
        capture_output=True,
        timeout=60,
    )
    assert r.returncode == 2 and "refusing to scan: no scope" in r.stderr


def test_sigterm_mid_scan_abandons_it_unwritten(
    lab_factory: LabFactory, tmp_path: Path, notify_socket: socket.socket
) -> None:
    """A scan waiting on the network is not worth a stuck stop: it goes, unwritten."""
    lab = lab_factory("foundation")
    db = tmp_path / "daemon.db"
    config = write_config(lab, tmp_path / "scanner.toml", db)
    slow = config.read_text().replace("arp_timeout = 0.5", "arp_timeout = 30")
    config.write_text(slow + "\n[daemon]\ninterval_minutes = 60\n")
    notes = Notifications(notify_socket)
    d = Daemon(lab, config, Path(notify_socket.getsockname()))
    try:
        d.wait_for("ARP: 253 targets on lab0")
        time.sleep(0.5)
        t0 = time.monotonic()
        d.proc.send_signal(signal.SIGTERM)
        assert d.proc.wait(timeout=10) == 0
        assert time.monotonic() - t0 < 5
        d.wait_for("abandoned the running discovery job", timeout=2)
    finally:
        if d.proc.poll() is None:
            d.proc.kill()
        notes.close()
    with Store.open(db, create=False) as store:
        assert store.integrity_ok()
        assert store.scans() == [] and store.devices() == []


def test_retention_job_prunes_old_rows(tmp_path: Path) -> None:
    from datetime import timedelta

    from scanner.config import parse_config
    from scanner.daemon import Daemon as Service
    from scanner.model import Observation, Source, utcnow
    from tests.test_alerts_outbox import lab_devices, scan_at

    db = tmp_path / "r.db"
    cfg = parse_config(
        f'[scope]\ninterfaces = ["lab0"]\ncidrs = ["198.51.100.0/24"]\n[store]\ndb = "{db}"\n'
        "[daemon]\nretention_days = 7\n",
        "test.toml",
    )

    def seen(days_ago: int) -> list[DeviceRecord]:
        devices = lab_devices()
        for d in devices:
            at = utcnow() - timedelta(days=days_ago)
            d.observations = [Observation(Source.ARP, d.ip, at, d.mac)]
        return devices

    with Store.open(db) as store:
        store.record_scan(scan_at(utcnow() - timedelta(days=30), seen(30)))
        store.record_scan(scan_at(utcnow(), seen(0)[:1]))
    Service(lambda: cfg).retention()
    with Store.open(db, create=False) as store:
        assert len(store.observations()) == 1  # only the recent scan's
        assert len(store.devices()) == 8 and len(store.scans()) == 2
