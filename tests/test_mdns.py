"""mDNS/DNS-SD: pure parsing of real service records, zeroconf's binding, and the lab."""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from datetime import UTC, datetime
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any, ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab import Scenario
from scanner.config import ScanSettings, Scope
from scanner.discovery import mdns
from scanner.discovery.arp import InterfaceInfo
from scanner.discovery.base import Budget, ProbeContext
from scanner.errors import ParseError
from scanner.model import Source
from tests.conftest import LabFactory

REPO_ROOT = Path(__file__).resolve().parents[1]
T0 = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)
AXIS_TYPE = "_axis-video._tcp.local."


# --- instance names ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "facts"),
    [
        # home-assistant/core tests/components/axis/test_config_flow.py (zeroconf flow)
        (
            "AXIS M1065-LW - 00408C123456",
            {
                "manufacturer": "AXIS",
                "model": "AXIS M1065-LW",
                "model_number": "M1065-LW",
                "name": "AXIS M1065-LW - 00408C123456",
                "mac": "00:40:8c:12:34:56",
            },
        ),
        # an AXIS M2026-LE Mk II answering AXIS IP Utility (bookstack.bluecrow.net, "AXIS Cameras")
        (
            "AXIS M2026-LE Mk II - B8A44F0A98A1",
            {
                "manufacturer": "AXIS",
                "model": "AXIS M2026-LE Mk II",
                "model_number": "M2026-LE Mk II",
                "name": "AXIS M2026-LE Mk II - B8A44F0A98A1",
                "mac": "b8:a4:4f:0a:98:a1",
            },
        ),
        # 128keaton/hikvision-mdns test/cameras.json (_CGI._tcp)
        (
            "HIKVISION DS-2CD2722FWD-IZS - 733050075",
            {
                "manufacturer": "HIKVISION",
                "model": "DS-2CD2722FWD-IZS",
                "serial_suffix": "733050075",
                "name": "HIKVISION DS-2CD2722FWD-IZS - 733050075",
            },
        ),
        # avahi _workstation names (an avahi-browse inventory, code index id 3900551387)
        ("readynas [a0:21:b7:c1:8c:3a]", {"name": "readynas", "mac": "a0:21:b7:c1:8c:3a"}),
        # DoorBird reuses _axis-video._tcp; its "MAC" is not hex (home-assistant/core
        # tests/components/doorbird: "Doorstation - abc123")
        ("Doorstation - abc123", {"name": "Doorstation - abc123"}),
        (
            "Some Camera - 0A1B2C3D4E5F",
            {"name": "Some Camera - 0A1B2C3D4E5F", "mac": "0a:1b:2c:3d:4e:5f"},
        ),
        (
            "HP Color LaserJet Pro M252dw (C9167E)",
            {"name": "HP Color LaserJet Pro M252dw (C9167E)"},
        ),
        (
            "AXIS Q1615 - 010203040506",
            {  # a multicast-bit "MAC" is no station address
                "manufacturer": "AXIS",
                "model": "AXIS Q1615",
                "model_number": "Q1615",
                "name": "AXIS Q1615 - 010203040506",
            },
        ),
        ("", {}),
    ],
)
def test_facts_from_instance(name: str, facts: dict[str, str]) -> None:
    assert mdns.facts_from_instance(name) == facts


def test_facts_from_host_reads_a_hikvision_serial() -> None:
    # the SRV target of a Hikvision _CGI._tcp record (128keaton/hikvision-mdns test/cameras.json)
    assert mdns.facts_from_host("DS-2CD2955FWD-IS20190709AAWR236286152.local.") == {
        "serial": "DS-2CD2955FWD-IS20190709AAWR236286152",
        "model": "DS-2CD2955FWD-IS",
        "manufacturer": "HIKVISION",
    }
    assert mdns.facts_from_host("axis-accc8e123456.local.") == {}
    assert mdns.facts_from_host("") == {}


