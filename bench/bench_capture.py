"""Capture throughput: does `scanner capture` keep up, with flat memory?

Why: a SPAN port or a gateway carries far more than the cameras' traffic; the
kernel BPF filter built from the inventory must drop the rest before it costs
the daemon anything, and what is kept must not grow memory. Targets: with at
least 20,000 packets/s of unrelated traffic on the monitor interface, zero
kernel drops, every camera flow present, and resident memory flat (within
8 MiB from the first sample to the last).

Setup (the lab, needs root): lab/scenarios/outbound.toml plus a "blaster" on
the LAN sending UDP through the router to a sink on the internet segment, not
in the inventory. `scanner capture` runs in the router namespace on its
internet leg (the same place as tests/test_capture_lab.py), as nobody with
CAP_NET_RAW only; its VmRSS and CPU time are sampled from /proc.

Phase A: unrelated traffic at each rate in RATES_UNRELATED (the BPF drops it).
Phase B: a camera itself sending at each rate in RATES_KEPT to one destination
(every packet goes to Python: the user-space ceiling).

Run: ``python bench/bench_capture.py [--seconds 15]`` (or ``python -m bench.bench_capture``).

``--geoip`` instead measures the GeoIP data (no lab needed): the share of the UK
cloud regions' /24 blocks (bench/uk_cloud_prefixes.txt) that the configured
lookup places in GB; add ``--geoip-file``/``--geoip-mmdb`` to measure an
operator database in front of the packaged one.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a plain script from a checkout
    sys.path.insert(0, str(ROOT))

from lab import Lab, Scenario, load_scenario, unavailable_reason  # noqa: E402
from scanner.model import Assessment, Identification, Verdict  # noqa: E402
from scanner.store import DeviceRecord, ScanRecord, Store  # noqa: E402
from tests.unprivileged import NOBODY, SETPRIV, reachable_by_others  # noqa: E402

RATES_UNRELATED = (20_000, 50_000)
RATES_KEPT = (5_000, 20_000)
RSS_FLAT_KIB = 8 * 1024
CAMERAS = {
    "198.51.100.10": "44:19:b6:00:01:10",
    "198.51.100.11": "e0:50:8b:00:01:11",
    "198.51.100.12": "ac:cc:8e:00:01:12",
}
ALLOW = ["--allow", "203.0.113.53", "--allow", "ntp.force.example", "--allow", "203.0.113.20"]

# UDP at a steady rate from one socket; prints "sent seconds"
BLAST = """
import socket, sys, time
dst, port, rate, secs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
payload = b"x" * 64
sent = 0
t0 = time.monotonic()
end = t0 + secs
while True:
    now = time.monotonic()
    if now >= end:
        break
    due = int((now - t0) * rate)
    while sent < due:
        try:
            s.sendto(payload, (dst, port))
        except OSError:
            break
        sent += 1
    time.sleep(0.0002)
print(sent, time.monotonic() - t0)
"""


def scenario() -> Scenario:
    data = load_scenario("outbound").to_dict()
    data["device"] += [
        {
            "name": "blaster",
            "mac": "02:00:5e:10:00:50",
            "ip": "198.51.100.50",
            "gateway": "198.51.100.254",
            "description": "a busy host that is not a camera",
        },
        {
            "name": "sink",
            "segment": "internet",
            "mac": "02:00:5e:30:00:99",
            "ip": "203.0.113.99",
            "gateway": "203.0.113.254",
        },
    ]
    return Scenario.from_dict(data, name="bench-capture")


def inventory_db(path: Path) -> None:
    """The three cameras only, as a scan would have recorded them."""
    devices = [
        DeviceRecord(
            key=f"mac:{mac}",
            ip=ip,
            mac=mac,
            identification=Identification(),
            assessment=Assessment(Verdict.UNKNOWN, flagged=False),
            sources=["arp"],
        )
        for ip, mac in CAMERAS.items()
    ]
    with Store.open(path) as store:
        store.record_scan(
            ScanRecord(
                "2026-11-22T03:00:00Z", "2026-11-22T03:00:01Z", ["lab0"], [], devices, "bench"
            )
        )


def proc_sample(pid: int) -> tuple[int, float] | None:
    """(VmRSS KiB, CPU seconds) of a process, or None once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    rss = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    ticks = os.sysconf("SC_CLK_TCK")
    return rss, (int(stat[11]) + int(stat[12])) / ticks


def tx_packets(lab: Lab) -> int:
    iface = lab.router_iface("gw", "internet")
    r = lab.run_in_router(
        "gw", ["cat", f"/sys/class/net/{iface}/statistics/tx_packets"], capture_output=True
    )
    return int(r.stdout)


