"""Merging observations into devices: MAC, then serial, then UUID, then IP."""

from __future__ import annotations

import pytest

from scanner.inventory import MAX_DEVICES_PER_IP, merge
from scanner.model import Observation, Source
from tests.helpers import T0


def obs(source: Source, ip: str, mac: str | None = None, **attrs: str) -> Observation:
    return Observation(source=source, ip=ip, mac=mac, seen_at=T0, attrs=attrs)


def test_everything_at_one_ip_with_one_mac_is_one_device() -> None:
    [dev] = merge(
        [
            obs(Source.ARP, "198.51.100.10", "44:19:b6:00:00:02"),
            obs(Source.HTTP, "198.51.100.10", server="App-webs/"),
            obs(Source.WSD, "198.51.100.10", uuid="urn:uuid:abc"),
            obs(Source.ONVIF, "198.51.100.10", serial="DS-2CD2143G0-I20200101AAWRD12345678"),
        ]
    )
    assert dev.key == "mac:44:19:b6:00:00:02"
    assert dev.sources == ["arp", "http", "onvif", "wsd"]


def test_routed_device_without_mac_is_keyed_by_serial_then_uuid() -> None:
    devices = merge(
        [
            obs(Source.ONVIF, "10.10.0.5", serial="ABC12345", uuid="u-1"),
            obs(Source.WSD, "10.10.0.5", uuid="u-1"),
            obs(Source.WSD, "10.10.0.6", uuid="u-2"),
            obs(Source.HTTP, "10.10.0.7"),
        ]
    )
    assert [d.key for d in devices] == ["serial:ABC12345", "uuid:u-2", "ip:10.10.0.7"]


def test_same_serial_at_two_ips_is_one_device_and_arp_ip_is_primary() -> None:
    [dev] = merge(
        [
            obs(Source.ARP, "198.51.100.20", "00:40:8c:00:00:01"),
            obs(Source.ONVIF, "198.51.100.20", "00:40:8c:00:00:01", serial="ACCC8E000001"),
            obs(Source.SSDP, "198.51.100.21", serial="ACCC8E000001"),
        ]
    )
    assert dev.ip == "198.51.100.20"


def test_two_macs_on_one_ip_stay_two_devices() -> None:
    devices = merge(
        [
            obs(Source.ARP, "198.51.100.30", "00:40:8c:00:00:01"),
            obs(Source.ARP, "198.51.100.30", "00:40:8c:00:00:02"),
            obs(Source.HTTP, "198.51.100.30"),
        ]
    )
    assert sorted(d.key for d in devices) == ["mac:00:40:8c:00:00:01", "mac:00:40:8c:00:00:02"]


def test_placeholder_serials_never_join_devices() -> None:
    devices = merge(
        [
            obs(Source.DHIP, "198.51.100.40", "e0:50:8b:00:00:01", serial="00000000"),
            obs(Source.DHIP, "198.51.100.41", "e0:50:8b:00:00:02", serial="00000000"),
        ]
    )
    assert len(devices) == 2


def test_one_address_claiming_a_flood_of_devices_is_cut_to_the_cap(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ip = "198.51.100.50"
    flood = [obs(Source.SADP, ip, f"44:19:b6:00:{i // 256:02x}:{i % 256:02x}") for i in range(300)]
    real = obs(Source.ARP, ip, "0e:66:00:00:00:50")
    other = obs(Source.ARP, "198.51.100.10", "ac:cc:8e:00:00:10")
    with caplog.at_level("WARNING", logger="scanner.inventory"):
        devices = merge([*flood, real, other])
    at_ip = [d for d in devices if d.ip == ip]
    assert len(at_ip) == MAX_DEVICES_PER_IP
    assert "mac:0e:66:00:00:00:50" in {d.key for d in at_ip}  # the one that answered ARP stays
    assert [d.key for d in devices if d.ip != ip] == ["mac:ac:cc:8e:00:00:10"]
    assert f"{ip} claims 301 devices in one scan; kept {MAX_DEVICES_PER_IP}" in caplog.text
