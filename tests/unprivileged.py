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
    """Add search permission (o+x, never read) to `path`'s ancestors that lack it; undo after."""
    changed: list[tuple[Path, int]] = []
    try:
        for d in [path, *path.parents]:
            mode = stat.S_IMODE(d.stat().st_mode)
            if not mode & stat.S_IXOTH:
                d.chmod(mode | stat.S_IXOTH)
                changed.append((d, mode))
        yield
    finally:
        for d, mode in reversed(changed):
            d.chmod(mode)
