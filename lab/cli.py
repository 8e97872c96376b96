"""``python -m lab up|run|status|down|clean``: a lab that outlives one command.

``up`` builds a detached lab (its responder process keeps it alive) and
records it in the state dir; the other commands find it there.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from dataclasses import asdict

from lab.net import Lab, LabError, cleanup_stale
from lab.scenario import ScenarioError
from lab.state import RunState, detached_state, is_responder, state_dir

NOT_UP = "no lab is up; run `python -m lab up SCENARIO`"


class CliError(Exception):
    """A one-line message for the user and exit status 1."""


def _current() -> RunState:
    st = detached_state()
    if st is None:
        raise CliError(NOT_UP)
    return st


def cmd_up(args: argparse.Namespace) -> int:
    cleanup_stale()
    st = detached_state()
    if st is not None:
        raise CliError(
            f"a lab is already up ({st.prefix}, scenario {st.scenario.get('name')}); "
            "run `python -m lab down` first"
        )
    lab = Lab(args.scenario, detached=True)
    lab.up()
    print(f"lab {lab.prefix} up in {lab.build_seconds:.2f}s: scenario {lab.scenario.name}")
    print(
        f"  scanner: netns {lab.scanner_ns}, {lab.scanner_iface} {lab.scanner_ip} {lab.scanner_mac}"
    )
    print(f"  network: {lab.cidr}, {len(lab.devices)} devices")
    for line in _topology(lab):
        print(f"  {line}")
    print("  use it:  python -m lab run -- CMD [ARGS...]")
    return 0


def _topology(lab: Lab) -> list[str]:
    """Segments and routers, for labs that have more than the one LAN."""
    if len(lab.segments) == 1 and not lab.routers:
        return []
    ifaces = lab.scanner_ifaces
    lines = []
    for seg in lab.segments:
        where = f"scanner {ifaces[seg.name]} {seg.scanner_ip}" if seg.name in ifaces else "routed"
        count = sum(1 for d in lab.devices if d.segment == seg.name)
        lines.append(f"segment {seg.name:<10} {seg.cidr:<18} {lab.bridge(seg.name):<5} {where}")
        lines[-1] += f", {count} devices"
    for router in lab.routers:
        legs = " ".join(
            f"{lab.router_iface(router.name, i.segment)}={i.segment}:{i.ip}"
            for i in router.interfaces
        )
        lines.append(f"router  {router.name:<10} {lab.router_ns(router.name)}  {legs}")
    return lines


def cmd_run(args: argparse.Namespace) -> int:
    argv = list(args.argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise CliError("nothing to run; usage: python -m lab run -- CMD [ARGS...]")
    st = _current()
    lab = Lab.attach(st)
    if not is_responder(st.responder_pid, st.prefix):
        raise CliError(
            f"lab {st.prefix} is broken (responders not running); run `python -m lab down`"
        )
    full = lab.exec_argv(argv)
    sys.stdout.flush()
    os.execvpe(full[0], full, lab.env())  # the command's exit status becomes ours


def cmd_status(args: argparse.Namespace) -> int:
    st = _current()
    alive = is_responder(st.responder_pid, st.prefix)
    if args.json:
        print(json.dumps(asdict(st) | {"responders_running": alive}, indent=2))
        return 0 if alive else 1
    lab = Lab.attach(st)
    print(f"lab {st.prefix}: scenario {lab.scenario.name} ({lab.scenario.source})")
    print(f"  state:      {st.path}")
    print(f"  responders: pid {st.responder_pid} " + ("running" if alive else "NOT RUNNING"))
    print(f"  scanner:    netns {lab.scanner_ns}, {lab.scanner_iface} {lab.scanner_ip}", end="")
    print(f" {lab.scanner_mac}")
    print(f"  network:    {lab.cidr}")
    if lab.scenario.network.scanner_gateway:
        print(f"  gateway:    {lab.scenario.network.scanner_gateway}")
    for line in _topology(lab):
        print(f"  {line}")
    for dev in lab.devices:
        svcs = ", ".join(f"{s.kind}/{s.port}" for s in dev.services) or "-"
        seg = "" if len(lab.segments) == 1 else f" {dev.segment:<10}"
        print(f"  {dev.name:<16}{seg} {dev.ip:<15} {dev.mac}  {lab.device_ns(dev.name):<22} {svcs}")
    return 0 if alive else 1


def cmd_down(args: argparse.Namespace) -> int:
    st = detached_state()
    if st is None:
        removed = cleanup_stale()
        print(NOT_UP if not removed else f"removed stale namespaces: {' '.join(removed)}")
        return 0
    Lab.attach(st).down()
    print(f"lab {st.prefix} down")
    return 0


def cmd_clean(args: argparse.Namespace) -> int:
    removed = cleanup_stale()
    print(f"removed: {' '.join(removed)}" if removed else "nothing stale")
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m lab",
        description="Simulated camera LAN in network namespaces. State: " + str(state_dir()),
    )
    ap.add_argument("-v", "--verbose", action="store_true")
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("up", help="build a lab and leave it running")
    p.add_argument("scenario", help="name in lab/scenarios/ (e.g. foundation) or a .toml path")
    p.set_defaults(func=cmd_up)
    p = sub.add_parser(
        "run",
        help="run CMD in the scanner namespace (env LAB_IFACE, LAB_CIDR, LAB_IFACES, LAB_CIDRS)",
    )
    p.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- CMD [ARGS...]")
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("status", help="show the running lab")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)
    p = sub.add_parser("down", help="tear the lab down (idempotent)")
    p.set_defaults(func=cmd_down)
    p = sub.add_parser("clean", help="remove what crashed lab runs left behind")
    p.set_defaults(func=cmd_clean)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="lab: %(message)s"
    )
    try:
        return int(args.func(args))
    except (CliError, LabError, ScenarioError) as exc:
        print(f"lab: {exc}", file=sys.stderr)
        return 1
