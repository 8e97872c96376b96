"""The wheel carries fingerprints/ and config/, and a non-editable install finds them."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_ships_data_and_finds_it_outside_the_checkout(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True,
        timeout=300,
    )
    [wheel] = tmp_path.glob("scanner-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "scanner/_data/fingerprints/vendors.toml" in names
    assert "scanner/_data/config/scanner.example.toml" in names
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    probe = (
        "import scanner.resources as r, scanner.fingerprint as f;"
        "print(r.data_dir('fingerprints'));"
        "assert f.lint() == []"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(site / "scanner" / "_data" / "fingerprints")
