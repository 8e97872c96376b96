"""Where the shipped data lives, installed from a wheel or run from a checkout."""

from __future__ import annotations

from pathlib import Path

_PKG = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """`fingerprints` or `config`: inside the wheel, else at the repository root."""
    for candidate in (_PKG / "_data" / name, _PKG.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"shipped data directory {name!r} is missing from the installation")


def package_dir() -> Path:
    """The installed `scanner` package (templates live here)."""
    return _PKG
