"""ONVIF credentials: a small TOML file, per CIDR, never echoed anywhere.

Meant to be delivered by systemd (``LoadCredential=onvif:/etc/scanner/onvif.toml``,
read from ``$CREDENTIALS_DIRECTORY/onvif``) or kept 0600/0400 by the operator::

    [[onvif]]
    cidr = "198.51.100.0/24"
    username = "scanner"
    password = "..."

The scanner uses the entry with the most specific CIDR containing a device,
once per device per scan: it never tries another password. Errors name the
file and the offending key, never a username or password value.
"""

from __future__ import annotations

import os
import re
import stat
import tomllib
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

from scanner.errors import ConfigError

SYSTEMD_CREDENTIALS = Path("/run/credentials")
ALLOWED_MODES = (0o600, 0o400)
ENTRY_KEYS = ("cidr", "username", "password")
_POSITION = re.compile(r"\((at line \d+, column \d+|at end of document)\)")


def _managed_by_systemd(path: Path) -> bool:
    """systemd's credential directories are private to the unit; their modes are its business.

    Judged on the resolved path, so a symlink placed there cannot lend its
    exemption to a world-readable file elsewhere.
    """
    roots = [SYSTEMD_CREDENTIALS]
    env = os.environ.get("CREDENTIALS_DIRECTORY")
    if env:
        roots.append(Path(env))
    try:
        real = path.resolve(strict=True)
    except OSError:
        return False
    for root in roots:
        try:
            base = root.resolve()
        except OSError:
            continue
        if real != base and real.is_relative_to(base):
            return True
    return False


def _check_mode(path: Path) -> None:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such credentials file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{path}: not a regular file")
    if _managed_by_systemd(path):
        return
    mode = stat.S_IMODE(st.st_mode)
    if mode not in ALLOWED_MODES:
        raise ConfigError(
            f"{path}: mode {mode:04o} is too open for a credentials file; "
            f"run `chmod 600 {path}` (0600 or 0400 only), or deliver it with "
            "systemd LoadCredential="
        )


def _entry(path: Path, i: int, raw: Any) -> tuple[str, tuple[str, str]]:
    where = f"{path}: onvif[{i}]"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: must be a table ([[onvif]])")
    for key in raw:
        if key not in ENTRY_KEYS:
            raise ConfigError(f"{where}: unknown key {key!r} (allowed: {', '.join(ENTRY_KEYS)})")
    for key in ENTRY_KEYS:
        if key not in raw:
            raise ConfigError(f"{where}.{key}: missing")
        if not isinstance(raw[key], str) or not raw[key]:
            # never repeat the value: it may be the password in the wrong field
            raise ConfigError(f"{where}.{key}: must be a non-empty string")
    cidr = raw["cidr"]
    try:
        net = IPv4Network(cidr, strict=True)
    except ValueError:
        raise ConfigError(
            f"{where}.cidr: {cidr!r} is not an IPv4 network such as 198.51.100.0/24"
        ) from None
    return str(net), (raw["username"], raw["password"])


def load_credentials(path: Path) -> dict[str, tuple[str, str]]:
    """CIDR -> (username, password) from a TOML credentials file; ConfigError if unsafe or bad."""
    _check_mode(path)
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message may quote a character of the file (of a password, maybe):
        # report the position only
        where = _POSITION.search(str(exc))
        at = f" {where.group(0)}" if where else ""
        raise ConfigError(f"{path}: not valid TOML{at}") from None
    for key in data:
        if key != "onvif":
            raise ConfigError(f"{path}: unknown key {key!r} (allowed: onvif)")
    entries = data.get("onvif", [])
    if not isinstance(entries, list):
        raise ConfigError(f"{path}: onvif: must be an array of tables ([[onvif]])")
    out: dict[str, tuple[str, str]] = {}
    for i, raw in enumerate(entries):
        cidr, pair = _entry(path, i, raw)
        if cidr in out:
            raise ConfigError(f"{path}: onvif[{i}].cidr: {cidr} is listed twice")
        out[cidr] = pair
    return out
