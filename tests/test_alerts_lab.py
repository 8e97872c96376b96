"""`scanner scan --once` with [alerts.email], in the lab, against a real aiosmtpd.

The SMTP server runs inside the scanner's namespace on its loopback (the
namespace has no other way to reach this process). The rule under test: the
first scan of a network sends ONE summary listing every finding; after that
one mail per new finding; nothing while nothing changes; with the server
down the mails wait in the outbox and go exactly once when it is back.
"""

from __future__ import annotations

import email
import email.policy
import json
import subprocess
import sys
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from lab import Lab, Scenario, load_scenario
from tests.conftest import LabFactory

# A real SMTP server (aiosmtpd) that writes every mail it accepts to a directory.
SINK = r"""
import pathlib, signal, sys, time
from aiosmtpd.controller import Controller
out, port = pathlib.Path(sys.argv[1]), int(sys.argv[2])
class Handler:
    async def handle_DATA(self, server, session, envelope):
        (out / f"{time.time_ns()}.eml").write_bytes(envelope.original_content or envelope.content)
        return "250 2.0.0 OK"
c = Controller(Handler(), hostname="127.0.0.1", port=port)
c.start()
print("ready", flush=True)
signal.sigwait({signal.SIGTERM, signal.SIGINT})
c.stop()
"""
PORT = 2525
LATE = {"name": "hik-late", "mac": "44:19:b6:00:00:20", "ip": "198.51.100.20"}


def scenario() -> Scenario:
    """The foundation lab plus one more Hikvision camera, kept unplugged at first."""
    data = load_scenario("foundation").to_dict()
    data["device"].append(
        {**LATE, "description": "Hikvision camera plugged in later", "service": []}
    )
    return Scenario.from_dict(data)


