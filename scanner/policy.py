"""Policy: from an identification to a verdict, with reasons that cite policy.

Pure; the home country comes from config (default GB).
"""

from __future__ import annotations

from scanner.fingerprint import FingerprintDB
from scanner.model import Assessment, Identification, Verdict


def assess(ident: Identification, home_country: str, db: FingerprintDB) -> Assessment:
    if ident.randomised_mac and ident.maker is None:
        return Assessment(
            Verdict.UNKNOWN,
            flagged=False,
            reasons=("locally administered (randomised/virtual) MAC: no registry verdict",),
        )
    vendor = db.vendor_by_name(ident.maker) if ident.maker else None
    if vendor and vendor.flags:
        cited = "; ".join(f"{db.policies[f].short} [{f}]" for f in vendor.flags)
        reasons = (f"maker {vendor.name} is on: {cited}",)
        return Assessment(Verdict.FLAGGED, flagged=True, reasons=reasons)
    country = ident.origin_country
    if country is None:
        why = "maker unknown" if ident.maker is None else f"origin of {ident.maker} unknown"
        return Assessment(Verdict.UNKNOWN, flagged=False, reasons=(why,))
    if country == home_country:
        return Assessment(
            Verdict.HOME,
            flagged=False,
            reasons=(f"maker {ident.maker} is based in {country} (home country)",),
        )
    return Assessment(
        Verdict.NON_HOME,
        flagged=False,
        reasons=(f"maker {ident.maker} is based in {country}, not {home_country}",),
    )
