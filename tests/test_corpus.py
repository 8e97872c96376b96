"""The matcher and policy against real device replies (tests/corpus/samples.toml).

The bar: at least 95% of samples get the right maker; no device of a maker that
is on no list is ever flagged; every relabelled (OEM) sample resolves to its real
maker with the rule that betrays it in the evidence; every sample cites a source.
"""

from __future__ import annotations

from collections import Counter

import pytest

from scanner.fingerprint import default_db
from scanner.model import Verdict
from scanner.oui import OuiRegistry
from tests.corpus import Outcome, judge, load, maker_of, misses

DB = default_db()
SAMPLES = load()


@pytest.fixture(scope="module")
def outcomes() -> list[Outcome]:
    oui = OuiRegistry.default()
    return [judge(s, oui, DB) for s in SAMPLES]


def test_the_corpus_is_big_enough_and_broad() -> None:
    assert len(SAMPLES) >= 80
    makers = Counter(s.maker for s in SAMPLES)
    assert makers[""] >= 10, "too few samples that must name nobody"
    assert len([m for m in makers if m]) >= 12, makers


def test_every_sample_cites_a_source_and_ids_are_unique() -> None:
    ids = Counter(s.id for s in SAMPLES)
    assert not [i for i, n in ids.items() if n > 1], "duplicate sample ids"
    assert all(s.id for s in SAMPLES)
    for s in SAMPLES:
        assert len(s.cite) >= 12, f"{s.id}: no citation"
        assert any(mark in s.cite for mark in ("https://", "code index id", ":", "tests/")), (
            f"{s.id}: citation names no URL, repo:path or code index id"
        )


def test_expected_makers_exist_in_the_database() -> None:
    unknown = {s.maker for s in SAMPLES if s.maker and DB.vendor_by_name(s.maker) is None}
    assert not unknown, f"expected makers missing from vendors.toml: {unknown}"
    unknown_rules = {s.oem_rule for s in SAMPLES if s.oem_rule} - {r.id for r in DB.rules}
    assert not unknown_rules, f"oem_rule ids not in rules.toml: {unknown_rules}"


def test_at_least_95_percent_get_the_right_maker(outcomes: list[Outcome]) -> None:
    wrong = misses(outcomes, DB)
    right = len(outcomes) - len(wrong)
    assert right / len(outcomes) >= 0.95, f"{right}/{len(outcomes)} right; misses:\n" + "\n".join(
        wrong
    )


FLAGGED_MAKERS = frozenset(v.name for v in DB.vendors.values() if DB.flags_of(v))


def test_expected_verdicts_follow_the_maker() -> None:
    """The corpus itself is consistent: flagged exactly when its real maker is on a list."""
    odd = [s.id for s in SAMPLES if (s.verdict == "flagged") != (s.maker in FLAGGED_MAKERS)]
    assert not odd, odd


def test_no_maker_off_every_list_is_ever_flagged(outcomes: list[Outcome]) -> None:
    """The false positive that matters most: calling a clean device a vendor of concern."""
    wrongly = [
        f"{o.sample.id}: flagged as {o.ident.maker!r} ({'; '.join(o.assessment.reasons)})"
        for o in outcomes
        if o.sample.maker not in FLAGGED_MAKERS and o.assessment.verdict is Verdict.FLAGGED
    ]
    assert not wrongly, "\n".join(wrongly)


def test_verdicts_match(outcomes: list[Outcome]) -> None:
    wrong = [
        f"{o.sample.id}: want {o.sample.verdict}, got {o.assessment.verdict.value}"
        f" (maker {o.ident.maker!r})"
        for o in outcomes
        if o.assessment.verdict.value != o.sample.verdict
    ]
    assert not wrong, "\n".join(wrong)


def test_oem_relabels_resolve_to_the_real_maker(outcomes: list[Outcome]) -> None:
    oem = [o for o in outcomes if o.sample.oem_rule]
    assert len(oem) >= 8
    wrong = [
        f"{o.sample.id}: maker {maker_of(o, DB)!r}, want {o.sample.maker!r};"
        f" {o.sample.oem_rule} in evidence: {o.sample.oem_rule in o.rules}"
        for o in oem
        if maker_of(o, DB) != o.sample.maker or o.sample.oem_rule not in o.rules
    ]
    assert not wrong, "\n".join(wrong)


def test_the_brand_on_the_box_is_reported(outcomes: list[Outcome]) -> None:
    wrong = [
        f"{o.sample.id}: vendor {o.ident.vendor!r}, want {o.sample.vendor!r}"
        for o in outcomes
        if o.sample.vendor is not None and o.ident.vendor != o.sample.vendor
    ]
    assert not wrong, "\n".join(wrong)
