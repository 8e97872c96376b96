"""A simulated camera network in Linux network namespaces, for tests, demo and bench.

One LAN, or several segments joined by routers.

Nothing here touches the host's own network namespace: see lab/README.md.
"""

from __future__ import annotations

from lab.net import Lab, LabError, LabUnavailable, cleanup_stale, unavailable_reason
from lab.scenario import (
    PRIMARY_SEGMENT,
    DeviceSpec,
    NetworkSpec,
    RouterInterfaceSpec,
    RouterSpec,
    Scenario,
    ScenarioError,
    SegmentSpec,
    ServiceSpec,
    load_scenario,
)

__all__ = [
    "PRIMARY_SEGMENT",
    "DeviceSpec",
    "Lab",
    "LabError",
    "LabUnavailable",
    "NetworkSpec",
    "RouterInterfaceSpec",
    "RouterSpec",
    "Scenario",
    "ScenarioError",
    "SegmentSpec",
    "ServiceSpec",
    "cleanup_stale",
    "load_scenario",
    "unavailable_reason",
]
