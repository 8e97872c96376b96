"""`make bench`: scanner side by side with arp-scan and nmap on a 250-device lab.

Writes docs/benchmarks.md: ratios (ours / theirs), the machine, and the command.
Everything runs inside the lab's namespaces; nothing touches a real network.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import lab250  # noqa: E402
from lab import Lab  # noqa: E402
from scanner.config import PROTOCOLS  # noqa: E402
from scanner.fingerprint import default_db  # noqa: E402
from scanner.probe.banners import CAMERA_PORTS  # noqa: E402

DEB = ("arp-scan", "nmap")
RUNS = 3
CAPTURE_SECONDS = 10.0
# In nmap's favour: at its default timing and version intensity, -sV over this
# lab ran for more than 15 minutes (stopped); these cut its waits and probes.
NMAP_SPEEDUPS = ("-T4", "--version-light")  # traffic per capture phase
OUT = ROOT / "docs" / "benchmarks.md"
SCANNER = [sys.executable, "-m", "scanner"]


def ensure_tools() -> None:
    missing = [p for p in DEB if shutil.which(p.replace("-", "-")) is None]
    if missing:
        print(f"installing {' '.join(missing)} (Debian) ...", flush=True)
        cmd = ["apt-get", "install", "-y", "-qq", *missing]
        if subprocess.run(cmd, capture_output=True).returncode != 0:
            subprocess.run(["apt-get", "update", "-qq"], check=True, capture_output=True)
            subprocess.run(cmd, check=True, capture_output=True)


def timed(lab: Lab, argv: list[str], timeout: float = 600) -> tuple[float, str]:
    t0 = time.monotonic()
    r = lab.run_in_scanner(argv, capture_output=True, text=True, timeout=timeout, cwd=str(ROOT))
    seconds = time.monotonic() - t0
    if r.returncode != 0:
        raise RuntimeError(f"{argv[:3]} failed ({r.returncode}): {r.stderr[-1500:]}")
    return seconds, r.stdout


def median_time(lab: Lab, make_argv: Callable[[int], list[str]]) -> tuple[float, str]:
    times, out = [], ""
    for i in range(RUNS):
        t, out = timed(lab, make_argv(i))
        times.append(t)
    return statistics.median(times), out


def count_arp_scan(out: str) -> int:
    return sum(1 for line in out.splitlines() if re.match(r"^\d+\.\d+\.\d+\.\d+\t", line))


def count_nmap_sn(out: str) -> int:
    return len(re.findall(r"^Nmap scan report for ", out, re.MULTILINE))


def _names(maker: str) -> list[str]:
    db = default_db()
    v = db.resolve_name(maker) or db.vendor_by_name(maker)
    words = {maker.lower()}
    if v is not None:
        words |= {v.name.lower(), *(a for a in v.aliases if len(a) > 3)}
    return sorted(words)


def nmap_makers(xml_text: str, truth: dict[str, str | None]) -> tuple[int, int]:
    """(hosts named with the right maker, hosts reported) from nmap's XML."""
    root = ET.fromstring(xml_text)
    right = reported = 0
    for host in root.iter("host"):
        addr = next(
            (a.get("addr") for a in host.iter("address") if a.get("addrtype") == "ipv4"), None
        )
        if addr is None or addr not in truth:
            continue
        reported += 1
        expected = truth[addr]
        if expected is None:
            continue
        text = " ".join(
            " ".join(str(v) for v in el.attrib.values()) + " " + (el.text or "")
            for el in host.iter()
        ).lower()
        if any(re.search(r"\b" + re.escape(n) + r"\b", text) for n in _names(expected)):
            right += 1
    return right, reported


def our_makers(report: dict[str, Any], truth: dict[str, str | None]) -> tuple[int, int]:
    db = default_db()
    right = reported = 0
    for d in report["devices"]:
        if d["ip"] not in truth:
            continue
        reported += 1
        expected = truth[d["ip"]]
        if expected is None or not d["maker"]:
            continue
        want = db.resolve_name(expected) or db.vendor_by_name(expected)
        got = db.resolve_name(d["maker"]) or db.vendor_by_name(d["maker"])
        if (
            want is not None
            and got is not None
            and db.maker_of(want).id in (got.id, db.maker_of(got).id)
        ) or (want is not None and got is not None and want.oem_of and got.id in want.oem_of):
            right += 1
    return right, reported


