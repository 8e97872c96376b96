"""Destination country: packaged data, an operator's MMDB or Tor-format file.

The UK cloud addresses are from the providers' own published ranges
(AWS ip-ranges.json region eu-west-2, Google Cloud cloud.json scope
europe-west2, Azure Service Tags uksouth; as mirrored in
MaximeWewer/CloudIPAtlas:cloud_ips/*/regions/*), plus two addresses
ecosystem.md §2 measured. docs/geoip.md has the whole-range measurement.
"""

from __future__ import annotations

import ipaddress
import struct
from pathlib import Path

import pytest

from scanner.capture.geoip import GeoIP, MmdbLookup, TorFileLookup, geolocatable, open_geoip
from scanner.errors import ConfigError

UK_CLOUD = {
    "3.8.0.1": "AWS eu-west-2 (3.8.0.0/14)",
    "18.130.0.1": "AWS eu-west-2 (18.130.0.0/16)",
    "35.176.0.1": "AWS eu-west-2 (35.176.0.0/15)",
    "52.56.0.1": "AWS eu-west-2 (52.56.0.0/16)",
    "35.189.64.1": "GCP europe-west2 (35.189.64.0/18)",
    "34.105.128.1": "GCP europe-west2 (34.105.128.0/17)",
    "35.246.0.1": "GCP europe-west2 (35.246.0.0/17)",
    "51.140.0.1": "Azure uksouth (51.140.0.0/17)",
    "51.104.0.1": "Azure uksouth (51.104.0.0/19)",
    "212.58.244.20": "BBC",
    "81.2.69.142": "MaxMind's GB test address",
}


@pytest.fixture(scope="module")
def geo() -> GeoIP:
    return open_geoip()


@pytest.mark.parametrize("ip", sorted(UK_CLOUD))
def test_uk_cloud_regions_are_gb_not_us(geo: GeoIP, ip: str) -> None:
    assert geo.country(ip) == "GB", UK_CLOUD[ip]


def test_registry_data_alone_would_say_us() -> None:
    """Why RIR data is not the IPv4 default: it has AWS London as US."""
    iptocc = pytest.importorskip("iptocc")
    assert iptocc.country_code("3.8.0.1") == "US"
    assert iptocc.country_code("35.189.64.1") == "US"


def test_elsewhere(geo: GeoIP) -> None:
    assert geo.country("8.8.8.8") == "US"
    assert geo.country("1.0.16.1") == "JP"
    assert geo.country("::ffff:8.8.8.8") == "US"  # mapped: looked up as IPv4
    code = geo.country("2a00:1450:4009::1")  # IPv6 falls back to registry data
    assert code is not None and len(code) == 2


@pytest.mark.parametrize(
    "ip",
    [
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "100.64.0.1",
        "169.254.1.1",
        "127.0.0.1",
        "0.0.0.0",
        "255.255.255.255",
        "239.255.255.250",
        "224.0.0.251",
        "203.0.113.10",
        "198.51.100.10",
        "240.0.0.1",
        "fe80::1",
        "fd00::1",
        "ff02::fb",
        "2001:db8::1",
        "::ffff:10.0.0.1",
        "not an address",
    ],
)
def test_never_geolocated(geo: GeoIP, ip: str) -> None:
    assert geolocatable(ip) is None
    assert geo.country(ip) is None


def test_source_names_the_data_and_licence(geo: GeoIP) -> None:
    assert "IP2Location LITE DB1, CC BY-SA 4.0" in geo.source


# -------------------------------------------------- operator-supplied files


def test_tor_format_file_goes_first(tmp_path: Path) -> None:
    f = tmp_path / "geoip"
    # Tor's geoip format: FROM,TO,CC with IPv4 as integers; "geoip6" beside it for IPv6
    f.write_text(
        "# Generated: Thu, 25 Jun 2026 04:33:59 GMT\n"
        f"{0x08080800},{0x080808FF},GB\n"
        f"{0x09000000},{0x09FFFFFF},fr\n"
    )
    (tmp_path / "geoip6").write_text("2001:4860::,2001:4860:ffff:ffff:ffff:ffff:ffff:ffff,DE\n")
    geo = open_geoip(tor_file=f)
    assert geo.country("8.8.8.8") == "GB"  # the operator's file wins
    assert geo.country("9.1.2.3") == "FR"
    assert geo.country("2001:4860::8888") == "DE"
    assert geo.country("1.0.16.1") == "JP"  # not in the file: packaged data
    assert "Generated: Thu, 25 Jun 2026" in TorFileLookup(f).source


