"""Zeek conn.log import (TSV and JSON), named from dns.log and ssl.log beside it.

The header and column layout are Zeek's default conn.log (Zeek 4+), as in
the example logs of zeek/spicy-analyzers' README ("#fields ts uid id.orig_h
... resp_ip_bytes tunnel_parents"); the addresses are the lab's.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from scanner.cli import cli
from scanner.cli_capture import register
from scanner.store import Store
from tests.capture_frames import CAM, CAM2, CAM_MAC, CLOUD, DNS
from tests.helpers import device, scan

register(cli)

HEAD = """#separator \\x09
#set_separator\t,
#empty_field\t(empty)
#unset_field\t-
#path\t{path}
#open\t2026-11-22-03-52-52
#fields\t{fields}
#types\t{types}
"""
# every Zeek log of a connection starts with its time, uid, addresses and ports
ID_FIELDS = [
    "ts",
    "uid",
    "id.orig_h",
    "id.orig_p",
    "id.resp_h",
    "id.resp_p",
]
CONN_FIELDS = [
    *ID_FIELDS,
    "proto",
    "service",
    "duration",
    "orig_bytes",
    "resp_bytes",
    "conn_state",
    "local_orig",
    "local_resp",
    "missed_bytes",
    "history",
    "orig_pkts",
    "orig_ip_bytes",
    "resp_pkts",
    "resp_ip_bytes",
    "tunnel_parents",
]
CONN_TYPES = [
    "time",
    "string",
    "addr",
    "port",
    "addr",
    "port",
    "enum",
    "string",
    "interval",
    "count",
    "count",
    "string",
    "bool",
    "bool",
    "count",
    "string",
    "count",
    "count",
    "count",
    "count",
    "set[string]",
]
CONN_ROWS = [
    # the Hikvision camera's TLS to the cloud; two connections fold into one flow
    f"1763783572.100000\tC1\t{CAM}\t40002\t{CLOUD}\t443\ttcp\tssl\t1.5\t517\t2048\tSF\t-\t-\t0\tShADadFf\t8\t900\t6\t2400\t-",
    f"1763783590.000000\tC2\t{CAM}\t40003\t{CLOUD}\t443\ttcp\tssl\t0.5\t517\t2048\tSF\t-\t-\t0\tShADadFf\t8\t900\t6\t2400\t-",
    f"1763783572.000000\tC3\t{CAM}\t40001\t{DNS}\t53\tudp\tdns\t0.001\t37\t69\tSF\t-\t-\t0\tDd\t1\t65\t1\t97\t-",
    f"1763783573.000000\tC4\t{CAM2}\t41000\t203.0.113.77\t8800\tudp\t-\t-\t-\t-\tS0\t-\t-\t0\tD\t1\t39\t0\t0\t-",
    # someone opening RTSP on the camera: inbound, not stored
    f"1763783574.000000\tC5\t203.0.113.9\t51000\t{CAM}\t554\ttcp\t-\t0.1\t0\t0\tS0\t-\t-\t0\tS\t1\t60\t0\t0\t-",
    f"1763783575.000000\tC6\t{CAM2}\t8\t203.0.113.77\t0\ticmp\t-\t0.00005\t8\t8\tOTH\t-\t-\t0\t-\t1\t36\t1\t36\t-",
]
DNS_FIELDS = [
    *ID_FIELDS,
    "proto",
    "trans_id",
    "rtt",
    "query",
    "qclass",
    "qclass_name",
    "qtype",
    "qtype_name",
    "rcode",
    "rcode_name",
    "AA",
    "TC",
    "RD",
    "RA",
    "Z",
    "answers",
    "TTLs",
    "rejected",
]
DNS_ROW = (
    f"1763783572.000000\tC3\t{CAM}\t40001\t{DNS}\t53\tudp\t10794\t0.001\twww.hik-connect.com\t1\tC_INTERNET"
    f"\t1\tA\t0\tNOERROR\tF\tF\tT\tT\t0\tdev.hik-connect.com,{CLOUD}\t300.0,300.0\tF"
)
SSL_FIELDS = [
    *ID_FIELDS,
    "version",
    "server_name",
]
SSL_ROW = f"1763783572.2\tC1\t{CAM}\t40002\t{CLOUD}\t443\tTLSv12\tdev.hik-connect.com"


def write_log(path: Path, kind: str, fields: list[str], rows: list[str]) -> None:
    types = CONN_TYPES if kind == "conn" else ["string"] * len(fields)
    head = HEAD.format(path=kind, fields="\t".join(fields), types="\t".join(types))
    path.write_text(head + "\n".join(rows) + "\n#close\t2026-11-22-03-53-52\n")


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "inv.db"
    with Store.open(path) as store:
        store.record_scan(scan([device(CAM, CAM_MAC), device(CAM2, "e0:50:8b:00:01:11")]))
    return path


def conns(db: Path) -> dict[tuple[str, str, object], dict[str, object]]:
    with Store.open(db) as store:
        return {
            (str(c["device_ip"]), str(c["dst_ip"]), c["dst_port"]): c for c in store.connections()
        }


def test_conn_log_with_dns_and_ssl_logs(db: Path, tmp_path: Path) -> None:
    logs = tmp_path / "zeek"
    logs.mkdir()
    write_log(logs / "conn.log", "conn", CONN_FIELDS, CONN_ROWS)
    write_log(logs / "dns.log", "dns", DNS_FIELDS, [DNS_ROW])
    write_log(logs / "ssl.log", "ssl", SSL_FIELDS, [SSL_ROW])
    r = CliRunner().invoke(cli, ["import-pcap", str(logs / "conn.log"), "--db", str(db)])
    assert r.exit_code == 0, r.output
    assert (
        "(zeek): 33 packets of known devices in 6 conn.log records (0 bad lines skipped)"
        in r.stdout
    )
    c = conns(db)
    hik = c[(CAM, CLOUD, 443)]
    assert (hik["dst_name"], hik["class"], hik["vendor"]) == (
        "www.hik-connect.com",
        "vendor-cloud",
        "Hikvision",
    )
    assert (hik["packets"], hik["bytes"]) == (28, 6600)
    assert (hik["first_seen"], hik["last_seen"]) == ("2025-11-22T03:52:52Z", "2025-11-22T03:53:10Z")
    assert c[(CAM2, "203.0.113.77", 8800)]["class"] == "unexpected"
    assert c[(CAM2, "203.0.113.77", None)]["proto"] == "icmp"
    assert (CAM, "203.0.113.9", 554) not in c and len(c) == 4


def test_json_conn_log(db: Path, tmp_path: Path) -> None:
    lines = []
    for row in CONN_ROWS[:4]:
        rec = dict(zip(CONN_FIELDS, row.split("\t"), strict=True))
        obj = {k: v for k, v in rec.items() if v != "-"}
        for k in ("ts", "duration"):
            if k in obj:
                obj[k] = float(obj[k])  # type: ignore[assignment]
        lines.append(json.dumps(obj))
    f = tmp_path / "conn.json"
    f.write_text("\n".join(lines) + "\n")
    r = CliRunner().invoke(cli, ["import-pcap", str(f), "--db", str(db)])
    assert r.exit_code == 0, r.output
    c = conns(db)
    assert c[(CAM, CLOUD, 443)]["class"] == "unexpected"  # no ssl.log/dns.log: no name
    assert c[(CAM2, "203.0.113.77", 8800)]["packets"] == 1


def test_damaged_lines_are_skipped_with_a_count(db: Path, tmp_path: Path) -> None:
    rows = [
        *CONN_ROWS[:2],
        "garbage line",
        CONN_ROWS[3].replace("8800", "99999"),  # a port out of range
        CONN_ROWS[3].replace("1763783573.000000", "yesterday"),
        "x" * 70_000,  # longer than any real line
        CONN_ROWS[3].replace(CAM2, "not-an-ip"),
    ]
    f = tmp_path / "conn.log"
    write_log(f, "conn", CONN_FIELDS, rows)
    r = CliRunner().invoke(cli, ["import-pcap", str(f), "--db", str(db)])
    assert r.exit_code == 0, r.output
    assert "(5 bad lines skipped)" in r.stdout
    assert "Traceback" not in r.output
    assert list(conns(db)) == [(CAM, CLOUD, 443)]


@given(st.lists(st.text(max_size=200), max_size=20))
@settings(max_examples=200, deadline=None)
def test_any_lines_read_or_skip(tmp_path_factory: pytest.TempPathFactory, lines: list[str]) -> None:
    from scanner.capture.flows import DeviceRef
    from scanner.capture.zeek import read_conn_log

    f = tmp_path_factory.mktemp("zeek") / "conn.log"
    head = HEAD.format(path="conn", fields="\t".join(CONN_FIELDS), types="\t".join(CONN_TYPES))
    f.write_text(head + "\n".join(lines) + "\n", errors="surrogatepass")
    flows, stats = read_conn_log(f, {CAM: DeviceRef(CAM)})
    assert len(flows) <= 1 + stats["records"]
