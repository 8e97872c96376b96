"""Shared pytest fixtures, one section per concern; add new sections below."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # `lab` is a top-level package, never installed
    sys.path.insert(0, str(REPO_ROOT))

from lab import Lab, Scenario, unavailable_reason  # noqa: E402

# --- network-namespace lab (tests using it are marked `netns`) ---------------

LabFactory = Callable[..., Lab]


@pytest.fixture
def lab_available() -> None:
    """Skip when this machine cannot build labs; under CI=true, fail instead."""
    reason = unavailable_reason()
    if reason is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true but the netns lab cannot run: {reason}")
    pytest.skip(f"netns lab unavailable: {reason}")


@pytest.fixture
def lab_factory(lab_available: None) -> Iterator[LabFactory]:
    """``lab_factory("foundation")`` -> a Lab that is up; every one is torn down after."""
    labs: list[Lab] = []

    def make(scenario: Scenario | Path | str, **kwargs: Any) -> Lab:
        lab = Lab(scenario, **kwargs)
        labs.append(lab)
        lab.up()
        return lab

    yield make
    for lab in reversed(labs):
        lab.down()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "lab_available" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.netns)
