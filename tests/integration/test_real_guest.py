"""A real distribution on the cloud: the Debian 13 guest built here from the Debian
mirror (`dietstack image add debian-13 --build`) boots under the test cloud's
hypervisor, and cloud-init takes what OpenStack gives it: the host name, the key
pair, user-data, a root file system grown to the flavor's disk, a volume that keeps
its data across guests, and a config drive."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import paramiko
import pytest

from .conftest import run_dietstack
from .test_deploy import openstack, wait_for_status, wait_until

pytestmark = pytest.mark.integration

IMAGE = "debian-13"
USER = "debian"
USER_DATA = "#!/bin/sh\necho user-data-ran >/var/tmp/user-data-marker\n"
#: Under QEMU emulation a Debian guest takes minutes to boot and run cloud-init.
BOOT_TIMEOUT = 900


@pytest.fixture(scope="module")
def debian_image(cloud: Path) -> str:
    started = time.monotonic()
    added = run_dietstack("image", "add", IMAGE, "--build", config=cloud)
    assert added.returncode == 0, added.stderr[-4000:]
    print(f"debian-13 built and uploaded in {time.monotonic() - started:.0f} s")
    assert "m1.mini" in added.stdout
    return IMAGE


@pytest.fixture
def debian_key(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "debian-key"
    openstack("demo", "keypair", "delete", "itest-debian", check=False)
    openstack("demo", "keypair", "create", "--private-key", str(path), "itest-debian")
    yield path
    openstack("demo", "keypair", "delete", "itest-debian", check=False)


def run(address: str, key_file: Path, command: str) -> str:
    """A command in the guest as the distribution's user (SSH retried until it answers)."""
    key = paramiko.PKey.from_path(key_file)
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())  # a fresh guest's key

    def connected() -> bool:
        try:
            client.connect(
                address, username=USER, pkey=key, timeout=10, allow_agent=False,
                look_for_keys=False,
            )  # fmt: skip
        except (paramiko.SSHException, OSError):
            return False
        return True

    wait_until("SSH to accept the key", connected, timeout=BOOT_TIMEOUT)
    try:
        _, stdout, _ = client.exec_command(command, timeout=120)
        return str(stdout.read().decode())
    finally:
        client.close()


@contextmanager
def debian_guest(
    name: str, key_file: Path, user_data: Path | None, *extra: str
) -> Iterator[tuple[str, dict[str, Any]]]:
    """A Debian guest on demo-net with a floating IP, deleted (with the IP) after."""
    args = ["--user-data", str(user_data)] if user_data else []
    try:
        server = openstack(
            "demo", "server", "create", "--image", IMAGE, "--flavor", "m1.mini",
            "--network", "demo-net", "--key-name", "itest-debian", *args, *extra,
            "--wait", name, "-f", "json",
        )  # fmt: skip
        address = openstack("demo", "floating ip", "create", "public", "-f", "json")[
            "floating_ip_address"
        ]
        openstack("demo", "server", "add", "floating", "ip", name, address)
        started = time.monotonic()
        try:
            wait_until(
                "cloud-init to finish",
                lambda: "status: done" in run(address, key_file, "cloud-init status --wait"),
                timeout=BOOT_TIMEOUT,
            )
        except AssertionError:
            console = openstack("demo", "console", "log", "show", name, check=False)
            raise AssertionError(
                f"{name} did not finish booting; console:\n{console[-4000:]}"
            ) from None
        print(f"{name}: create -> cloud-init done in {time.monotonic() - started:.0f} s")
        yield address, server
    finally:
        openstack("demo", "server", "delete", "--wait", name, check=False)
        for floating in openstack("demo", "floating ip", "list", "-f", "json"):
            openstack("demo", "floating ip", "delete", floating["ID"], check=False)


def test_debian_takes_its_name_key_user_data_and_grows_its_root(
    debian_image: str, debian_key: Path, tmp_path: Path
) -> None:
    user_data = tmp_path / "user-data"
    user_data.write_text(USER_DATA)
    with debian_guest("itest-debian", debian_key, user_data) as (address, _):
        assert run(address, debian_key, "hostname").strip() == "itest-debian"
        status = run(address, debian_key, "cloud-init status --long")
        assert "status: done" in status and "errors: []" in status, status
        datasource = run(address, debian_key, "cloud-id")
        assert "openstack" in datasource.lower(), datasource
        assert run(address, debian_key, "cat /var/tmp/user-data-marker").strip() == "user-data-ran"
        root_kib = int(run(address, debian_key, "df --output=size -k / | tail -1").strip())
        assert root_kib > 8 * 1024 * 1024, f"root file system not grown: {root_kib} KiB"


FORMAT_AND_WRITE = (
    "sudo mkfs.ext4 -q /dev/vdb && sudo mount /dev/vdb /mnt && echo kept | sudo tee /mnt/kept "
    "&& sudo umount /mnt"
)


def sees_the_volume(address: str, key_file: Path) -> bool:
    return "vdb" in run(address, key_file, "lsblk -n -o NAME")


def test_a_volume_keeps_its_data_from_one_debian_guest_to_another(
    debian_image: str, debian_key: Path
) -> None:
    volume = openstack("demo", "volume", "create", "--size", "1", "itest-debian-vol", "-f", "json")
    try:
        wait_for_status("volume", volume["id"], "available")
        with debian_guest("itest-debian-a", debian_key, None) as (address, server):
            openstack("demo", "server", "add", "volume", server["id"], volume["id"])
            wait_for_status("volume", volume["id"], "in-use")
            wait_until("the guest to see the volume", lambda: sees_the_volume(address, debian_key))
            run(address, debian_key, FORMAT_AND_WRITE)
            openstack("demo", "server", "remove", "volume", server["id"], volume["id"])
            wait_for_status("volume", volume["id"], "available")
        with debian_guest("itest-debian-b", debian_key, None) as (address, server):
            openstack("demo", "server", "add", "volume", server["id"], volume["id"])
            wait_for_status("volume", volume["id"], "in-use")
            wait_until("the guest to see the volume", lambda: sees_the_volume(address, debian_key))
            assert (
                run(address, debian_key, "sudo mount /dev/vdb /mnt && cat /mnt/kept").strip()
                == "kept"
            )
    finally:
        openstack("demo", "volume", "delete", volume["id"], check=False)


def test_debian_boots_from_a_config_drive(debian_image: str, debian_key: Path) -> None:
    with debian_guest("itest-debian-cd", debian_key, None, "--config-drive", "true") as (
        address,
        _,
    ):
        assert run(address, debian_key, "hostname").strip() == "itest-debian-cd"
        assert "configdrive" in run(address, debian_key, "cloud-init query platform").lower()
