"""End to end: `scanner scan --once` in the lab's scanner namespace, real ARP."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from lab import Lab
from tests.conftest import LabFactory

# MAC -> (IEEE registrant, registrant country, maker, verdict): the ground truth
EXPECTED = {
    "44:19:b6:00:00:02": ("Hangzhou Hikvision Digital Technology", "CN", "Hikvision", "flagged"),
    "bc:ad:28:00:00:03": ("Hangzhou Hikvision Digital Technology", "CN", "Hikvision", "flagged"),
    "e0:50:8b:00:00:04": ("Zhejiang Dahua Technology", "CN", "Dahua", "flagged"),
    "ac:cc:8e:00:00:05": ("Axis Communications AB", "SE", "Axis Communications", "non-home-origin"),
    "00:07:c7:00:00:06": ("Synectics Systems Limited", "GB", "Synectics", "home-origin"),
    "00:d0:d9:00:00:07": ("DEDICATED MICROCOMPUTERS", "GB", "Dedicated Micros", "home-origin"),
    "00:04:63:00:00:08": (
        "Bosch Security Systems",
        "US",
        "Bosch Security Systems",
        "non-home-origin",
    ),
    "0a:1b:2c:3d:4e:09": (None, None, None, "unknown"),
}


def scan(lab: Lab, db: Path) -> None:
    r = lab.run_in_scanner(
        lab.scan_argv(db, protocols=["arp"]),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert "complete: 8 devices (3 flagged)" in r.stdout


def report(lab: Lab, db: Path) -> dict[str, Any]:
    r = lab.run_in_scanner(
        [sys.executable, "-m", "scanner", "report", "--db", str(db), "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    doc: dict[str, Any] = json.loads(r.stdout)
    return doc


def test_scan_finds_every_device_with_registrant_and_country(
    lab_factory: LabFactory, tmp_path: Path
) -> None:
    lab = lab_factory("foundation")
    db = tmp_path / "lab.db"
    scan(lab, db)
    devices = {d["mac"]: d for d in report(lab, db)["devices"]}
    assert set(devices) == set(EXPECTED)
    for mac, (registrant, country, maker, verdict) in EXPECTED.items():
        d = devices[mac]
        assert d["sources"] == ["arp"]
        assert d["verdict"] == verdict, (mac, d["reasons"])
        assert d["maker"] == maker
        assert d["registrant_country"] == country
        if registrant is None:
            assert d["randomised_mac"] is True
            assert "randomised/virtual" in d["reasons"][0]
        else:
            assert registrant in d["registrant"]
            assert any(e["rule"] == "ieee:MA-L" for e in d["evidence"])
    assert devices["44:19:b6:00:00:02"]["flagged"] is True
    assert any("NDAA" in r for r in devices["44:19:b6:00:00:02"]["reasons"])

    # a second scan adds no duplicates and moves last_seen on
    time.sleep(1.1)
    scan(lab, db)
    doc = report(lab, db)
    assert len(doc["devices"]) == 8
    assert len(doc["scans"]) == 2
    again = {d["mac"]: d for d in doc["devices"]}
    for mac, d in again.items():
        assert d["first_seen"] == devices[mac]["first_seen"]
        assert d["last_seen"] > devices[mac]["last_seen"]

    # a device that changes IP keeps its identity
    lab.set_device_ip("axis-cam", "198.51.100.99")
    time.sleep(1.1)
    scan(lab, db)
    doc = report(lab, db)
    assert len(doc["devices"]) == 8
    axis = next(d for d in doc["devices"] if d["mac"] == "ac:cc:8e:00:00:05")
    assert axis["ip"] == "198.51.100.99"
    assert [h["ip"] for h in axis["ip_history"]] == ["198.51.100.13", "198.51.100.99"]
    assert axis["first_seen"] == devices["ac:cc:8e:00:00:05"]["first_seen"]


def test_scan_never_arps_outside_the_cidrs(lab_factory: LabFactory, tmp_path: Path) -> None:
    """A /29 scope finds only the devices inside it, though the rest are on the wire."""
    lab = lab_factory("foundation")
    db = tmp_path / "narrow.db"
    r = lab.run_in_scanner(
        lab.scan_argv(db, cidr="198.51.100.8/29", protocols=["arp"]),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    ips = sorted(d["ip"] for d in report(lab, db)["devices"])
    assert ips == [f"198.51.100.{i}" for i in range(10, 15)]
