"""The project's exception tree; the CLI maps each branch to one exit code.

ScannerError
├── ConfigError      bad config file or flags        -> 78 (EX_CONFIG)
├── ScopeError       no scope, or a probe outside it  -> 2  (usage)
├── StoreError       database unreadable/unwritable   -> 69 (EX_UNAVAILABLE)
├── CaptureError     capture or pcap import failed    -> 65 (EX_DATAERR)
└── ParseError       a device reply we cannot read (never escapes a probe)
"""

from __future__ import annotations

import os


class ScannerError(Exception):
    """Base of every error the scanner raises on purpose."""

    exit_code = 1


class ConfigError(ScannerError):
    exit_code = os.EX_CONFIG


class ScopeError(ScannerError):
    exit_code = 2


class StoreError(ScannerError):
    exit_code = os.EX_UNAVAILABLE


class CaptureError(ScannerError):
    exit_code = os.EX_DATAERR


class ParseError(ScannerError):
    """A device reply that cannot be parsed; recorded on its observation."""

    exit_code = os.EX_DATAERR
