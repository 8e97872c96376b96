"""Build and tear down the simulated LAN: namespaces, a bridge, veth pairs.

Layout for prefix ``scnlab-<pid>`` (the PID of the process that owns the run):

    scnlab-<pid>-sw     bridge br0; ports "scan" and d001, d002, ...
    scnlab-<pid>-scan   lab0 = scenario scanner IP/MAC   (the scanner under test)
    scnlab-<pid>-d001   eth0 = device 1's IP/MAC         (one per device)

Every veth pair is created from inside the switch namespace with its peer
placed straight into the other lab namespace, so nothing is ever attached to
the host's namespace and no packet can reach a real interface.
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import json
import logging
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any

from lab.netns import NETNS_RUN_DIR, netns
from lab.responders.base import DEVICE_IFACE
from lab.scenario import DeviceSpec, Scenario, load_scenario
from lab.state import (
    PREFIX_ROOT,
    RunState,
    all_states,
    is_responder,
    owner_pid,
    pid_alive,
)

log = logging.getLogger("lab")

SCANNER_IFACE = "lab0"
BRIDGE = "br0"
MAX_DEVICES = 1000  # a Linux bridge takes 1024 ports
READY_TIMEOUT = 60.0  # responder start-up; 250 devices take well under a second
REPO_ROOT = Path(__file__).resolve().parent.parent
_PREFIX_RE = re.compile(r"^scnlab-[a-z0-9][a-z0-9-]{0,40}$")
_PROXY_VARS = ("http_proxy", "https_proxy", "ftp_proxy", "all_proxy", "no_proxy")
_counter = itertools.count()


class LabError(RuntimeError):
    """The lab could not be built or used."""


class LabUnavailable(LabError):
    """This machine cannot build labs at all (not root, no iproute2, not Linux)."""


def unavailable_reason() -> str | None:
    """Why a lab cannot be built here, or None if it can."""
    if not sys.platform.startswith("linux"):
        return "the lab needs Linux network namespaces"
    if os.geteuid() != 0:
        return "the lab needs root to create network namespaces"
    if shutil.which("ip") is None:
        return "the lab needs iproute2's `ip` command"
    if not _has_cap_sys_admin():
        return "the lab needs CAP_SYS_ADMIN to create network namespaces"
    return None


def _has_cap_sys_admin() -> bool:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) & (1 << 21))  # CAP_SYS_ADMIN
    except (OSError, ValueError):
        pass
    return True  # cannot tell: let `ip netns add` have the last word


def new_prefix() -> str:
    """``scnlab-<pid>`` for a process's first lab, ``scnlab-<pid>-<n>`` after."""
    n = next(_counter)
    return f"{PREFIX_ROOT}{os.getpid()}" + (f"-{n}" if n else "")


def list_netns() -> list[str]:
    try:
        return sorted(p.name for p in NETNS_RUN_DIR.iterdir())
    except FileNotFoundError:
        return []


def ip_batch(lines: Sequence[str], ns: str | None = None, *, force: bool = False) -> None:
    """Run many ``ip`` commands in one process (``ip [-n NS] -batch -``)."""
    argv = ["ip"] + (["-n", ns] if ns else []) + (["-force"] if force else []) + ["-batch", "-"]
    res = subprocess.run(
        argv, input="\n".join(lines) + "\n", text=True, capture_output=True, check=False
    )
    if res.returncode != 0:
        where = f" in {ns}" if ns else ""
        raise LabError(f"ip -batch{where} failed: {res.stderr.strip()}")


def delete_netns(names: Sequence[str]) -> None:
    existing = [n for n in names if (NETNS_RUN_DIR / n).exists()]
    if existing:
        ip_batch([f"netns del {n}" for n in existing], force=True)