@pytest.mark.parametrize(
    ("text", "mac"),
    [
        ("ACCC8E123456", "ac:cc:8e:12:34:56"),
        ("48:0f:cf:c9:16:7e", "48:0f:cf:c9:16:7e"),
        ("48-0F-CF-C9-16-7E", "48:0f:cf:c9:16:7e"),
        ("1CCAE3DOORBIRD", None),
        ("000000000000", None),
        ("ffffffffffff", None),
        ("48:0f:cf-c9:16:7e", None),
    ],
)
def test_normalise_mac(text: str, mac: str | None) -> None:
    assert mdns.normalise_mac(text) == mac


# --- parse_service -------------------------------------------------------------------


def test_axis_video_service() -> None:
    obs = mdns.parse_service(
        AXIS_TYPE,
        "AXIS M1065-LW - 00408C123456._axis-video._tcp.local.",
        "axis-00408c123456.local.",
        ["198.51.100.20", "169.254.93.22", "fe80::1"],
        80,
        {b"macaddress": b"00408C123456"},
        T0,
    )
    assert [o.ip for o in obs] == ["198.51.100.20", "169.254.93.22"]  # IPv6 is not scanned
    o = obs[0]
    assert o.source is Source.MDNS and o.error is None
    assert o.mac == "00:40:8c:12:34:56"
    assert o.attrs == {
        "service_type": AXIS_TYPE,
        "instance": "AXIS M1065-LW - 00408C123456",
        "host": "axis-00408c123456.local.",
        "port": "80",
        "txt": "macaddress=00408C123456",
        "manufacturer": "AXIS",
        "model": "AXIS M1065-LW",
        "model_number": "M1065-LW",
        "name": "AXIS M1065-LW - 00408C123456",
        "mac": "00:40:8c:12:34:56",
    }


def test_hikvision_cgi_service() -> None:
    # 128keaton/hikvision-mdns test/cameras.json, first camera
    (o,) = mdns.parse_service(
        "_CGI._tcp.local.",
        "HIKVISION DS-2CD2722FWD-IZS - 733050075._CGI._tcp.local",
        "DS-2CD2722FWD-IZS20170321BBWR733050075.local",
        ["10.0.1.164"],
        80,
        {b"path": b"/"},
        T0,
    )
    assert o.attrs["instance"] == "HIKVISION DS-2CD2722FWD-IZS - 733050075"
    assert o.attrs["manufacturer"] == "HIKVISION"
    assert o.attrs["model"] == "DS-2CD2722FWD-IZS"
    assert o.attrs["serial"] == "DS-2CD2722FWD-IZS20170321BBWR733050075"
    assert o.attrs["txt"] == "path=/"
    assert o.mac is None


def test_printer_txt_keys() -> None:
    # an HP Color LaserJet Pro M252dw's _ipp._tcp TXT (an avahi-browse inventory,
    # code index 3900551387), trimmed
    txt = {
        b"txtvers": b"1",
        b"mac": b"48:0f:cf:c9:16:7e",
        b"usb_MDL": b"HP Color LaserJet Pro M252dw",
        b"usb_MFG": b"Hewlett-Packard",
        b"UUID": b"564e4333-4e30-3439-3539-480fcfc9167e",
        b"product": b"(HP Color LaserJet Pro M252dw)",
        b"ty": b"HP Color LaserJet Pro M252dw",
        b"Color": b"T",
    }
    (o,) = mdns.parse_service(
        "_ipp._tcp.local.",
        "HP Color LaserJet Pro M252dw (C9167E)._ipp._tcp.local.",
        "NPIC9167E.local.",
        ["192.168.1.172"],
        631,
        txt,
        T0,
    )
    assert o.mac == "48:0f:cf:c9:16:7e"
    assert o.attrs["manufacturer"] == "Hewlett-Packard"
    assert o.attrs["model"] == "HP Color LaserJet Pro M252dw"
    assert o.attrs["uuid"] == "564e4333-4e30-3439-3539-480fcfc9167e"
    assert o.attrs["txt"].startswith("txtvers=1 mac=48:0f:cf:c9:16:7e usb_MDL=")


