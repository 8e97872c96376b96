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

from scanner.model import CONNECTION_KEYS, iso, utcnow

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


# ------------------------------------------------------------ filters


def filter_devices(
    devices: Iterable[Mapping[str, Any]],
    *,
    since: str | None = None,
    cidrs: Sequence[str] = (),
) -> list[Mapping[str, Any]]:
    """Devices last seen at or after `since` (ISO date or time) and inside any of `cidrs`."""
    import ipaddress

    nets = [ipaddress.ip_network(c, strict=False) for c in cidrs]
    out = []
    for d in devices:
        if since and (d.get("last_seen") or "") < since:
            continue
        if nets:
            try:
                addr = ipaddress.ip_address(d.get("ip") or "")
            except ValueError:
                continue
            if not any(addr in n for n in nets):
                continue
        out.append(d)
    return out


# ----------------------------------------------------------- markdown


def _md(value: object) -> str:
    """Markdown-safe cell: no control characters, pipes, markup or raw HTML."""
    text = safe_text(value) if value not in (None, "") else "—"
    for ch in "\\|*_`[]<>#":
        text = text.replace(ch, "\\" + ch)
    return text.replace("\n", " ")


def render_markdown(report: Mapping[str, Any]) -> str:
    devices = report["devices"]
    lines = [
        "# Network camera inventory",
        "",
        f"Generated {report['generated_at']}; {len(devices)} devices: "
        + ", ".join(f"{sum(1 for d in devices if d['verdict'] == v)} {v}" for v in VERDICTS)
        + ".",
        "",
        "| IP | MAC | Vendor | Maker | Model | Firmware | Origin | Verdict | Reasons |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for d in devices:
        verdict = d["verdict"] + (" (accepted risk)" if d.get("accepted_risk") else "")
        lines.append(
            "| "
            + " | ".join(
                _md(x)
                for x in (
                    d["ip"],
                    d["mac"],
                    d["vendor"],
                    d["maker"],
                    d["model"],
                    d["firmware"],
                    d["origin_country"],
                    verdict,
                    "; ".join(d.get("reasons") or []),
                )
            )
            + " |"
        )
    if report["connections"]:
        lines += [
            "",
            "## Outbound connections",
            "",
            "| Device | Destination | Port | Name | Country | Class | Vendor |",
            "|---|---|---|---|---|---|---|",
        ]
        for c in report["connections"]:
            lines.append(
                "| "
                + " | ".join(
                    _md(c.get(k))
                    for k in (
                        "device_ip",
                        "dst_ip",
                        "dst_port",
                        "dst_name",
                        "dst_country",
                        "class",
                        "vendor",
                    )
                )
                + " |"
            )
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------- html


def _chart(title: str, counts: Mapping[str, int], flagged: set[str]) -> dict[str, Any]:
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:12]
    top = max((n for _, n in items), default=1)
    label_width, bar_max = 150, 220
    bars = [
        {
            "label": safe_text(label)[:22],
            "n": n,
            "y": i * 20,
            "w": max(2, round(bar_max * n / top)),
            "flagged": label in flagged,
        }
        for i, (label, n) in enumerate(items)
    ]
    return {
        "title": title,
        "bars": bars,
        "label_width": label_width,
        "width": label_width + bar_max + 40,
        "height": max(20, 20 * len(bars)),
    }


def _site(ip: str, scans: Sequence[Mapping[str, Any]]) -> str:
    import ipaddress

    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return "unknown"
    for s in reversed(scans):
        for c in s.get("cidrs") or []:
            if addr in ipaddress.ip_network(c, strict=False):
                return str(c)
    return "outside scanned networks"


