"""Running lab commands as nobody with CAP_NET_RAW only (capture tests and bench).

The checkout may sit under a root-only directory (`mktemp -d` is 0700, and CI
clones into one); nobody must be able to reach the code and the venv in it.
"""

from __future__ import annotations

import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

NOBODY = 65534
# Drop to nobody keeping CAP_NET_RAW and nothing else: effective, permitted,
# inheritable, ambient and bounding sets all {net_raw}.
SETPRIV = [
    "setpriv",
    f"--reuid={NOBODY}",
    f"--regid={NOBODY}",
    "--clear-groups",
    "--inh-caps=-all,+net_raw",
    "--ambient-caps=-all,+net_raw",
    "--bounding-set=-all,+net_raw",
]


@contextmanager
def reachable_by_others(path: Path) -> Iterator[None]:
    """Let others list `path` (o+rx) and pass through its ancestors (o+x only); undo after.

    Listing matters: Python's import system reads the directories on sys.path.
    """
    changed: list[tuple[Path, int]] = []
    try:
        for d, need in [(path, stat.S_IROTH | stat.S_IXOTH)] + [
            (a, stat.S_IXOTH) for a in path.parents
        ]:
            mode = stat.S_IMODE(d.stat().st_mode)
            if mode & need != need:
                d.chmod(mode | need)
                changed.append((d, mode))
        yield
    finally:
        for d, mode in reversed(changed):
            d.chmod(mode)