def test_txt_product_falls_back_from_ty() -> None:
    (o,) = mdns.parse_service(
        "_printer._tcp.local.",
        "P._printer._tcp.local.",
        None,
        ["10.0.0.9"],
        515,
        {b"ty": b"Brother HL-L2350DW", b"product": b"()"},
        T0,
    )
    assert o.attrs["model"] == "Brother HL-L2350DW"


def test_homekit_md_is_a_model_but_airplay_md_is_not() -> None:
    # HAP TXT keys md (model) and ci (category; 17 = IP camera):
    # dickolsson/openhap spec/HAP-mDNS.md.
    # The id= key looks like a MAC but is a random pairing identity, so it is not one.
    (hap,) = mdns.parse_service(
        "_hap._tcp.local.",
        "Cam._hap._tcp.local.",
        "cam.local.",
        ["10.0.0.5"],
        8080,
        {b"md": b"Eufy T8410", b"ci": b"17", b"id": b"0E:AA:CE:2B:35:71"},
        T0,
    )
    assert hap.attrs["model"] == "Eufy T8410"
    assert hap.attrs["hap_category"] == "17"
    assert hap.mac is None
    # an Apple TV's _raop._tcp md=0,1,2 is a codec list (same inventory as the printer)
    (raop,) = mdns.parse_service(
        "_raop._tcp.local.",
        "1CB3C90F49FD@Living Room._raop._tcp.local.",
        None,
        ["10.0.0.6"],
        7000,
        {b"md": b"0,1,2", b"am": b"AppleTV11,1"},
        T0,
    )
    assert "model" not in raop.attrs


def test_firmware_and_serial_keys() -> None:
    (o,) = mdns.parse_service(
        "_qdiscover._tcp.local.",
        "slw-nas._qdiscover._tcp.local.",
        None,
        ["192.168.1.100"],
        5000,
        {b"model": b"TS-X64", b"fwVer": b"5.2.9", b"SN": b"Q21AB12345"},
        T0,
    )
    assert (o.attrs["model"], o.attrs["firmware"], o.attrs["serial"]) == (
        "TS-X64",
        "5.2.9",
        "Q21AB12345",
    )


def test_hostile_txt_is_decoded_safely_and_capped() -> None:
    txt: dict[bytes, bytes | None] = {
        b"model": b"\xff\xfeEvil\x1b[2J\x00Cam",
        b"flag": None,
        b"\xc3\x28": b"bad-key",
    }
    txt.update({f"k{i}".encode(): b"v" * 250 for i in range(40)})
    (o,) = mdns.parse_service(
        "_http._tcp.local.", "x\x07y._http._tcp.local.", "h\nost.local.", ["10.0.0.7"], 80, txt, T0
    )
    assert o.attrs["model"] == "\ufffd\ufffdEvil[2JCam"
    assert o.attrs["instance"] == "xy"
    assert o.attrs["host"] == "h ost.local."
    assert o.attrs["txt"].startswith("model=\ufffd\ufffdEvil[2JCam flag \ufffd(=bad-key k0=")
    assert all(len(v) <= 512 for v in o.attrs.values())


def test_no_usable_address_gives_nothing() -> None:
    assert mdns.parse_service(AXIS_TYPE, "A._axis-video._tcp.local.", None, [], 80, {}, T0) == []
    assert (
        mdns.parse_service(
            AXIS_TYPE, "A._axis-video._tcp.local.", None, ["fe80::1", "junk"], None, {}, T0
        )
        == []
    )


