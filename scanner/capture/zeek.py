"""Zeek conn.log import: flows a sensor already made, named from its dns/ssl/http logs.

Zeek (zeek.org) writes one conn.log line per connection, TSV with `#fields`
headers or JSON lines, with the originator (`id.orig_h`), the responder, the
packets and IP bytes both ways. A line whose originator is an inventory
device is an outbound flow, exactly the columns of `connections`; lines a
peer originated towards a device are counted as inbound and not stored, as in
the packet path. Names come from `dns.log` (query and answers, per client),
`ssl.log` (server_name) and `http.log` (host) beside the conn.log, when they
are there.

Hostile or damaged logs: a line with the wrong number of fields, a bad
number or address, or over MAX_LINE bytes is skipped and counted; a file
that is neither Zeek TSV nor JSON is a CaptureError.
"""

from __future__ import annotations

import ipaddress
import json
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

from scanner.capture.dnsmap import DnsAnswer, NameMap, host_name, merge_names
from scanner.capture.flows import DeviceRef, Flow, FlowKey
from scanner.errors import CaptureError

MAX_LINE = 64 * 1024
_PROTOS = {"tcp", "udp", "icmp"}


def is_zeek_log(path: Path) -> bool:
    """Does the file start like a Zeek log (TSV header or a JSON line with id.orig_h)?"""
    try:
        with path.open("rb") as fh:
            head = fh.read(4096)
    except OSError:
        return False
    if head.startswith(b"#separator"):
        return True
    first = head.split(b"\n", 1)[0]
    return first.startswith(b"{") and b'"id.orig_h"' in first


