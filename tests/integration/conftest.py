"""Integration tests run the real `dietstack` command against a real Docker engine."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dietstack.runtime import DockerRuntime


def dietstack_command() -> list[str]:
    found = shutil.which("dietstack")
    return [found] if found else [sys.executable, "-m", "dietstack"]


def run_dietstack(*args: str, config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*dietstack_command(), "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=3600,
    )


@pytest.fixture(scope="session")
def runtime() -> DockerRuntime:
    return DockerRuntime.connect()


@pytest.fixture(scope="session")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("etc") / "settings.yaml"


def cold_build_wanted() -> bool:
    """CI proves a build on a fresh machine; developers may opt in."""
    return os.environ.get("CI") == "true" or os.environ.get("DIETSTACK_COLD_BUILD") == "1"
