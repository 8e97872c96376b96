"""The fingerprint corpus: real device replies (cited) and what they should identify as.

`samples.toml` holds one ``[[sample]]`` per device; this module turns it into
Observations and runs the matcher and policy over it, so the accuracy test
(tests/test_corpus.py) and the benchmark (bench/bench_corpus.py) judge the
same thing the same way.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from scanner.fingerprint import FingerprintDB, identify
from scanner.model import Assessment, Identification, Observation, Source
from scanner.oui import OuiRegistry, normalise_mac
from scanner.policy import assess

CORPUS = Path(__file__).resolve().parent / "samples.toml"
HOME = "GB"
SEEN_AT = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)
VERDICTS = frozenset({"flagged", "non-home-origin", "home-origin", "unknown"})


@dataclass(frozen=True)
class Sample:
    id: str
    cite: str
    maker: str  # "" = no maker (or one the fingerprint database does not know)
    verdict: str
    vendor: str | None
    oem_rule: str | None
    observations: tuple[Observation, ...] = field(repr=False)
    holdout: bool = False  # collected after the rules were written; never used to tune them


@dataclass(frozen=True)
class Outcome:
    sample: Sample
    ident: Identification
    assessment: Assessment

    @property
    def rules(self) -> frozenset[str]:
        return frozenset(e.rule for e in self.ident.evidence if e.rule)


def _observation(raw: Mapping[str, Any], ip: str, where: str) -> Observation:
    try:
        source = Source(raw["source"])
    except (KeyError, ValueError):
        raise ValueError(f"{where}: source must be one of {[s.value for s in Source]}") from None
    attrs = raw.get("attrs", {})
    if not isinstance(attrs, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in attrs.items()
    ):
        raise ValueError(f"{where}: attrs must map strings to strings")
    mac = raw.get("mac")
    return Observation(
        source=source,
        ip=ip,
        seen_at=SEEN_AT,
        mac=normalise_mac(mac) if mac else None,
        attrs=dict(attrs),
    )


def load(path: Path = CORPUS) -> list[Sample]:
    """Every sample, its observations on an address of its own (198.51.100.0/24 and up)."""
    with path.open("rb") as fh:
        doc = tomllib.load(fh)
    samples: list[Sample] = []
    for i, raw in enumerate(doc.get("sample", [])):
        where = f"{path.name}: sample[{i}] ({raw.get('id', '?')})"
        expect = raw.get("expect", {})
        if expect.get("verdict") not in VERDICTS:
            raise ValueError(f"{where}: expect.verdict must be one of {sorted(VERDICTS)}")
        ip = f"198.51.{100 + i // 250}.{1 + i % 250}"
        observations = tuple(
            _observation(o, ip, f"{where} observation[{j}]")
            for j, o in enumerate(raw.get("observation", []))
        )
        if not observations:
            raise ValueError(f"{where}: no observations")
        samples.append(
            Sample(
                id=str(raw.get("id", "")),
                cite=str(raw.get("cite", "")),
                maker=str(expect.get("maker", "")),
                verdict=expect["verdict"],
                vendor=expect.get("vendor"),
                oem_rule=raw.get("oem_rule"),
                observations=observations,
                holdout=bool(raw.get("holdout", False)),
            )
        )
    return samples


def judge(sample: Sample, oui: OuiRegistry, db: FingerprintDB) -> Outcome:
    ident = identify(sample.observations, oui, db)
    return Outcome(sample, ident, assess(ident, HOME, db))


def maker_of(outcome: Outcome, db: FingerprintDB) -> str:
    """The maker as the corpus names it: "" when the matcher names no known maker.

    With no fingerprint the matcher falls back to the MAC's IEEE registrant; that
    is not a maker the database knows, so it counts as "".
    """
    name = outcome.ident.maker
    return name if name and db.vendor_by_name(name) is not None else ""


def misses(outcomes: Iterable[Outcome], db: FingerprintDB) -> list[str]:
    """One line per sample whose maker is not the expected one."""
    return [
        f"{o.sample.id}: want {o.sample.maker or '-'!r}, got {maker_of(o, db) or '-'!r}"
        f" ({o.ident.confidence}; rules {sorted(o.rules)})"
        for o in outcomes
        if maker_of(o, db) != o.sample.maker
    ]
