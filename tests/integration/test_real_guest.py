"""A real distribution on the cloud: the Debian 13 guest built here from the Debian
mirror (`dietstack image add debian-13 --build`) boots under the test cloud's
hypervisor, and cloud-init takes what OpenStack gives it: the host name, the key
pair, user-data, a root file system grown to the flavor's disk, a volume that keeps
its data across guests, and a config drive."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paramiko
import pytest

from .conftest import run_dietstack
from .test_deploy import openstack, volume_status, wait_for_status, wait_until

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


@pytest.fixture(scope="module")
def debian_key(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("debian") / "key"
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


@dataclass(frozen=True)
class Guest:
    name: str
    id: str
    address: str


def create(name: str, *extra: str) -> str:
    """A Debian guest on demo-net, not waited on (guests boot side by side)."""
    server = openstack(
        "demo", "server", "create", "--image", IMAGE, "--flavor", "m1.mini",
        "--network", "demo-net", "--key-name", "itest-debian", *extra, name, "-f", "json",
    )  # fmt: skip
    return str(server["id"])


def reachable(name: str, server_id: str) -> Guest:
    """The guest ACTIVE, with a floating IP."""

    def active() -> bool:
        status = openstack("demo", "server", "show", server_id, "-f", "json")["status"]
        assert status != "ERROR", f"{name} went to ERROR"
        return bool(status == "ACTIVE")

    wait_until(f"{name} to be ACTIVE", active)
    address = openstack("demo", "floating ip", "create", "public", "-f", "json")
    openstack("demo", "server", "add", "floating", "ip", server_id, address["floating_ip_address"])
    return Guest(name, server_id, address["floating_ip_address"])


def booted(guest: Guest, key_file: Path, started: float) -> None:
    """cloud-init done in the guest, or the guest's console in the failure."""
    try:
        wait_until(
            f"cloud-init in {guest.name} to finish",
            lambda: "status: done" in run(guest.address, key_file, "cloud-init status --wait"),
            timeout=BOOT_TIMEOUT,
        )
    except AssertionError:
        console = openstack("demo", "console", "log", "show", guest.id, check=False)
        raise AssertionError(
            f"{guest.name} did not finish booting; console:\n{console[-4000:]}"
        ) from None
    print(f"{guest.name}: create -> cloud-init done in {time.monotonic() - started:.0f} s")


@pytest.fixture(scope="module")
def guests(
    debian_image: str, debian_key: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Guest]]:
    """Two Debian guests booted side by side: one takes its metadata (and
    user-data) from the metadata service, the other from a config drive."""
    user_data = tmp_path_factory.mktemp("debian") / "user-data"
    user_data.write_text(USER_DATA)
    started = time.monotonic()
    ids = {
        "itest-debian": create("itest-debian", "--user-data", str(user_data)),
        "itest-debian-cd": create("itest-debian-cd", "--config-drive", "true"),
    }
    try:
        found = {name: reachable(name, ident) for name, ident in ids.items()}
        for guest in found.values():
            booted(guest, debian_key, started)
        yield found
    finally:
        for ident in ids.values():
            openstack("demo", "server", "delete", "--wait", ident, check=False)
        for floating in openstack("demo", "floating ip", "list", "-f", "json"):
            openstack("demo", "floating ip", "delete", floating["ID"], check=False)


def test_debian_takes_its_name_key_user_data_and_grows_its_root(
    guests: dict[str, Guest], debian_key: Path
) -> None:
    address = guests["itest-debian"].address
    assert run(address, debian_key, "hostname").strip() == "itest-debian"
    status = run(address, debian_key, "cloud-init status --long")
    assert "status: done" in status and "errors: []" in status, status
    datasource = run(address, debian_key, "cloud-id")
    assert "openstack" in datasource.lower(), datasource
    assert run(address, debian_key, "cat /var/tmp/user-data-marker").strip() == "user-data-ran"
    root_kib = int(run(address, debian_key, "df --output=size -k / | tail -1").strip())
    assert root_kib > 8 * 1024 * 1024, f"root file system not grown: {root_kib} KiB"


def test_debian_boots_from_a_config_drive(guests: dict[str, Guest], debian_key: Path) -> None:
    address = guests["itest-debian-cd"].address
    assert run(address, debian_key, "hostname").strip() == "itest-debian-cd"
    assert "configdrive" in run(address, debian_key, "cloud-init query platform").lower()
    status = run(address, debian_key, "cloud-init status --long")
    assert "status: done" in status and "errors: []" in status, status


FORMAT_AND_WRITE = (
    "sudo mkfs.ext4 -q /dev/vdb && sudo mount /dev/vdb /mnt && echo kept | sudo tee /mnt/kept "
    "&& sudo umount /mnt"
)


def sees_the_volume(address: str, key_file: Path) -> bool:
    return "vdb" in run(address, key_file, "lsblk -n -o NAME")


def attached(guest: Guest, volume_id: str, key_file: Path) -> None:
    openstack("demo", "server", "add", "volume", guest.id, volume_id)
    wait_for_status("volume", volume_id, "in-use")
    wait_until(f"{guest.name} to see the volume", lambda: sees_the_volume(guest.address, key_file))


def test_a_volume_keeps_its_data_from_one_debian_guest_to_another(
    guests: dict[str, Guest], debian_key: Path
) -> None:
    first, second = guests["itest-debian"], guests["itest-debian-cd"]
    volume = openstack("demo", "volume", "create", "--size", "1", "itest-debian-vol", "-f", "json")
    try:
        wait_for_status("volume", volume["id"], "available")
        attached(first, volume["id"], debian_key)
        run(first.address, debian_key, FORMAT_AND_WRITE)
        openstack("demo", "server", "remove", "volume", first.id, volume["id"])
        wait_for_status("volume", volume["id"], "available")
        attached(second, volume["id"], debian_key)
        kept = run(second.address, debian_key, "sudo mount /dev/vdb /mnt && cat /mnt/kept")
        assert kept.strip() == "kept"
    finally:
        openstack("demo", "server", "remove", "volume", second.id, volume["id"], check=False)
        wait_until(
            "the volume to be detached",
            lambda: volume_status("volume", volume["id"]) != "in-use",
        )
        openstack("demo", "volume", "delete", volume["id"], check=False)
