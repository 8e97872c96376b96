"""Options every `scanner` subcommand shares, defined once."""

from __future__ import annotations

from pathlib import Path

import click

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
