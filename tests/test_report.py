"""Report rendering is pure; hostile device text comes out escaped in every format."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import jsonschema
from rich.console import Console

from scanner.report import build_report, render_csv, render_json, render_table

HOSTILE = "=cmd|' /C calc'!A0 \x1b[31mRED\x1b[0m <script>alert(1)</script> [bold]x[/bold]"


def _device(**over: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "ip": "192.0.2.10",
        "mac": "44:19:b6:00:00:02",
        "vendor": "Hikvision",
        "maker": "Hikvision",
        "model": None,
        "firmware": None,
        "serial": None,
        "origin_country": "CN",
        "verdict": "flagged",
        "flagged": True,
        "accepted_risk": False,
        "reasons": ["maker Hikvision is named in US NDAA"],
        "sources": ["arp"],
        "evidence": [
            {"source": "arp", "field": "mac_oui", "value": "44:19:b6 …", "rule": "ieee:MA-L"}
        ],
        "registrant": "Hangzhou Hikvision Digital Technology Co.,Ltd.",
        "registrant_country": "CN",
        "randomised_mac": False,
        "ip_history": [],
        "conflicts": [],
        "confidence": "weak",
        "first_seen": "t",
        "last_seen": "t",
    }
    d.update(over)
    return d


def test_json_report_matches_its_schema_and_keeps_null_keys() -> None:
    doc = build_report([], [_device(), _device(ip="192.0.2.11", maker=None, verdict="unknown")], [])
    schema = json.loads(Path("docs/report.schema.json").read_text())
    jsonschema.validate(json.loads(render_json(doc)), schema)
    assert doc["devices"][1]["maker"] is None and "model" in doc["devices"][1]


def test_verdict_filter_keeps_only_those_devices() -> None:
    doc = build_report(
        [],
        [_device(), _device(ip="192.0.2.11", verdict="home-origin")],
        [],
        verdicts=["home-origin"],
    )
    assert [d["ip"] for d in doc["devices"]] == ["192.0.2.11"]


def test_csv_defuses_formulas() -> None:
    doc = build_report([], [_device(model=HOSTILE, vendor="+SUM(A1)", serial="@x")], [])
    rows = list(csv.DictReader(io.StringIO(render_csv(doc))))
    assert rows[0]["model"].startswith("'=")
    assert rows[0]["vendor"] == "'+SUM(A1)"
    assert "\x1b" not in rows[0]["model"]


def test_table_strips_terminal_escapes_and_does_not_obey_markup() -> None:
    out = io.StringIO()
    doc = build_report([], [_device(model=HOSTILE)], [])
    render_table(doc, Console(file=out, width=300, force_terminal=False, no_color=True))
    text = out.getvalue()
    assert "\x1b" not in text
    assert "[bold]x[/bold]" in text.replace("\n", "")
    assert "1 flagged" in text


def test_html_report_is_self_contained_and_escapes_device_text() -> None:
    from scanner.report import render_html

    doc = build_report(
        [],
        [_device(model=HOSTILE, vendor="<img src=x onerror=alert(1)>"), _device(ip="198.51.100.2")],
        [],
    )
    html = render_html(doc)
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<img src=x" not in html
    assert "\x1b" not in html
    assert "http://" not in html and "https://" not in html  # nothing to fetch, no links
    assert "<script" not in html.lower()
    assert html.count('class="device"') == 2


def test_markdown_escapes_markup_and_pipes() -> None:
    from scanner.report import render_markdown

    doc = build_report([], [_device(model="a|b <b>x</b> *y*")], [])
    md = render_markdown(doc)
    assert "a\\|b \\<b\\>x\\</b\\> \\*y\\*" in md


def test_survey_counts_concern_by_maker_and_category() -> None:
    from scanner.report import render_survey

    doc = build_report(
        [],
        [
            _device(model="DS-2CD2143G0-I", sources=["onvif"]),
            _device(ip="198.51.100.3", model="DS-7608NI-K2"),
            _device(
                ip="198.51.100.4",
                maker="Axis Communications",
                vendor="Axis Communications",
                verdict="non-home-origin",
                flagged=False,
            ),
            _device(ip="198.51.100.5", maker="Dahua", vendor="Lorex", model=None),
        ],
        [],
    )
    text = render_survey(doc)
    assert "Equipment from vendors of security or ethical concern: 3" in text
    assert "  camera: 1" in text and "  recorder (NVR/DVR): 1" in text
    assert "  Hikvision: 2" in text and "  Dahua: 1" in text
    assert "  Lorex (made by Dahua): 198.51.100.5" in text


def test_filters_by_since_and_cidr() -> None:
    from scanner.report import filter_devices

    devices = [
        _device(last_seen="2026-11-20T00:00:00Z"),
        _device(ip="10.0.0.1", last_seen="2026-11-22T01:00:00Z"),
    ]
    assert [d["ip"] for d in filter_devices(devices, since="2026-11-21")] == ["10.0.0.1"]
    assert [d["ip"] for d in filter_devices(devices, cidrs=["192.0.2.0/24"])] == ["192.0.2.10"]
