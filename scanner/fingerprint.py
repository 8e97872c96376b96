"""Matching: from a device's observations to who made it, with the evidence.

The fingerprint database (fingerprints/*.toml) is loaded once; `identify` is a
pure function over observations. Every fact it uses becomes an Evidence entry
naming the rule, so an engineer can check a verdict in a minute.

Strength decides: what a device says about itself in a structured reply
(ONVIF, UPnP, SADP/DHIP/XMEye) outranks banners, which outrank the MAC's
IEEE registrant (the network chip's maker). Disagreements between strong or
medium claims are reported as conflicts, never silently resolved.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from scanner.errors import ConfigError
from scanner.model import Evidence, Identification, Observation, Source
from scanner.oui import OuiEntry, OuiRegistry, is_locally_administered
from scanner.resources import data_dir

STRONG, MEDIUM, WEAK = 3, 2, 1
STRENGTHS = {"strong": STRONG, "medium": MEDIUM, "weak": WEAK}
CONFIDENCE = {STRONG: "strong", MEDIUM: "medium", WEAK: "weak", 0: "none"}

# How much a self-reported manufacturer/model is worth, by who reported it.
SOURCE_STRENGTH: dict[str, int] = {
    Source.ONVIF: STRONG,
    Source.SSDP: STRONG,
    Source.SADP: STRONG,
    Source.DHIP: STRONG,
    Source.XMEYE: STRONG,
    Source.WSD: MEDIUM,
    Source.MDNS: MEDIUM,
    Source.HTTP: MEDIUM,
    Source.TLS: MEDIUM,
    Source.RTSP: MEDIUM,
    Source.ARP: WEAK,
}

# manufacturer strings that name nobody
_GENERIC_NAMES = frozenset(
    {
        "",
        "general",
        "private",
        "onvif",
        "ipcam",
        "ip camera",
        "ipcamera",  # Hikvision OEM firmwares' placeholder (their ISAPI deviceType)
        "ipc",
        "camera",
        "network camera",
        "manufacturer",
        "unknown",
        "none",
        "null",
        "n/a",
        "na",
        "oem",
        "default",
        "generic",
        "nvt",
    }
)
_NORMALISE = re.compile(r"[^a-z0-9]+")
_LEGAL_SUFFIX = re.compile(
    r"\b(co|ltd|limited|inc|corp|corporation|company|gmbh|ab|ag|plc|llc|sa|bv|srl|technology"
    r"|technologies)\b"
)


def name_key(name: str) -> str:
    """A manufacturer string reduced to a lookup key ("HIKVISION Co.,Ltd" -> "hikvision")."""
    text = _NORMALISE.sub(" ", name.lower())
    return " ".join(_LEGAL_SUFFIX.sub(" ", text).split())


@dataclass(frozen=True, slots=True)
class Policy:
    id: str
    short: str
    title: str
    date: str
    url: str


@dataclass(frozen=True, slots=True)
class Vendor:
    id: str
    name: str
    kind: str  # maker | brand
    country: str | None
    aliases: tuple[str, ...] = ()
    registrant: re.Pattern[str] | None = None
    parent: str | None = None
    oem_of: tuple[str, ...] = ()
    flags: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    note: str | None = None


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    fields: tuple[str, ...]
    regex: re.Pattern[str]
    maker: str
    strength: int
    brand: str | None = None
    capture: str | None = None
    sources: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CloudEndpoint:
    vendor: str
    pattern: str  # a domain suffix ("hik-connect.com") or an exact name
    role: str
    sources: tuple[str, ...]


@dataclass(frozen=True)
class FingerprintDB:
    vendors: dict[str, Vendor]
    policies: dict[str, Policy]
    rules: tuple[Rule, ...] = ()
    generic_servers: tuple[str, ...] = ()
    clouds: tuple[CloudEndpoint, ...] = ()
    _aliases: dict[str, str] = field(default_factory=dict, repr=False)
    _rules_by_field: dict[str, tuple[Rule, ...]] = field(default_factory=dict, repr=False)
    _by_name: dict[str, Vendor] = field(default_factory=dict, repr=False)
    # Memos: a network repeats the same banners and registrants across hundreds of
    # devices and every scan; matching each distinct string once keeps identify cheap.
    _registrant_memo: dict[str, Vendor | None] = field(default_factory=dict, repr=False)
    _name_memo: dict[str, Vendor | None] = field(default_factory=dict, repr=False)
    _match_memo: dict[tuple[str, str], tuple[tuple[Rule, str | None], ...]] = field(
        default_factory=dict, repr=False
    )

    def __post_init__(self) -> None:
        for v in self.vendors.values():
            for key in (v.id, name_key(v.name), *(name_key(a) for a in v.aliases)):
                self._aliases.setdefault(key, v.id)
        by_field: dict[str, list[Rule]] = {}
        for r in self.rules:
            for f in r.fields:
                by_field.setdefault(f, []).append(r)
        self._rules_by_field.update({k: tuple(v) for k, v in by_field.items()})
        for v in self.vendors.values():
            self._by_name.setdefault(v.id, v)
            self._by_name.setdefault(v.name, v)

    def resolve_name(self, name: str) -> Vendor | None:
        """The vendor a manufacturer string names, by alias, else by its first words."""
        if name in self._name_memo:
            return self._name_memo[name]
        found = self._resolve_name(name)
        _remember(self._name_memo, name, found)
        return found

    def _resolve_name(self, name: str) -> Vendor | None:
        key = name_key(name)
        if key in _GENERIC_NAMES:
            return None
        vid = self._aliases.get(key)
        if vid is None:
            words = key.split()
            for n in range(min(3, len(words)), 0, -1):
                vid = self._aliases.get(" ".join(words[:n]))
                if vid:
                    break
        return self.vendors.get(vid) if vid else None

    def vendor_for_registrant(self, registrant: str) -> Vendor | None:
        if registrant in self._registrant_memo:
            return self._registrant_memo[registrant]
        found = next(
            (
                v
                for v in self.vendors.values()
                if v.registrant is not None and v.registrant.search(registrant)
            ),
            None,
        )
        _remember(self._registrant_memo, registrant, found)
        return found

    def vendor_by_name(self, name: str) -> Vendor | None:
        return self._by_name.get(name)

    def matches(self, key: str, value: str) -> tuple[tuple[Rule, str | None], ...]:
        """Rules for `key` whose regex finds `value`, with what each captured."""
        memo_key = (key, value)
        hit = self._match_memo.get(memo_key)
        if hit is not None:
            return hit
        found = []
        for rule in self.rules_for(key):
            m = rule.regex.search(value)
            if m is None:
                continue
            captured = None
            if rule.capture:
                captured = _clip((m.groupdict().get(rule.capture) or m.group(0)).strip(), 120)
            found.append((rule, captured))
        out = tuple(found)
        _remember(self._match_memo, memo_key, out)
        return out

    def maker_of(self, vendor: Vendor) -> Vendor:
        """A brand's maker: its parent company, else itself."""
        seen = {vendor.id}
        while vendor.parent and vendor.parent in self.vendors and vendor.parent not in seen:
            vendor = self.vendors[vendor.parent]
            seen.add(vendor.id)
        return vendor

    def rules_for(self, field_name: str) -> tuple[Rule, ...]:
        return self._rules_by_field.get(field_name, ())

    def flags_of(self, vendor: Vendor) -> tuple[str, ...]:
        return vendor.flags or self.maker_of(vendor).flags