@settings(max_examples=400, deadline=None)
@given(
    st.text(max_size=80),
    st.one_of(st.none(), st.text(max_size=80)),
    st.lists(st.text(max_size=20), max_size=4),
    st.one_of(st.none(), st.integers(-5, 70000)),
    st.dictionaries(
        st.binary(max_size=30), st.one_of(st.none(), st.binary(max_size=300)), max_size=20
    ),
)
def test_fuzz_parse_service(
    name: str,
    server: str | None,
    addresses: list[str],
    port: int | None,
    txt: dict[bytes, bytes | None],
) -> None:
    with contextlib.suppress(ParseError):
        for o in mdns.parse_service("_http._tcp.local.", name, server, addresses, port, txt, T0):
            IPv4Address(o.ip)
            assert all(isinstance(v, str) and len(v) <= 512 for v in o.attrs.values())
            assert all(c not in v for v in o.attrs.values() for c in "\r\n\x00\x1b")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_fuzz_facts_from_instance(name: str) -> None:
    facts = mdns.facts_from_instance(name)
    assert all(len(v) <= 512 for v in facts.values())
    if "mac" in facts:
        assert mdns.normalise_mac(facts["mac"].replace(":", "")) == facts["mac"]


# --- zeroconf is bound to the scope's interfaces only --------------------------------


class _FakeZeroconf:
    made: ClassVar[list[dict[str, Any]]] = []

    def __init__(self, **kwargs: Any) -> None:
        _FakeZeroconf.made.append(kwargs)
        self.closed = False

    def close(self) -> None:
        _FakeZeroconf.made[-1]["closed"] = True


class _FakeBrowser:
    def __init__(self, zc: Any, types: list[str], handlers: list[Any]) -> None:
        from zeroconf import ServiceStateChange

        self.types = types
        handlers[0](
            zeroconf=zc,
            service_type=AXIS_TYPE,
            name="AXIS M3045-V - ACCC8E000020._axis-video._tcp.local.",
            state_change=ServiceStateChange.Added,
        )
        handlers[0](
            zeroconf=zc,
            service_type=AXIS_TYPE,
            name="AXIS M3045-V - ACCC8E0000C8._axis-video._tcp.local.",
            state_change=ServiceStateChange.Added,
        )

    def cancel(self) -> None:
        pass


class _FakeInfo:
    def __init__(self, type_: str, name: str) -> None:
        self.name = name
        self.server = "axis.local."
        self.port = 80
        self.properties = {b"macaddress": name.split(" - ")[1][:12].encode()}

    def load_from_cache(self, zc: Any) -> bool:
        return True

    def parsed_addresses(self, version: Any = None) -> list[str]:
        return ["198.51.100.20"] if "0020" in self.name else ["198.51.100.200"]


def test_discover_binds_zeroconf_to_scoped_interface_addresses_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import zeroconf

    monkeypatch.setattr(zeroconf, "Zeroconf", _FakeZeroconf)
    monkeypatch.setattr(zeroconf, "ServiceBrowser", _FakeBrowser)
    monkeypatch.setattr(zeroconf, "ServiceInfo", _FakeInfo)
    _FakeZeroconf.made.clear()
    iface = InterfaceInfo(
        "lab0", "02:00:5e:10:00:01", IPv4Address("198.51.100.1"), IPv4Network("198.51.100.0/24")
    )
    scope = Scope(interfaces=("lab0",), cidrs=(IPv4Network("198.51.100.0/25"),))
    ctx = ProbeContext(
        scope=scope,
        settings=ScanSettings(),
        interfaces=[iface],
        budget=Budget(1000, 40),
        timeout=0.1,
    )
    found = mdns.discover(ctx, browse_s=0.05)
    assert _FakeZeroconf.made == [
        {"interfaces": ["198.51.100.1"], "ip_version": zeroconf.IPVersion.V4Only, "closed": True}
    ]
    assert [o.ip for o in found] == ["198.51.100.20"]  # .200 is outside the /25
    assert found[0].mac == "ac:cc:8e:00:00:20"
    assert ctx.budget.sent["*multicast*"] > 0


def test_discover_without_interfaces_sends_nothing() -> None:
    scope = Scope(interfaces=("lab0",), cidrs=(IPv4Network("198.51.100.0/24"),))
    ctx = ProbeContext(scope=scope, settings=ScanSettings(), interfaces=[], budget=Budget(1000, 40))
    assert mdns.discover(ctx) == []
    assert sum(ctx.budget.sent.values()) == 0


