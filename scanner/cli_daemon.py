"""`scanner daemon` and `scanner alerts …`: standalone click commands.

scanner/cli.py adds them to the `scanner` group with `register(cli)`; library
errors (ScannerError) become one line and an exit code there.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from scanner.alerts.settings import EmailSettings
from scanner.cli_options import config_option as _config_option
from scanner.cli_options import db_option as _db_option
from scanner.config import Config, load_config, with_overrides
from scanner.errors import ConfigError


def _load(config: Path | None, db: Path | None) -> Config:
    return with_overrides(load_config(config), db=db)


def _email(cfg: Config) -> EmailSettings:
    if cfg.email is None:
        raise ConfigError(
            f"{cfg.path or 'config'}: no [alerts.email] section: alert mail is off "
            "(give at least host, from and to)"
        )
    return cfg.email


@click.command()
@_config_option
@_db_option
@click.pass_context
def daemon(ctx: click.Context, config: Path | None, db: Path | None) -> None:
    """Scan on a schedule and mail alerts, until SIGTERM; SIGHUP re-reads the config.

    Runs under systemd (Type=notify; see systemd/README.md). The schedule is
    [daemon] interval_minutes or cron; every cycle is `scanner scan --once`.

    \b
    Example:
        scanner daemon --config /etc/scanner/scanner.toml
    """
    from scanner.daemon import run_daemon

    verbose = int(ctx.find_root().params.get("verbose") or 0)
    ctx.exit(run_daemon(lambda: _load(config, db), verbose))


@click.group()
def alerts() -> None:
    """Alert mails: send a test, list the outbox, send what waits."""


@alerts.command("test")
@_config_option
def alerts_test(config: Path | None) -> None:
    """Send a test mail now with the [alerts.email] settings.

    \b
    Example:
        scanner alerts test --config /etc/scanner/scanner.toml
    """
    from scanner.alerts.deliver import send_test

    settings = _email(load_config(config))
    msg_id = send_test(settings)
    click.echo(
        f"test mail sent to {', '.join(settings.to)} via {settings.host}:{settings.port} "
        f"({settings.security}); Message-ID {msg_id}"
    )


_STATUSES = ("pending", "sending", "queued", "sent", "bundled")


@alerts.command("list")
@_config_option
@_db_option
@click.option("--status", type=click.Choice(_STATUSES), help="Only mails in this state.")
@click.option("--limit", type=click.IntRange(1, 100000), default=50, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
def alerts_list(
    config: Path | None, db: Path | None, status: str | None, limit: int, fmt: str
) -> None:
    """Show the alert outbox, newest first.

    pending: to send (after `next` on a retry); queued: waits for the digest;
    bundled: carried by the mail shown in `in`; sent: accepted by the server.

    \b
    Examples:
        scanner alerts list
        scanner alerts list --status pending --format json
    """
    from scanner.alerts.compose import clean
    from scanner.store import Store

    cfg = _load(config, db)
    with Store.open(cfg.db, create=False) as store:
        rows = store.alerts(status=status, limit=limit)
    if fmt == "json":
        keep = (
            "id", "created_at", "kind", "status", "attempts", "next_attempt_at", "sent_at",
            "parent_id", "finding_id", "subject", "last_error",
        )  # fmt: skip
        click.echo(json.dumps([{k: r.get(k) for k in keep} for r in rows], indent=2))
        return
    if not rows:
        click.echo("the outbox is empty")
        return
    click.echo(f"{'id':>5}  {'created':20}  {'kind':8}  {'status':8}  tries  {'when':20}  subject")
    for r in rows:
        if r["status"] == "sent":
            when = r["sent_at"] or ""
        elif r["status"] == "bundled":
            when = f"in #{r['parent_id']}"
        else:
            when = r["next_attempt_at"] or "now"
        click.echo(
            f"{r['id']:>5}  {r['created_at']:20}  {r['kind']:8}  {r['status']:8}  "
            f"{r['attempts']:>5}  {when:20}  {clean(r['subject'], 120)}"
        )
        if r["last_error"] and r["status"] != "sent":
            click.echo(f"{'':>7}last error: {clean(r['last_error'], 200)}")


@alerts.command("send")
@_config_option
@_db_option
def alerts_send(config: Path | None, db: Path | None) -> None:
    """Send every waiting alert now, ignoring the retry back-off and digest timer.

    For when the mail server is back; the daemon would retry on its own.

    \b
    Example:
        scanner alerts send
    """
    from scanner.alerts.deliver import flush
    from scanner.alerts.email import DeliveryError
    from scanner.store import Store

    cfg = _load(config, db)
    settings = _email(cfg)
    with Store.open(cfg.db, create=False) as store:
        result = flush(store, settings)
    click.echo(f"sent {result.sent} mails; {result.waiting} wait in the outbox")
    if result.error:
        raise DeliveryError(result.error)


def register(group: click.Group) -> None:
    """Add `daemon` and `alerts` to the `scanner` command group."""
    group.add_command(daemon)
    group.add_command(alerts)
