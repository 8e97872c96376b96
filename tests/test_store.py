"""The store: a real SQLite file in WAL mode, migrations, one transaction per scan."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from scanner.errors import StoreError
from scanner.store import Store
from tests.helpers import device, scan


def test_a_new_database_is_wal_and_migrated(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.db") as store:
        assert store.db.journal_mode == "wal"
        applied = len(list(store.db.query("SELECT * FROM _sqlite_migrations")))
        names = set(store.db.table_names())
        assert {
            "scans",
            "devices",
            "device_ips",
            "observations",
            "findings",
            "connections",
            "alerts",
            "_sqlite_migrations",
        } <= names
    with Store.open(tmp_path / "s.db") as again:  # re-applying migrations is a no-op
        assert len(list(again.db.query("SELECT * FROM _sqlite_migrations"))) == applied


def test_a_second_scan_updates_last_seen_without_duplicates(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.db") as store:
        store.record_scan(scan([device("192.0.2.10", "00:40:8c:00:00:01")]))
        store.record_scan(scan([device("192.0.2.10", "00:40:8c:00:00:01")], "2026-11-22T04:00:00Z"))
        [dev] = store.devices()
        assert dev["first_seen"] == "2026-11-22T03:00:05Z"
        assert dev["last_seen"] == "2026-11-22T04:00:00Z"
        assert len(store.scans()) == 2
        assert len(store.observations()) == 2


def test_a_device_that_changes_ip_keeps_its_identity_and_history(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.db") as store:
        store.record_scan(scan([device("192.0.2.10", "00:40:8c:00:00:01")]))
        store.record_scan(scan([device("192.0.2.77", "00:40:8c:00:00:01")], "2026-11-22T04:00:00Z"))
        [dev] = store.devices()
        assert dev["ip"] == "192.0.2.77"
        assert [h["ip"] for h in dev["ip_history"]] == ["192.0.2.10", "192.0.2.77"]


def test_missing_database_for_reading_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no database here"):
        Store.open(tmp_path / "absent.db", create=False)


def test_unopenable_path_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="is a directory"):
        Store.open(tmp_path)
    with pytest.raises(StoreError, match="cannot open database"):
        Store.open(Path("/proc/self/nope/scanner.db"))


WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from scanner.store import Store
    from tests.helpers import device, scan

    store = Store.open(Path(sys.argv[1]))
    if not store.scans():
        store.record_scan(scan([device("192.0.2.10", "00:40:8c:00:00:01")]))
    big = [device(f"192.0.2.{i % 250 + 1}", f"00:40:8c:00:{i // 256:02x}:{i % 256:02x}",
                  n_obs=40) for i in range(3000)]
    print("writing", flush=True)
    store.record_scan(scan(big, "2026-11-22T05:00:00Z"))
    print("done", flush=True)
    """
)


def test_sigkill_mid_write_leaves_the_previous_complete_scan(tmp_path: Path) -> None:
    db = tmp_path / "crash.db"
    rng = random.Random(889)
    root = Path(__file__).resolve().parent.parent
    for _ in range(5):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(db)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=root,
            env={**os.environ, "PYTHONPATH": str(root)},
        )
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "writing"
        # the big write takes ~1 s; kill at a random point inside it
        try:
            proc.wait(timeout=rng.uniform(0.05, 0.5))
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
        proc.wait()
        killed = proc.returncode == -signal.SIGKILL
        with Store.open(db) as store:
            assert store.integrity_ok()
            scans = store.scans()
            assert all(s["status"] == "complete" for s in scans)
            if killed:
                assert len(scans) == 1, "a killed write left part of a scan behind"
                [dev] = store.devices()
                assert dev["mac"] == "00:40:8c:00:00:01"
            else:  # finished before the kill: complete, never partial
                assert len(store.devices()) == 3000
                db.unlink()
                for suffix in ("-wal", "-shm"):
                    Path(str(db) + suffix).unlink(missing_ok=True)


def test_a_routed_device_found_later_with_its_mac_keeps_its_identity(tmp_path: Path) -> None:
    from dataclasses import replace

    routed = device("10.10.0.5", "00:40:8c:00:00:09")
    routed.mac = None
    routed.key = "serial:ACCC8E000009"
    routed.identification = replace(routed.identification, serial="ACCC8E000009")
    with Store.open(tmp_path / "s.db") as store:
        store.record_scan(scan([routed]))
        later = device("10.10.0.5", "00:40:8c:00:00:09")
        later.identification = replace(later.identification, serial="ACCC8E000009")
        store.record_scan(scan([later], "2026-11-22T04:00:00Z"))
        [dev] = store.devices()
        assert dev["id"] == "serial:ACCC8E000009"
        assert dev["mac"] == "00:40:8c:00:00:09"
