"""The HTML report of a lab scan, rendered by headless Chromium: every device shows."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import LabFactory

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-features=MediaRouter,OptimizationHints",
]


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("chromium is missing: `make test` installs the Debian package")
    return path


def test_html_report_renders_every_lab_device(lab_factory: LabFactory, tmp_path: Path) -> None:
    lab = lab_factory("foundation")
    db, html = tmp_path / "lab.db", tmp_path / "report.html"
    r = lab.run_in_scanner(
        lab.scan_argv(db, protocols=["arp"]), capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "scanner",
            "report",
            "--db",
            str(db),
            "--format",
            "html",
            "--output",
            str(html),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    page = html.read_text()
    assert "<script" not in page.lower()
    assert "http://" not in page and "https://" not in page  # nothing to fetch

    profile = tmp_path / "profile"
    png = tmp_path / "report.png"
    # Chromium runs in the lab's scanner namespace: even a bug could reach no real network
    base = [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--window-size=1600,2400"]
    shot = lab.run_in_scanner(
        [*base, f"--screenshot={png}", html.as_uri()], capture_output=True, text=True, timeout=120
    )
    assert png.exists() and png.stat().st_size > 10_000, shot.stderr[-2000:]
    dom = lab.run_in_scanner(
        [*base, "--dump-dom", html.as_uri()], capture_output=True, text=True, timeout=120
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    for device in lab.devices:
        assert f"<td>{device.ip}</td>" in dom.stdout, device.name
    assert dom.stdout.count('class="device"') == len(lab.devices)
    assert "3 flagged" in dom.stdout