_MEMO_MAX = 50_000  # entries per memo; hostile floods of distinct strings just reset it


def _remember(memo: dict[Any, Any], key: Any, value: Any) -> None:
    if len(memo) >= _MEMO_MAX:
        memo.clear()
    memo[key] = value


# ------------------------------------------------------------------ loading


def _load_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def _tables(doc: Mapping[str, Any], key: str, path: Path) -> list[dict[str, Any]]:
    raw = doc.get(key, [])
    if not isinstance(raw, list) or not all(isinstance(t, dict) for t in raw):
        raise ConfigError(f"{path}: {key!r} must be an array of tables ([[{key}]])")
    return raw


def _strs(entry: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = entry.get(key, [])
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise ConfigError(f"{where}: {key} must be a list of strings")
    return tuple(value)


_VENDOR_KEYS = {
    "id",
    "name",
    "kind",
    "country",
    "aliases",
    "registrant",
    "legal_names",
    "parent",
    "oem_of",
    "flags",
    "sources",
    "note",
}
_RULE_KEYS = {"id", "fields", "regex", "maker", "brand", "strength", "capture", "sources"}
_CLOUD_KEYS = {"vendor", "domains", "role", "ports", "sources", "status"}


def _check_keys(entry: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(entry) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}")


def load_db(directory: Path | None = None) -> FingerprintDB:
    """Read and check the fingerprint files; errors name the file and the entry."""
    base = directory or data_dir("fingerprints")
    pol_path, ven_path = base / "policies.toml", base / "vendors.toml"
    rule_path, cloud_path = base / "rules.toml", base / "clouds.toml"
    policies: dict[str, Policy] = {}
    for pid, body in _load_toml(pol_path).items():
        if not isinstance(body, dict):
            raise ConfigError(f"{pol_path}: [{pid}] must be a table")
        try:
            policies[pid] = Policy(
                pid, str(body["short"]), str(body["title"]), str(body["date"]), str(body["url"])
            )
        except KeyError as exc:
            raise ConfigError(f"{pol_path}: [{pid}] lacks {exc.args[0]!r}") from None

    vendors: dict[str, Vendor] = {}
    for i, entry in enumerate(_tables(_load_toml(ven_path), "vendor", ven_path)):
        where = f"{ven_path}: vendor[{i}] ({entry.get('id', '?')})"
        _check_keys(entry, _VENDOR_KEYS, where)
        try:
            flags = _strs(entry, "flags", where)
            unknown = [f for f in flags if f not in policies]
            if unknown:
                raise ConfigError(f"{where}: flags cite unknown policy {unknown[0]!r}")
            if not entry.get("sources"):
                raise ConfigError(f"{where}: no sources cited")
            if entry["id"] in vendors:
                raise ConfigError(f"{where}: duplicate id")
            reg = entry.get("registrant")
            vendors[entry["id"]] = Vendor(
                id=entry["id"],
                name=entry["name"],
                kind=entry.get("kind", "maker"),
                country=entry.get("country"),
                aliases=_strs(entry, "aliases", where),
                registrant=re.compile(reg, re.IGNORECASE) if reg else None,
                parent=entry.get("parent"),
                oem_of=_strs(entry, "oem_of", where),
                flags=flags,
                sources=_strs(entry, "sources", where),
                note=entry.get("note"),
            )
        except KeyError as exc:
            raise ConfigError(f"{where}: missing key {exc.args[0]!r}") from None
        except re.error as exc:
            raise ConfigError(f"{where}: registrant regex: {exc}") from None
    for v in vendors.values():
        for ref in (v.parent, *v.oem_of):
            if ref is not None and ref not in vendors:
                raise ConfigError(f"{ven_path}: vendor {v.id}: refers to unknown vendor {ref!r}")

    rules: list[Rule] = []
    generic: tuple[str, ...] = ()
    if rule_path.exists():
        doc = _load_toml(rule_path)
        generic = _strs(doc.get("generic", {}), "servers", f"{rule_path}: [generic]")
        for i, entry in enumerate(_tables(doc, "rule", rule_path)):
            where = f"{rule_path}: rule[{i}] ({entry.get('id', '?')})"
            _check_keys(entry, _RULE_KEYS, where)
            try:
                for ref in (entry["maker"], entry.get("brand")):
                    if ref is not None and ref not in vendors:
                        raise ConfigError(f"{where}: unknown vendor {ref!r}")
                if entry["strength"] not in STRENGTHS:
                    raise ConfigError(f"{where}: strength must be strong, medium or weak")
                if entry.get("capture") not in (None, "model", "firmware"):
                    raise ConfigError(f"{where}: capture must be model or firmware")
                if not entry.get("sources"):
                    raise ConfigError(f"{where}: no sources cited")
                rules.append(
                    Rule(
                        id=entry["id"],
                        fields=_strs(entry, "fields", where),
                        regex=re.compile(entry["regex"], re.IGNORECASE),
                        maker=entry["maker"],
                        strength=STRENGTHS[entry["strength"]],
                        brand=entry.get("brand"),
                        capture=entry.get("capture"),
                        sources=_strs(entry, "sources", where),
                    )
                )
            except KeyError as exc:
                raise ConfigError(f"{where}: missing key {exc.args[0]!r}") from None
            except re.error as exc:
                raise ConfigError(f"{where}: regex: {exc}") from None

    clouds: list[CloudEndpoint] = []
    if cloud_path.exists():
        for i, entry in enumerate(_tables(_load_toml(cloud_path), "endpoint", cloud_path)):
            where = f"{cloud_path}: endpoint[{i}]"
            _check_keys(entry, _CLOUD_KEYS, where)
            if entry.get("vendor") not in vendors:
                raise ConfigError(f"{where}: unknown vendor {entry.get('vendor')!r}")
            if not entry.get("sources"):
                raise ConfigError(f"{where}: no sources cited")
            for domain in _strs(entry, "domains", where):
                clouds.append(
                    CloudEndpoint(
                        entry["vendor"],
                        domain.lower().rstrip("."),
                        str(entry.get("role", "")),
                        _strs(entry, "sources", where),
                    )
                )
    return FingerprintDB(vendors, policies, tuple(rules), generic, tuple(clouds))


@lru_cache(maxsize=1)
def default_db() -> FingerprintDB:
    return load_db()


# ----------------------------------------------------------------- matching


@dataclass(frozen=True, slots=True)
class _Claim:
    vendor: str  # vendor id
    strength: int
    evidence: Evidence


def _clip(value: str, n: int = 200) -> str:
    return value if len(value) <= n else value[: n - 1] + "…"


def _best(values: Iterable[tuple[int, str]]) -> str | None:
    best: tuple[int, str] | None = None
    for strength, value in values:
        if value and (best is None or strength > best[0]):
            best = (strength, value)
    return best[1] if best else None


def identify(
    observations: Sequence[Observation],
    oui: OuiRegistry,
    db: FingerprintDB,
) -> Identification:
    """Who made this device (maker), whose name is on it (vendor), and the evidence."""
    brand_claims: list[_Claim] = []
    maker_claims: list[_Claim] = []
    evidence: list[Evidence] = []
    models: list[tuple[int, str]] = []
    firmwares: list[tuple[int, str]] = []
    serials: list[tuple[int, str]] = []
    macs = [o.mac for o in observations if o.mac]

    for o in observations:
        src = str(o.source)
        weight = SOURCE_STRENGTH.get(src, WEAK)
        attrs = o.attrs
        manufacturer = attrs.get("manufacturer")
        if manufacturer:
            vendor = db.resolve_name(manufacturer)
            ev = Evidence(
                src, "manufacturer", _clip(manufacturer), f"name:{vendor.id}" if vendor else None
            )
            evidence.append(ev)
            if vendor is not None:
                brand_claims.append(_Claim(vendor.id, weight, ev))
                parent = db.maker_of(vendor)
                if vendor.kind == "maker" or parent.id != vendor.id:
                    maker_claims.append(_Claim(parent.id, weight, ev))
                elif len(vendor.oem_of) == 1:  # a relabel brand: its usual OEM, weakly
                    oem_ev = Evidence(
                        src, "manufacturer", _clip(manufacturer), f"brand-oem:{vendor.id}"
                    )
                    maker_claims.append(_Claim(vendor.oem_of[0], WEAK, oem_ev))
        for key, bucket in (("model", models), ("firmware", firmwares), ("serial", serials)):
            value = attrs.get(key)
            if value:
                bucket.append((weight, _clip(value.strip(), 120)))
                evidence.append(Evidence(src, key, _clip(value)))
        _apply_rules(db, src, "_source", src, maker_claims, brand_claims, models, firmwares)
        for key, value in attrs.items():
            if value and key in db._rules_by_field:
                _apply_rules(db, src, key, value, maker_claims, brand_claims, models, firmwares)

    registrant: OuiEntry | None = None
    randomised = False
    for mac in dict.fromkeys(macs):
        if is_locally_administered(mac):
            randomised = True
            evidence.append(Evidence("arp", "mac", mac, "mac:locally-administered"))
            continue
        entry = oui.lookup(mac)
        if entry is None:
            evidence.append(Evidence("arp", "mac", mac, "oui:unregistered"))
            continue
        registrant = registrant or entry
        ev = Evidence(
            "arp",
            "mac_oui",
            f"{entry.prefix} {entry.name} ({entry.country or 'country unknown'})",
            f"ieee:{entry.block}",
        )
        evidence.append(ev)
        vendor = db.vendor_for_registrant(entry.name)
        if vendor is not None:
            maker_claims.append(_Claim(db.maker_of(vendor).id, WEAK, ev))
    if registrant is not None:
        randomised = False

    evidence.extend(c.evidence for c in (*maker_claims, *brand_claims))
    maker_id, maker_strength, conflicts = _decide(maker_claims, db)
    brand_id = _decide(brand_claims, db)[0] if brand_claims else None
    maker = db.vendors.get(maker_id) if maker_id else None
    brand = db.vendors.get(brand_id) if brand_id else None
    brand_name = brand.name if brand else None
    if brand is None:  # a manufacturer string we have no entry for: report it as said
        raw_names = [
            (SOURCE_STRENGTH.get(str(o.source), WEAK), o.attrs["manufacturer"].strip())
            for o in observations
            if o.attrs.get("manufacturer")
            and db.resolve_name(o.attrs["manufacturer"]) is None
            and name_key(o.attrs["manufacturer"]) not in _GENERIC_NAMES
        ]
        brand_name = _clip(_best(raw_names) or "", 80) or None
    if maker is None and registrant is not None and not maker_claims:
        # no fingerprint names the maker: the registrant is the best we have
        maker_name: str | None = registrant.name
        country = registrant.country
        maker_strength = WEAK
    else:
        maker_name = maker.name if maker else None
        country = maker.country if maker else None
    return Identification(
        vendor=brand_name or maker_name,
        maker=maker_name,
        model=_best(models),
        firmware=_best(firmwares),
        serial=_best(serials),
        origin_country=country,
        registrant=registrant.name if registrant else None,
        registrant_country=registrant.country if registrant else None,
        confidence=CONFIDENCE[maker_strength],
        randomised_mac=randomised,
        evidence=tuple(dict.fromkeys(evidence)),
        conflicts=tuple(conflicts),
    )


def lookup(query: str, oui: OuiRegistry, db: FingerprintDB) -> Identification:
    """What a MAC, a MAC prefix or a banner string alone would tell (for the CLI)."""
    from scanner.model import utcnow
    from scanner.oui import normalise_mac

    text = query.strip()
    hexdigits = re.sub(r"[^0-9A-Fa-f]", "", text)
    if re.fullmatch(r"[0-9A-Fa-f]{2}([:.-]?[0-9A-Fa-f]{2}){2,5}", text) and len(hexdigits) % 2 == 0:
        mac = normalise_mac((hexdigits + "000000000000")[:12])
        obs = Observation(source=Source.ARP, ip="0.0.0.0", mac=mac, seen_at=utcnow())  # noqa: S104
        return identify([obs], oui, db)
    if ":" in text and text.split(":", 1)[0].lower() in ("server", "www-authenticate"):
        key, _, value = text.partition(":")
        attrs = {"server" if key.lower() == "server" else "realm": value.strip()}
    else:  # only the fields where the string means something
        attrs = {
            f: text
            for f in db._rules_by_field
            if not f.startswith("_") and any(r.regex.search(text) for r in db.rules_for(f))
        }
        if db.resolve_name(text) is not None:
            attrs["manufacturer"] = text
    obs = Observation(source=Source.HTTP, ip="0.0.0.0", seen_at=utcnow(), attrs=attrs)  # noqa: S104
    return identify([obs], oui, db)


def _apply_rules(
    db: FingerprintDB,
    src: str,
    key: str,
    value: str,
    maker_claims: list[_Claim],
    brand_claims: list[_Claim],
    models: list[tuple[int, str]],
    firmwares: list[tuple[int, str]],
) -> None:
    for rule, captured in db.matches(key, value):
        ev = Evidence(src, key, _clip(value), rule.id)
        maker_claims.append(_Claim(rule.maker, rule.strength, ev))
        if rule.brand:
            brand_claims.append(_Claim(rule.brand, rule.strength, ev))
        if captured is not None:
            (models if rule.capture == "model" else firmwares).append((rule.strength - 1, captured))


def _decide(claims: Sequence[_Claim], db: FingerprintDB) -> tuple[str | None, int, list[str]]:
    """The strongest claim wins (ties: most support); disagreements are conflicts."""
    if not claims:
        return None, 0, []
    score: dict[str, tuple[int, int]] = {}
    for c in claims:
        top, total = score.get(c.vendor, (0, 0))
        score[c.vendor] = (max(top, c.strength), total + c.strength)
    # ties go to the first id in sorted order, not to whichever probe answered
    # first: the same evidence must give the same verdict on every scan
    winner = max(sorted(score), key=lambda v: score[v])
    conflicts = []
    for vid, (top, _total) in score.items():
        if vid != winner and top >= MEDIUM:
            support = [c for c in claims if c.vendor == vid and c.strength >= MEDIUM]
            ev = support[0].evidence
            name = db.vendors[vid].name if vid in db.vendors else vid
            conflicts.append(
                f"{name} by {ev.source}.{ev.field}={ev.value!r}"
                + (f" [{ev.rule}]" if ev.rule else "")
                + f" disagrees with {db.vendors[winner].name}"
            )
    return winner, score[winner][0], conflicts


def lint(directory: Path | None = None) -> list[str]:
    """Problems in the fingerprint files, one line each; empty when clean."""
    try:
        db = load_db(directory)
    except ConfigError as exc:
        return [str(exc)]
    problems: list[str] = []
    seen_alias: dict[str, str] = {}
    for v in db.vendors.values():
        for alias in (name_key(a) for a in (v.name, *v.aliases)):
            other = seen_alias.setdefault(alias, v.id)
            if other != v.id:
                problems.append(f"vendors.toml: {v.id}: alias {alias!r} also names {other}")
        if v.registrant is not None and v.registrant.search("") is not None:
            problems.append(f"vendors.toml: {v.id}: registrant regex matches everything")
        if v.country is not None and not re.fullmatch(r"[A-Z]{2}", v.country):
            problems.append(f"vendors.toml: {v.id}: country {v.country!r} is not ISO 3166 alpha-2")
        if v.kind not in ("maker", "brand"):
            problems.append(f"vendors.toml: {v.id}: kind must be maker or brand")
    ids: dict[str, int] = {}
    for i, r in enumerate(db.rules):
        if r.id in ids:
            problems.append(f"rules.toml: rule[{i}] {r.id}: duplicate id of rule[{ids[r.id]}]")
        ids.setdefault(r.id, i)
        if r.regex.search("") is not None:
            problems.append(f"rules.toml: {r.id}: regex matches the empty string")
        for server in db.generic_servers:
            if "server" in r.fields and r.regex.search(server):
                problems.append(f"rules.toml: {r.id}: matches generic server {server!r}")
    for i, a in enumerate(db.rules):  # a rule that matches everything another matches
        for b in db.rules[i + 1 :]:
            if a.regex.pattern == b.regex.pattern and set(a.fields) & set(b.fields):
                problems.append(f"rules.toml: {b.id}: shadowed by {a.id} (same regex and field)")
    for pid, pol in db.policies.items():
        if not pol.url.startswith("https://"):
            problems.append(f"policies.toml: {pid}: url must be https")
    return problems
