"""Alert text: findings and bundles to a subject, a plain-text body and HTML.

Pure. Everything a device said about itself (names, banners, model strings)
is hostile until shown otherwise: control and bidi characters become U+FFFD
(no terminal escapes, no line injection into headers), URL schemes are
defanged so no mail client turns them into links, and the HTML part escapes
every value. The mails carry no links at all: a person acts on them with
`scanner report` and `scanner alerts list`, not by clicking.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from scanner.findings import Finding, Kind

SUBJECT_PREFIX = "[scanner]"
MAX_VALUE = 300  # characters of one device-supplied value shown in a mail
MAX_SUBJECT = 180
# C0/C1 controls (incl. newline and ESC), bidi overrides/isolates, zero-width
# and line/paragraph separators: none belongs in a one-line field.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]")


@dataclass(frozen=True, slots=True)
class Text:
    """One alert's words: subject line, plain-text body, HTML fragment."""

    subject: str
    body: str
    html: str


def clean(value: object, limit: int = MAX_VALUE) -> str:
    """A device-supplied value made safe to show in one line of a mail."""
    if value is None or value == "":
        return "-"
    text = _UNSAFE.sub("\N{REPLACEMENT CHARACTER}", str(value))
    text = text.replace("://", "[:]//").replace(":\\\\", "[:]\\\\")  # defang URLs
    if len(text) > limit:
        text = text[: limit - 1] + "\N{HORIZONTAL ELLIPSIS}"
    return text


def _h(value: object, limit: int = MAX_VALUE) -> str:
    return html.escape(clean(value, limit), quote=True)


def subject(text: str) -> str:
    return clean(f"{SUBJECT_PREFIX} {text}", MAX_SUBJECT)


def _who(d: Mapping[str, Any]) -> str:
    """'Hikvision DS-2CD2143G0-I at 198.51.100.10' from what is known."""
    name = " ".join(str(x) for x in (d.get("maker") or d.get("vendor"), d.get("model")) if x)
    at = d.get("ip") or d.get("device_ip") or "unknown address"
    return f"{name or 'unidentified device'} at {at}"


def _rows(f: Finding) -> list[tuple[str, str]]:
    """(label, value) lines of a finding, most telling first."""
    d = f.detail
    rows: list[tuple[str, str]] = []
    if f.kind is Kind.NEW_CONNECTION:
        port = d.get("dst_port")
        dst = f"{d.get('dst_ip')}{':' + str(port) if port is not None else ''}/{d.get('proto')}"
        rows += [
            ("Device", f"{d.get('device_ip')} (MAC {d.get('device_mac') or 'unknown'})"),
            ("Destination", dst),
            ("Name", d.get("dst_name") or "-"),
            ("Country", d.get("dst_country") or "unknown"),
            ("Class", f"{d.get('class')}" + (f" ({d['vendor']})" if d.get("vendor") else "")),
            ("First seen", d.get("first_seen") or "-"),
        ]
        return [(k, clean(v)) for k, v in rows]
    if f.kind is Kind.FIRMWARE_CHANGED:
        rows.append(("Change", f"firmware {clean(d.get('old'))} -> {clean(d.get('firmware'))}"))
    elif f.kind is Kind.IP_CHANGED:
        rows.append(("Change", f"address {clean(d.get('old'))} -> {clean(d.get('ip'))}"))
    elif f.kind is Kind.FLAGGED_RETURNED:
        rows.append(
            (
                "Absent",
                f"last seen {clean(d.get('absent_since'))}, "
                f"missed {clean(d.get('missed_scans'))} scans",
            )
        )
    elif f.kind is Kind.EXCEPTION_EXPIRED:
        rows.append(("Exception", f"expired on {clean(d.get('expired_on'))}"))
    maker = clean(d.get("maker"))
    if d.get("origin_country"):
        maker += f" ({clean(d.get('origin_country'))})"
    if d.get("vendor") and d.get("vendor") != d.get("maker"):
        maker += f"; sold as {clean(d.get('vendor'))}"
    rows += [
        ("Address", f"{clean(d.get('ip'))}, MAC {clean(d.get('mac'))}"),
        ("Name", clean(d.get("name"))),
        ("Maker", maker),
        ("Model", clean(d.get("model"))),
        ("Firmware", clean(d.get("firmware"))),
        ("Serial", clean(d.get("serial"))),
        (
            "MAC registrant",
            clean(d.get("registrant"))
            + (f" ({clean(d.get('registrant_country'))})" if d.get("registrant_country") else ""),
        ),
        ("Verdict", f"{clean(d.get('verdict'))} (evidence {clean(d.get('confidence'))})"),
        ("Seen by", clean(", ".join(d.get("sources") or ()))),
    ]
    always = {"Change", "Absent", "Exception", "Address", "Maker", "Verdict"}
    return [(k, v) for k, v in rows if k in always or v not in ("-", "- (-)")]


