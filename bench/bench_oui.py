"""OUI registry speed: lookups per second on one core, and load time cold and warm.

Why: a sweep of a large force network resolves every MAC it sees, and every CLI run
loads the registry, so both must stay cheap. Targets: >= 1,000,000 lookup()/s on
already-normalised MACs, and < 0.3 s to load.

Run: ``python bench/bench_oui.py`` (or ``python -m bench.bench_oui``).
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import tempfile
import timeit
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a plain script from a checkout
    sys.path.insert(0, str(ROOT))

from scanner.oui import OuiEntry, OuiRegistry  # noqa: E402

LOOKUP_TARGET = 1_000_000
LOAD_TARGET = 0.3
N_MACS = 10_000


def pin_to_one_core() -> str:
    """Measure one core's throughput without the scheduler moving us around."""
    if not hasattr(os, "sched_setaffinity"):
        return "not pinned"
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    return f"pinned to CPU {cpu}"


def sample_macs(entries: list[OuiEntry], n: int, seed: int) -> list[str]:
    """Real normalised MACs: a registered prefix plus random host bits."""
    rng = random.Random(seed)
    usable = [e for e in entries if not int(e.prefix[:2], 16) & 0x03]
    macs = []
    for entry in rng.choices(usable, k=n):
        digits = entry.prefix.replace(":", "")
        digits += "".join(rng.choice("0123456789abcdef") for _ in range(12 - len(digits)))
        macs.append(":".join(digits[i : i + 2] for i in range(0, 12, 2)))
    return macs


def rate(registry: OuiRegistry, macs: list[str]) -> float:
    """Best-of-5 lookups per second over the list (the loop's cost included)."""
    lookup = registry.lookup

    def run() -> None:
        for mac in macs:
            lookup(mac)

    run()  # warm: unpack cached rows into entries once
    best = min(timeit.repeat(run, number=20, repeat=5))
    return 20 * len(macs) / best


def process_start(cache_dir: Path) -> float:
    """Wall time of a fresh interpreter importing the module and loading the warm cache."""
    code = (
        "import time; t = time.perf_counter(); from pathlib import Path; "
        "from scanner.oui import OuiRegistry; "
        f"r = OuiRegistry.load(cache_dir=Path({str(cache_dir)!r})); assert r.from_cache; "
        "print(time.perf_counter() - t)"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, env=env
    )
    return float(out.stdout)


def main() -> dict[str, float]:
    pinned = pin_to_one_core()
    with tempfile.TemporaryDirectory(prefix="bench-oui-") as tmp:
        cache = Path(tmp)
        cold = OuiRegistry.load(cache_dir=cache)
        # from the cache just written
        warm = min(OuiRegistry.load(cache_dir=cache).load_seconds for _ in range(5))
        uncached = OuiRegistry.load(use_cache=False).load_seconds
        start = min(process_start(cache) for _ in range(3))
    registry = cold
    entries = list(registry)
    mixed = sample_macs(entries, N_MACS, seed=1)
    ma_l = sample_macs([e for e in entries if e.bits == 24], N_MACS, seed=2)
    results = {
        "lookups_per_s_mixed": rate(registry, mixed),
        "lookups_per_s_ma_l": rate(registry, ma_l),
        "load_cold_s": cold.load_seconds,
        "load_uncached_s": uncached,
        "load_warm_s": warm,
        "import_and_warm_load_s": start,
    }
    hits = sum(registry.lookup(m) is not None for m in mixed)

    def verdict(ok: bool) -> str:
        return "ok" if ok else "BELOW TARGET"

    print(f"OUI registry: {len(registry)} prefixes; {pinned}; Python {sys.version.split()[0]}")
    for line in registry.sources:
        print(f"  {line}")
    print(
        f"lookup(), {N_MACS} real MACs, all block sizes ({hits} hits): "
        f"{results['lookups_per_s_mixed']:,.0f}/s "
        f"[{verdict(results['lookups_per_s_mixed'] >= LOOKUP_TARGET)}]"
    )
    print(
        f"lookup(), {N_MACS} real MACs, MA-L only:            "
        f"{results['lookups_per_s_ma_l']:,.0f}/s "
        f"[{verdict(results['lookups_per_s_ma_l'] >= LOOKUP_TARGET)}]"
    )
    print(f"load, cold (parse all sources, write cache): {cold.load_seconds:.3f} s")
    print(f"load, no cache (parse all sources):          {uncached:.3f} s")
    print(
        f"load, warm (from cache):                     {warm:.3f} s [{verdict(warm < LOAD_TARGET)}]"
    )
    print(
        f"new process: import + warm load:             {start:.3f} s "
        f"[{verdict(start < LOAD_TARGET)}]"
    )
    return results


if __name__ == "__main__":
    main()
