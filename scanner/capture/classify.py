"""Is a flow internal, allowed, a vendor's cloud, or unexpected?

Checked in that order, first match wins:

1. `internal`: multicast, broadcast, loopback, link-local or unspecified
   destinations, and anything inside the configured internal networks
   (RFC 1918, CGNAT, ULA and the scope's networks by default).
2. `allowed`: an allowlist entry matches by address, network or name (the
   name the device asked DNS for, the TLS SNI or the HTTP Host; a rule for
   "example.org" also covers "ntp.example.org"), and its ports if it has any.
3. `vendor-cloud`: a name matches a cloud endpoint of the fingerprint
   database (fingerprints/clouds.toml); the vendor is named.
4. `unexpected`: anything else, e.g. a raw external address with no name.

Pure: no I/O, no clock. An operator who allowlists a vendor's cloud on
purpose gets `allowed`, which is the point of an allowlist.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from scanner.capture.settings import AllowRule, IPNetwork, name_matches

INTERNAL = "internal"
ALLOWED = "allowed"
VENDOR_CLOUD = "vendor-cloud"
UNEXPECTED = "unexpected"
CLASSES = (INTERNAL, ALLOWED, VENDOR_CLOUD, UNEXPECTED)
ALERT_CLASSES = frozenset({VENDOR_CLOUD, UNEXPECTED})


@dataclass(frozen=True, slots=True)
class CloudPattern:
    """A cloud endpoint as classification needs it (from FingerprintDB.clouds)."""

    pattern: str  # a domain suffix or an exact name, lower case
    vendor: str  # the vendor's display name ("Hikvision")


@dataclass(frozen=True, slots=True)
class Verdict:
    cls: str
    vendor: str | None = None
    reason: str = ""


def is_local_only(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Addresses that never leave the site, whatever the config says."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_multicast or ip.is_loopback or ip.is_link_local or ip.is_unspecified:
        return True
    return isinstance(ip, ipaddress.IPv4Address) and ip == ipaddress.IPv4Address("255.255.255.255")


class Classifier:
    def __init__(
        self,
        internal: Sequence[IPNetwork],
        allow: Sequence[AllowRule],
        clouds: Sequence[CloudPattern],
    ) -> None:
        self.internal = tuple(internal)
        self.allow = tuple(allow)
        # longest pattern first, so "account-api.dji.com" wins over a shorter suffix
        self.clouds = tuple(sorted(clouds, key=lambda c: -len(c.pattern)))

    def classify(self, dst_ip: str, dst_port: int | None, names: Sequence[str] = ()) -> Verdict:
        try:
            dst = ipaddress.ip_address(dst_ip)
        except ValueError:
            return Verdict(UNEXPECTED, reason=f"unreadable address {dst_ip!r}")
        if is_local_only(dst):
            return Verdict(INTERNAL, reason="local-only address")
        for net in self.internal:
            if dst.version == net.version and dst in net:
                return Verdict(INTERNAL, reason=f"inside {net}")
        for rule in self.allow:
            if rule.matches(dst, dst_port, names):
                return Verdict(ALLOWED, reason=f"allowlist: {rule.label}")
        for name in names:
            for cloud in self.clouds:
                if name_matches(name, cloud.pattern):
                    return Verdict(VENDOR_CLOUD, cloud.vendor, f"{name} is {cloud.vendor} cloud")
        return Verdict(UNEXPECTED, reason="external, not allowlisted, no vendor cloud name")


def cloud_patterns(clouds: Sequence[object], vendor_names: Mapping[str, str]) -> list[CloudPattern]:
    """CloudPatterns from FingerprintDB.clouds, with vendor ids turned into names."""
    out = []
    for c in clouds:
        vendor_id = str(getattr(c, "vendor", ""))
        pattern = str(getattr(c, "pattern", "")).lower().rstrip(".")
        if pattern:
            out.append(CloudPattern(pattern, vendor_names.get(vendor_id, vendor_id)))
    return out
