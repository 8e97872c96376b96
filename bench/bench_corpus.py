"""Matcher accuracy per maker over the fingerprint corpus, and identifications per second.

Why: a sweep of a force network identifies thousands of devices, re-identified on
every scan, so matching must stay cheap; and the per-maker table shows where the
fingerprints are thin. Target: >= 50,000 identify()+assess() per second on one core.
Below target, a profile of the matcher says where the time goes.

Run: ``python bench/bench_corpus.py`` (or ``python -m bench.bench_corpus``).
"""

from __future__ import annotations

import cProfile
import pstats
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a plain script from a checkout
    sys.path.insert(0, str(ROOT))

from bench.bench_oui import pin_to_one_core  # noqa: E402
from scanner.fingerprint import FingerprintDB, default_db, identify  # noqa: E402
from scanner.model import Observation  # noqa: E402
from scanner.oui import OuiRegistry  # noqa: E402
from scanner.policy import assess  # noqa: E402
from tests.corpus import HOME, Outcome, judge, load, maker_of  # noqa: E402

RATE_TARGET = 50_000
CALLS = 50_000
ROUNDS = 3
NONE = "(none)"


def accuracy_table(outcomes: Sequence[Outcome], db: FingerprintDB) -> list[str]:
    """Precision and recall per maker; "(none)" is the row for devices that name nobody."""
    tp: Counter[str] = Counter()
    fp: Counter[str] = Counter()
    fn: Counter[str] = Counter()
    support: Counter[str] = Counter()
    for o in outcomes:
        want = o.sample.maker or NONE
        got = maker_of(o, db) or NONE
        support[want] += 1
        if got == want:
            tp[want] += 1
        else:
            fp[got] += 1
            fn[want] += 1
    makers = sorted(set(support) | set(fp), key=lambda m: (m == NONE, -support[m], m))
    lines = [f"{'maker':24} {'samples':>7} {'precision':>9} {'recall':>7}"]
    for m in makers:
        found, claimed = tp[m] + fn[m], tp[m] + fp[m]
        precision = f"{tp[m] / claimed:.2f}" if claimed else "-"
        recall = f"{tp[m] / found:.2f}" if found else "-"
        lines.append(f"{m:24} {support[m]:>7} {precision:>9} {recall:>7}")
    right = sum(tp.values())
    lines.append(f"{'all':24} {len(outcomes):>7} {'':>9} {right / len(outcomes):>7.2%}")
    return lines


def workload(samples: Sequence[Sequence[Observation]], calls: int) -> list[Sequence[Observation]]:
    """The corpus devices repeated in order until there are `calls` of them."""
    return [samples[i % len(samples)] for i in range(calls)]


def run(devices: Sequence[Sequence[Observation]], oui: OuiRegistry, db: FingerprintDB) -> float:
    """Seconds for one identify()+assess() of every device."""
    start = time.perf_counter()
    for observations in devices:
        assess(identify(observations, oui, db), HOME, db)
    return time.perf_counter() - start


def profile(devices: Sequence[Sequence[Observation]], oui: OuiRegistry, db: FingerprintDB) -> None:
    """Where the time goes: the functions with the most own time, as a share of the run."""
    profiler = cProfile.Profile()
    profiler.enable()
    run(devices, oui, db)
    profiler.disable()
    stats = pstats.Stats(profiler)
    rows = stats.stats  # type: ignore[attr-defined]
    total = max(row[3] for row in rows.values()) or 1.0  # the run's own cumulative time
    top = sorted(rows.items(), key=lambda kv: kv[1][2], reverse=True)[:12]
    print(f"\nprofile ({len(devices):,} calls, own time, profiler overhead included):")
    print(f"  {'own %':>6} {'cum %':>6} {'calls':>9}  function")
    for (path, line, name), (_cc, ncalls, own, cum, _callers) in top:
        where = f"{Path(path).name}:{line}({name})" if line else name
        print(f"  {own / total:>6.1%} {cum / total:>6.1%} {ncalls:>9,}  {where}")


def main() -> int:
    measure()
    return 0


def measure() -> dict[str, float]:
    """Print the accuracy table and throughput; return the figures for make bench."""
    pinned = pin_to_one_core()
    db = default_db()
    oui = OuiRegistry.default()
    samples = load()
    outcomes = [judge(s, oui, db) for s in samples]
    n_obs = sum(len(s.observations) for s in samples)
    print(f"corpus: {len(samples)} devices, {n_obs} observations")
    print("\n".join(accuracy_table(outcomes, db)))
    held = [o for o in outcomes if o.sample.holdout]
    if held:
        right = sum(maker_of(o, db) == o.sample.maker for o in held)
        print(f"hold-out (never used to write rules): {right}/{len(held)} right")

    devices = workload([s.observations for s in samples], CALLS)
    run(devices[:2_000], oui, db)  # warm caches (regex, OUI tables)
    best = min(run(devices, oui, db) for _ in range(ROUNDS))
    rate = len(devices) / best
    verdict = "ok" if rate >= RATE_TARGET else "BELOW TARGET"
    print(
        f"\nidentify()+assess(): {rate:,.0f} devices/s on one core ({pinned}; "
        f"best of {ROUNDS} x {len(devices):,}; target {RATE_TARGET:,}) {verdict}"
    )
    if rate < RATE_TARGET:
        profile(devices[:10_000], oui, db)
    right = sum(maker_of(o, db) == o.sample.maker for o in outcomes)
    return {
        "identifications_per_s": rate,
        "samples": len(samples),
        "right_maker_share": right / len(samples),
    }


if __name__ == "__main__":
    raise SystemExit(main())