# --- the lab -------------------------------------------------------------------------

DISCOVER = """
import json, sys
from dataclasses import asdict
from scanner.config import Scope, ScanSettings, parse_cidr
from scanner.discovery.arp import interface_info
from scanner.discovery.base import Budget, ProbeContext
from scanner.discovery.mdns import discover
scope = Scope(interfaces=("lab0",), cidrs=(parse_cidr(sys.argv[1]),))
ctx = ProbeContext(scope=scope, settings=ScanSettings(), interfaces=[interface_info("lab0")],
                   budget=Budget(1000, 40), timeout=2.0)
obs = discover(ctx, browse_s=float(sys.argv[2]))
print(json.dumps([asdict(o) | {"seen_at": o.seen_at.isoformat()} for o in obs]))
"""


def run_discover(lab: Any, cidr: str, browse_s: float = 2.0) -> list[dict[str, Any]]:
    r = lab.run_in_scanner(
        [sys.executable, "-c", DISCOVER, cidr, str(browse_s)],
        capture_output=True,
        timeout=60,
        cwd=REPO_ROOT,
    )
    assert r.returncode == 0, r.stderr
    found: list[dict[str, Any]] = json.loads(r.stdout)
    return found


def test_lan_mdns_finds_the_axis_camera_with_model_and_mac(lab_factory: LabFactory) -> None:
    lab = lab_factory("lan")
    found = run_discover(lab, lab.cidr)
    by_key = {(o["ip"], o["attrs"]["service_type"]): o for o in found}
    assert set(by_key) == {
        ("198.51.100.20", "_axis-video._tcp.local."),
        ("198.51.100.20", "_http._tcp.local."),
        ("198.51.100.23", "_workstation._tcp.local."),
        ("198.51.100.24", "_ipp._tcp.local."),
        ("198.51.100.24", "_http._tcp.local."),
        ("198.51.100.25", "_CGI._tcp.local."),
    }
    axis = by_key[("198.51.100.20", "_axis-video._tcp.local.")]
    assert axis["source"] == "mdns" and axis["error"] is None
    assert axis["mac"] == "ac:cc:8e:00:00:20"
    assert axis["attrs"]["model"] == "AXIS M3045-V"
    assert axis["attrs"]["manufacturer"] == "AXIS"
    assert axis["attrs"]["txt"] == "macaddress=ACCC8E000020"
    assert axis["attrs"]["host"] == "axis-accc8e000020.local."
    assert axis["attrs"]["port"] == "80"
    hik = by_key[("198.51.100.25", "_CGI._tcp.local.")]["attrs"]
    assert hik["serial"] == "DS-2CD2722FWD-IZS20170321BBWR733050075"
    assert hik["model"] == "DS-2CD2722FWD-IZS"
    assert by_key[("198.51.100.23", "_workstation._tcp.local.")]["mac"] == "52:54:00:00:00:23"
    printer = by_key[("198.51.100.24", "_ipp._tcp.local.")]
    assert printer["mac"] == "48:0f:cf:00:00:24"
    assert printer["attrs"]["manufacturer"] == "Hewlett-Packard"


def _mdns_device(
    name: str, mac: str, ip: str, mode: str = "normal", **options: str
) -> dict[str, Any]:
    instance = f"AXIS M3045-V - {mac.replace(':', '').upper()}"
    return {
        "name": name,
        "mac": mac,
        "ip": ip,
        "service": [
            {
                "kind": "mdns",
                "port": 5353,
                "mode": mode,
                **options,
                "services": [
                    {
                        "type": "_axis-video._tcp",
                        "instance": instance,
                        "port": 80,
                        "txt": {"macaddress": mac.replace(":", "").upper()},
                    }
                ],
            }
        ],
    }


