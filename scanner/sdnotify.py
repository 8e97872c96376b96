"""systemd's notify protocol (sd_notify(3)) in the standard library.

One AF_UNIX datagram per state change to $NOTIFY_SOCKET ("@name" is the
abstract namespace). Outside systemd there is no socket and every call is a
no-op; a failing send (no socket, or its queue full) is logged at DEBUG,
never raised and never waited on: a daemon must not stop scanning because
the notify socket went away.
"""

from __future__ import annotations

import logging
import os
import socket

_LOGGER = logging.getLogger(__name__)


def notify(state: str) -> bool:
    """Send e.g. "READY=1" or "WATCHDOG=1"; True when a socket took it."""
    addr = os.environ.get("NOTIFY_SOCKET", "")
    if not addr or addr[0] not in "/@":
        return False
    target = "\0" + addr[1:] if addr[0] == "@" else addr
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.setblocking(False)  # a reader that stopped reading must not stall a job
            sock.connect(target)
            sock.sendall(state.encode("utf-8", "replace"))
    except OSError as exc:
        _LOGGER.debug("sd_notify %r failed: %s", state, exc)
        return False
    return True


def watchdog_seconds() -> float | None:
    """Half of WATCHDOG_USEC (ping twice per period), when the watchdog is for us."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and (not pid.isdigit() or int(pid) != os.getpid()):
        return None
    return int(usec) / 2_000_000
