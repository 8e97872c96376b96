"""Run state on disk, so a later command (or a later run) can find a lab.

One JSON file per lab run, ``<state dir>/<prefix>.json`` (state dir:
``$SCANNER_LAB_STATE_DIR``, default ``/run/scanner-lab``; /run is tmpfs, so a
reboot, which also drops every namespace, drops the state too). It is written
before the first namespace is made, so even a run killed half-way can be
cleaned up by the next one.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

PREFIX_ROOT = "scnlab-"
# scnlab-<owner pid>, optionally -<n>, then -<role>: scnlab-4242-sw, scnlab-4242-1-d007
_OWNED_RE = re.compile(r"^scnlab-(\d+)(?:-|$)")


def state_dir() -> Path:
    return Path(os.environ.get("SCANNER_LAB_STATE_DIR", "/run/scanner-lab"))


def owner_pid(name: str) -> int | None:
    """The PID embedded in a lab namespace or prefix name, None if not lab-made."""
    m = _OWNED_RE.match(name)
    return int(m.group(1)) if m else None


def pid_alive(pid: int | None) -> bool:
    if pid is None or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:
        return True
    return True


def is_responder(pid: int | None, tag: str) -> bool:
    """Is ``pid`` this lab's responder process (and not a recycled PID)?"""
    if not pid_alive(pid):
        return False
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"lab.responders" in argv and tag.encode() in argv


@dataclass
class RunState:
    prefix: str
    owner_pid: int
    detached: bool  # built by `python -m lab up`: lives on after its owner exits
    namespaces: list[str]
    scenario: dict[str, Any]
    scanner_ns: str
    switch_ns: str
    device_ns: dict[str, str]
    router_ns: dict[str, str] = field(default_factory=dict)
    responder_pid: int | None = None
    up: bool = False
    created: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return state_dir() / f"{self.prefix}.json"

    def files(self) -> list[Path]:
        """Every file this run owns in the state dir."""
        base = state_dir() / self.prefix
        return [self.path, base.with_suffix(".responders.json"), base.with_suffix(".log")]

    def save(self) -> None:
        state_dir().mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        tmp.replace(self.path)

    def remove(self) -> None:
        for f in self.files():
            f.unlink(missing_ok=True)

    def alive(self) -> bool:
        """Someone still answers for this lab: its owner, or (detached) its responder."""
        if pid_alive(self.owner_pid):
            return True
        return self.detached and is_responder(self.responder_pid, self.prefix)

    @classmethod
    def load(cls, path: Path) -> RunState:
        return cls(**json.loads(path.read_text()))


def all_states() -> list[RunState]:
    """Every readable state file; unreadable ones are skipped, not fatal."""
    out: list[RunState] = []
    d = state_dir()
    if not d.is_dir():
        return out
    for path in sorted(d.glob(f"{PREFIX_ROOT}*.json")):
        if path.name.endswith(".responders.json"):
            continue
        try:
            out.append(RunState.load(path))
        except (OSError, ValueError, TypeError):
            continue
    return out


def detached_state() -> RunState | None:
    """The lab built by `python -m lab up`, if any (newest first)."""
    states = [s for s in all_states() if s.detached]
    return max(states, key=lambda s: s.created) if states else None
