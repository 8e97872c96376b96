"""Entering a named network namespace from Python, one thread at a time.

Python 3.11 has no ``os.setns``, so libc's setns(2) is called through ctypes.
setns(CLONE_NEWNET) changes only the calling thread's namespace, and a socket
keeps the namespace it was created in, which is what lets one process serve
sockets that live in 250 different device namespaces.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CLONE_NEWNET = 0x40000000
NETNS_RUN_DIR = Path("/run/netns")

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def setns(fd: int, nstype: int = CLONE_NEWNET) -> None:
    """Move the calling thread into the namespace behind ``fd``."""
    if _libc.setns(fd, nstype) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def current_netns_inode() -> int:
    """Identity of the calling thread's network namespace."""
    return Path("/proc/thread-self/ns/net").stat().st_ino


def netns_inode(name: str) -> int:
    return (NETNS_RUN_DIR / name).stat().st_ino


def root_netns_inode() -> int | None:
    """The namespace of PID 1, i.e. the host's real one; None if unreadable."""
    try:
        return Path("/proc/1/ns/net").stat().st_ino
    except OSError:
        return None


@contextmanager
def netns(name: str) -> Iterator[None]:
    """Run the body with this thread inside netns ``name``, then come back.

    Refuses to "enter" a namespace that is the one we are already in, so a
    typo can never turn into binding a socket in the wrong place.
    """
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        target = os.open(NETNS_RUN_DIR / name, os.O_RDONLY | os.O_CLOEXEC)
        try:
            if os.fstat(target).st_ino == os.fstat(home).st_ino:
                raise OSError(f"netns {name!r} is the namespace we are already in")
            setns(target)
            try:
                yield
            finally:
                setns(home)
        finally:
            os.close(target)
    finally:
        os.close(home)
