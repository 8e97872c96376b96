"""`scanner import-pcap`: pcap and pcapng through the flow path; hostile files."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from scanner.capture.pcap import CaptureFile
from scanner.cli import cli
from scanner.cli_capture import register
from scanner.errors import CaptureError
from scanner.store import Store
from tests.capture_frames import (
    CAM,
    CAM2,
    CAM_MAC,
    CLOUD,
    DNS,
    DNS_ANSWER_HIK,
    ether,
    ipv4,
    pcap_file,
    pcapng_file,
    tcp,
    udp,
)
from tests.helpers import device, scan

register(cli)

GARBAGE_DNS = struct.pack("!6H", 1, 0x8180, 1, 1, 0, 0) + b"\xff" * 30
FRAMES = [
    (1_700_000_000.25, ether(ipv4(CAM, DNS, 17, udp(40001, 53, b"\0" * 29)))),
    (1_700_000_000.26, ether(ipv4(DNS, CAM, 17, udp(53, 40001, DNS_ANSWER_HIK)))),
    (1_700_000_000.30, ether(ipv4(CAM, CLOUD, 6, tcp(40002, 80, flags=0x02)))),
    (1_700_000_000.31, ether(ipv4(CLOUD, CAM, 6, tcp(80, 40002, flags=0x12)))),
    (1_700_000_001.00, ether(ipv4(CAM2, "203.0.113.77", 17, udp(41000, 8800, b"DHP2P")))),
    (1_700_000_001.50, ether(ipv4("198.51.100.99", CLOUD, 17, udp(1, 2)))),  # not in inventory
]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "inv.db"
    with Store.open(path) as store:
        store.record_scan(
            scan([device(CAM, CAM_MAC, maker="Hikvision"), device(CAM2, "e0:50:8b:00:01:11")])
        )
    return path


def run(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(cli, list(args))
    return r.exit_code, r.stdout, r.stderr


def connections(db: Path) -> dict[tuple[str, str], dict[str, object]]:
    with Store.open(db) as store:
        return {(str(c["device_ip"]), str(c["dst_ip"])): c for c in store.connections()}


@pytest.mark.parametrize("kind", ["pcap", "pcapng"])
def test_import_gives_named_classified_connections(db: Path, tmp_path: Path, kind: str) -> None:
    f = tmp_path / f"cap.{kind}"
    f.write_bytes(pcap_file(FRAMES) if kind == "pcap" else pcapng_file(FRAMES))
    code, out, err = run("import-pcap", str(f), "--db", str(db), "--allow", DNS)
    assert code == 0, err
    assert f"({kind}): 5 packets of known devices of 6 records" in out
    assert "3 flows: 1 allowed, 1 vendor-cloud, 1 unexpected; 3 new" in out
    assert (
        "new vendor-cloud: 198.51.100.10 -> 203.0.113.10:80/tcp www.hik-connect.com (Hikvision)"
        in out
    )
    conns = connections(db)
    hik = conns[(CAM, CLOUD)]
    assert hik["first_seen"] == "2023-11-14T22:13:20Z"
    assert (hik["class"], hik["vendor"], hik["packets"]) == ("vendor-cloud", "Hikvision", 2)
    assert conns[(CAM2, "203.0.113.77")]["class"] == "unexpected"
    assert conns[(CAM, DNS)]["class"] == "allowed"
    with Store.open(db) as store:  # the alert side turned the two into findings
        keys = sorted(f["key"] for f in store.findings("new-connection"))
    assert keys == [
        f"new-connection:{CAM_MAC}:{CLOUD}:80/tcp",
        "new-connection:e0:50:8b:00:01:11:203.0.113.77:8800/udp",
    ]
    report = json.loads(run("report", "--db", str(db), "--format", "json")[1])
    assert {c["class"] for c in report["connections"]} == {"allowed", "vendor-cloud", "unexpected"}


def test_file_that_ends_mid_record_keeps_what_came_before(db: Path, tmp_path: Path) -> None:
    data = pcap_file(FRAMES)
    f = tmp_path / "cut.pcap"
    f.write_bytes(data[:-20])
    code, out, err = run("import-pcap", str(f), "--db", str(db))
    assert code == 0, err
    assert "warning: file ends mid-record after 5 packets; kept what came before" in err
    assert "Traceback" not in out + err
    assert len(connections(db)) == 3


def test_not_a_capture_is_a_clear_error(db: Path, tmp_path: Path) -> None:
    f = tmp_path / "notes.txt"
    f.write_text("hello, this is not a capture\n")
    code, _out, err = run("import-pcap", str(f), "--db", str(db))
    assert code == 65
    assert err.strip() == f"scanner: {f}: not a pcap or pcapng file (starts with 68656c6c)"
    code, _out, err = run("import-pcap", str(tmp_path / "missing.pcap"), "--db", str(db))
    assert code == 65 and "cannot open" in err and "Traceback" not in err


def test_no_inventory_is_a_clear_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    Store.open(empty).close()
    f = tmp_path / "c.pcap"
    f.write_bytes(pcap_file(FRAMES))
    code, _out, err = run("import-pcap", str(f), "--db", str(empty))
    assert code == 65 and "no devices in the inventory yet" in err


def test_truncated_packets_and_garbage_dns_are_counted(db: Path, tmp_path: Path) -> None:
    bad = [
        (1.0, ether(ipv4(CAM, CLOUD, 6, tcp(1, 443)))[:38]),  # TCP header cut by the snap length
        # a response header, then garbage where the question should be (a dangling pointer)
        (2.0, ether(ipv4(DNS, CAM, 17, udp(53, 40001, GARBAGE_DNS)))),
        (2.5, ether(ipv4(DNS, CAM, 17, udp(53, 40001, b"\xff" * 40)))),  # noise: not an answer
        (3.0, ether(ipv4(DNS, CAM, 17, udp(53, 40001, DNS_ANSWER_HIK[:25])))),  # cut DNS
        (4.0, b"\x01\x02"),  # a runt
        (5.0, ether(ipv4(CAM, CLOUD, 17, udp(40000, 8800, b"ok")))),
    ]
    f = tmp_path / "bad.pcapng"
    f.write_bytes(pcapng_file(bad))
    code, out, err = run("import-pcap", str(f), "--db", str(db))
    assert code == 0, err
    assert "of 6 records (2 skipped, 1 malformed)" in out
    assert "skipped 2 unreadable DNS answers" in out
    assert (CAM, CLOUD) in connections(db)


def test_unsupported_link_type_is_skipped_with_a_count(db: Path, tmp_path: Path) -> None:
    f = tmp_path / "wifi.pcap"
    f.write_bytes(pcap_file(FRAMES, linktype=127))  # 802.11 radiotap
    code, out, err = run("import-pcap", str(f), "--db", str(db))
    assert code == 0, err
    assert "skipped 6 frames: linktype 127 not supported" in out


def test_pcapng_corrupt_block_length_stops_cleanly(tmp_path: Path) -> None:
    data = bytearray(pcapng_file(FRAMES))
    # the third block (first packet): make its length absurd
    shb_len = struct.unpack_from("<I", data, 4)[0]
    idb_len = struct.unpack_from("<I", data, shb_len + 4)[0]
    struct.pack_into("<I", data, shb_len + idb_len + 4, 0xFFFFFFF0)
    f = tmp_path / "corrupt.pcapng"
    f.write_bytes(bytes(data))
    cap = CaptureFile(f)
    assert list(cap.frames()) == []
    assert cap.ended_early is not None and "corrupt length" in cap.ended_early


def test_pcapng_nanosecond_and_big_endian_pcap_timestamps(tmp_path: Path) -> None:
    f = tmp_path / "ns.pcapng"
    f.write_bytes(pcapng_file(FRAMES[:1], nanos=True))
    ((_frame, lt, ts),) = CaptureFile(f).frames()
    assert lt == 1 and abs(ts - FRAMES[0][0]) < 1e-6
    frame = FRAMES[0][1]
    be = struct.pack(">IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 65535, 1)  # nanosecond, big-endian
    be += struct.pack(">IIII", 10, 500_000_000, len(frame), len(frame)) + frame
    g = tmp_path / "be.pcap"
    g.write_bytes(be)
    ((_frame, _lt, ts),) = CaptureFile(g).frames()
    assert ts == 10.5


@given(st.binary(max_size=400))
@settings(max_examples=300, deadline=None)
def test_any_file_reads_or_fails_cleanly(
    tmp_path_factory: pytest.TempPathFactory, data: bytes
) -> None:
    f = tmp_path_factory.mktemp("fuzz") / "x.cap"
    for head in (b"", pcap_file([])[:24], pcapng_file([])[:28]):
        f.write_bytes(head + data)
        cap = CaptureFile(f)
        try:
            for _ in cap.frames():
                pass
        except CaptureError:
            pass


@given(st.integers(min_value=0, max_value=400), st.integers(0, 255))
@settings(max_examples=300, deadline=None)
def test_corrupted_real_file_never_raises(
    tmp_path_factory: pytest.TempPathFactory, pos: int, value: int
) -> None:
    from scanner.capture.flows import DeviceRef, FlowTable

    data = bytearray(pcapng_file(FRAMES))
    data[pos % len(data)] = value
    f = tmp_path_factory.mktemp("fuzz") / "x.pcapng"
    f.write_bytes(bytes(data))
    table = FlowTable({CAM: DeviceRef(CAM)})
    try:
        for frame, lt, ts in CaptureFile(f).frames():
            table.feed(frame, lt, ts)
    except CaptureError:
        pass
    table.finish()


def test_destination_country_from_packaged_data_or_operator_file(db: Path, tmp_path: Path) -> None:
    # an address of AWS eu-west-2 (London): GB, where registry data would say US
    f = tmp_path / "aws.pcap"
    f.write_bytes(pcap_file([(5.0, ether(ipv4(CAM, "3.8.0.1", 6, tcp(40009, 443, flags=0x02))))]))
    code, out, err = run("import-pcap", str(f), "--db", str(db))
    assert code == 0, err
    assert "new unexpected: 198.51.100.10 -> 3.8.0.1:443/tcp country GB" in out
    geo = tmp_path / "geoip"
    geo.write_text(f"{0x03080000},{0x030BFFFF},IE\n")  # an operator's file says otherwise
    f2 = tmp_path / "aws2.pcap"
    f2.write_bytes(pcap_file([(6.0, ether(ipv4(CAM, "3.8.0.2", 6, tcp(40010, 443, flags=0x02))))]))
    code, out, err = run("import-pcap", str(f2), "--db", str(db), "--geoip-file", str(geo))
    assert code == 0, err
    assert "3.8.0.2:443/tcp country IE" in out
