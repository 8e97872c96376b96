"""End to end in the lab: `scanner capture` on the router's internet leg, as nobody
with CAP_NET_RAW only, then `scanner import-pcap` of a capture of the same traffic.

lab/scenarios/outbound.toml: hik-cam resolves dev.hik-connect.com and calls it,
dahua-cam sends UDP to a raw address, axis-cam talks to NTP (by name) and the
NVR (by address) only. With DNS, NTP and the NVR allowlisted, exactly the
first two are reported.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lab import Lab
from scanner.store import Store
from tests.conftest import LabFactory
from tests.unprivileged import NOBODY, SETPRIV, reachable_by_others

CAP_NET_RAW = 1 << 13
ALLOW = ["--allow", "203.0.113.53", "--allow", "ntp.force.example", "--allow", "203.0.113.20"]
REPO = Path(__file__).resolve().parents[1]

# An independent capture of the same wire: scapy's own sniffer and pcapng writer.
PCAP_WRITER = """
import sys
from scapy.all import AsyncSniffer, wrpcapng
s = AsyncSniffer(iface=sys.argv[1], store=True, started_callback=lambda: print("READY", flush=True))
s.start()
sys.stdin.readline()  # the test says when to stop
pkts = s.stop()
wrpcapng(sys.argv[2], pkts)
print(len(pkts), flush=True)
"""


@pytest.fixture(autouse=True, scope="module")
def _code_reachable_by_nobody() -> Iterator[None]:
    with reachable_by_others(REPO):
        yield


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A directory nobody can write (pytest's tmp_path is root-only)."""
    d = Path(tempfile.mkdtemp(prefix="scanner-capture-"))
    os.chown(d, NOBODY, NOBODY)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def scanner_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "scanner.cli_capture", *args]


def arp_scan(lab: Lab, db: Path) -> None:
    r = lab.run_in_scanner(
        lab.scan_argv(db, protocols=["arp"]),
        capture_output=True,
        timeout=120,
        cwd=REPO,
    )
    assert r.returncode == 0, r.stderr
    for p in db.parent.iterdir():
        os.chown(p, NOBODY, NOBODY)


def report(lab: Lab, db: Path) -> dict[str, Any]:
    r = lab.run_in_scanner(
        [sys.executable, "-m", "scanner", "report", "--db", str(db), "--format", "json"],
        capture_output=True,
        timeout=60,
        cwd=REPO,
    )
    assert r.returncode == 0, r.stderr
    doc: dict[str, Any] = json.loads(r.stdout)
    return doc


def summary(doc: dict[str, Any]) -> set[tuple[Any, ...]]:
    return {
        (
            c["device_ip"],
            c["dst_ip"],
            c["dst_port"],
            c["proto"],
            c["dst_name"],
            c["class"],
            c["vendor"],
        )
        for c in doc["connections"]
    }


