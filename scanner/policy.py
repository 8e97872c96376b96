"""Policy: from an identification to a verdict, with reasons that cite policy.

Pure. The home country comes from config (default GB). A device is flagged
when its maker, or the brand on it, is on a policy list; OEM relabels are
caught because the maker is decided by evidence, not by the label.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date

from scanner.exceptions import RiskException
from scanner.fingerprint import FingerprintDB, Vendor
from scanner.model import Assessment, Identification, Verdict


def _flags(db: FingerprintDB, vendor: Vendor, only: frozenset[str] | None) -> tuple[str, ...]:
    return tuple(f for f in db.flags_of(vendor) if only is None or f in only)


def _flag_reason(db: FingerprintDB, who: str, vendor: Vendor, only: frozenset[str] | None) -> str:
    flags = _flags(db, vendor, only)
    cited = "; ".join(f"{db.policies[f].short} [{f}]" for f in flags)
    return f"{who} {vendor.name} is on: {cited}"


def assess(
    ident: Identification,
    home_country: str,
    db: FingerprintDB,
    *,
    exception: RiskException | None = None,
    today: date | None = None,
    flag_policies: frozenset[str] | None = None,
) -> Assessment:
    """The verdict and its reasons; a register entry marks it accepted until expiry."""
    verdict = _judge(ident, home_country, db, flag_policies)
    if exception is None or verdict.verdict in (Verdict.HOME,):
        return verdict
    day = today or date.today()
    if exception.valid_on(day):
        return replace(
            verdict,
            accepted_risk=True,
            exception="valid",
            reasons=(*verdict.reasons, f"accepted risk: {exception.describe()}"),
        )
    return replace(
        verdict,
        exception="expired",
        reasons=(
            *verdict.reasons,
            f"exception expired on {exception.expires.isoformat()}: {exception.describe()}",
        ),
    )


def _judge(
    ident: Identification,
    home_country: str,
    db: FingerprintDB,
    flag_policies: frozenset[str] | None,
) -> Assessment:
    maker = db.vendor_by_name(ident.maker) if ident.maker else None
    brand = db.vendor_by_name(ident.vendor) if ident.vendor else None
    reasons: list[str] = []
    if maker is not None and _flags(db, maker, flag_policies):
        reasons.append(_flag_reason(db, "maker", maker, flag_policies))
        if brand is not None and brand.id != maker.id:
            reasons.append(f"sold as {brand.name}: relabelled {maker.name} hardware")
    elif brand is not None and _flags(db, brand, flag_policies):
        reasons.append(_flag_reason(db, "brand", brand, flag_policies))
    if reasons:
        if ident.confidence == "weak":
            reasons.append("weak evidence only (MAC registrant or brand): confirm on site")
        reasons.extend(f"conflicting evidence: {c}" for c in ident.conflicts)
        return Assessment(Verdict.FLAGGED, flagged=True, reasons=tuple(reasons))
    if ident.randomised_mac and ident.maker is None:
        return Assessment(
            Verdict.UNKNOWN,
            flagged=False,
            reasons=("locally administered (randomised/virtual) MAC: no registry verdict",),
        )
    conflicts = tuple(f"conflicting evidence: {c}" for c in ident.conflicts)
    country = ident.origin_country
    if country is None:
        why = "maker unknown" if ident.maker is None else f"origin of {ident.maker} unknown"
        return Assessment(Verdict.UNKNOWN, flagged=False, reasons=(why, *conflicts))
    basis = "maker" if maker is not None else "MAC registrant"
    if country == home_country:
        return Assessment(
            Verdict.HOME,
            flagged=False,
            reasons=(f"{basis} {ident.maker} is based in {country} (home country)", *conflicts),
        )
    return Assessment(
        Verdict.NON_HOME,
        flagged=False,
        reasons=(f"{basis} {ident.maker} is based in {country}, not {home_country}", *conflicts),
    )
