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

from scanner.capture.pipeline import Outcome, capture_window, import_capture, run_capture
from scanner.capture.settings import AllowRule, CaptureSettings

__all__ = [
    "AllowRule",
    "CaptureSettings",
    "Outcome",
    "capture_window",
    "import_capture",
    "run_capture",
]