def rss_after_cycles(lab: Lab, tmp: Path, cycles: int = 10) -> float | None:
    """Peak RSS (MiB) of a process that runs `cycles` scan cycles in-process."""
    snippet = (
        "import resource, sys\n"
        "from scanner.config import Config, with_overrides\n"
        "from scanner.scan import run_scan\n"
        f"cfg = with_overrides(Config(), interfaces=['lab0'], cidrs=['{lab250.CIDR}'], "
        f"db=__import__('pathlib').Path('{tmp / 'rss.db'}'))\n"
        f"for _ in range({cycles}): run_scan(cfg)\n"
        # VmHWM: ru_maxrss survives exec and would report the bench's own peak
        "print(int(next(l.split()[1] for l in open('/proc/self/status') "
        "if l.startswith('VmHWM:'))) / 1024)\n"
    )
    try:
        _, out = timed(lab, [sys.executable, "-c", snippet], timeout=1200)
    except RuntimeError as exc:
        print(f"  RSS run failed: {exc}")
        return None
    return float(out.strip().splitlines()[-1])


def main() -> int:
    started = time.monotonic()
    ensure_tools()
    scen, truth = lab250.scenario(250)
    cameras = sum(1 for m in truth.values() if m)
    results: dict[str, Any] = {"devices": len(truth), "cameras": cameras}
    print(f"building a {len(truth)}-device lab ({cameras} cameras) ...", flush=True)
    with tempfile.TemporaryDirectory(prefix="scanner-bench-") as tmpdir, Lab(scen) as lab:
        tmp = Path(tmpdir)
        print(f"  built in {lab.build_seconds:.2f} s", flush=True)

        def ours_arp(i: int) -> list[str]:
            return lab.scan_argv(tmp / f"arp{i}.db", cidr=lab250.CIDR, protocols=["arp"])

        t_ours, out = median_time(lab, ours_arp)
        found = int(re.search(r"complete: (\d+) devices", out).group(1))  # type: ignore[union-attr]
        t_arpscan, out = median_time(lab, lambda i: ["arp-scan", "-I", "lab0", lab250.CIDR])
        n_arpscan = count_arp_scan(out)
        t_nmap_sn, out = median_time(
            lab, lambda i: ["nmap", "-sn", "-n", "-PR", "-e", "lab0", lab250.CIDR]
        )
        n_nmap_sn = count_nmap_sn(out)
        results["arp"] = {
            "ours": (t_ours, found),
            "arp-scan": (t_arpscan, n_arpscan),
            "nmap -sn": (t_nmap_sn, n_nmap_sn),
        }
        print(
            f"  ARP: ours {t_ours:.2f}s/{found}, arp-scan {t_arpscan:.2f}s/{n_arpscan}, "
            f"nmap -sn {t_nmap_sn:.2f}s/{n_nmap_sn}",
            flush=True,
        )

        db = tmp / "full.db"
        t_full, _ = timed(lab, lab.scan_argv(db, cidr=lab250.CIDR))
        report = json.loads(
            timed(lab, [*SCANNER, "report", "--db", str(db), "--format", "json"])[1]
        )
        ours_right, ours_reported = our_makers(report, truth)
        ports = ",".join(str(p) for p in CAMERA_PORTS)
        nmap_cmd = [
            "nmap",
            "-n",
            *NMAP_SPEEDUPS,
            "-e",
            "lab0",
            "-sV",
            "-p",
            ports,
            "--script",
            "broadcast-wsdd-discover,broadcast-upnp-info,http-server-header,rtsp-methods",
            "-oX",
            "-",
            lab250.CIDR,
        ]
        t_nmap, xml_out = timed(lab, nmap_cmd, timeout=900)
        nmap_right, nmap_reported = nmap_makers(xml_out, truth)
        results["identify"] = {
            "ours": (t_full, ours_right, ours_reported),
            "nmap": (t_nmap, nmap_right, nmap_reported),
        }
        print(
            f"  identify: ours {t_full:.1f}s {ours_right}/{cameras} right; "
            f"nmap {t_nmap:.1f}s {nmap_right}/{cameras} right",
            flush=True,
        )
        results["rss_mib"] = rss_after_cycles(lab, tmp)
        print(f"  RSS after 10 cycles: {results['rss_mib']} MiB", flush=True)

    from bench import bench_capture, bench_corpus, bench_oui, scan50

    s50 = scan50.measure(runs=RUNS)
    results["scan50"] = {"seconds": s50.seconds, "found": s50.found, "devices": s50.devices}
    print(f"  50-device full scan: {s50.seconds:.1f} s, {s50.found} devices", flush=True)

    cpus = os.sched_getaffinity(0)  # the one-core measurements pin; give the cores back after
    results["oui"] = bench_oui.main()
    results["corpus"] = bench_corpus.measure()
    os.sched_setaffinity(0, cpus)
    results["capture"] = bench_capture.measure(CAPTURE_SECONDS)
    results["seconds"] = time.monotonic() - started
    write_markdown(results)
    print(OUT.read_text())
    return 0