class ZeekLog:
    """Records of one Zeek log file as dicts of text ('' for unset/empty)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.bad_lines = 0
        self.records = 0

    def __iter__(self) -> Iterator[dict[str, str]]:
        try:
            fh = self.path.open("rb")
        except OSError as exc:
            raise CaptureError(f"{self.path}: cannot open: {exc.strerror or exc}") from None
        with fh:
            sep, unset, empty, fields = "\t", "-", "(empty)", list[str]()
            for raw in _lines(fh):
                if raw is None:
                    self.bad_lines += 1
                    continue
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                if not line:
                    continue
                if line.startswith("#separator"):
                    sep = _separator(line) or sep
                    continue
                if line.startswith("#"):
                    key, _, value = line[1:].partition(sep)
                    if key == "fields":
                        fields = value.split(sep)
                    elif key == "unset_field":
                        unset = value
                    elif key == "empty_field":
                        empty = value
                    continue
                if line.startswith("{"):
                    rec = _json_record(line)
                    if rec is None:
                        self.bad_lines += 1
                        continue
                    self.records += 1
                    yield rec
                    continue
                values = line.split(sep)
                if not fields or len(values) != len(fields):
                    self.bad_lines += 1
                    continue
                self.records += 1
                yield {
                    k: ("" if v in (unset, empty) else v)
                    for k, v in zip(fields, values, strict=True)
                }


def _lines(fh: BinaryIO) -> Iterator[bytes | None]:
    """Lines of at most MAX_LINE bytes; None for a longer one, which is read past, not kept."""
    while True:
        raw = fh.readline(MAX_LINE + 1)
        if not raw:
            return
        if len(raw) > MAX_LINE and not raw.endswith(b"\n"):
            while raw and not raw.endswith(b"\n"):
                raw = fh.readline(MAX_LINE)
            yield None
            continue
        yield raw


def _separator(line: str) -> str | None:
    """The value of `#separator \\x09` (escaped in the header), if it is usable."""
    _, _, text = line.partition(" ")
    try:
        sep = text.encode("ascii").decode("unicode_escape")
    except (UnicodeError, ValueError):
        return None
    return sep if len(sep) == 1 else None


def _json_record(line: str) -> dict[str, str] | None:
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    if not isinstance(obj, dict):
        return None
    out = {}
    for k, v in obj.items():
        if isinstance(v, list):
            out[str(k)] = ",".join(str(x) for x in v)
        elif v is not None:
            out[str(k)] = str(v)
    return out


def _addr(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def _int(text: str) -> int:
    return int(text) if text else 0


def _names_by_uid(directory: Path, stats: Counter[str]) -> dict[str, list[str]]:
    """uid -> names from ssl.log server_name and http.log host, when those logs exist."""
    out: dict[str, list[str]] = {}
    for log, field in (("ssl.log", "server_name"), ("http.log", "host")):
        path = directory / log
        if not path.is_file():
            continue
        zl = ZeekLog(path)
        for rec in zl:
            name = host_name(rec.get(field, "").rsplit(":", 1)[0])
            uid = rec.get("uid", "")
            if name and uid and len(out) < 1_000_000:
                out[uid] = merge_names(out.get(uid, []), [name])
        stats["bad_lines"] += zl.bad_lines
    return out


def _learn_dns(directory: Path, names: NameMap, stats: Counter[str]) -> None:
    path = directory / "dns.log"
    if not path.is_file():
        return
    zl = ZeekLog(path)
    for rec in zl:
        if rec.get("rcode_name", "NOERROR") not in ("NOERROR", ""):
            continue
        qname = host_name(rec.get("query", ""))
        client = _addr(rec.get("id.orig_h", ""))
        if not qname or not client:
            continue
        chain, addrs = [qname], []
        for item in rec.get("answers", "").split(","):
            addr = _addr(item)
            if addr:
                addrs.append(addr)
            elif (n := host_name(item)) is not None:
                chain = merge_names(chain, [n])
        if addrs:
            names.learn(client, DnsAnswer(qname, tuple(chain), tuple(addrs)))
            stats["dns_answers"] += 1
    stats["bad_lines"] += zl.bad_lines


def read_conn_log(
    path: Path,
    devices: Mapping[str, DeviceRef],
    *,
    max_flows: int = 65_536,
    names: NameMap | None = None,
) -> tuple[list[Flow], Counter[str]]:
    """The inventory's outbound flows in a conn.log, merged per (device, dst, port, proto)."""
    stats: Counter[str] = Counter()
    names = names if names is not None else NameMap()
    _learn_dns(path.parent, names, stats)
    by_uid = _names_by_uid(path.parent, stats)
    flows: dict[FlowKey, Flow] = {}
    log = ZeekLog(path)
    for rec in log:
        parsed = _conn(rec)
        if parsed is None:
            stats["bad_lines"] += 1
            continue
        orig, resp, port, proto, ts, end, pkts, nbytes = parsed
        if orig not in devices:
            stats["inbound" if resp in devices else "unrelated"] += 1
            continue
        key: FlowKey = (orig, resp, port, proto)
        flow = flows.get(key)
        if flow is None:
            if len(flows) >= max_flows:
                stats["flows_dropped"] += 1
                continue
            flow = flows[key] = Flow(orig, resp, port, proto, ts, end)
        flow.packets += pkts
        flow.bytes += nbytes
        flow.first_seen = min(flow.first_seen, ts)
        flow.last_seen = max(flow.last_seen, end)
        flow.names = merge_names(flow.names, by_uid.get(rec.get("uid", ""), []))
        stats["packets"] += pkts
    stats["records"] = log.records
    stats["bad_lines"] += log.bad_lines
    for flow in flows.values():
        flow.names = merge_names(names.names(flow.device_ip, flow.dst_ip), flow.names)
    return sorted(flows.values(), key=lambda f: (f.device_ip, f.dst_ip, f.proto)), stats


def _conn(
    rec: Mapping[str, Any],
) -> tuple[str, str, int | None, str, float, float, int, int] | None:
    orig, resp = _addr(rec.get("id.orig_h", "")), _addr(rec.get("id.resp_h", ""))
    proto = rec.get("proto", "")
    if orig is None or resp is None or proto not in _PROTOS:
        return None
    try:
        ts = float(rec["ts"])
        end = ts + (float(rec["duration"]) if rec.get("duration") else 0.0)
        port = None if proto == "icmp" else int(rec["id.resp_p"])
        pkts = _int(rec.get("orig_pkts", "")) + _int(rec.get("resp_pkts", ""))
        nbytes = _int(rec.get("orig_ip_bytes", "")) + _int(rec.get("resp_ip_bytes", ""))
    except (KeyError, ValueError):
        return None
    if not (0 <= ts < 1e11 and end >= ts and (port is None or 0 <= port < 65536)):
        return None
    return orig, resp, port, proto, ts, end, pkts, nbytes