def test_tor_file_errors_are_config_errors(tmp_path: Path) -> None:
    bad = tmp_path / "geoip"
    bad.write_text("1,2,GB\nnot,a line\n")
    with pytest.raises(ConfigError, match="line 2 is not FROM,TO,CC"):
        TorFileLookup(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        TorFileLookup(tmp_path / "missing")


def _mmdb(networks: dict[str, str]) -> bytes:
    """A minimal IPv4 MaxMind DB (MaxMind DB spec 2.0: 24-bit records, one data map per net)."""
    import ipaddress

    def s(text: str) -> bytes:  # UTF-8 string, type 2
        b = text.encode()
        return bytes([(2 << 5) | len(b)]) + b

    def u(value: int, typ: int, size: int) -> bytes:  # unsigned ints: 5=u16, 6=u32, 9=u64
        b = value.to_bytes(size, "big")
        if typ < 8:
            return bytes([(typ << 5) | size]) + b
        return bytes([size, typ - 7]) + b  # extended type

    def m(items: list[tuple[str, bytes]]) -> bytes:  # map, type 7
        return bytes([(7 << 5) | len(items)]) + b"".join(s(k) + v for k, v in items)

    data = b""
    leaves: list[tuple[ipaddress.IPv4Network, int]] = []
    for cidr, cc in networks.items():
        leaves.append((ipaddress.IPv4Network(cidr), len(data)))
        data += m([("country", m([("iso_code", s(cc))]))])
    nodes: list[list[int | None]] = [[None, None]]
    for net, off in leaves:
        bits = format(int(net.network_address), "032b")[: net.prefixlen]
        node = 0
        for i, bit in enumerate(bits):
            side = int(bit)
            if i == len(bits) - 1:
                nodes[node][side] = -(off + 1)  # a data pointer, fixed below
            else:
                if nodes[node][side] is None:
                    nodes.append([None, None])
                    nodes[node][side] = len(nodes) - 1
                node = int(nodes[node][side])  # type: ignore[arg-type]
    count = len(nodes)
    tree = b""
    for pair in nodes:
        for rec in pair:
            if rec is None:
                value = count  # "no data"
            elif rec < 0:
                value = count + 16 + (-rec - 1)
            else:
                value = rec
            tree += value.to_bytes(3, "big")
    meta = m(
        [
            ("node_count", u(count, 6, 4)),
            ("record_size", u(24, 5, 2)),
            ("ip_version", u(4, 5, 2)),
            ("database_type", s("Test-Country")),
            ("binary_format_major_version", u(2, 5, 2)),
            ("binary_format_minor_version", u(0, 5, 2)),
            ("build_epoch", u(1_780_000_000, 9, 8)),
            ("languages", bytes([0, 11 - 7])),  # an empty array (extended type 11)
            ("description", m([("en", s("scanner test database"))])),
        ]
    )
    return tree + b"\0" * 16 + data + b"\xab\xcd\xefMaxMind.com" + meta


def test_operator_mmdb_goes_first(tmp_path: Path) -> None:
    pytest.importorskip("maxminddb")
    f = tmp_path / "country.mmdb"
    f.write_bytes(_mmdb({"8.8.8.0/24": "GB", "52.56.0.0/16": "IE"}))
    geo = open_geoip(mmdb=f)
    assert geo.country("8.8.8.8") == "GB"
    assert geo.country("52.56.1.1") == "IE"
    assert geo.country("1.0.16.1") == "JP"  # not in the MMDB: packaged data
    assert geo.country("2a00:1450:4009::1") is not None  # IPv6 in an IPv4 MMDB: no crash
    assert "Test-Country" in MmdbLookup(f).source


def test_bad_mmdb_is_a_config_error(tmp_path: Path) -> None:
    pytest.importorskip("maxminddb")
    f = tmp_path / "bad.mmdb"
    f.write_bytes(b"not a database" + struct.pack("!I", 7))
    with pytest.raises(ConfigError, match=r"capture\.geoip_mmdb"):
        MmdbLookup(f)


def test_installed_data_places_uk_cloud_regions_in_gb() -> None:
    """The measurement docs/geoip.md quotes, over every published UK-region prefix.

    `make test` installs the IPFire data (`make geoip`); registry-built data
    would put most of these in the US and raise false "leaving the UK" alarms.
    """
    from scanner.capture.geoip import installed_tor_file

    assert installed_tor_file() is not None, "no IPFire data: run `make geoip`"
    geo = open_geoip()
    prefixes = Path(__file__).parent.parent / "bench" / "uk_cloud_prefixes.txt"
    by_region: dict[str, list[str | None]] = {}
    for line in prefixes.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            region, prefix = line.split()
            net = ipaddress.ip_network(prefix)
            blocks = net.subnets(new_prefix=24) if net.prefixlen < 24 else [net]
            codes = by_region.setdefault(region, [])
            codes += [geo.country(str(b[1])) for b in blocks]  # one address per /24
    assert set(by_region) == {"aws:eu-west-2", "gcp:europe-west2", "azure:uksouth"}
    for region, codes in by_region.items():
        share = codes.count("GB") / len(codes)
        assert share >= 0.95, f"{region}: only {share:.0%} GB"
