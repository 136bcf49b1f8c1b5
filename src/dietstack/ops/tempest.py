"""`dietstack verify --tempest smoke`: run upstream Tempest against the cloud.

Tempest comes from PyPI into a virtualenv under the data directory (installed
once, with the release's constraints), is configured for this cloud, and runs
the chosen test set one test at a time (a small host runs VMs under emulation).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from dietstack.apis import cloudapi, cloudrest
from dietstack.engine import cloudsetup
from dietstack.errors import DietStackError
from dietstack.hosts.provision import ensure_command, run_or_fail
from dietstack.render import Env
from dietstack.services import cinder, glance, neutron, nova

TEMPEST = "tempest==47.0.0"
TOTALS = re.compile(r"^ - (Passed|Skipped|Failed): (\d+)", re.MULTILINE)


@dataclass(frozen=True)
class TempestResult:
    passed: int
    skipped: int
    failed: int
    log: Path


def _run(command: list[str], what: str, cwd: Path | None = None) -> str:
    return run_or_fail(
        command, what, "check this host's access to PyPI, then run it again", cwd=cwd
    )


def install(home: Path, release: str, say: Callable[[str], None]) -> Path:
    venv = home / "venv"
    tempest = venv / "bin" / "tempest"
    # Tempest's scenario tests ping guests with the host's ping command.
    ensure_command("ping", "iputils-ping", "Tempest pings guests", say)
    if tempest.exists():
        return tempest
    say(f"installing {TEMPEST} into {venv} (once)")
    _run([sys.executable, "-m", "venv", str(venv)], "creating Tempest's virtualenv")
    data = Path(str(resources.files("dietstack"))) / "data"
    constraints = data / f"upper-constraints-{release}.txt"
    _run(
        [str(venv / "bin" / "pip"), "install", "-q", TEMPEST, "-c", str(constraints)],
        "installing Tempest",
    )
    return tempest


def _first_id(conn: Any, url: str, key: str, container: str, name: str) -> str:
    listed = cloudrest.get(conn, url, container, name=name)[key]
    items = [item for item in listed if item.get("name") == name]
    if not items:
        raise DietStackError(
            f"{name!r} not found",
            hint="run `dietstack deploy` and `dietstack image add tiny` first",
        )
    return str(items[0]["id"])


def config(env: Env, admin: Any, image_name: str, microversions: bool = False) -> str:
    """tempest.conf for this cloud. With `microversions`, tests that need a newer
    compute API than the base one run too (e.g. `block_migration: auto`, 2.25);
    the smoke set keeps the base version it is measured with."""
    image = _first_id(admin, env.url(glance.PORT, "/v2/images"), "images", "glance-api", image_name)
    flavors = cloudrest.get(admin, env.url(nova.PORT, "/v2.1/flavors"), "nova-api")["flavors"]
    by_name = {flavor["name"]: flavor["id"] for flavor in flavors}
    public = _first_id(
        admin,
        env.url(neutron.PORT, "/v2.0/networks"),
        "networks",
        "neutron-server",
        neutron.PHYSNET,
    )
    # Tempest otherwise expects the extensions of agent-based ML2 (DVR, agent schedulers).
    extensions = cloudrest.get(admin, env.url(neutron.PORT, "/v2.0/extensions"), "neutron-server")
    aliases = ",".join(sorted(extension["alias"] for extension in extensions["extensions"]))
    tiny, small = cloudsetup.FLAVORS[0].name, cloudsetup.FLAVORS[1].name
    # Instances move between nodes once there are two: live (block migration, as
    # instance disks are local; volumes too) and cold.
    migrates = str(len(env.compute_nodes) > 1).lower()
    sections = {
        "DEFAULT": {"log_file": "tempest.log"},
        "auth": {
            "admin_username": "admin",
            "admin_password": env.secrets["admin_password"],
            "admin_project_name": "admin",
            "admin_domain_name": "Default",
            "use_dynamic_credentials": "true",
            "tempest_roles": "member",
        },
        "identity": {
            "uri_v3": env.keystone_url,
            "auth_version": "v3",
            "region": "RegionOne",
            # Every API's certificate is verified, with the cloud's CA.
            "ca_certificates_file": cloudapi.ca_file(env),
            "disable_ssl_certificate_validation": "false",
        },
        "identity-feature-enabled": {"api_v2": "false"},
        "compute": {
            "image_ref": image,
            "image_ref_alt": image,
            "flavor_ref": by_name[tiny],
            "flavor_ref_alt": by_name[small],
            "min_compute_nodes": str(len(env.compute_nodes)),
            "build_timeout": "600",
            **({"max_microversion": "latest"} if microversions else {}),
        },
        "compute-feature-enabled": {
            "console_output": "true",
            "live_migration": migrates,
            "block_migration_for_live_migration": migrates,
            "volume_backed_live_migration": migrates,
            # Volumes are NFS files, not iSCSI targets.
            "block_migrate_cinder_iscsi": "false",
            "cold_migration": migrates,
            "vnc_console": "true",
            "serial_console": "false",
            "attach_encrypted_volume": "false",
            # Tempest reads a config drive with util-linux blkid, which the tiny
            # image lacks (its own init reads config drives with busybox).
            "config_drive": "false",
        },
        "network": {
            "public_network_id": public,
            "floating_network_name": neutron.PHYSNET,
            "project_network_cidr": "10.100.0.0/16",
            "project_networks_reachable": "false",
        },
        "network-feature-enabled": {"ipv6": "false", "api_extensions": aliases},
        # The tiny test image runs dropbear and takes the key pair from metadata.
        "validation": {
            "run_validation": "true",
            "connect_method": "floating",
            "auth_method": "keypair",
            "image_ssh_user": "root",
            "image_alt_ssh_user": "root",
            "ip_version_for_ssh": "4",
        },
        "scenario": {"dhcp_client": "udhcpc"},
        "volume": {
            "catalog_type": cinder.ENDPOINTS[0].service_type,
            "backend_names": "nfs",
            "build_timeout": "600",
        },
        "volume-feature-enabled": {"backup": "false"},
        "service_available": {
            "cinder": "true",
            "neutron": "true",
            "glance": "true",
            "nova": "true",
            "swift": "false",
            "horizon": "false",
            "heat": "false",
        },
    }
    return "".join(
        f"[{name}]\n" + "".join(f"{key} = {value}\n" for key, value in options.items()) + "\n"
        for name, options in sections.items()
    )


def run(
    env: Env, data_dir: Path, test_set: str, image_name: str, say: Callable[[str], None]
) -> TempestResult:
    home = data_dir / "tempest"
    tempest = install(home, str(env.settings["release"]), say)
    workspace = home / "workspace"
    if not (workspace / "etc").exists():
        # A registry of our own: Tempest's default one, in ~/.tempest, is shared by
        # every cloud on the host and refuses a second workspace of the same name.
        registry = home / "workspaces.yaml"
        _run(
            [str(tempest), "init", "--workspace-path", str(registry), str(workspace)],
            "creating the Tempest workspace",
        )
    conf = workspace / "etc" / "tempest.conf"
    conf.write_text(config(env, cloudapi.admin(env), image_name, microversions=test_set != "smoke"))
    conf.chmod(0o600)
    say(f"running Tempest's {test_set} tests one at a time (this takes a while)")
    selector = ["--smoke"] if test_set == "smoke" else ["--regex", test_set]
    result = subprocess.run(
        [str(tempest), "run", *selector, "--concurrency", "1"],
        capture_output=True,
        text=True,
        cwd=workspace,
        # Tempest's cloud is tempest.conf's alone, never the user's OS_* variables.
        env={key: value for key, value in os.environ.items() if not key.startswith("OS_")},
    )
    log = workspace / "dietstack-tempest-run.log"
    log.write_text(result.stdout + result.stderr)
    totals = {name: int(count) for name, count in TOTALS.findall(result.stdout)}
    if not totals:
        raise DietStackError(
            "Tempest did not run",
            details=result.stdout[-2000:] + result.stderr[-2000:],
            hint=f"see {log}",
        )
    return TempestResult(
        totals.get("Passed", 0), totals.get("Skipped", 0), totals.get("Failed", 0), log
    )