def test_outbound_watch_reports_exactly_the_phoning_cameras(
    lab_factory: LabFactory, workdir: Path
) -> None:
    lab = lab_factory("outbound")
    iface = lab.router_iface("gw", "internet")
    db, db_import = workdir / "live.db", workdir / "import.db"
    arp_scan(lab, db)
    shutil.copy(db, db_import)
    os.chown(db_import, NOBODY, NOBODY)
    pcap = workdir / "gw-internet.pcapng"

    writer = lab.popen_in_router(
        "gw",
        [sys.executable, "-c", PCAP_WRITER, iface, str(pcap)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert writer.stdout is not None and writer.stdout.readline().strip() == "READY"
        r = lab.run_in_router(
            "gw",
            SETPRIV
            + scanner_cmd("capture", "--once", "--interface", iface, "--seconds", "3")
            + ["--db", str(db), *ALLOW],
            capture_output=True,
            timeout=120,
            cwd=REPO,
        )
        time.sleep(0.3)
        _out, err = writer.communicate("stop\n", timeout=60)
    finally:
        if writer.poll() is None:
            writer.kill()
    assert writer.returncode == 0, err
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    assert "6 flows: 4 allowed, 1 vendor-cloud, 1 unexpected; 6 new" in r.stdout, r.stdout
    assert ", 0 dropped)" in r.stdout

    live = report(lab, db)
    alerting = [c for c in live["connections"] if c["class"] in ("vendor-cloud", "unexpected")]
    assert len(alerting) == 2, alerting
    hik, dahua = sorted(alerting, key=lambda c: c["device_ip"])
    assert (hik["device_mac"], hik["device_ip"]) == ("44:19:b6:00:01:10", "198.51.100.10")
    assert (hik["dst_ip"], hik["dst_port"], hik["proto"]) == ("203.0.113.10", 80, "tcp")
    assert (hik["dst_name"], hik["class"], hik["vendor"]) == (
        "dev.hik-connect.com",
        "vendor-cloud",
        "Hikvision",
    )
    assert hik["packets"] > 0 and hik["bytes"] > 0 and hik["first_seen"] <= hik["last_seen"]
    assert hik["dst_country"] is None  # TEST-NET-3 is never geolocated
    assert (dahua["device_mac"], dahua["dst_ip"], dahua["dst_port"], dahua["proto"]) == (
        "e0:50:8b:00:01:11",
        "203.0.113.77",
        8800,
        "udp",
    )
    assert (dahua["dst_name"], dahua["class"], dahua["vendor"]) == (None, "unexpected", None)
    axis = [c for c in live["connections"] if c["device_ip"] == "198.51.100.12"]
    assert {(c["dst_ip"], c["dst_port"], c["class"]) for c in axis} == {
        ("203.0.113.53", 53, "allowed"),
        ("203.0.113.123", 123, "allowed"),
        ("203.0.113.20", 8000, "allowed"),
    }
    assert next(c for c in axis if c["dst_port"] == 123)["dst_name"] == "ntp.force.example"
    with Store.open(db) as store:  # findings for alerting: the two, and only them
        keys = sorted(f["key"] for f in store.findings("new-connection"))
    assert keys == [
        "new-connection:44:19:b6:00:01:10:203.0.113.10:80/tcp",
        "new-connection:e0:50:8b:00:01:11:203.0.113.77:8800/udp",
    ]

    # the same scenario from a capture file gives the same connections
    r = lab.run_in_scanner(
        scanner_cmd("import-pcap", str(pcap), "--db", str(db_import), *ALLOW),
        capture_output=True,
        timeout=120,
        cwd=REPO,
    )
    assert r.returncode == 0, r.stderr
    assert "(pcapng)" in r.stdout
    assert summary(report(lab, db_import)) == summary(live)


def test_capture_runs_with_net_raw_only_and_fails_clearly_without(
    lab_factory: LabFactory, workdir: Path
) -> None:
    lab = lab_factory("outbound")
    iface = lab.router_iface("gw", "internet")
    db = workdir / "caps.db"
    arp_scan(lab, db)

    # what the capture process runs with
    r = lab.run_in_router(
        "gw",
        [*SETPRIV, sys.executable, "-c", "print(open('/proc/self/status').read())"],
        capture_output=True,
        timeout=30,
    )
    status = dict(line.split(":\t", 1) for line in r.stdout.splitlines() if ":\t" in line)
    assert status["Uid"].split()[:2] == [str(NOBODY), str(NOBODY)]
    for key in ("CapEff", "CapPrm", "CapAmb", "CapBnd"):
        assert int(status[key], 16) == CAP_NET_RAW, (key, status[key])

    r = lab.run_in_router(
        "gw",
        SETPRIV
        + scanner_cmd("capture", "--once", "--interface", iface, "--seconds", "1")
        + ["--db", str(db)],
        capture_output=True,
        timeout=120,
        cwd=REPO,
    )
    assert r.returncode == 0, r.stderr
    assert "vendor-cloud" in r.stdout

    # no capabilities at all: one clear line, exit 65, no traceback
    r = lab.run_in_router(
        "gw",
        [
            "setpriv",
            f"--reuid={NOBODY}",
            f"--regid={NOBODY}",
            "--clear-groups",
            *scanner_cmd("capture", "--once", "--interface", iface, "--seconds", "1"),
            "--db",
            str(db),
        ],
        capture_output=True,
        timeout=120,
        cwd=REPO,
    )
    assert r.returncode == 65
    assert r.stderr.strip().startswith("scanner: capture needs CAP_NET_RAW")
    assert "Traceback" not in r.stderr

    # an interface that is not there, and a database with no inventory
    r = lab.run_in_router(
        "gw",
        SETPRIV
        + scanner_cmd("capture", "--once", "--interface", "nosuch0", "--seconds", "1")
        + ["--db", str(db)],
        capture_output=True,
        timeout=60,
        cwd=REPO,
    )
    assert r.returncode == 65 and "no interface 'nosuch0'" in r.stderr


DAEMON_ENTRY = """
import json, sys
from pathlib import Path
from types import SimpleNamespace
from scanner.capture import CaptureSettings, run_capture
settings = CaptureSettings.from_dict({
    "interface": sys.argv[2], "seconds": 2, "every_minutes": 15,
    "allow": [{"address": "203.0.113.53", "note": "resolver"},
              {"name": "ntp.force.example", "ports": [123]},
              {"network": "203.0.113.16/28", "note": "NVR subnet"}],
})
out = run_capture(SimpleNamespace(db=Path(sys.argv[1]), scope=None, capture=settings))
print(json.dumps({"rows": out.rows, "new": len(out.new), "source": out.source}))
"""


def test_daemon_entry_runs_one_window_from_config_settings(
    lab_factory: LabFactory, workdir: Path
) -> None:
    """scanner.capture.run_capture(cfg) is what the daemon calls each [capture] window."""
    lab = lab_factory("outbound")
    db = workdir / "daemon.db"
    arp_scan(lab, db)
    r = lab.run_in_router(
        "gw",
        [*SETPRIV, sys.executable, "-c", DAEMON_ENTRY, str(db), lab.router_iface("gw", "internet")],
        capture_output=True,
        timeout=120,
        cwd=REPO,
    )
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    classes = {
        (row["device_ip"], row["dst_ip"], row["dst_port"]): row["class"] for row in doc["rows"]
    }
    assert classes[("198.51.100.10", "203.0.113.10", 80)] == "vendor-cloud"
    assert classes[("198.51.100.11", "203.0.113.77", 8800)] == "unexpected"
    assert classes[("198.51.100.12", "203.0.113.20", 8000)] == "allowed"  # by network
    assert classes[("198.51.100.12", "203.0.113.123", 123)] == "allowed"  # by name and port
    assert doc["new"] == len(doc["rows"])