def render_html(report: Mapping[str, Any], *, home_country: str = "GB") -> str:
    """One self-contained file: inline CSS and SVG, no script, nothing fetched."""
    import jinja2

    from scanner import __version__
    from scanner.fingerprint import default_db
    from scanner.oui import OuiRegistry
    from scanner.resources import package_dir

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(package_dir() / "templates")),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    devices = [
        {k: (safe_text(v) if isinstance(v, str) else v) for k, v in d.items()}
        for d in report["devices"]
    ]
    db = default_db()

    def count(key: Any) -> dict[str, int]:
        out: dict[str, int] = {}
        for d in devices:
            label = key(d) or "unknown"
            out[label] = out.get(label, 0) + 1
        return out

    flagged_makers = {d["maker"] for d in devices if d["flagged"] and d["maker"]}
    charts = [
        _chart("By maker", count(lambda d: d["maker"]), flagged_makers),
        _chart("By origin country", count(lambda d: d["origin_country"]), set()),
        _chart("By verdict", count(lambda d: d["verdict"]), {"flagged"}),
        _chart("By site", count(lambda d: _site(d["ip"], report["scans"])), set()),
    ]
    return env.get_template("report.html.j2").render(
        generated_at=report["generated_at"],
        version=__version__,
        home_country=home_country,
        scans=report["scans"],
        devices=devices,
        connections=report["connections"],
        verdicts=VERDICTS,
        counts={v: sum(1 for d in devices if d["verdict"] == v) for v in VERDICTS},
        accepted=sum(1 for d in devices if d.get("accepted_risk")),
        charts=charts,
        policies=list(db.policies.values()),
        oui_sources=OuiRegistry.default().sources,
    )


# ------------------------------------------------------------- survey

SURVEY_CATEGORIES = ("camera", "recorder (NVR/DVR)", "other or unknown")
_RECORDER = re.compile(r"\b(?:NVR|DVR|XVR|HCVR|NVS|recorder)|^i?DS-[789]\d", re.IGNORECASE)


def device_category(d: Mapping[str, Any]) -> str:
    """A rough kind for the survey return: recorders by model scheme, else camera evidence."""
    model = " ".join(str(d.get(k) or "") for k in ("model", "vendor"))
    if _RECORDER.search(model):
        return SURVEY_CATEGORIES[1]
    if d.get("model") or {"onvif", "wsd", "sadp", "dhip", "xmeye", "rtsp"} & set(
        d.get("sources") or []
    ):
        return SURVEY_CATEGORIES[0]
    return SURVEY_CATEGORIES[2]


def render_survey(report: Mapping[str, Any]) -> str:
    """The counts a Biometrics and Surveillance Camera Commissioner return asks for."""
    devices = report["devices"]
    concern = [d for d in devices if d["flagged"]]
    lines = [
        "Surveillance equipment survey figures",
        f"(from scanner, {report['generated_at']}; devices seen on the scanned networks)",
        "",
        f"Devices found: {len(devices)}",
        f"Equipment from vendors of security or ethical concern: {len(concern)}"
        f" ({sum(1 for d in concern if d.get('accepted_risk'))} under an accepted-risk exception)",
        f"Equipment made outside the home country: "
        f"{sum(1 for d in devices if d['verdict'] in ('flagged', 'non-home-origin'))}",
        f"Equipment whose maker could not be established: "
        f"{sum(1 for d in devices if d['verdict'] == 'unknown')}",
        "",
        "Equipment of concern by category:",
    ]
    for cat in SURVEY_CATEGORIES:
        lines.append(f"  {cat}: {sum(1 for d in concern if device_category(d) == cat)}")
    lines += ["", "Equipment of concern by maker:"]
    makers: dict[str, int] = {}
    for d in concern:
        makers[safe_text(d["maker"] or "unknown")] = (
            makers.get(safe_text(d["maker"] or "unknown"), 0) + 1
        )
    for maker, n in sorted(makers.items(), key=lambda kv: (-kv[1], kv[0])):
        lines.append(f"  {maker}: {n}")
    relabelled = [d for d in concern if d["vendor"] and d["maker"] and d["vendor"] != d["maker"]]
    if relabelled:
        lines += ["", "Of which sold under another brand:"]
        for d in relabelled:
            lines.append(
                f"  {safe_text(d['vendor'])} (made by {safe_text(d['maker'])}): "
                + safe_text(d["ip"])
            )
    connections = [
        c for c in report["connections"] if c.get("class") in ("vendor-cloud", "unexpected")
    ]
    lines += [
        "",
        f"Devices seen connecting to vendor clouds or unexpected external addresses: "
        f"{len({c['device_ip'] for c in connections})}",
    ]
    return "\n".join(lines) + "\n"
