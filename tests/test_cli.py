"""The command-line contract: exit codes and one-line errors, never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from scanner.store import Store
from tests.helpers import device, scan


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scanner", *args], capture_output=True, text=True, timeout=60
    )


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    assert "Traceback" not in text
    return lines[0]


def test_scan_without_scope_refuses_with_exit_2(tmp_path: Path) -> None:
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    r = run("scan", "--once", "--config", str(empty), "--db", str(tmp_path / "x.db"))
    assert r.returncode == 2
    assert "refusing to scan: no scope" in one_line(r.stderr)
    assert not (tmp_path / "x.db").exists()


def test_scan_with_only_an_interface_still_refuses(tmp_path: Path) -> None:
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    r = run("scan", "--once", "--config", str(empty), "--interface", "lab0")
    assert r.returncode == 2
    assert "cidrs missing" in one_line(r.stderr)


def test_unknown_config_key_is_named_with_exit_78(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[scope]\ninterfaces = ["lab0"]\ncidr = ["192.0.2.0/24"]\n')
    r = run("scan", "--once", "--config", str(cfg))
    assert r.returncode == 78
    assert f"{cfg}: unknown key scope.cidr" in one_line(r.stderr)


def test_bad_cidr_in_config_is_named_with_exit_78(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[scope]\ninterfaces = ["lab0"]\ncidrs = ["192.0.2.0/24", "192.0.2.0/40"]\n')
    r = run("report", "--config", str(cfg))
    assert r.returncode == 78
    assert "scope.cidrs: [1] '192.0.2.0/40' is not a valid CIDR" in one_line(r.stderr)


def test_bad_cidr_flag_is_a_usage_error(tmp_path: Path) -> None:
    r = run(
        "scan",
        "--once",
        "--interface",
        "lab0",
        "--cidr",
        "nonsense",
        "--db",
        str(tmp_path / "x.db"),
    )
    assert r.returncode == 2
    assert "--cidr: 'nonsense' is not a valid CIDR" in one_line(r.stderr)


@pytest.mark.parametrize("db", ["/proc/self/nope/scanner.db", "DIR"])
def test_unusable_db_path_is_one_clear_line(tmp_path: Path, db: str) -> None:
    path = str(tmp_path) if db == "DIR" else db
    r = run("scan", "--once", "--interface", "scn-none0", "--cidr", "192.0.2.0/24", "--db", path)
    assert r.returncode == 69
    assert path in one_line(r.stderr)
    r = run("report", "--db", path)
    assert r.returncode == 69
    assert path in one_line(r.stderr)


def test_report_of_a_missing_db_says_to_scan_first(tmp_path: Path) -> None:
    r = run("report", "--db", str(tmp_path / "none.db"))
    assert r.returncode == 69
    assert "run `scanner scan --once` first" in one_line(r.stderr)


def test_report_formats(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    with Store.open(db) as store:
        store.record_scan(scan([device("192.0.2.10", "00:40:8c:00:00:01")]))
    doc = json.loads(run("report", "--db", str(db), "--format", "json").stdout)
    assert doc["devices"][0]["maker"] == "Axis Communications"
    assert doc["scans"][0]["status"] == "complete"
    csv_text = run("report", "--db", str(db), "--format", "csv").stdout
    assert csv_text.splitlines()[0].startswith("ip,mac,vendor,maker")
    table = run("report", "--db", str(db))
    assert table.returncode == 0 and "192.0.2.10" in table.stdout
    assert run("report", "--db", str(db), "--format", "xml").returncode == 2


def test_fingerprints_lookup_names_the_registrant() -> None:
    r = run("fingerprints", "lookup", "44:19:B6")
    assert r.returncode == 0
    assert "Hikvision" in r.stdout and "flagged" in r.stdout


def test_fingerprints_lookup_reads_a_banner_string() -> None:
    r = run("fingerprints", "lookup", "DS-2CD2143G0-I")
    assert r.returncode == 0
    assert "maker:      Hikvision (CN)" in r.stdout
    assert "[hik-model-ds]" in r.stdout


def test_fingerprints_stats_and_lint() -> None:
    r = run("fingerprints", "stats")
    assert r.returncode == 0 and "IEEE prefixes" in r.stdout
    assert run("fingerprints", "lint").stdout.strip() == "fingerprints: ok"