def _lists(f: Finding) -> list[tuple[str, list[str]]]:
    d = f.detail
    reasons = [clean(r, 500) for r in d.get("reasons") or ()]
    evidence = [
        f"{clean(e.get('source'))}.{clean(e.get('field'))} = {clean(e.get('value'))}"
        + (f" [{clean(e.get('rule'))}]" if e.get("rule") else "")
        for e in d.get("evidence") or ()
    ]
    return [(label, items) for label, items in (("Why", reasons), ("Evidence", evidence)) if items]


def finding_text(f: Finding) -> Text:
    """The mail for one finding."""
    d = f.detail
    if f.kind is Kind.NEW_CONNECTION:
        head = (
            f"{f.kind.label}: {d.get('device_ip')} -> {d.get('dst_name') or d.get('dst_ip')}"
            f" ({d.get('class')})"
        )
    else:
        head = f"{f.kind.label}: {_who(d)}"
    rows, lists = _rows(f), _lists(f)
    width = max(len(k) for k, _ in rows) + 1
    lines = [clean(head, 500), "=" * min(len(clean(head, 500)), 72), ""]
    lines += [f"{(k + ':').ljust(width)} {v}" for k, v in rows]
    for label, items in lists:
        lines += ["", f"{label}:"] + [f"  - {item}" for item in items]
    body = "\n".join(lines) + "\n"
    parts = [f"<h2>{_h(head, 500)}</h2>", "<table>"]
    parts += [f"<tr><th align='left'>{_h(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows]
    parts.append("</table>")
    for label, items in lists:
        parts.append(f"<p><b>{_h(label)}</b></p><ul>")
        parts += [f"<li>{html.escape(item)}</li>" for item in items]
        parts.append("</ul>")
    return Text(subject(head), body, "<section>" + "".join(parts) + "</section>")


def _count(findings: Iterable[Finding]) -> dict[Kind, int]:
    out: dict[Kind, int] = {}
    for f in findings:
        out[f.kind] = out.get(f.kind, 0) + 1
    return out


def _tally(counts: Mapping[Kind, int]) -> str:
    ranked = sorted(counts.items(), key=lambda kv: kv[0].rank)
    return "; ".join(f"{k.label.lower()}: {n}" for k, n in ranked if n) or "none"


def summary_text(networks: Sequence[str], devices: int, findings: Sequence[Finding]) -> Text:
    """The one mail for the first scan of a network: every finding, most urgent first.

    arpwatch mails every station on an empty database; a person then ignores
    the flood. One summary says what is there; changes are mailed from then on.
    """
    ordered = sorted(findings, key=lambda f: (f.kind.rank, str(f.detail.get("ip") or "")))
    counts = _count(ordered)
    nets = ", ".join(clean(n) for n in networks)
    flagged = counts.get(Kind.NEW_FLAGGED, 0)
    non_home = counts.get(Kind.NEW_NON_HOME, 0)
    head = f"First scan of {nets}: {devices} devices, {flagged} flagged, {non_home} non-home-origin"
    intro = [
        head,
        "",
        "This is the first scan of these networks, so everything on them is new.",
        "Instead of one mail per finding, this summary lists them all; from the",
        "next scan on, each change is mailed as it happens.",
        "",
        f"Findings: {_tally(counts)}.",
        "",
    ]
    texts = [finding_text(f) for f in ordered]
    intro += [f"  - {_strip_prefix(t.subject)}" for t in texts]
    return _bundle(head, intro, texts)


def first_capture_text(findings: Sequence[Finding]) -> Text:
    """The one mail for the first connections ever found: all of them, not a flood."""
    ordered = sorted(findings, key=lambda f: (str(f.detail.get("ip")), f.key))
    head = f"First capture: {len(ordered)} vendor-cloud or unexpected connections"
    intro = [
        head,
        "",
        "These are the first such connections this scanner has recorded, so all of",
        "them are listed in this one mail; new ones are mailed as they appear.",
    ]
    return _bundle(head, intro, [finding_text(f) for f in ordered])


def digest_text(children: Sequence[Mapping[str, Any]], since: str | None) -> Text:
    """A digest of queued alert rows (their subjects and bodies)."""
    head = f"Digest: {len(children)} new finding{'s' if len(children) != 1 else ''}"
    intro = [
        head,
        "",
        f"Findings since {since}, oldest first:" if since else "Findings, oldest first:",
    ]
    intro += [f"  - {_strip_prefix(c['subject'])}" for c in children]
    return _bundle(head, intro, [_row_text(c) for c in children])


def overflow_text(children: Sequence[Mapping[str, Any]], cap: int) -> Text:
    """One mail standing for alerts past the hourly cap: the storm brake."""
    k = len(children)
    head = f"{k} alerts suppressed by the hourly cap"
    intro = [
        head,
        "",
        f"{k} alerts suppressed: more than {cap} mails in an hour would have gone out,",
        "so these are sent together in this one mail instead. Nothing was dropped;",
        "`scanner alerts list` shows the outbox.",
        "",
    ]
    intro += [f"  - {_strip_prefix(c['subject'])}" for c in children]
    return _bundle(head, intro, [_row_text(c) for c in children])


def hello_text(host: str) -> Text:
    """The mail `scanner alerts test` sends."""
    head = f"Test mail from the scanner on {host}"
    body = (
        f"{clean(head)}\n\nIf you can read this, alert mails from this scanner reach you.\n"
        "Sent by `scanner alerts test`; nothing was found and nothing needs doing.\n"
    )
    return Text(subject(head), body, f"<p>{_h(head)}</p><p>Alert mails reach you.</p>")


def _strip_prefix(s: str) -> str:
    return s[len(SUBJECT_PREFIX) + 1 :] if s.startswith(SUBJECT_PREFIX + " ") else s


def _row_text(row: Mapping[str, Any]) -> Text:
    return Text(str(row["subject"]), str(row["body"]), str(row.get("html") or ""))


def _bundle(head: str, intro: list[str], parts: Sequence[Text]) -> Text:
    rule = "-" * 72
    body = "\n".join(clean(line, 500) if line else "" for line in intro) + "\n"
    for p in parts:
        body += f"\n{rule}\n{p.body}"
    html_intro = "".join(f"<p>{_h(line, 500)}</p>" for line in intro if line)
    html_parts = "<hr>".join(p.html or f"<pre>{html.escape(p.body)}</pre>" for p in parts)
    return Text(subject(head), body, f"<section>{html_intro}</section><hr>{html_parts}")


def document(title: str, fragment: str) -> str:
    """A whole HTML part around stored fragments; no scripts, no links, no images."""
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title></head>"
        "<body style='font-family:sans-serif'>"
        f"{fragment}"
        "<hr><p><small>Sent by scanner. See <code>scanner alerts list</code> and "
        "<code>scanner report</code> on the scanner host.</small></p></body></html>"
    )