def test_hostile_mdns_answers_and_out_of_scope_hosts(lab_factory: LabFactory) -> None:
    scenario = Scenario.from_dict(
        {
            "network": {
                "cidr": "198.51.100.0/24",
                "scanner_ip": "198.51.100.1",
                "scanner_mac": "02:00:5e:10:00:01",
            },
            "device": [
                _mdns_device("good", "ac:cc:8e:00:00:10", "198.51.100.10"),
                _mdns_device("malformed", "ac:cc:8e:00:00:11", "198.51.100.11", "malformed"),
                _mdns_device("truncated", "ac:cc:8e:00:00:12", "198.51.100.12", "truncated"),
                _mdns_device("oversized", "ac:cc:8e:00:00:13", "198.51.100.13", "oversized"),
                _mdns_device("silent", "ac:cc:8e:00:00:14", "198.51.100.14", "silent"),
                _mdns_device("outside", "ac:cc:8e:00:00:c8", "198.51.100.200"),
                # outside the scope, announcing a camera at a free address inside it
                _mdns_device(
                    "impostor", "ac:cc:8e:00:00:c9", "198.51.100.201", address="198.51.100.16"
                ),
            ],
        },
        name="mdns-hostile",
    )
    lab = lab_factory(scenario)
    found = {o["ip"]: o for o in run_discover(lab, "198.51.100.0/25")}
    assert "198.51.100.10" in found and found["198.51.100.10"]["mac"] == "ac:cc:8e:00:00:10"
    assert "198.51.100.200" not in found  # answered, but outside the scope
    assert "198.51.100.16" not in found  # in the scope, but said by a sender outside it
    assert "198.51.100.14" not in found
    big = found["198.51.100.13"]
    assert big["mac"] == "ac:cc:8e:00:00:13"
    assert len(big["attrs"]["txt"]) <= 512
    assert all(ch not in big["attrs"]["txt"] for ch in "\x07\x1b\n")
    assert set(found) <= {"198.51.100.10", "198.51.100.11", "198.51.100.12", "198.51.100.13"}


def test_an_instance_zeroconf_refuses_is_read_from_its_cache() -> None:
    """zeroconf's ServiceInfo rejects names with control characters; the cache still has them."""
    from types import SimpleNamespace

    from zeroconf import DNSAddress, DNSService, DNSText

    name = "\x1b[2J<script>x</script>=cmd._http._tcp.local."
    records = {
        name: [
            DNSService(name, 33, 1, 120, 0, 0, 80, "hostile.local."),
            DNSText(name, 16, 1, 4500, b"\x0amodel=X\x1b[1\x04flag"),
        ],
        "hostile.local.": [DNSAddress("hostile.local.", 1, 1, 120, bytes([198, 51, 100, 53]))],
    }
    zc = SimpleNamespace(cache=SimpleNamespace(entries_with_name=lambda n: records.get(n, [])))
    server, addresses, port, txt = mdns._from_cache(zc, name)  # type: ignore[arg-type]
    assert (server, addresses, port) == ("hostile.local.", ["198.51.100.53"], 80)
    assert txt == {b"model": b"X\x1b[1", b"flag": None}
    [obs] = mdns.parse_service("_http._tcp.local.", name, server, addresses, port, txt, T0)
    assert obs.ip == "198.51.100.53"
    assert "\x1b" not in obs.attrs["instance"] and "<script>" in obs.attrs["instance"]
    assert obs.attrs["model"] == "X[1"  # the ESC dropped


def test_txt_properties() -> None:
    assert mdns.txt_properties(b"\x05a=b=c\x01k\x00\x03A=z\x09") == {b"a": b"b=c", b"k": None}


def test_without_zeroconfs_readers_the_scan_goes_on_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from types import SimpleNamespace

    senders = mdns._SenderFilter(lambda ip: ip.startswith("198.51.100."))
    with caplog.at_level(logging.WARNING, logger=mdns.__name__):
        senders.install(SimpleNamespace(loop=None))  # type: ignore[arg-type]
    assert "cannot check answer senders" in caplog.text
    assert senders.accepts("198.51.100.7") and not senders.accepts("203.0.113.9")
    assert not senders.accepts("not an address") and senders.dropped == 2