def _fmt_ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else "n/a"


def write_markdown(r: dict[str, Any]) -> None:
    arp = r["arp"]
    ident = r["identify"]
    t_ours, found = arp["ours"]
    lines = [
        "# Benchmarks",
        "",
        f"Run `make bench` (as root; it builds the lab and installs arp-scan and nmap). "
        f"Last run: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"{r['seconds']:.0f} s in all.",
        "",
        f"Machine: {os.cpu_count()} cores, {platform.machine()}, Linux {platform.release()}, "
        f"Python {platform.python_version()}. Lab: {r['devices']} devices ({r['cameras']} cameras) "
        f"in {lab250.CIDR}, cloned from the test scenarios, all in network namespaces. "
        f"Times are wall clock, median of {RUNS} runs for discovery, including process start.",
        "",
        "## Host discovery (ARP)",
        "",
        "| tool | seconds | hosts found | ours / theirs |",
        "|---|---:|---:|---:|",
        f"| scanner scan --once --protocol arp | {t_ours:.2f} | {found} | 1.00 |",
    ]
    for name in ("arp-scan", "nmap -sn"):
        t, n = arp[name]
        lines.append(f"| {name} | {t:.2f} | {n} | {_fmt_ratio(t_ours, t)} |")
    t_full, ours_right, _ = ident["ours"]
    t_nmap, nmap_right, _ = ident["nmap"]
    lines += [
        "",
        "## Identification",
        "",
        f"nmap: `nmap -n {' '.join(NMAP_SPEEDUPS)} -e lab0 -sV "
        f"-p {','.join(str(p) for p in CAMERA_PORTS)} --script "
        "broadcast-wsdd-discover,broadcast-upnp-info,http-server-header,rtsp-methods`. "
        f"`{' '.join(NMAP_SPEEDUPS)}` are in nmap's favour: at its default timing and "
        "version intensity, `-sV` over this lab ran for more than 15 minutes before we "
        "stopped it (make bench must finish in 10). "
        "A device counts as named right when the expected maker (or one of its aliases) "
        "appears in nmap's output for that host (generous: MAC-vendor text counts), and "
        "when our report's `maker` is that maker.",
        "",
        "| tool | seconds | cameras named with the right maker | ours / theirs (time) |",
        "|---|---:|---:|---:|",
        f"| scanner scan --once (all protocols) | {t_full:.1f} "
        f"| {ours_right} / {r['cameras']} | 1.00 |",
        f"| nmap (above) | {t_nmap:.1f} | {nmap_right} / {r['cameras']} "
        f"| {_fmt_ratio(t_full, t_nmap)} |",
        "",
        f"A full scan (every protocol) of a {r['scan50']['devices']}-device /24 "
        f"(clones of lab/scenarios/discovery.toml; `python -m bench.scan50`): "
        f"{r['scan50']['seconds']:.1f} s, median of {RUNS}, {r['scan50']['found']} devices "
        "recorded.",
        "",
        "## Throughput and memory",
        "",
        "| measure | value |",
        "|---|---:|",
        f"| OUI lookups/s, one core | {r['oui']['lookups_per_s_mixed']:,.0f} |",
    ]
    if r.get("corpus"):
        lines.append(
            f"| identifications/s, one core | {r['corpus']['identifications_per_s']:,.0f} |"
        )
    if r.get("rss_mib") is not None:
        lines.append(f"| peak RSS after 10 full scan cycles (MiB) | {r['rss_mib']:.0f} |")
    if r.get("capture"):
        for key, value in r["capture"].items():
            if key == "ok":
                continue
            lines.append(f"| capture: {key} | {value} |")
    lines += ["", f"Protocols in the full scan: {', '.join(PROTOCOLS)}.", ""]
    OUT.write_text("\n".join(lines))


if __name__ == "__main__":
    raise SystemExit(main())
