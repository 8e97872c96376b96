"""Builders for records used across tests (no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime

from scanner.model import Assessment, Identification, Observation, Source, Verdict
from scanner.store import DeviceRecord, ScanRecord

T0 = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)


def arp_obs(ip: str, mac: str) -> Observation:
    return Observation(source=Source.ARP, ip=ip, mac=mac, seen_at=T0, attrs={"iface": "lab0"})


def device(
    ip: str,
    mac: str,
    *,
    maker: str | None = "Axis Communications",
    verdict: Verdict = Verdict.NON_HOME,
    n_obs: int = 1,
) -> DeviceRecord:
    return DeviceRecord(
        key=f"mac:{mac}",
        ip=ip,
        mac=mac,
        identification=Identification(vendor=maker, maker=maker, origin_country="SE"),
        assessment=Assessment(verdict, flagged=verdict is Verdict.FLAGGED, reasons=("r",)),
        sources=["arp"],
        observations=[arp_obs(ip, mac)] * n_obs,
    )


def scan(devices: list[DeviceRecord], finished: str = "2026-11-22T03:00:05Z") -> ScanRecord:
    return ScanRecord(
        started_at="2026-11-22T03:00:00Z",
        finished_at=finished,
        interfaces=["lab0"],
        cidrs=["192.0.2.0/24"],
        devices=devices,
        scanner_version="test",
    )
