"""Integration tests run the real `dietstack` command against a real Docker engine."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from dietstack.engine.converge import LABEL_CONTAINER
from dietstack.hosts.runtime import DockerRuntime


def dietstack_command() -> list[str]:
    found = shutil.which("dietstack")
    return [found] if found else [sys.executable, "-m", "dietstack"]


#: What a user's shell holds after `export OS_CLOUD=demo` or `eval "$(dietstack openrc
#: demo)"`, with values that are wrong on purpose: every verb the tests run must work
#: with them, since DietStack's own calls take nothing from the environment or from
#: clouds.yaml (which names the real demo cloud).
USER_CLOUD_ENVIRONMENT = {
    "OS_CLOUD": "demo",
    "OS_AUTH_URL": "http://127.0.0.1:9/v3",
    "OS_USERNAME": "demo",
    "OS_PASSWORD": "not-the-password",
    "OS_PROJECT_NAME": "demo",
    "OS_USER_DOMAIN_NAME": "Default",
    "OS_PROJECT_DOMAIN_NAME": "Default",
    "OS_REGION_NAME": "RegionTwo",
    "OS_IDENTITY_API_VERSION": "3",
    "OS_INTERFACE": "internal",
}


def run_dietstack(*args: str, config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*dietstack_command(), "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=3600,
        env={**os.environ, **USER_CLOUD_ENVIRONMENT},
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


@pytest.fixture(scope="session")
def cloud(runtime: DockerRuntime, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A freshly deployed all-in-one cloud: whatever DietStack cloud ran here is torn
    down first. DIETSTACK_CLOUD_CONFIG=<settings.yaml> uses a deployed one instead."""
    kept = os.environ.get("DIETSTACK_CLOUD_CONFIG")
    if kept:
        yield Path(kept)
        return
    for name in runtime.containers(LABEL_CONTAINER):
        runtime.remove(name)
    etc = tmp_path_factory.mktemp("etc")
    config = etc / "settings.yaml"
    data_dir = tmp_path_factory.mktemp("data")
    with small_file_system(data_dir, tmp_path_factory.mktemp("disk") / "data.ext4"):
        config.write_text(yaml.safe_dump({"data_dir": str(data_dir)}))
        started = time.monotonic()
        result = run_dietstack("deploy", config=config)
        print(f"deploy took {time.monotonic() - started:.0f} s")
        assert result.returncode == 0, result.stdout + result.stderr[-5000:]
        yield config


#: The size of the test cloud's data_dir: what the tests keep in it, with room to
#: spare, on a file system of its own that the full-disk test can fill.
DATA_DIR_SIZE = "12G"


@contextmanager
def small_file_system(mount_point: Path, backing: Path) -> Iterator[None]:
    """An ext4 file system of DATA_DIR_SIZE in a sparse file, mounted (by a loop
    device) at mount_point while the context lasts."""
    subprocess.run(["truncate", "-s", DATA_DIR_SIZE, str(backing)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(backing)], check=True)
    subprocess.run(["mount", "-o", "loop", str(backing), str(mount_point)], check=True)
    try:
        yield
    finally:
        # Lazily: a container left running (a kept cloud) may still hold it.
        subprocess.run(["umount", "-l", str(mount_point)], check=False)
        backing.unlink()
