"""`scanner capture` and `scanner import-pcap`: the outbound connection watch by hand.

Registered on the main group by scanner/cli.py (`cli.add_command(capture)`,
`cli.add_command(import_pcap)`); `python -m scanner.cli_capture ...` runs
them on that group too. Both take the same --config/--db as `scan`, read the
`[capture]` table when the config has one, and let flags add to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from scanner.capture.classify import ALERT_CLASSES, CLASSES
from scanner.capture.settings import CaptureSettings, parse_allow, parse_network
from scanner.cli_options import config_option as _config_option
from scanner.cli_options import db_option as _db_option
from scanner.config import Config, load_config, with_overrides

if TYPE_CHECKING:
    from scanner.capture.pipeline import Outcome

_allow_option = click.option(
    "--allow",
    "allow",
    multiple=True,
    metavar="ADDR|CIDR|NAME",
    help="Also allow this destination (repeatable; adds to [capture] allow).",
)
_internal_option = click.option(
    "--internal",
    "internal",
    multiple=True,
    metavar="CIDR",
    help="Also treat this network as internal (repeatable).",
)
_mmdb_option = click.option(
    "--geoip-mmdb",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="Look countries up in this MaxMind-format database first.",
)
_geofile_option = click.option(
    "--geoip-file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="Look countries up in this Tor-format geoip file first (docs/geoip.md).",
)


def _settings(
    cfg: Config,
    *,
    allow: Sequence[str] = (),
    internal: Sequence[str] = (),
    geoip_mmdb: Path | None = None,
    geoip_file: Path | None = None,
    **overrides: Any,
) -> CaptureSettings:
    base = getattr(cfg, "capture", None)
    settings = base if isinstance(base, CaptureSettings) else CaptureSettings()
    rules = []
    for text in allow:
        try:
            rules.append(parse_allow(text))
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--allow") from None
    nets = []
    for text in internal:
        try:
            nets.append(parse_network(text))
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--internal") from None
    changes = {k: v for k, v in overrides.items() if v is not None}
    if geoip_mmdb is not None:
        changes["geoip_mmdb"] = geoip_mmdb
    if geoip_file is not None:
        changes["geoip_file"] = geoip_file
    return replace(
        settings,
        allow=settings.allow + tuple(rules),
        internal_networks=settings.internal_networks + tuple(nets),
        **changes,
    )


def _echo_outcome(out: Outcome, db: Path) -> None:
    counts = out.by_class()
    classes = ", ".join(f"{counts[c]} {c}" for c in CLASSES if counts[c]) or "none"
    s = out.stats
    skipped = s["malformed"] + s["not_ip"] + sum(out.skipped.values())
    line = f"{out.source}: {s['packets']} packets of known devices"
    if out.sniff is not None:
        line += (
            f" (kernel: {out.sniff.kernel_packets} passed the filter, "
            f"{out.sniff.kernel_drops} dropped)"
        )
    elif out.source.endswith("(zeek)"):
        line += f" in {s['records']} conn.log records ({s['bad_lines']} bad lines skipped)"
    else:
        line += f" of {s['records']} records ({skipped} skipped"
        if s["malformed"]:
            line += f", {s['malformed']} malformed"
        line += ")"
    click.echo(f"{line}; {len(out.rows)} flows: {classes}; {len(out.new)} new; database {db}")
    if s["dns_errors"] or s["tls_errors"]:
        click.echo(
            f"  skipped {s['dns_errors']} unreadable DNS answers, "
            f"{s['tls_errors']} unreadable TLS/HTTP heads"
        )
    for reason, n in sorted(out.skipped.items()):
        click.echo(f"  skipped {n} frames: {reason} not supported")
    new_keys = {(r["device_ip"], r["dst_ip"], r["dst_port"], r["proto"]) for r in out.new}
    for r in out.rows:
        if r["class"] not in ALERT_CLASSES:
            continue
        port = "" if r["dst_port"] is None else f":{r['dst_port']}"
        name = f" {r['dst_name']}" if r["dst_name"] else ""
        vendor = f" ({r['vendor']})" if r["vendor"] else ""
        mark = (
            "new " if (r["device_ip"], r["dst_ip"], r["dst_port"], r["proto"]) in new_keys else ""
        )
        click.echo(
            f"  {mark}{r['class']}: {r['device_ip']} -> {r['dst_ip']}{port}/{r['proto']}"
            f"{name}{vendor} country {r['dst_country'] or '-'}"
        )
    if out.ended_early:
        click.echo(f"warning: {out.ended_early}; kept what came before", err=True)


def _alerts(cfg: Config) -> None:
    """New vendor-cloud/unexpected rows become findings (and mail, if configured)."""
    from scanner.alerts.deliver import after_scan

    after_scan(cfg.db, getattr(cfg, "email", None))


@click.command("capture")
@click.option("--once", is_flag=True, help="Capture one window and exit.")
@_config_option
@_db_option
@click.option("--interface", help="Monitor interface (default: [capture] interface).")
@click.option(
    "--seconds",
    type=click.FloatRange(0.1, 3600),
    help="Length of the window (default: [capture] seconds, else 60).",
)
@_allow_option
@_internal_option
@_mmdb_option
@_geofile_option
def capture(
    once: bool,
    config: Path | None,
    db: Path | None,
    interface: str | None,
    seconds: float | None,
    allow: tuple[str, ...],
    internal: tuple[str, ...],
    geoip_mmdb: Path | None,
    geoip_file: Path | None,
) -> None:
    """Watch the known devices' traffic on a monitor interface for one window.

    Keeps only packets to or from the inventory's addresses (a kernel filter
    built from the database), folds them into flows, names destinations from
    DNS answers, TLS SNI and HTTP Host, and stores them as connections:
    internal, allowed, vendor-cloud or unexpected. Needs CAP_NET_RAW only.

    \b
    Example:
        scanner capture --once --interface eth1 --seconds 60 --db ./scan.db
    """
    if not once:
        raise click.UsageError(
            "give --once (scheduled windows are the daemon's: [capture] every_minutes)"
        )
    cfg = with_overrides(load_config(config), db=db)
    settings = _settings(
        cfg,
        allow=allow,
        internal=internal,
        geoip_mmdb=geoip_mmdb,
        geoip_file=geoip_file,
        interface=interface,
        seconds=seconds,
    )
    if not settings.interface:
        raise click.UsageError("no interface: give --interface or [capture] interface")
    from scanner.capture.pipeline import capture_window

    out = capture_window(
        cfg.db,
        settings,
        interface=settings.interface,
        seconds=settings.seconds,
        extra_internal=cfg.scope.cidrs,
    )
    _alerts(cfg)
    _echo_outcome(out, cfg.db)


@click.command("import-pcap")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@_config_option
@_db_option
@_allow_option
@_internal_option
@_mmdb_option
@_geofile_option
def import_pcap(
    file: Path,
    config: Path | None,
    db: Path | None,
    allow: tuple[str, ...],
    internal: tuple[str, ...],
    geoip_mmdb: Path | None,
    geoip_file: Path | None,
) -> None:
    """Read a pcap or pcapng capture through the same flow path as `capture`.

    For captures made elsewhere: a SPAN port's tcpdump, a firewall's packet
    capture. Packets of devices not in the inventory are ignored; frames that
    cannot be read are counted and skipped, and a file that ends mid-record
    keeps what came before. A Zeek conn.log (TSV or JSON) is read too, with
    names from the dns.log, ssl.log and http.log beside it.

    \b
    Example:
        scanner import-pcap /tmp/span-eth1.pcapng --db ./scan.db
        scanner import-pcap /opt/zeek/logs/current/conn.log
    """
    cfg = with_overrides(load_config(config), db=db)
    settings = _settings(
        cfg, allow=allow, internal=internal, geoip_mmdb=geoip_mmdb, geoip_file=geoip_file
    )
    from scanner.capture.pipeline import import_capture

    out = import_capture(cfg.db, file, settings, extra_internal=cfg.scope.cidrs)
    _alerts(cfg)
    _echo_outcome(out, cfg.db)


def register(group: click.Group) -> None:
    """Add both commands to a click group (scanner/cli.py's `cli`)."""
    group.add_command(capture)
    group.add_command(import_pcap)


if __name__ == "__main__":
    from scanner.cli import cli

    register(cli)
    cli(prog_name="scanner")
