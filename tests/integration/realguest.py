"""A real distribution on a test cloud: the Debian 13 guest built here from the
Debian mirror (`dietstack image add debian-13 --build`), booted and reached over SSH
as the distribution's user, to see what cloud-init took from OpenStack."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paramiko

from .conftest import run_dietstack
from .test_deploy import volume_status, wait_for_status, wait_until

IMAGE = "debian-13"
USER = "debian"
KEY_NAME = "itest-debian"
USER_DATA = "#!/bin/sh\necho user-data-ran >/var/tmp/user-data-marker\n"
#: Under QEMU emulation a Debian guest takes minutes to boot and run cloud-init.
BOOT_TIMEOUT = 900

#: The openstack client as whoever owns the guests (JSON parsed where asked for).
Client = Callable[..., Any]


def add_built_image(config: Path) -> None:
    started = time.monotonic()
    added = run_dietstack("image", "add", IMAGE, "--build", config=config)
    assert added.returncode == 0, added.stdout[-2000:] + added.stderr[-4000:]
    print(f"{IMAGE} built and uploaded in {time.monotonic() - started:.0f} s")
    assert "m1.mini" in added.stdout, added.stdout


@contextmanager
def keypair(client: Client, path: Path) -> Iterator[Path]:
    client("keypair", "delete", KEY_NAME, check=False)
    client("keypair", "create", "--private-key", str(path), KEY_NAME)
    try:
        yield path
    finally:
        client("keypair", "delete", KEY_NAME, check=False)


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
    key: Path

    def run(self, command: str) -> str:
        return run(self.address, self.key, command)


def _create(client: Client, name: str, extra: tuple[str, ...]) -> str:
    server = client(
        "server", "create", "--image", IMAGE, "--flavor", "m1.mini", "--network", "demo-net",
        "--key-name", KEY_NAME, *extra, name, "-f", "json",
    )  # fmt: skip
    return str(server["id"])


def _reachable(client: Client, name: str, server_id: str, key: Path) -> Guest:
    """The guest ACTIVE, with a floating IP."""

    def active() -> bool:
        status = client("server", "show", server_id, "-f", "json")["status"]
        assert status != "ERROR", f"{name} went to ERROR"
        return bool(status == "ACTIVE")

    wait_until(f"{name} to be ACTIVE", active)
    address = client("floating ip", "create", "public", "-f", "json")["floating_ip_address"]
    client("server", "add", "floating", "ip", server_id, address)
    return Guest(name, server_id, address, key)


def _booted(client: Client, guest: Guest, started: float) -> None:
    """cloud-init done in the guest, or the guest's console in the failure."""
    try:
        wait_until(
            f"cloud-init in {guest.name} to finish",
            lambda: "status: done" in guest.run("cloud-init status --wait"),
            timeout=BOOT_TIMEOUT,
        )
    except AssertionError:
        console = client("console", "log", "show", guest.id, check=False)
        raise AssertionError(
            f"{guest.name} did not finish booting; console:\n{console[-4000:]}"
        ) from None
    print(f"{guest.name}: create -> cloud-init done in {time.monotonic() - started:.0f} s")


@contextmanager
def side_by_side(
    client: Client, key: Path, wanted: Mapping[str, tuple[str, ...]]
) -> Iterator[dict[str, Guest]]:
    """Debian guests (name -> extra `server create` arguments) on demo-net, booted
    side by side, each with a floating IP; deleted with their IPs after."""
    started = time.monotonic()
    ids: dict[str, str] = {}
    try:
        for name, extra in wanted.items():
            ids[name] = _create(client, name, extra)
        guests = {name: _reachable(client, name, ident, key) for name, ident in ids.items()}
        for guest in guests.values():
            _booted(client, guest, started)
        yield guests
    finally:
        for ident in ids.values():
            client("server", "delete", "--wait", ident, check=False)
        for floating in client("floating ip", "list", "-f", "json"):
            client("floating ip", "delete", floating["ID"], check=False)


def assert_cloud_init_done(guest: Guest) -> None:
    assert guest.run("hostname").strip() == guest.name
    status = guest.run("cloud-init status --long")
    assert "status: done" in status and "errors: []" in status, status


def assert_took_metadata_service(guest: Guest) -> None:
    """Its name, key (it answered), user-data and a root grown to m1.mini's 10 GB,
    from the OpenStack metadata service."""
    assert_cloud_init_done(guest)
    datasource = guest.run("cloud-id")
    assert "openstack" in datasource.lower(), datasource
    assert guest.run("cat /var/tmp/user-data-marker").strip() == "user-data-ran"
    root_kib = int(guest.run("df --output=size -k / | tail -1").strip())
    assert root_kib > 8 * 1024 * 1024, f"root file system not grown: {root_kib} KiB"


def assert_took_config_drive(guest: Guest) -> None:
    assert_cloud_init_done(guest)
    assert "configdrive" in guest.run("cloud-init query platform").lower()


def _attach(client: Client, guest: Guest, volume_id: str) -> None:
    client("server", "add", "volume", guest.id, volume_id)
    wait_for_status("volume", volume_id, "in-use", client)
    wait_until(f"{guest.name} to see the volume", lambda: "vdb" in guest.run("lsblk -n -o NAME"))


FORMAT_AND_WRITE = (
    "sudo mkfs.ext4 -q /dev/vdb && sudo mount /dev/vdb /mnt && echo kept | sudo tee /mnt/kept "
    "&& sudo umount /mnt"
)


def assert_volume_moves(client: Client, first: Guest, second: Guest) -> None:
    """A file system made and written in `first` is read in `second` after the
    volume is detached from one and attached to the other."""
    volume = client("volume", "create", "--size", "1", "itest-debian-vol", "-f", "json")
    try:
        wait_for_status("volume", volume["id"], "available", client)
        _attach(client, first, volume["id"])
        first.run(FORMAT_AND_WRITE)
        client("server", "remove", "volume", first.id, volume["id"])
        wait_for_status("volume", volume["id"], "available", client)
        _attach(client, second, volume["id"])
        assert second.run("sudo mount /dev/vdb /mnt && cat /mnt/kept").strip() == "kept"
    finally:
        for guest in (first, second):
            client("server", "remove", "volume", guest.id, volume["id"], check=False)
        wait_until(
            "the volume to be detached",
            lambda: volume_status("volume", volume["id"], client) != "in-use",
        )
        client("volume", "delete", volume["id"], check=False)
