"""The `scanner` command: thin wrappers that parse flags, call one library
function and print. Library errors become one line on stderr and an exit code.
"""

from __future__ import annotations

import logging
import re
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from scanner import __version__
from scanner.cli_options import config_option, db_option
from scanner.config import PROTOCOLS, Config, load_config, with_overrides
from scanner.errors import ScannerError
from scanner.report import safe_text

_LOGGER = logging.getLogger("scanner")
_ISO_PREFIX = re.compile(r"^\d{4}-\d\d-\d\d(T\d\d(:\d\d(:\d\d)?)?Z?)?$")


class _Group(click.Group):
    """Maps ScannerError to `scanner: <message>` and its exit code, no traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ScannerError as exc:
            click.echo(f"scanner: {exc}", err=True)
            ctx.exit(exc.exit_code)


def _setup_logging(verbose: int) -> None:
    level = logging.WARNING - 10 * min(verbose, 2)
    handler = logging.StreamHandler(sys.stderr)
    # journald adds its own timestamps; keep lines short and greppable
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("scapy", "zeep", "urllib3", "httpx"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


def _config(config: Path | None, db: Path | None, **overrides: Any) -> Config:
    return with_overrides(load_config(config), db=db, **overrides)


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="scanner")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def cli(verbose: int) -> None:
    """Find the network cameras in scope, tell who made them, flag the ones of concern."""
    _setup_logging(verbose)


@cli.command()
@click.option("--once", is_flag=True, help="Run one discovery cycle and exit.")
@config_option
@db_option
@click.option("--interface", "interfaces", multiple=True, help="Interface to scan (repeatable).")
@click.option("--cidr", "cidrs", multiple=True, help="Network to scan (repeatable).")
@click.option(
    "--protocol",
    "protocols",
    multiple=True,
    type=click.Choice(PROTOCOLS),
    help="Use only this source (repeatable; default: [scan] protocols, else all).",
)
@click.option("--plan", is_flag=True, help="Print what a scan would send, and send nothing.")
def scan(
    once: bool,
    config: Path | None,
    db: Path | None,
    interfaces: tuple[str, ...],
    cidrs: tuple[str, ...],
    protocols: tuple[str, ...],
    plan: bool,
) -> None:
    """Discover and identify the devices in scope and record them.

    \b
    Example:
        scanner scan --once --interface eth1 --cidr 10.20.0.0/24 --db ./scan.db
    """
    if not once and not plan:
        raise click.UsageError("give --once or --plan (the scheduled service is `scanner daemon`)")
    from scanner.scan import run_scan

    cfg = _config(config, db, interfaces=interfaces, cidrs=cidrs)
    if protocols:
        cfg = replace(cfg, scan=replace(cfg.scan, protocols=protocols))
    cfg.require_scope()
    if plan:
        from scanner.plan import render_plan, scan_plan

        click.echo(render_plan(scan_plan(cfg)), nl=False)
        return
    summary = run_scan(cfg)
    click.echo(
        f"scan {summary.scan_id} complete: {summary.devices} devices "
        f"({summary.flagged} flagged) in {summary.seconds:.1f} s; database {cfg.db}"
    )


@cli.command()
@config_option
@db_option
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "csv", "markdown", "html"]),
    default="table",
    show_default=True,
)
@click.option(
    "--verdict",
    "verdicts",
    multiple=True,
    type=click.Choice(["flagged", "non-home-origin", "home-origin", "unknown"]),
    help="Only devices with this verdict (repeatable).",
)
@click.option("--since", help="Only devices seen at or after this ISO date or time (UTC).")
@click.option(
    "--cidr", "cidrs", multiple=True, help="Only devices inside this network (repeatable)."
)
@click.option("--survey", is_flag=True, help="Print the figures a Commissioner's survey asks for.")
@click.option("--output", type=click.Path(path_type=Path, dir_okay=False), help="Write to FILE.")
def report(
    config: Path | None,
    db: Path | None,
    fmt: str,
    verdicts: tuple[str, ...],
    since: str | None,
    cidrs: tuple[str, ...],
    survey: bool,
    output: Path | None,
) -> None:
    """Print the inventory: every device, its maker, origin, verdict and evidence.

    \b
    Examples:
        scanner report --verdict flagged
        scanner report --format html --output inventory.html
        scanner report --survey
    """
    from scanner import report as rpt
    from scanner.config import parse_cidr
    from scanner.store import Store

    if since is not None and not _ISO_PREFIX.match(since):
        raise click.BadParameter(
            f"{since!r} is not an ISO date such as 2026-11-01", param_hint="--since"
        )
    for c in cidrs:
        try:
            parse_cidr(c)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--cidr") from None
    cfg = _config(config, db)
    with Store.open(cfg.db, create=False) as store:
        devices = rpt.filter_devices(store.devices(), since=since, cidrs=cidrs)
        doc = rpt.build_report(store.scans(), devices, store.connections(), verdicts=verdicts)
    if survey:
        text = rpt.render_survey(doc)
    elif fmt == "table":
        if output:
            with output.open("w", encoding="utf-8") as fh:
                rpt.render_table(doc, Console(file=fh, width=160, no_color=True))
        else:
            rpt.render_table(doc, Console())
        return
    elif fmt == "json":
        text = rpt.render_json(doc)
    elif fmt == "csv":
        text = rpt.render_csv(doc)
    elif fmt == "markdown":
        text = rpt.render_markdown(doc)
    else:
        text = rpt.render_html(doc, home_country=cfg.home_country)
    if output:
        output.write_text(text, encoding="utf-8")
    else:
        click.echo(text, nl=False)


def main() -> None:
    cli(prog_name="scanner")


def _register_subcommands() -> None:
    # separate modules keep this one thin; they add their commands to `cli`
    from scanner import cli_capture, cli_daemon

    cli_daemon.register(cli)
    cli_capture.register(cli)


@cli.group()
def fingerprints() -> None:
    """Inspect and check the fingerprint database."""


@fingerprints.command("lint")
def fingerprints_lint() -> None:
    """Check the fingerprint files: regexes, cited sources and policies, duplicates."""
    from scanner.fingerprint import lint

    problems = lint()
    for p in problems:
        click.echo(p, err=True)
    if problems:
        raise SystemExit(1)
    click.echo("fingerprints: ok")


@fingerprints.command("lookup")
@click.argument("query")
@click.option("--home", default="GB", show_default=True, help="Home country for the verdict.")
def fingerprints_lookup(query: str, home: str) -> None:
    """What the fingerprint database makes of a MAC (or prefix) or a banner string.

    \b
    Examples:
        scanner fingerprints lookup 44:19:B6
        scanner fingerprints lookup "DS-2CD2143G0-I"
        scanner fingerprints lookup "Server: App-webs/"
    """
    from scanner.fingerprint import default_db, lookup
    from scanner.oui import OuiRegistry
    from scanner.policy import assess

    db = default_db()
    ident = lookup(query, OuiRegistry.default(), db)
    verdict = assess(ident, home, db)
    click.echo(f"query:      {safe_text(query)}")
    click.echo(f"maker:      {ident.maker or '-'} ({ident.origin_country or 'origin unknown'})")
    click.echo(f"vendor:     {ident.vendor or '-'}")
    if ident.model:
        click.echo(f"model:      {ident.model}")
    if ident.registrant:
        click.echo(f"registrant: {ident.registrant} ({ident.registrant_country or '?'})")
    click.echo(f"confidence: {ident.confidence}")
    click.echo(f"verdict:    {verdict.verdict} (home {home})")
    for r in verdict.reasons:
        click.echo(f"  - {r}")
    for e in ident.evidence:
        click.echo(f"  evidence: {e.source}.{e.field} = {safe_text(e.value)} [{e.rule or '-'}]")


@fingerprints.command("stats")
def fingerprints_stats() -> None:
    """How much the fingerprint database and the IEEE registry know."""
    from scanner.fingerprint import default_db
    from scanner.oui import OuiRegistry

    db = default_db()
    oui = OuiRegistry.default()
    makers = [v for v in db.vendors.values() if v.kind == "maker"]
    flagged = [v for v in db.vendors.values() if db.flags_of(v)]
    click.echo(
        f"vendors:        {len(db.vendors)} ({len(makers)} makers, "
        f"{len(db.vendors) - len(makers)} brands), {len(flagged)} flagged"
    )
    click.echo(f"policies:       {len(db.policies)}")
    click.echo(f"rules:          {len(db.rules)}")
    by_maker: dict[str, int] = {}
    for r in db.rules:
        by_maker[r.maker] = by_maker.get(r.maker, 0) + 1
    for maker, n in sorted(by_maker.items(), key=lambda kv: (-kv[1], kv[0])):
        click.echo(f"  {db.vendors[maker].name}: {n}")
    click.echo(f"cloud endpoints: {len(db.clouds)}")
    click.echo(f"IEEE prefixes:  {len(oui)}")
    for src in oui.sources:
        click.echo(f"  {src}")
    for v in flagged:
        if v.registrant is not None:
            n = sum(1 for _ in oui.search(v.registrant.pattern))
            click.echo(f"  {v.name}: {n} registered prefixes")


_register_subcommands()