def stop_process(pid: int | None, tag: str, timeout: float = 3.0) -> None:
    """SIGTERM, then SIGKILL, a responder we did not start ourselves."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if not is_responder(pid, tag):
            return
        assert pid is not None
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and is_responder(pid, tag):
            time.sleep(0.02)


def cleanup_stale() -> list[str]:
    """Remove what crashed earlier runs left: their responders and namespaces.

    Only namespaces named ``scnlab-<pid>-...`` whose PID is dead are touched,
    and not those of a lab kept up by ``python -m lab up`` (its responder is
    alive). Returns the namespaces removed.
    """
    protected: set[str] = set()
    for st in all_states():
        if st.alive():
            protected.update(st.namespaces)
            continue
        stop_process(st.responder_pid, st.prefix)
        st.remove()
    stale = [
        name
        for name in list_netns()
        if (pid := owner_pid(name)) is not None and name not in protected and not pid_alive(pid)
    ]
    if stale:
        log.info("removing stale lab namespaces: %s", " ".join(stale))
        delete_netns(stale)
    return stale


def _in_thread(fn: Callable[[], None]) -> None:
    """Run fn on a fresh thread: setns there never moves the caller's thread."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            fn()
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=run, name="lab-netns")
    t.start()
    t.join()
    if errors:
        raise errors[0]


