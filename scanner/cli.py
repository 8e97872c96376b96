"""The `scanner` command: thin wrappers that parse flags, call one library
function and print. Library errors become one line on stderr and an exit code.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from scanner import __version__
from scanner.config import Config, load_config, with_overrides
from scanner.errors import ScannerError

_LOGGER = logging.getLogger("scanner")


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


config_option = click.option(
    "--config",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Config file (default /etc/scanner/scanner.toml).",
)
db_option = click.option(
    "--db",
    type=click.Path(path_type=Path),
    help="SQLite database (default from config, else /var/lib/scanner/scanner.db).",
)


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
def scan(
    once: bool,
    config: Path | None,
    db: Path | None,
    interfaces: tuple[str, ...],
    cidrs: tuple[str, ...],
) -> None:
    """Discover and identify the devices in scope and record them.

    \b
    Example:
        scanner scan --once --interface eth1 --cidr 10.20.0.0/24 --db ./scan.db
    """
    if not once:
        raise click.UsageError("give --once (the scheduled service is `scanner daemon`)")
    from scanner.scan import run_scan

    cfg = _config(config, db, interfaces=interfaces, cidrs=cidrs)
    cfg.require_scope()
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
    type=click.Choice(["table", "json", "csv"]),
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
@click.option("--output", type=click.Path(path_type=Path, dir_okay=False), help="Write to FILE.")
def report(
    config: Path | None,
    db: Path | None,
    fmt: str,
    verdicts: tuple[str, ...],
    output: Path | None,
) -> None:
    """Print the inventory: every device, its maker, origin, verdict and evidence."""
    from scanner import report as rpt
    from scanner.store import Store

    cfg = _config(config, db)
    with Store.open(cfg.db, create=False) as store:
        doc = rpt.build_report(
            store.scans(), store.devices(), store.connections(), verdicts=verdicts
        )
    if fmt == "table":
        if output:
            with output.open("w", encoding="utf-8") as fh:
                rpt.render_table(doc, Console(file=fh, width=160, no_color=True))
        else:
            rpt.render_table(doc, Console())
        return
    text = rpt.render_json(doc) if fmt == "json" else rpt.render_csv(doc)
    if output:
        output.write_text(text, encoding="utf-8")
    else:
        click.echo(text, nl=False)


def main() -> None:
    cli(prog_name="scanner")


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
def fingerprints_lookup(query: str) -> None:
    """Who registered a MAC address or prefix, and what the policy makes of it."""
    from scanner.fingerprint import default_db, identify
    from scanner.model import Observation, Source, utcnow
    from scanner.oui import OuiRegistry, normalise_mac
    from scanner.policy import assess

    try:
        mac = normalise_mac(
            query if len(query.replace(":", "").replace("-", "")) == 12 else query + ":00:00:00"
        )
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="QUERY") from None
    db = default_db()
    obs = Observation(source=Source.ARP, ip="0.0.0.0", mac=mac, seen_at=utcnow())  # noqa: S104
    ident = identify([obs], OuiRegistry.default(), db)
    verdict = assess(ident, "GB", db)
    click.echo(f"mac:       {mac}")
    click.echo(f"maker:     {ident.maker or '-'}")
    click.echo(f"registrant:{' ' + (ident.registrant or '-')} ({ident.registrant_country or '?'})")
    click.echo(f"verdict:   {verdict.verdict} (home GB)")
    for r in verdict.reasons:
        click.echo(f"  - {r}")
    for e in ident.evidence:
        click.echo(f"  evidence: {e.source}.{e.field} = {e.value} [{e.rule}]")
