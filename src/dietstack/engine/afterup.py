"""What the control node does once its services are up: the databases (and those a
restore left to load), Keystone's accounts and catalog, the public network, the
mapping of compute hosts into cell1, and the first cloud resources.

This is the one place where deploy acts once a service's containers are healthy:
`AFTER_SERVICE` names the work per service, `finish_control` what follows the last.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

from dietstack.apis import cloudapi
from dietstack.engine import cloudsetup, credentials, register, servicecheck
from dietstack.engine.deployment import LABEL, Deployment, StepFailed
from dietstack.errors import DietStackError
from dietstack.hosts.runtime import DockerRuntime
from dietstack.services import mariadb

#: How long Nova's daemons may take to report in once their containers are healthy.
SERVING_TIMEOUT = 180
#: The SQL dump `dietstack restore` leaves in the state directory, loaded once
#: MariaDB runs.
PENDING_DUMP = "restore-databases.sql"


def load_pending_dump(runtime: DockerRuntime, data_dir: Path) -> bool:
    """Load the databases restore left behind, once MariaDB runs; True if it did."""
    pending = data_dir / "state" / PENDING_DUMP
    if not pending.exists():
        return False
    inside = data_dir / "mariadb" / ".dietstack-restore.sql"
    shutil.move(str(pending), inside)
    command = "mariadb --protocol=socket < /var/lib/mysql/.dietstack-restore.sql"
    code, output = runtime.exec("mariadb", ["sh", "-c", command])
    if code != 0:
        shutil.move(str(inside), pending)  # a later deploy tries again
        raise DietStackError(f"loading the restored databases failed: {output.strip()[-2000:]}")
    inside.unlink()
    return True


def wait_serving(control: Deployment, node: Deployment) -> None:
    """A node is done when its reporting daemons (Nova's, Cinder's, Heat's) take
    work, not only when they run.

    Asked of Nova's API with the control node's credentials (a compute node has no
    admin password)."""
    node.progress.say(f"{node.node}: waiting for the services to report in")
    deadline = time.monotonic() + SERVING_TIMEOUT
    while True:
        bus = control.runtime.containers(LABEL).get("rabbitmq")
        rows = servicecheck.collect(
            control.env,
            node.env,
            node.runtime.containers(LABEL),
            bus.started_at if bus is not None else "",
        )
        waiting = [row for row in rows if not row.ok]
        if not waiting:
            return
        if time.monotonic() > deadline:
            first = waiting[0]
            raise StepFailed(
                node.node,
                first.name,
                f"reporting to its project's service list ({first.state})",
                node.runtime.logs_tail(servicecheck.REPORTING.get(first.name, first.name)),
            )
        time.sleep(2)


#: Work on the control node right after one of its services' containers are up.
AFTER_SERVICE: dict[str, Callable[[Deployment], None]] = {}


def _setup_databases(deployment: Deployment) -> None:
    # Before any service's bootstrap: what `dietstack restore` brought back.
    if load_pending_dump(deployment.runtime, deployment.paths.data_dir):
        deployment.progress.say("Loaded the databases of the backup")
    exit_code, output = deployment.runtime.exec("mariadb", list(mariadb.SETUP_COMMAND))
    if exit_code != 0:
        raise StepFailed(deployment.node, "mariadb", "creating databases and users", output)


def _register_keystone(deployment: Deployment) -> None:
    register.register_all(deployment.env)


def _public_network(deployment: Deployment) -> None:
    cloudsetup.ensure_public_network(cloudapi.admin(deployment.env), deployment.env)


AFTER_SERVICE["mariadb"] = _setup_databases
AFTER_SERVICE["keystone"] = _register_keystone
AFTER_SERVICE["neutron"] = _public_network


def map_compute_host(control: Deployment, node: str, timeout: float = 120) -> None:
    """Map a node's nova-compute into cell1 now, not at the next periodic discovery.

    Whether it is mapped is read from the database: `nova-manage` takes seconds to
    start, and a deploy with nothing to change should not pay that."""
    deadline = time.monotonic() + timeout
    output = ""
    while not _host_mapped(control, node):
        if time.monotonic() > deadline:
            raise StepFailed(node, "nova-compute", "mapping the compute host to cell1", output)
        _, output = control.runtime.exec(
            "nova-conductor", ["nova-manage", "cell_v2", "discover_hosts", "--by-service"]
        )
        time.sleep(1)


def _host_mapped(control: Deployment, node: str) -> bool:
    code, output = control.runtime.exec("mariadb", list(mariadb.HOST_MAPPINGS_QUERY))
    return code == 0 and node in output.split()


def finish_control(control: Deployment) -> None:
    """What the control node does once its containers are up."""
    map_compute_host(control, control.node)
    wait_serving(control, control)
    control.progress.say("Flavors, the demo network and its security group rules")
    cloudsetup.ensure_all(control.env)
    credentials.write_clouds_yaml(control.env)
