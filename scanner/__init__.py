"""scanner: network camera discovery and flagged-vendor inventory."""

from __future__ import annotations

__version__ = "0.1.0"
