"""Crash safety: `scanner scan --once` killed with SIGKILL, twenty times in a row.

Each scan of the foundation lab (ARP only, so a scan takes about a second)
gets SIGKILL at a random moment; after every kill the database must pass
PRAGMA integrity_check and hold only whole scans, and at the end one more
scan must run to completion on the same file.

Half the kills are aimed at the database write. The scanner runs under a
small wrapper (WRAPPER) that announces Store.record_scan on stdout and makes
it longer by writing each observation PAD times over (the same code path,
one transaction, just more rows); those scans are killed at a random point
between the announcement and the write's typical duration, measured by one
calibration scan. The other half die anywhere in their run: start-up,
migrations (a file killed before its first migration committed holds no
tables, which is a whole state too), ARP, matching or the write. The seed is printed; set
SCANNER_CRASH_SEED to replay a run.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

from lab import Lab
from tests.conftest import REPO_ROOT, LabFactory

SCANS = 20
PAD = 4000  # each observation written this many times (~32,000 rows: a write of ~0.3 s)
DEVICES = 8  # foundation.toml

WRAPPER = """
import dataclasses, os, sys
import scanner.store as store

original = store.Store.record_scan
pad = int(os.environ.get("SCANNER_TEST_PAD", "1"))

def record_scan(self, scan, **kwargs):
    devices = [dataclasses.replace(d, observations=list(d.observations) * pad)
               for d in scan.devices]
    print("record_scan", flush=True)
    scan_id = original(self, dataclasses.replace(scan, devices=devices), **kwargs)
    print("recorded", flush=True)
    return scan_id

store.Store.record_scan = record_scan
from scanner.cli import cli
cli(sys.argv[1:], prog_name="scanner")
"""


def start_scan(lab: Lab, db: Path) -> subprocess.Popen[str]:
    argv = lab.scan_argv(db, protocols=["arp"], entry=["-c", WRAPPER])
    env = {**os.environ, "SCANNER_TEST_PAD": str(PAD), "PYTHONPATH": str(REPO_ROOT)}
    return lab.popen_in_scanner(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=REPO_ROOT,
        env=env,
    )


def check_db(db: Path) -> int:
    """Integrity, and only whole scans (every scan row with all its observations)."""
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "scans" not in tables:
            # killed before the first migration committed: it left nothing half-made
            if "_sqlite_migrations" in tables:
                assert conn.execute("SELECT count(*) FROM _sqlite_migrations").fetchone() == (0,)
            return 0
        scans = conn.execute("SELECT id, status, observations FROM scans").fetchall()
        for scan_id, status, observations in scans:
            assert status == "complete", scan_id
            (n,) = conn.execute(
                "SELECT count(*) FROM observations WHERE scan_id = ?", [scan_id]
            ).fetchone()
            assert n == observations, f"scan {scan_id}: {n} of {observations} observations"
        return len(scans)
    finally:
        conn.close()


def test_sigkill_at_random_points_of_twenty_scans(lab_factory: LabFactory, tmp_path: Path) -> None:
    seed = int(os.environ.get("SCANNER_CRASH_SEED", random.randrange(2**32)))
    print(f"SCANNER_CRASH_SEED={seed}")
    rng = random.Random(seed)
    lab = lab_factory("foundation")

    # calibration: how long a whole scan takes, and its write
    t0 = time.monotonic()
    proc = start_scan(lab, tmp_path / "calibration.db")
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "record_scan"
    t_write = time.monotonic()
    assert proc.stdout.readline().strip() == "recorded"
    write_s = time.monotonic() - t_write
    assert proc.wait(60) == 0
    runtime_s = time.monotonic() - t0
    print(f"a scan takes {runtime_s:.2f} s, its write {write_s:.2f} s")

    db = tmp_path / "crash.db"
    in_write = 0
    scans = 0
    for i in range(SCANS):
        proc = start_scan(lab, db)
        assert proc.stdout is not None
        if i % 2:  # aimed at the write
            assert proc.stdout.readline().strip() == "record_scan", f"scan {i} died early"
            time.sleep(rng.uniform(0, write_s))
        else:  # anywhere
            time.sleep(rng.uniform(0, runtime_s))
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        proc.stdout.close()
        killed = proc.returncode == -signal.SIGKILL
        now = check_db(db)
        assert now in (scans, scans + 1)
        if killed and i % 2 and now == scans:
            in_write += 1  # announced its write, died before the commit: nothing of it kept
        scans = now

    print(f"{in_write} of {SCANS // 2} aimed kills landed inside the write")
    assert in_write >= SCANS // 4, "most writes finished before their kill: raise PAD"

    # and the next scan completes on the same file
    before = check_db(db)
    r = lab.run_in_scanner(
        lab.scan_argv(db, protocols=["arp"]),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO_ROOT,
    )
    assert r.returncode == 0, r.stderr
    assert f"complete: {DEVICES} devices" in r.stdout, r.stdout
    assert check_db(db) == before + 1
    conn = sqlite3.connect(db)
    try:
        (last,) = conn.execute("SELECT max(id) FROM scans").fetchone()
        (seen,) = conn.execute(
            "SELECT count(*) FROM devices WHERE last_scan_id = ?", [last]
        ).fetchone()
    finally:
        conn.close()
    assert seen == DEVICES
