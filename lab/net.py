"""Build and tear down the simulated network: namespaces, bridges, veth pairs.

Layout for prefix ``scnlab-<pid>`` (the PID of the process that owns the run):

    scnlab-<pid>-sw     one bridge per segment: br0 ("lan"), br1, br2, ...
                        ports "scan", "scan1", ... (scanner), d001, ... (devices),
                        r01e0, r01e1, ... (router 1's interfaces)
    scnlab-<pid>-scan   lab0 = scenario scanner IP/MAC on "lan"   (the scanner under test)
                        lab1, lab2, ... on segments that set a scanner_ip
    scnlab-<pid>-d001   eth0 = device 1's IP/MAC on its segment   (one per device)
    scnlab-<pid>-r01    eth0, eth1, ... = router 1's interfaces    (ip_forward=1 here only)

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
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from lab.netns import NETNS_RUN_DIR, netns
from lab.responders.base import DEVICE_IFACE
from lab.scenario import (
    PRIMARY_SEGMENT,
    DeviceSpec,
    RouterSpec,
    Scenario,
    SegmentSpec,
    load_scenario,
)
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
BRIDGE = "br0"  # the primary segment's bridge; others are br1, br2, ...
MAX_DEVICES = 1000  # a Linux bridge takes 1024 ports
MAX_ROUTERS = 16
# Devices get static entries for every other device on their segment up to this
# many hosts; above it only for the scanner and routers (n² entries cost ~20 µs
# each to add: a 250-device mesh would double the build time).
NEIGH_MESH_MAX = 64
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
    if not existing:
        return
    try:
        ip_batch([f"netns del {n}" for n in existing], force=True)
    except LabError:
        # Another process's cleanup may have removed some first; only what is
        # still there is a failure.
        if any((NETNS_RUN_DIR / n).exists() for n in existing):
            raise


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


@dataclass(frozen=True, slots=True)
class _Host:
    """One interface on a segment: who owns it, and what others need to reach it."""

    ns: str
    iface: str
    ip: str
    mac: str
    role: str  # "scanner", "device" or "router"


def _run_batches(jobs: Iterable[tuple[str, list[str]]]) -> None:
    """``ip -n NS -batch`` per namespace, in parallel."""
    todo = [(ns, lines) for ns, lines in jobs if lines]
    if not todo:
        return
    with ThreadPoolExecutor(max_workers=min(32, len(todo))) as pool:
        for fut in [pool.submit(ip_batch, lines, ns) for ns, lines in todo]:
            fut.result()


def _write_sysctl(path: str, value: str) -> None:
    knob = Path("/proc/sys") / path
    if knob.exists():
        knob.write_text(value)


class Lab:
    """One simulated network. Use as a context manager; ``down()`` never raises."""

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
        if len(self.scenario.routers) > MAX_ROUTERS:
            raise LabError(f"{len(self.scenario.routers)} routers: at most {MAX_ROUTERS}")
        self.prefix = prefix or new_prefix()
        if not _PREFIX_RE.match(self.prefix):
            raise LabError(f"prefix {self.prefix!r} must match {_PREFIX_RE.pattern}")
        self.detached = detached  # CLI labs outlive the process that built them
        self.switch_ns = f"{self.prefix}-sw"
        self.scanner_ns = f"{self.prefix}-scan"
        self._ports = {d.name: f"d{i:03d}" for i, d in enumerate(self.scenario.devices, 1)}
        self._device_ns = {name: f"{self.prefix}-{port}" for name, port in self._ports.items()}
        self._bridges = {s.name: f"br{i}" for i, s in enumerate(self.scenario.all_segments)}
        self._scanner_ifaces: dict[str, str] = {}
        for seg in self.scenario.all_segments:
            if seg.scanner_ip:
                self._scanner_ifaces[seg.name] = f"lab{len(self._scanner_ifaces)}"
        self._router_ids = {r.name: f"r{i:02d}" for i, r in enumerate(self.scenario.routers, 1)}
        self._router_ns = {name: f"{self.prefix}-{rid}" for name, rid in self._router_ids.items()}
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
    def routers(self) -> list[RouterSpec]:
        return list(self.scenario.routers)

    @property
    def segments(self) -> list[SegmentSpec]:
        """Every segment, "lan" (the ``[network]`` table) first."""
        return list(self.scenario.all_segments)

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
    def scanner_ifaces(self) -> dict[str, str]:
        """Segment name -> the scanner's interface on it ("lan" -> "lab0")."""
        return dict(self._scanner_ifaces)

    @property
    def namespaces(self) -> list[str]:
        return [
            self.switch_ns,
            self.scanner_ns,
            *self._device_ns.values(),
            *self._router_ns.values(),
        ]

    def segment_cidr(self, name: str) -> str:
        try:
            return self.scenario.segment_cidr(name)
        except KeyError:
            raise KeyError(f"no segment named {name!r} in this lab") from None

    def bridge(self, segment: str) -> str:
        """The segment's bridge in the switch namespace (sniff there to see all of it)."""
        try:
            return self._bridges[segment]
        except KeyError:
            raise KeyError(f"no segment named {segment!r} in this lab") from None

    def device(self, name: str) -> DeviceSpec:
        return self.scenario.device(name)

    def device_ns(self, name: str) -> str:
        try:
            return self._device_ns[name]
        except KeyError:
            raise KeyError(f"no device named {name!r} in this lab") from None

    def router(self, name: str) -> RouterSpec:
        return self.scenario.router(name)

    def router_ns(self, name: str) -> str:
        try:
            return self._router_ns[name]
        except KeyError:
            raise KeyError(f"no router named {name!r} in this lab") from None

    def router_iface(self, router: str, segment: str) -> str:
        """The router's interface on ``segment`` inside its namespace: eth0, eth1, ..."""
        spec = self.router(router)
        for j, iface in enumerate(spec.interfaces):
            if iface.segment == segment:
                return f"eth{j}"
        raise KeyError(f"router {router!r} has no interface on segment {segment!r}")

    def __repr__(self) -> str:
        state = "up" if self.is_up else "down"
        extra = ""
        if self.scenario.segments or self.scenario.routers:
            extra = f" {len(self._bridges)} segments {len(self._router_ns)} routers"
        devices = f"{len(self._device_ns)} devices"
        return f"<Lab {self.prefix} {self.scenario.name} {devices}{extra} {state}>"

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
        """No IPv6 noise on the lab wire; IPv4 forwarding in routers only.

        Set before any veth exists so "default" covers them too; these are the
        lab namespaces' own sysctls, the host's are never touched. Forwarding is
        written either way: a new namespace copies the host's IPv4 settings,
        and a host that forwards must not turn the scanner into a router.
        """
        routers = set(self._router_ns.values())
        for ns in self.namespaces:
            with netns(ns):
                for scope in ("all", "default"):
                    _write_sysctl(f"net/ipv6/conf/{scope}/disable_ipv6", "1")
                if ns in routers:
                    _write_sysctl("net/ipv4/ip_forward", "1")
                    for scope in ("all", "default"):
                        # ARP answers only for the asking interface's own address,
                        # and no ICMP redirects: a quiet, predictable router.
                        _write_sysctl(f"net/ipv4/conf/{scope}/arp_ignore", "1")
                        _write_sysctl(f"net/ipv4/conf/{scope}/arp_announce", "2")
                        _write_sysctl(f"net/ipv4/conf/{scope}/send_redirects", "0")
                else:
                    _write_sysctl("net/ipv4/ip_forward", "0")

    def _wire(self) -> None:
        """The switch: one bridge per segment that floods multicast, one veth port per host."""
        lines = ["link set lo up"]
        for br in self._bridges.values():
            lines += [
                f"link add {br} type bridge forward_delay 0 stp_state 0 mcast_snooping 0",
                f"link set {br} up",
            ]
        for seg in self.scenario.all_segments:
            if seg.name not in self._scanner_ifaces:
                continue
            iface = self._scanner_ifaces[seg.name]
            port = "scan" if iface == SCANNER_IFACE else f"scan{iface[3:]}"
            lines += [
                f"link add {port} type veth peer name {iface} address {seg.scanner_mac}"
                f" netns {self.scanner_ns}",
                f"link set {port} master {self._bridges[seg.name]} up",
            ]
        for dev in self.scenario.devices:
            port = self._ports[dev.name]
            lines += [
                f"link add {port} type veth peer name {DEVICE_IFACE} address {dev.mac}"
                f" netns {self._device_ns[dev.name]}",
                f"link set {port} master {self._bridges[dev.segment]} up",
            ]
        for router in self.scenario.routers:
            rid = self._router_ids[router.name]
            for j, ri in enumerate(router.interfaces):
                lines += [
                    f"link add {rid}e{j} type veth peer name eth{j} address {ri.mac}"
                    f" netns {self._router_ns[router.name]}",
                    f"link set {rid}e{j} master {self._bridges[ri.segment]} up",
                ]
        ip_batch(lines, self.switch_ns)

    def _segment_hosts(self, scenario: Scenario | None = None) -> dict[str, list[_Host]]:
        """Every interface on every segment, as the neighbour entries need them."""
        scenario = scenario or self.scenario
        hosts: dict[str, list[_Host]] = {s.name: [] for s in scenario.all_segments}
        for seg in scenario.all_segments:
            if seg.scanner_ip and seg.scanner_mac:
                iface = self._scanner_ifaces[seg.name]
                hosts[seg.name].append(
                    _Host(self.scanner_ns, iface, seg.scanner_ip, seg.scanner_mac, "scanner")
                )
        for router in scenario.routers:
            for j, ri in enumerate(router.interfaces):
                hosts[ri.segment].append(
                    _Host(self._router_ns[router.name], f"eth{j}", ri.ip, ri.mac, "router")
                )
        for dev in scenario.devices:
            hosts[dev.segment].append(
                _Host(self._device_ns[dev.name], DEVICE_IFACE, dev.ip, dev.mac, "device")
            )
        return hosts

    @staticmethod
    def _neigh_lines(me: _Host, others: Iterable[_Host]) -> list[str]:
        # Static entries: routers and devices do not ARP for each other, so the
        # wire carries only the scanner's own ARP traffic, and the kernel's
        # neighbour table, shared by every namespace (gc_thresh3 = 1024 dynamic
        # entries; permanent ones are not counted), is left to the scanner.
        return [
            f"neigh replace {h.ip} lladdr {h.mac} dev {me.iface} nud permanent"
            for h in others
            if h.ns != me.ns
        ]

    def _addr_lines(self, iface: str, ip: str, segment: str) -> list[str]:
        plen = ipaddress.IPv4Network(self.scenario.segment_cidr(segment)).prefixlen
        return [f"addr add {ip}/{plen} brd + dev {iface}", f"link set {iface} up"]

    @staticmethod
    def _mcast_lines(iface: str) -> list[str]:
        # A real LAN's default route would carry multicast and limited
        # broadcast; these are the lab-only equivalent: they point at the
        # namespace's first interface, whether or not it has a default route.
        return [
            f"route replace 224.0.0.0/4 dev {iface}",
            f"route replace 255.255.255.255/32 dev {iface}",
        ]

    def _host_lines(self, iface: str, ip: str, segment: str = PRIMARY_SEGMENT) -> list[str]:
        return [*self._addr_lines(iface, ip, segment), *self._mcast_lines(iface)]

    def _device_lines(
        self, dev: DeviceSpec, hosts: dict[str, list[_Host]] | None = None
    ) -> list[str]:
        hosts = self._segment_hosts() if hosts is None else hosts
        me = _Host(self._device_ns[dev.name], DEVICE_IFACE, dev.ip, dev.mac, "device")
        lines = self._host_lines(DEVICE_IFACE, dev.ip, dev.segment)
        if dev.gateway:
            lines.append(f"route replace default via {dev.gateway} dev {DEVICE_IFACE}")
        return lines + self._neigh_lines(me, self._device_peers(hosts[dev.segment]))

    @staticmethod
    def _device_peers(segment_hosts: list[_Host]) -> list[_Host]:
        """Whom a device on this segment gets static neighbour entries for."""
        if len(segment_hosts) <= NEIGH_MESH_MAX:
            return segment_hosts
        return [h for h in segment_hosts if h.role != "device"]

    def _scanner_lines(self) -> list[str]:
        lines = ["link set lo up"]
        for seg in self.scenario.all_segments:
            if seg.scanner_ip:
                lines += self._addr_lines(self._scanner_ifaces[seg.name], seg.scanner_ip, seg.name)
        lines += self._mcast_lines(SCANNER_IFACE)
        gateway = self.scenario.network.scanner_gateway
        if gateway:
            lines.append(f"route replace default via {gateway} dev {SCANNER_IFACE}")
        return lines

    def _router_lines(self, router: RouterSpec, hosts: dict[str, list[_Host]]) -> list[str]:
        ns = self._router_ns[router.name]
        lines = ["link set lo up"]
        for j, ri in enumerate(router.interfaces):
            lines += self._addr_lines(f"eth{j}", ri.ip, ri.segment)
        lines += self._mcast_lines("eth0")
        if router.gateway:
            seg = next(
                ri.segment
                for r in self.scenario.routers
                for ri in r.interfaces
                if ri.ip == router.gateway
            )
            via = self.router_iface(router.name, seg)
            lines.append(f"route replace default via {router.gateway} dev {via}")
        for j, ri in enumerate(router.interfaces):
            me = _Host(ns, f"eth{j}", ri.ip, ri.mac, "router")
            lines += self._neigh_lines(me, hosts[ri.segment])
        return lines

    def _configure(self) -> None:
        hosts = self._segment_hosts()
        jobs: list[tuple[str, list[str]]] = [(self.scanner_ns, self._scanner_lines())]
        for dev in self.scenario.devices:
            jobs.append(
                (self._device_ns[dev.name], ["link set lo up", *self._device_lines(dev, hosts)])
            )
        for router in self.scenario.routers:
            jobs.append((self._router_ns[router.name], self._router_lines(router, hosts)))
        _run_batches(jobs)

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
            ]
            + [  # a router runs services the same way: "eth0" is its first interface
                {
                    "name": router.name,
                    "netns": self._router_ns[router.name],
                    "services": [s.to_dict() for s in router.services],
                }
                for router in self.scenario.routers
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
            router_ns=dict(self._router_ns),
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
        if st.router_ns:
            lab._router_ns = dict(st.router_ns)
        lab.responder_pid = st.responder_pid
        lab.is_up = st.up
        lab._created = st.created
        lab._owner_pid = st.owner_pid
        lab._claimed = True
        return lab

    # --- using the lab ---------------------------------------------------------------

    def env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """Environment for commands in the scanner namespace.

        ``LAB_IFACE``/``LAB_CIDR`` are the primary segment's; ``LAB_IFACES`` lists
        the scanner's interfaces (lab0 first) and ``LAB_CIDRS`` every segment's
        cidr ("lan" first), including segments reached only through a router.
        Proxy variables are dropped: no proxy is reachable from inside the lab.
        """
        env = dict(os.environ if base is None else base)
        for var in _PROXY_VARS:
            env.pop(var, None)
            env.pop(var.upper(), None)
        env.update(
            LAB_IFACE=SCANNER_IFACE,
            LAB_CIDR=self.cidr,
            LAB_IFACES=" ".join(self._scanner_ifaces.values()),
            LAB_CIDRS=" ".join(s.cidr for s in self.scenario.all_segments),
            LAB_SCANNER_IP=self.scanner_ip,
            LAB_NETNS=self.scanner_ns,
        )
        return env

    def scan_argv(
        self,
        db: str | os.PathLike[str],
        *,
        cidr: str | None = None,
        protocols: Sequence[str] = (),
        verbose: bool = False,
        entry: Sequence[str] = ("-m", "scanner"),
    ) -> list[str]:
        """``scanner scan --once`` of this lab, from the scanner namespace's lab0.

        The scope is the primary segment's cidr unless ``cidr`` is given; no
        ``protocols`` means every protocol. ``entry`` replaces ``-m scanner``
        for a wrapper that runs the CLI itself (``("-c", CODE)``).
        """
        argv = [sys.executable, *entry, *(["-v"] if verbose else []), "scan", "--once"]
        argv += ["--interface", SCANNER_IFACE, "--cidr", cidr or self.cidr, "--db", os.fspath(db)]
        for proto in protocols:
            argv += ["--protocol", proto]
        return argv

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

    def run_in_router(
        self, name: str, argv: Sequence[str], **kwargs: Any
    ) -> subprocess.CompletedProcess[str]:
        return self._run(self.router_ns(name), argv, kwargs)

    def popen_in_scanner(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[str]:
        return self._popen(self.scanner_ns, argv, kwargs)

    def popen_in_device(
        self, name: str, argv: Sequence[str], **kwargs: Any
    ) -> subprocess.Popen[str]:
        return self._popen(self.device_ns(name), argv, kwargs)

    def popen_in_router(
        self, name: str, argv: Sequence[str], **kwargs: Any
    ) -> subprocess.Popen[str]:
        """A long-running command in the router, e.g. a sniffer on ``router_iface``."""
        return self._popen(self.router_ns(name), argv, kwargs)

    def _popen(self, ns: str, argv: Sequence[str], kwargs: dict[str, Any]) -> subprocess.Popen[str]:
        kwargs.setdefault("text", True)
        kwargs["env"] = self.env(kwargs.get("env"))
        return subprocess.Popen(self.exec_argv(argv, ns), **kwargs)

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
        The other hosts on its segment get their static neighbour entry moved;
        the scanner's ARP cache is left as a real one would be.
        """
        old = self.device(name)
        moved = self.scenario.with_device_ip(name, ip)  # validates range and clashes
        dev = moved.device(name)
        hosts = self._segment_hosts(moved)
        me = self._device_ns[name]
        # Dropping the last address also drops the device's routes and neighbours.
        jobs = [(me, [f"addr flush dev {DEVICE_IFACE}", *self._device_lines(dev, hosts)])]
        peers = hosts[dev.segment]
        if len(peers) > NEIGH_MESH_MAX:  # only routers hold entries for every device
            peers = [h for h in peers if h.role == "router"]
        for h in peers:
            if h.ns != me and h.role != "scanner":
                jobs.append(
                    (
                        h.ns,
                        [
                            f"neigh replace {dev.ip} lladdr {dev.mac} dev {h.iface} nud permanent",
                            f"neigh del {old.ip} dev {h.iface}",
                        ],
                    )
                )
        _run_batches(jobs)
        self.scenario = moved
        if self.is_up:
            self._save_state()