def run_phase(
    lab: Lab, db: Path, sender: str, dst: str, rate: int, seconds: float
) -> dict[str, Any]:
    iface = lab.router_iface("gw", "internet")
    capture = lab.popen_in_router(
        "gw",
        [
            *SETPRIV,
            sys.executable,
            "-m",
            "scanner.cli_capture",
            "capture",
            "--once",
            "--interface",
            iface,
            "--seconds",
            str(seconds + 2),
            "--db",
            str(db),
            *ALLOW,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    samples: list[tuple[float, int, float]] = []
    done = threading.Event()

    def sample() -> None:
        t0 = time.monotonic()
        while not done.is_set():
            s = proc_sample(capture.pid)
            if s is None:
                break
            samples.append((time.monotonic() - t0, *s))
            time.sleep(0.5)

    th = threading.Thread(target=sample)
    th.start()
    time.sleep(1.0)  # python + scapy import, socket open
    tx0 = tx_packets(lab)
    blast = lab.run_in_device(
        sender,
        [sys.executable, "-c", BLAST, dst, "9", str(rate), str(seconds)],
        capture_output=True,
        timeout=seconds + 60,
    )
    tx1 = tx_packets(lab)
    out, err = capture.communicate(timeout=120)
    done.set()
    th.join()
    sent, took = blast.stdout.split()
    line = out.splitlines()[0] if out else err.strip()
    # during the traffic: after start-up (imports, socket) and before the window's end work
    mid = [s for s in samples if 2.0 <= s[0] <= seconds + 0.5]
    rss = [s[1] for s in mid] or [0]
    cpu = samples[-1][2] if samples else 0.0
    return {
        "sender": sender,
        "rate_target": rate,
        "sent": int(sent),
        "sent_rate": round(int(sent) / float(took)),
        "on_wire_tx": tx1 - tx0,
        "wire_rate": round((tx1 - tx0) / float(took)),
        "capture_rc": capture.returncode,
        "capture": line,
        "rss_kib_first": rss[0],
        "rss_kib_last": rss[-1],
        "rss_kib_max": max(rss),
        "rss_kib_peak_whole_run": max((s[1] for s in samples), default=0),
        "rss_samples": len(rss),
        "cpu_seconds": round(cpu, 2),
        "window_seconds": seconds + 2,
    }


def geoip_uk_cloud(tor_file: Path | None, mmdb: Path | None) -> int:
    """Per provider region: how many /24 blocks of its UK prefixes come out GB."""
    import ipaddress
    from collections import Counter, defaultdict

    from scanner.capture.geoip import open_geoip

    geo = open_geoip(mmdb, tor_file)
    by_region: dict[str, Counter[str]] = defaultdict(Counter)
    for line in (ROOT / "bench" / "uk_cloud_prefixes.txt").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        region, prefix = line.split()
        net = ipaddress.IPv4Network(prefix)
        blocks = list(net.subnets(new_prefix=24)) if net.prefixlen < 24 else [net]
        for b in blocks:
            by_region[region][geo.country(str(b[b.num_addresses // 2])) or "none"] += 1
    print(f"GeoIP: {geo.source}")
    for region, counts in by_region.items():
        total = sum(counts.values())
        top = ", ".join(f"{cc} {n}" for cc, n in counts.most_common(4))
        share = 100 * counts["GB"] / total
        print(f"  {region:18} GB {counts['GB']:>5}/{total:<5} = {share:5.1f}%  ({top})")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=15.0, help="traffic per phase")
    ap.add_argument("--geoip", action="store_true", help="measure GeoIP on UK cloud ranges")
    ap.add_argument("--geoip-file", type=Path, help="Tor-format file to put first")
    ap.add_argument("--geoip-mmdb", type=Path, help="MMDB to put first")
    args = ap.parse_args()
    if args.geoip:
        return geoip_uk_cloud(args.geoip_file, args.geoip_mmdb)
    summary = measure(args.seconds)
    if summary is None:
        return 2
    return 0 if summary["ok"] else 1


def measure(seconds: float = 15.0) -> dict[str, Any] | None:
    """Run both phases; print the details and return a summary for make bench."""
    reason = unavailable_reason()
    if reason:
        print(f"bench_capture: the lab cannot run here: {reason}", file=sys.stderr)
        return None
    work = Path(tempfile.mkdtemp(prefix="scanner-bench-capture-"))
    os.chown(work, NOBODY, NOBODY)
    results: list[dict[str, Any]] = []
    try:
        phases = (
            ("A unrelated", "unrelated", "blaster", RATES_UNRELATED),
            ("B kept", "kept", "dahua-cam", RATES_KEPT),
        )
        with reachable_by_others(ROOT), Lab(scenario()) as lab:
            for phase, stem, sender, rates in phases:
                for rate in rates:
                    db = work / f"{stem}-{rate}.db"
                    inventory_db(db)
                    for p in work.iterdir():
                        os.chown(p, NOBODY, NOBODY)
                    results.append(
                        {
                            "phase": phase,
                            **run_phase(lab, db, sender, "203.0.113.99", rate, seconds),
                        }
                    )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ok = True
    for r in results:
        flat = r["rss_kib_last"] - r["rss_kib_first"] <= RSS_FLAT_KIB
        print(
            f"{r['phase']:12} target {r['rate_target']:>6}/s  sent {r['sent_rate']:>6}/s "
            f"on wire {r['wire_rate']:>6}/s  RSS {r['rss_kib_first'] / 1024:.1f} -> "
            f"{r['rss_kib_last'] / 1024:.1f} MiB (max {r['rss_kib_max'] / 1024:.1f}, "
            f"{'flat' if flat else 'GREW'}; "
            f"whole run peak {r['rss_kib_peak_whole_run'] / 1024:.1f})  "
            f"CPU {r['cpu_seconds']} s / {r['window_seconds']} s"
        )
        print(f"    {r['capture']}")
        if r["phase"].startswith("A"):
            ok &= flat and r["capture_rc"] == 0 and ", 0 dropped)" in r["capture"]
            ok &= r["wire_rate"] >= 20_000 and "1 vendor-cloud, 1 unexpected" in r["capture"]
    print(json.dumps(results, indent=1))
    print("PASS" if ok else "FAIL")
    unrelated = [r for r in results if r["phase"].startswith("A")]
    kept = [r for r in results if r["phase"].startswith("B")]
    return {
        "ok": ok,
        "unrelated pkt/s on the wire, 0 kernel drops": max(
            (r["wire_rate"] for r in unrelated if ", 0 dropped)" in r["capture"]), default=0
        ),
        "camera pkt/s kept (all to Python)": max((r["wire_rate"] for r in kept), default=0),
        "peak RSS (MiB)": round(max(r["rss_kib_peak_whole_run"] for r in results) / 1024, 1),
    }


if __name__ == "__main__":
    sys.exit(main())
