"""The lab's one responder process: every device's services on one loop.

Started by ``Lab.up`` as ``ip netns exec <switch-ns> python -m lab.responders
--spec FILE``, so even a bug that skipped setns would bind inside the lab's
switch namespace, never the host's. It enters each device namespace in turn
to create that device's sockets, returns, prints ``READY`` and serves until
SIGTERM/SIGINT or until ``--owner-pid`` exits (a crashed test run must not
leave it behind).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from lab.netns import current_netns_inode, netns, netns_inode, root_netns_inode
from lab.responders.base import Responder, registry
from lab.scenario import ServiceSpec

log = logging.getLogger("lab.responders")


def open_all(spec: dict[str, Any]) -> list[Responder]:
    """Create every responder's sockets inside its device's namespace."""
    kinds = registry()
    home = current_netns_inode()
    out: list[Responder] = []
    for dev in spec["devices"]:
        responders = []
        for svc in dev["services"]:
            data = dict(svc)
            service = ServiceSpec(kind=data.pop("kind"), port=data.pop("port"), options=data)
            responders.append(kinds[service.kind](dev["name"], service))
        if not responders:
            continue
        with netns(dev["netns"]):
            for r in responders:
                r.bind()
        if current_netns_inode() != home:  # setns back failed: stop before serving anything
            raise RuntimeError("did not return to the responder's own namespace")
        out.extend(responders)
    return out


async def serve(responders: list[Responder], owner_pid: int | None) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    if owner_pid is not None:
        try:
            pidfd = os.pidfd_open(owner_pid)
        except ProcessLookupError:
            log.error("owner %d is already gone", owner_pid)
            return
        loop.add_reader(pidfd, stop.set)  # readable once the owner exits
    for r in responders:
        await r.start()
    print("READY", flush=True)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())  # the parent stops reading after READY
    os.close(devnull)
    log.info("serving %d services", len(responders))
    await stop.wait()
    for r in responders:
        with contextlib.suppress(Exception):
            await r.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lab.responders", description=__doc__)
    ap.add_argument("--spec", required=True, type=Path, help="JSON written by Lab.up")
    ap.add_argument("--tag", default="", help="the lab's prefix, so stale runs can be found")
    ap.add_argument("--owner-pid", type=int, help="exit when this process exits")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    spec = json.loads(args.spec.read_text())
    try:
        home = netns_inode(spec["home_netns"])
    except OSError:
        home = None
    here = current_netns_inode()
    if here != home or here == root_netns_inode():
        print(
            "lab.responders: refusing to run outside the lab's switch namespace; "
            f"start it with `ip netns exec {spec['home_netns']} ...`",
            file=sys.stderr,
        )
        return 2
    responders = open_all(spec)
    asyncio.run(serve(responders, args.owner_pid))
    return 0


if __name__ == "__main__":
    sys.exit(main())