class LabSink:
    def __init__(self, lab: Lab, out: Path) -> None:
        self.lab, self.out = lab, out
        self.proc: subprocess.Popen[str] | None = None
        out.mkdir(exist_ok=True)

    def start(self) -> None:
        self.proc = self.lab.popen_in_scanner(
            [sys.executable, "-c", SINK, str(self.out), str(PORT)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.strip() == "ready", self.proc.stderr.read() if self.proc.stderr else line

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None

    def mails(self) -> list[EmailMessage]:
        return [
            email.message_from_bytes(p.read_bytes(), policy=email.policy.default)  # type: ignore[misc]
            for p in sorted(self.out.glob("*.eml"))
        ]


@pytest.fixture
def lab(lab_factory: LabFactory) -> Lab:
    return lab_factory(scenario())


@pytest.fixture
def sink(lab: Lab, tmp_path: Path) -> Iterator[LabSink]:
    s = LabSink(lab, tmp_path / "mail")
    s.start()
    yield s
    s.stop()


def write_config(lab: Lab, path: Path, db: Path, **email_over: Any) -> Path:
    mail = {
        "host": "127.0.0.1",
        "port": PORT,
        "security": "none",
        "from": "scanner@force.example",
        "to": ["soc@force.example"],
        "mode": "immediate",
        "timeout": 5,
        **email_over,
    }
    body = "\n".join(f"{k} = {json.dumps(v)}" for k, v in mail.items())
    path.write_text(
        f"""
[scope]
interfaces = ["{lab.scanner_iface}"]
cidrs = ["{lab.cidr}"]

[scan]
protocols = ["arp"]
arp_timeout = 0.5

[store]
db = "{db}"

[alerts.email]
{body}
""",
        encoding="utf-8",
    )
    return path


def scanner(lab: Lab, *args: str) -> subprocess.CompletedProcess[str]:
    return lab.run_in_scanner(
        [sys.executable, "-m", "scanner", *args], capture_output=True, text=True, timeout=120
    )


def scan(lab: Lab, config: Path) -> subprocess.CompletedProcess[str]:
    r = scanner(lab, "-v", "scan", "--once", "--config", str(config))
    assert r.returncode == 0, r.stderr
    return r


def plain(m: EmailMessage) -> str:
    body = m.get_body(("plain",))
    assert body is not None
    return str(body.get_content())


def plugged(lab: Lab, device: str, on: bool) -> None:
    """Unplug a camera as far as ARP can tell: its kernel stops answering (arp_ignore=8).

    Taking the link down would also flush the lab's static neighbour entries.
    """
    value = "0" if on else "8"
    r = lab.run_in_device(
        device, ["sysctl", "-qw", f"net.ipv4.conf.eth0.arp_ignore={value}"], capture_output=True
    )
    assert r.returncode == 0, r.stderr


def test_scan_once_mails_state_changes_exactly_once(
    lab: Lab, sink: LabSink, tmp_path: Path
) -> None:
    config = write_config(lab, tmp_path / "scanner.toml", tmp_path / "lab.db")
    plugged(lab, LATE["name"], on=False)

    # 1. first scan of the network: one summary listing the 3 flagged (and 2 non-home)
    scan(lab, config)
    [summary] = sink.mails()
    assert summary["Subject"] == (
        f"[scanner] First scan of {lab.cidr}: 8 devices, 3 flagged, 2 non-home-origin"
    )
    text = plain(summary)
    glance = [line for line in text.splitlines() if line.startswith("  - New flagged device:")]
    assert glance == [
        "  - New flagged device: Hikvision at 198.51.100.10",
        "  - New flagged device: Hikvision at 198.51.100.11",
        "  - New flagged device: Dahua at 198.51.100.12",
    ]
    for mac in ("44:19:b6:00:00:02", "bc:ad:28:00:00:03", "e0:50:8b:00:00:04"):
        assert f"MAC {mac}" in text

    # 2. the same lab again: no mail
    scan(lab, config)
    assert len(sink.mails()) == 1

    # 3. a new flagged camera is plugged in: exactly one mail
    plugged(lab, LATE["name"], on=True)
    scan(lab, config)
    mails = sink.mails()
    assert len(mails) == 2
    assert mails[1]["Subject"] == "[scanner] New flagged device: Hikvision at 198.51.100.20"
    assert "MAC 44:19:b6:00:00:20" in plain(mails[1])

    # 4. the mail server is down: the scan still succeeds, the mail waits
    sink.stop()
    lab.set_device_ip("axis-cam", "198.51.100.99")
    r = scan(lab, config)
    assert "alert mail not sent" in r.stderr and "connection refused" in r.stderr
    listed = scanner(lab, "alerts", "list", "--config", str(config), "--format", "json")
    assert listed.returncode == 0, listed.stderr
    [waiting] = [a for a in json.loads(listed.stdout) if a["status"] == "pending"]
    assert waiting["attempts"] == 1
    assert waiting["subject"] == (
        "[scanner] IP address changed: Axis Communications at 198.51.100.99"
    )
    table = scanner(lab, "alerts", "list", "--config", str(config))
    assert "pending" in table.stdout and "last error:" in table.stdout

    # 5. back up: delivered once, and never again
    sink.start()
    sent = scanner(lab, "alerts", "send", "--config", str(config))
    assert sent.returncode == 0, sent.stderr
    assert "sent 1 mails; 0 wait" in sent.stdout
    scan(lab, config)
    assert scanner(lab, "alerts", "send", "--config", str(config)).stdout.startswith("sent 0")
    mails = sink.mails()
    assert [m["Subject"] for m in mails[2:]] == [
        "[scanner] IP address changed: Axis Communications at 198.51.100.99"
    ]
    assert len({m["Message-ID"] for m in mails}) == len(mails) == 3

    # 6. a flagged camera unplugged for two scans and back: one mail
    plugged(lab, "dahua-cam", on=False)
    scan(lab, config)
    scan(lab, config)
    plugged(lab, "dahua-cam", on=True)
    scan(lab, config)
    mails = sink.mails()
    assert [m["Subject"] for m in mails[3:]] == [
        "[scanner] Flagged device back after absence: Dahua at 198.51.100.12"
    ]


def test_alerts_test_command(lab: Lab, sink: LabSink, tmp_path: Path) -> None:
    config = write_config(lab, tmp_path / "scanner.toml", tmp_path / "lab.db")
    r = scanner(lab, "alerts", "test", "--config", str(config))
    assert r.returncode == 0, r.stderr
    assert "test mail sent to soc@force.example via 127.0.0.1:2525 (none)" in r.stdout
    [m] = sink.mails()
    assert m["Subject"].startswith("[scanner] Test mail from the scanner on ")
    sink.stop()
    r = scanner(lab, "alerts", "test", "--config", str(config))
    assert r.returncode == 75  # EX_TEMPFAIL
    assert r.stderr.strip() == "scanner: 127.0.0.1:2525: connection refused"