class Lab:
    """One simulated LAN. Use as a context manager; ``down()`` never raises."""

    scanner_iface = SCANNER_IFACE

    def __init__(
        self,
        scenario: Scenario | Path | str,
        *,
        prefix: str | None = None,
        detached: bool = False,
    ) -> None:
        self.scenario = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
        if len(self.scenario.devices) > MAX_DEVICES:
            raise LabError(f"{len(self.scenario.devices)} devices: at most {MAX_DEVICES}")
        self.prefix = prefix or new_prefix()
        if not _PREFIX_RE.match(self.prefix):
            raise LabError(f"prefix {self.prefix!r} must match {_PREFIX_RE.pattern}")
        self.detached = detached  # CLI labs outlive the process that built them
        self.switch_ns = f"{self.prefix}-sw"
        self.scanner_ns = f"{self.prefix}-scan"
        self._ports = {d.name: f"d{i:03d}" for i, d in enumerate(self.scenario.devices, 1)}
        self._device_ns = {name: f"{self.prefix}-{port}" for name, port in self._ports.items()}
        self._responder: subprocess.Popen[str] | None = None
        self.responder_pid: int | None = None
        self.is_up = False
        self.build_seconds: float | None = None
        self._created = time.time()
        self._owner_pid = os.getpid()
        self._claimed = False

    # --- what the lab looks like ------------------------------------------------

    @property
    def devices(self) -> list[DeviceSpec]:
        return list(self.scenario.devices)

    @property
    def cidr(self) -> str:
        return self.scenario.network.cidr

    @property
    def scanner_ip(self) -> str:
        return self.scenario.network.scanner_ip

    @property
    def scanner_mac(self) -> str:
        return self.scenario.network.scanner_mac

    @property
    def namespaces(self) -> list[str]:
        return [self.switch_ns, self.scanner_ns, *self._device_ns.values()]

    def device(self, name: str) -> DeviceSpec:
        return self.scenario.device(name)

    def device_ns(self, name: str) -> str:
        try:
            return self._device_ns[name]
        except KeyError:
            raise KeyError(f"no device named {name!r} in this lab") from None

    def __repr__(self) -> str:
        state = "up" if self.is_up else "down"
        return f"<Lab {self.prefix} {self.scenario.name} {len(self._device_ns)} devices {state}>"

    # --- lifecycle -----------------------------------------------------------------

    def __enter__(self) -> Lab:
        self.up()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.down()

    def up(self) -> None:
        """Build everything and start the responders; on any failure, undo it all."""
        if self.is_up:
            raise LabError(f"{self.prefix} is already up")
        reason = unavailable_reason()
        if reason:
            raise LabUnavailable(reason)
        started = time.monotonic()
        cleanup_stale()
        clash = sorted(set(self.namespaces) & set(list_netns()))
        if clash:
            raise LabError(
                f"namespace {clash[0]} already exists; is another lab using {self.prefix}?"
            )
        self._claimed = True  # from here on, these names are ours to delete
        self._save_state()  # before the first namespace: a crash from here on is cleanable
        try:
            ip_batch([f"netns add {ns}" for ns in self.namespaces])
            _in_thread(self._quiet_ipv6)
            self._wire()
            self._configure()
            self._start_responders()
        except BaseException:
            self.down()
            raise
        self.is_up = True
        self.build_seconds = time.monotonic() - started
        self._save_state()
        log.info("%r built in %.2fs", self, self.build_seconds)

    def down(self) -> None:
        """Stop the responders, delete every namespace, drop the state. Idempotent.

        A lab that never got as far as claiming its names deletes nothing, so
        a failed ``up()`` on a clashing prefix cannot hurt the lab it clashed with.
        """
        if not self._claimed:
            return
        try:
            self._stop_responders()
        except Exception:
            log.exception("%s: stopping responders failed", self.prefix)
        try:
            delete_netns(self.namespaces)
        except Exception:
            log.exception("%s: deleting namespaces failed", self.prefix)
        with contextlib.suppress(Exception):
            self._state().remove()
        self.is_up = False

    def _quiet_ipv6(self) -> None:
        """No link-local addresses, DAD, MLD or RS noise on the lab wire.

        Set before any veth exists so "default" covers them too; these are the
        lab namespaces' own sysctls, the host's are never touched.
        """
        for ns in self.namespaces:
            with netns(ns):
                for scope in ("all", "default"):
                    knob = Path(f"/proc/sys/net/ipv6/conf/{scope}/disable_ipv6")
                    if knob.exists():
                        knob.write_text("1")

    def _wire(self) -> None:
        """The switch: a bridge that floods multicast, one veth port per host."""
        lines = [
            "link set lo up",
            f"link add {BRIDGE} type bridge forward_delay 0 stp_state 0 mcast_snooping 0",
            f"link set {BRIDGE} up",
            f"link add scan type veth peer name {SCANNER_IFACE} address {self.scanner_mac}"
            f" netns {self.scanner_ns}",
            f"link set scan master {BRIDGE} up",
        ]
        for dev in self.scenario.devices:
            port = self._ports[dev.name]
            lines += [
                f"link add {port} type veth peer name {DEVICE_IFACE} address {dev.mac}"
                f" netns {self._device_ns[dev.name]}",
                f"link set {port} master {BRIDGE} up",
            ]
        ip_batch(lines, self.switch_ns)

    def _host_lines(self, iface: str, ip: str) -> list[str]:
        plen = ipaddress.IPv4Network(self.cidr).prefixlen
        return [
            f"addr add {ip}/{plen} brd + dev {iface}",
            f"link set {iface} up",
            # A real LAN's default route would carry multicast and limited
            # broadcast; these are the lab-only equivalent: they point at the
            # namespace's one interface, and there is no default route.
            f"route replace 224.0.0.0/4 dev {iface}",
            f"route replace 255.255.255.255/32 dev {iface}",
        ]

    def _device_lines(self, dev: DeviceSpec) -> list[str]:
        # Static entry: devices never ARP for the scanner, so the wire carries
        # only the scanner's own ARP traffic.
        return [
            *self._host_lines(DEVICE_IFACE, dev.ip),
            f"neigh replace {self.scanner_ip} lladdr {self.scanner_mac} dev {DEVICE_IFACE}"
            " nud permanent",
        ]

    def _configure(self) -> None:
        jobs: list[tuple[str, list[str]]] = [
            (self.scanner_ns, ["link set lo up", *self._host_lines(SCANNER_IFACE, self.scanner_ip)])
        ]
        for dev in self.scenario.devices:
            jobs.append((self._device_ns[dev.name], ["link set lo up", *self._device_lines(dev)]))
        with ThreadPoolExecutor(max_workers=min(32, len(jobs))) as pool:
            for fut in [pool.submit(ip_batch, lines, ns) for ns, lines in jobs]:
                fut.result()

    def _start_responders(self) -> None:
        st = self._state()
        spec = {
            "tag": self.prefix,
            "home_netns": self.switch_ns,
            "devices": [
                {
                    "name": dev.name,
                    "netns": self._device_ns[dev.name],
                    "services": [s.to_dict() for s in dev.services],
                }
                for dev in self.scenario.devices
            ],
        }
        spec_path, log_path = st.files()[1], st.files()[2]
        spec_path.write_text(json.dumps(spec))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p
        )
        argv = [
            "ip", "netns", "exec", self.switch_ns,
            sys.executable, "-m", "lab.responders",
            "--spec", str(spec_path), "--tag", self.prefix,
        ]  # fmt: skip
        if not self.detached:
            argv += ["--owner-pid", str(os.getpid())]
        with log_path.open("ab") as log_file:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log_file,
                env=env,
                cwd=REPO_ROOT,
                text=True,
                start_new_session=True,  # a terminal's ^C/hang-up is not ours to pass on
            )
        self._responder = proc
        self.responder_pid = proc.pid
        self._save_state()
        assert proc.stdout is not None
        deadline = time.monotonic() + READY_TIMEOUT
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise LabError(
                        f"responders not ready after {READY_TIMEOUT:.0f}s; see {log_path}"
                    )
                ready, _, _ = select.select([proc.stdout], [], [], left)
                if not ready:
                    continue
                line = proc.stdout.readline()
                if line.strip() == "READY":
                    return
                if not line:
                    rc = proc.wait()
                    tail = log_path.read_text(errors="replace").strip().splitlines()[-5:]
                    raise LabError(f"responders exited with {rc}: " + " | ".join(tail))
        finally:
            proc.stdout.close()

    def _stop_responders(self) -> None:
        proc = self._responder
        if proc is not None:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=3)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=3)
            self._responder = None
        else:
            stop_process(self.responder_pid, self.prefix)
        self.responder_pid = None

    # --- state on disk ---------------------------------------------------------------

    def _state(self) -> RunState:
        return RunState(
            prefix=self.prefix,
            owner_pid=self._owner_pid,
            detached=self.detached,
            namespaces=self.namespaces,
            scenario=self.scenario.to_dict() | {"source": self.scenario.source},
            scanner_ns=self.scanner_ns,
            switch_ns=self.switch_ns,
            device_ns=dict(self._device_ns),
            responder_pid=self.responder_pid,
            up=self.is_up,
            created=self._created,
        )

    def _save_state(self) -> None:
        self._state().save()

    @classmethod
    def attach(cls, st: RunState) -> Lab:
        """A handle on a lab some other process built (``python -m lab down``)."""
        data = dict(st.scenario)
        source = data.pop("source", "<state>")
        lab = cls(Scenario.from_dict(data, source=source), prefix=st.prefix, detached=st.detached)
        lab._device_ns = dict(st.device_ns)
        lab.responder_pid = st.responder_pid
        lab.is_up = st.up
        lab._created = st.created
        lab._owner_pid = st.owner_pid
        lab._claimed = True
        return lab

    # --- using the lab ---------------------------------------------------------------

    def env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """Environment for commands in the scanner namespace.

        Proxy variables are dropped: no proxy is reachable from inside the lab.
        """
        env = dict(os.environ if base is None else base)
        for var in _PROXY_VARS:
            env.pop(var, None)
            env.pop(var.upper(), None)
        env.update(
            LAB_IFACE=SCANNER_IFACE,
            LAB_CIDR=self.cidr,
            LAB_SCANNER_IP=self.scanner_ip,
            LAB_NETNS=self.scanner_ns,
        )
        return env

    def exec_argv(self, argv: Sequence[str], ns: str | None = None) -> list[str]:
        return ["ip", "netns", "exec", ns or self.scanner_ns, *argv]

    def run_in_scanner(
        self, argv: Sequence[str], **kwargs: Any
    ) -> subprocess.CompletedProcess[str]:
        """``subprocess.run`` inside the scanner namespace (text mode, LAB_* env)."""
        return self._run(self.scanner_ns, argv, kwargs)

    def run_in_device(
        self, name: str, argv: Sequence[str], **kwargs: Any
    ) -> subprocess.CompletedProcess[str]:
        return self._run(self.device_ns(name), argv, kwargs)

    def popen_in_scanner(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[str]:
        kwargs.setdefault("text", True)
        kwargs["env"] = self.env(kwargs.get("env"))
        return subprocess.Popen(self.exec_argv(argv), **kwargs)

    def _run(
        self, ns: str, argv: Sequence[str], kwargs: dict[str, Any]
    ) -> subprocess.CompletedProcess[str]:
        kwargs.setdefault("text", True)
        kwargs.setdefault("check", False)
        kwargs["env"] = self.env(kwargs.get("env"))
        return subprocess.run(self.exec_argv(argv, ns), **kwargs)

    def set_device_ip(self, name: str, ip: str) -> None:
        """Move a device to a new address (same MAC), as a DHCP renumbering would.

        Its services keep answering: responders listen on the wildcard address.
        """
        moved = self.scenario.with_device_ip(name, ip)  # validates range and clashes
        dev = moved.device(name)
        # Dropping the last address also drops the device's routes and neighbours.
        ip_batch([f"addr flush dev {DEVICE_IFACE}", *self._device_lines(dev)], self.device_ns(name))
        self.scenario = moved
        if self.is_up:
            self._save_state()
