"""Reports: the JSON document (docs/report.md) and its table and CSV renderings.

Every string from a device is hostile until proven otherwise: terminal
control characters are stripped before the table prints them, rich markup is
escaped, and CSV cells that a spreadsheet would run as a formula are defused.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from scanner.model import iso, utcnow

DEVICE_KEYS = (
    "ip",
    "mac",
    "vendor",
    "maker",
    "model",
    "firmware",
    "serial",
    "origin_country",
    "verdict",
    "flagged",
    "accepted_risk",
    "reasons",
    "evidence",
    "conflicts",
    "confidence",
    "sources",
    "registrant",
    "registrant_country",
    "randomised_mac",
    "ip_history",
    "first_seen",
    "last_seen",
)
CONNECTION_KEYS = (
    "device_mac",
    "device_ip",
    "dst_ip",
    "dst_port",
    "proto",
    "dst_name",
    "dst_country",
    "class",
    "vendor",
    "first_seen",
    "last_seen",
    "packets",
    "bytes",
)
SCAN_KEYS = (
    "id",
    "started_at",
    "finished_at",
    "status",
    "interfaces",
    "cidrs",
    "devices_seen",
    "observations",
    "scanner_version",
)
VERDICTS = ("flagged", "non-home-origin", "home-origin", "unknown")

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def build_report(
    scans: Sequence[Mapping[str, Any]],
    devices: Iterable[Mapping[str, Any]],
    connections: Iterable[Mapping[str, Any]],
    *,
    verdicts: Sequence[str] = (),
) -> dict[str, Any]:
    """The JSON report: stable keys, unknown values null, never missing."""
    devs = [
        {k: d.get(k) for k in DEVICE_KEYS}
        for d in devices
        if not verdicts or d.get("verdict") in verdicts
    ]
    kept_ips = {d["ip"] for d in devs}
    return {
        "generated_at": iso(utcnow()),
        "scans": [{k: s.get(k) for k in SCAN_KEYS} for s in scans],
        "devices": devs,
        "connections": [
            {k: c.get(k) for k in CONNECTION_KEYS}
            for c in connections
            if not verdicts or c.get("device_ip") in kept_ips
        ],
    }


def render_json(report: Mapping[str, Any]) -> str:
    return json.dumps(report, indent=2, ensure_ascii=False) + "\n"


def safe_text(value: object) -> str:
    """Device text made safe for a terminal: no control or escape sequences."""
    if value is None:
        return ""
    return _CONTROL.sub("\N{REPLACEMENT CHARACTER}", str(value))


def safe_cell(value: object) -> str:
    """A CSV cell a spreadsheet will show, never run (OWASP CSV injection)."""
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        text = "; ".join(safe_text(v) for v in value)
    elif isinstance(value, bool):
        text = "true" if value else "false"
    else:
        text = safe_text(value)
    if text.startswith(_FORMULA_START):
        text = "'" + text
    return text


CSV_COLUMNS = (
    "ip",
    "mac",
    "vendor",
    "maker",
    "model",
    "firmware",
    "serial",
    "origin_country",
    "verdict",
    "flagged",
    "accepted_risk",
    "reasons",
    "sources",
    "registrant",
    "registrant_country",
    "first_seen",
    "last_seen",
)


def render_csv(report: Mapping[str, Any]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for d in report["devices"]:
        writer.writerow([safe_cell(d.get(c)) for c in CSV_COLUMNS])
    return buf.getvalue()


_VERDICT_STYLE = {
    "flagged": "bold red",
    "non-home-origin": "yellow",
    "home-origin": "green",
    "unknown": "dim",
}


def _cell(value: object) -> str:
    return escape(safe_text(value)) if value not in (None, "") else "[dim]-[/dim]"


def render_table(report: Mapping[str, Any], console: Console) -> None:
    devices = report["devices"]
    table = Table(title=f"Devices ({len(devices)})", show_lines=False, expand=False)
    for col in ("IP", "MAC", "Maker", "Model", "Firmware", "Country", "Verdict", "Sources"):
        table.add_column(col, overflow="fold")
    for d in devices:
        verdict = d["verdict"] or "unknown"
        label = verdict + (" (accepted)" if d.get("accepted_risk") else "")
        maker = d.get("maker")
        if maker is None and d.get("randomised_mac"):
            maker = "randomised/virtual MAC"
        table.add_row(
            _cell(d["ip"]),
            _cell(d["mac"]),
            _cell(maker),
            _cell(d.get("model")),
            _cell(d.get("firmware")),
            _cell(d.get("origin_country")),
            f"[{_VERDICT_STYLE.get(verdict, '')}]{escape(label)}[/]",
            _cell(", ".join(d.get("sources") or [])),
        )
    console.print(table)
    for d in devices:
        if d.get("reasons"):
            console.print(
                f"{escape(safe_text(d['ip']))} {escape(safe_text(d['mac']))}: "
                + escape(safe_text("; ".join(d["reasons"])))
            )
    counts = {v: sum(1 for d in devices if d["verdict"] == v) for v in VERDICTS}
    console.print(", ".join(f"{n} {v}" for v, n in counts.items()))
    if report["connections"]:
        ct = Table(title=f"Connections ({len(report['connections'])})")
        for col in ("Device", "Destination", "Port", "Proto", "Name", "Country", "Class"):
            ct.add_column(col, overflow="fold")
        for c in report["connections"]:
            ct.add_row(
                _cell(c["device_ip"]),
                _cell(c["dst_ip"]),
                _cell(c["dst_port"]),
                _cell(c["proto"]),
                _cell(c["dst_name"]),
                _cell(c["dst_country"]),
                _cell(c["class"]),
            )
        console.print(ct)
