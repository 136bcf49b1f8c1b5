"""The steps of an upgrade that run upstream's own tools in the running containers:
`nova-status upgrade check`, and the online data migrations of Nova and Cinder.

Each returns what went wrong (empty: nothing) or raises StepFailed with the tool's
output, naming the container it ran in.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dietstack.engine.deployment import StepFailed
from dietstack.hosts.runtime import DockerRuntime

#: nova-status: 0 every check passed, 1 a warning (the upgrade may go on), 2 a
#: failure, 255 an error running the checks.
NOVA_STATUS_WARNING = 1
#: `online_data_migrations`: 0 done, 1 more rows to migrate, 2 a migration failed.
MIGRATIONS_DONE, MIGRATIONS_MORE = 0, 1
#: Rows per pass: each pass is one transaction per migration, small enough to keep
#: the databases answering meanwhile.
MIGRATION_BATCH = "1000"
#: Passes before giving up (a small cloud needs one or two).
MAX_PASSES = 50

#: container -> its service's data migration command, one batch of rows per pass
ONLINE_MIGRATIONS = {
    "nova-conductor": ["nova-manage", "db", "online_data_migrations", "--max-count"],
    "cinder-volume": ["cinder-manage", "db", "online_data_migrations", "--max_count"],
}
RESUME = "fix the cause shown above, then run `dietstack upgrade` again: it goes on from there"


def nova_upgrade_check(runtime: DockerRuntime, node: str) -> str:
    """`nova-status upgrade check` on the running release: "" when it passed, else its
    report (a warning passes, and is returned for the user to read)."""
    code, output = runtime.exec("nova-conductor", ["nova-status", "upgrade", "check"])
    if code == 0:
        return ""
    if code == NOVA_STATUS_WARNING:
        return output
    raise StepFailed(
        node,
        "nova-conductor",
        "nova-status upgrade check",
        output,
        hint="fix what the check reports (nothing was changed), then run `dietstack upgrade` again",
    )


def run_online_migrations(runtime: DockerRuntime, node: str, say: Callable[[str], None]) -> None:
    """Every service's online data migrations, pass after pass until none is left."""
    for container, command in ONLINE_MIGRATIONS.items():
        for passes in range(1, MAX_PASSES + 1):
            code, output = runtime.exec(container, [*command, MIGRATION_BATCH])
            if code == MIGRATIONS_DONE:
                say(f"{container}: online data migrations complete ({passes} pass(es))")
                break
            if code != MIGRATIONS_MORE:
                raise StepFailed(node, container, " ".join(command[:3]), output, RESUME)
        else:
            step = f"{' '.join(command[:3])} ({MAX_PASSES} passes, not done)"
            raise StepFailed(node, container, step, output, RESUME)


def refresh_metadata_ports(conn: Any, say: Callable[[str], None]) -> int:
    """Each network's metadata port written again into OVN by the new Neutron.

    Neutron 2026.2's metadata agent reads the network's MTU from the port's OVN
    record, which 2026.1 left empty: an update through the API (the description
    changed and set back) makes the new server write the whole record."""
    ports = list(conn.network.ports(device_owner="network:distributed"))
    for port in ports:
        original = port.description or ""
        conn.network.update_port(port, description=f"{original} ")
        conn.network.update_port(port, description=original)
    say(f"Neutron wrote {len(ports)} metadata port(s) into OVN again")
    return len(ports)
