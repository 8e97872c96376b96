"""systemd/scanner.service passes `systemd-analyze verify` and `security`.

systemd is not PID 1 here, so the unit is checked statically: verify runs
against a throw-away root holding the distribution's units and stand-ins for
the executables the unit names (verify only checks that they exist). verify
exits 0 even on unknown keys, so the test requires its stderr to be empty.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from scanner.cli_daemon import daemon

SYSTEMD = Path(__file__).resolve().parents[1] / "systemd"
UNIT = SYSTEMD / "scanner.service"
MAX_EXPOSURE = 3.0


@pytest.fixture(scope="module")
def analyze() -> str:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("systemd-analyze missing under CI=true (Debian package: systemd)")
        pytest.skip("systemd-analyze not installed (Debian package: systemd)")
    return tool


def _units_dir() -> Path:
    for d in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system")):
        if (d / "multi-user.target").exists():
            return d
    pytest.skip("no systemd unit directory to verify against")


def unit(path: Path = UNIT) -> dict[str, list[str]]:
    """key -> values (a key may repeat) across the unit's sections."""
    out: dict[str, list[str]] = {}
    section = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.setdefault(f"{section}.{key}", []).append(value)
    return out


def verify(analyze: str, text: str, root: Path) -> subprocess.CompletedProcess[str]:
    for exe in ("usr/local/bin/scanner", "bin/kill"):
        stub = root / exe
        stub.parent.mkdir(parents=True, exist_ok=True)
        stub.write_text("#!/bin/sh\n")
        stub.chmod(0o755)
    units = root / "usr/lib/systemd/system"
    if not units.exists():
        shutil.copytree(_units_dir(), units, symlinks=True)
    target = root / "etc/systemd/system/scanner.service"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    return subprocess.run(
        [analyze, "verify", "--man=no", f"--root={root}", "scanner.service"],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_verify_is_silent(analyze: str, tmp_path: Path) -> None:
    r = verify(analyze, UNIT.read_text(encoding="utf-8"), tmp_path)
    assert (r.returncode, r.stderr, r.stdout) == (0, "", "")


def test_verify_would_catch_a_typo(analyze: str, tmp_path: Path) -> None:
    """The check above means something: a misspelt key only shows on stderr."""
    broken = UNIT.read_text(encoding="utf-8").replace("NoNewPrivileges=", "NoNewPrivilege=")
    r = verify(analyze, broken, tmp_path)
    assert "NoNewPrivilege" in r.stderr


def test_security_exposure_is_ok(analyze: str) -> None:
    threshold = f"--threshold={int(MAX_EXPOSURE * 10)}"
    r = subprocess.run(
        [analyze, "security", "--offline=true", "--no-pager", threshold, str(UNIT)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    m = re.search(r"Overall exposure level for scanner.service: (\d+\.\d)", r.stdout + r.stderr)
    assert m is not None, r.stdout + r.stderr
    assert float(m.group(1)) <= MAX_EXPOSURE
    assert r.returncode == 0, r.stdout + r.stderr


def test_hardening_the_issue_asks_for() -> None:
    u = unit()
    s = {k.removeprefix("Service."): v for k, v in u.items() if k.startswith("Service.")}
    assert s["Type"] == ["notify"] and s["WatchdogSec"]
    assert s["User"] == ["scanner"] and s["Group"] == ["scanner"]
    for key in ("StateDirectory", "ConfigurationDirectory", "CacheDirectory"):
        assert s[key] == ["scanner"]
    assert s["StateDirectoryMode"] == ["0770"] and s["UMask"] == ["0007"]
    assert s["AmbientCapabilities"] == ["CAP_NET_RAW"]
    assert s["CapabilityBoundingSet"] == ["CAP_NET_RAW"]
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp"):
        assert s[key] == ["yes"], key
    assert s["ProtectSystem"] == ["strict"]
    assert set(s["RestrictAddressFamilies"][0].split()) == {
        "AF_INET", "AF_INET6", "AF_PACKET", "AF_NETLINK", "AF_UNIX",
    }  # fmt: skip
    assert s["SystemCallFilter"] == ["@system-service"]
    assert s["LoadCredential"] == ["smtp:/etc/scanner/smtp-password"]
    assert s["RestartPreventExitStatus"] == ["78 2"]  # EX_CONFIG and "no scope"
    assert u["Install.WantedBy"] == ["multi-user.target"]


def test_exec_lines_match_the_cli() -> None:
    s = unit()
    argv = s["Service.ExecStart"][0].split()
    assert argv[:2] == ["/usr/local/bin/scanner", "daemon"]
    assert s["Service.ExecReload"] == ["/bin/kill -HUP $MAINPID"]  # SIGHUP: reload
    r = CliRunner().invoke(daemon, ["--help"])
    assert r.exit_code == 0
    for option in argv[2::2]:
        assert option in r.output


def test_sysusers_defines_the_unit_user(tmp_path: Path) -> None:
    lines = [
        line.split()
        for line in (SYSTEMD / "scanner.sysusers.conf").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert ["g", "scanner", "-"] in lines
    assert any(p[:3] == ["u", "scanner", "-:scanner"] for p in lines)
    tool = shutil.which("systemd-sysusers")
    if tool is not None:
        r = subprocess.run(
            [tool, f"--root={tmp_path}", "--dry-run", str(SYSTEMD / "scanner.sysusers.conf")],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert r.returncode == 0, r.stderr
        assert "Creating user 'scanner'" in r.stdout + r.stderr


def test_readme_covers_install_enable_logs_uninstall() -> None:
    text = (SYSTEMD / "README.md").read_text(encoding="utf-8")
    for needle in (
        "systemd-sysusers",
        "systemctl enable --now scanner.service",
        "journalctl -u scanner.service",
        "systemctl disable --now scanner.service",
        "/run/credentials/scanner.service/smtp",
    ):
        assert needle in text
