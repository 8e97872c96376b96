"""Outbound connection watch: which cameras phone home, and to whom.

Passive only: packets are read from a monitor interface (a SPAN/mirror port
or the gateway) or a capture file, never sent.

    settings.py   CaptureSettings: the [capture] config table
    decode.py     frame bytes -> Packet (pure)
    dnsmap.py     DNS answers, TLS SNI, HTTP Host -> names; bounded NameMap (pure)
    flows.py      Packets -> bounded Flow table of the inventory's devices (pure)
    classify.py   internal / allowed / vendor-cloud / unexpected (pure)
    geoip.py      country(ip) from packaged data or the operator's MMDB
    bpf.py        kernel filter for the inventory's addresses
    sniff.py      scapy AsyncSniffer on one interface (I/O, CAP_NET_RAW)
    pcap.py       pcap/pcapng reader that survives hostile files (I/O)
    zeek.py       Zeek conn.log (+ dns/ssl/http logs) to flows (I/O)
    pipeline.py   one window or one import -> `connections` rows

`run_capture(cfg)` is what the daemon calls for one window.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from scanner.capture.pipeline import Outcome, capture_window, import_capture, run_capture
    from scanner.capture.settings import AllowRule, CaptureSettings

# loaded on first use: `scanner scan` imports classify's constants through this
# package and should not pay for the pipeline (GeoIP, flows) it never runs
_HOMES = {
    "AllowRule": "settings",
    "CaptureSettings": "settings",
    "Outcome": "pipeline",
    "capture_window": "pipeline",
    "import_capture": "pipeline",
    "run_capture": "pipeline",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(f"scanner.capture.{_HOMES[name]}"), name)
    raise AttributeError(f"module 'scanner.capture' has no attribute {name!r}")


__all__ = [
    "AllowRule",
    "CaptureSettings",
    "Outcome",
    "capture_window",
    "import_capture",
    "run_capture",
]
