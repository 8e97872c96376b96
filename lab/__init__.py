"""A simulated camera LAN in Linux network namespaces, for tests, demo and bench.

Nothing here touches the host's own network namespace: see lab/README.md.
"""

from __future__ import annotations

from lab.net import Lab, LabError, LabUnavailable, cleanup_stale, unavailable_reason
from lab.scenario import (
    DeviceSpec,
    NetworkSpec,
    Scenario,
    ScenarioError,
    ServiceSpec,
    load_scenario,
)

__all__ = [
    "DeviceSpec",
    "Lab",
    "LabError",
    "LabUnavailable",
    "NetworkSpec",
    "Scenario",
    "ScenarioError",
    "ServiceSpec",
    "cleanup_stale",
    "load_scenario",
    "unavailable_reason",
]
