"""The cloud's APIs through openstacksdk, as DietStack's own accounts (the admin,
and the demo user for verify), and what managing nodes asks of Nova, Placement
and Neutron.

A command logs in once: the connection of an account is kept for the process,
and keystoneauth fetches a new token by itself when the old one expires. Only
the Env says where and as whom: the user's OS_* variables and clouds.yaml (e.g.
after `dietstack openrc demo`) are never read.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import keystoneauth1.exceptions
import openstack.connection
import openstack.exceptions
from keystoneauth1 import session as ks_session
from keystoneauth1.identity import v3

from dietstack.errors import DietStackError
from dietstack.hosts import files
from dietstack.model import PUBLIC_TRUST
from dietstack.render import Env
from dietstack.services.common import REGION

#: What a failed SDK or keystoneauth call raises (keystoneauth's: an API that does
#: not answer).
API_ERRORS = (openstack.exceptions.SDKException, keystoneauth1.exceptions.ClientException)
#: What a call to the cloud's APIs may raise: those, and ours (a login that failed).
CLOUD_ERRORS = (*API_ERRORS, DietStackError)

#: Neutron's names for the agent each node's ovn-controller shows as (the gateway
#: chassis has its own).
OVN_CONTROLLER_AGENTS = ("OVN Controller agent", "OVN Controller Gateway agent")

#: Seconds one API call may take before it counts as failed.
TIMEOUT = 30
ADMIN = "admin"
#: DietStack's accounts and projects are all in Keystone's default domain.
DOMAIN_ID = "default"

#: What this host's clients verify the cloud's APIs with: DietStack's calls, and the
#: openstack client through clouds.yaml and openrc.
CA_FILE = Path("/etc/openstack/dietstack-ca.pem")

#: Logged-in connections by (auth URL, user, password, project). A failed login
#: is not kept, so deploy may ask again once Keystone is up.
_connections: dict[tuple[str, str, str, str, str], openstack.connection.Connection] = {}
_lock = threading.Lock()


def ca_file(env: Env, path: Path | None = None) -> str:
    """The cloud's CA as a file (written when missing or changed): the APIs'
    certificates are verified with it, never with certifi's public CAs."""
    trust = env.secrets.get(PUBLIC_TRUST, "")
    if "BEGIN CERTIFICATE" not in trust:
        raise DietStackError(
            "this cloud has no CA yet (it was deployed before DietStack served HTTPS)",
            hint="run `dietstack deploy`: it makes the CA and moves every API to HTTPS",
        )
    path = path or CA_FILE
    if not path.is_file() or path.read_text() != trust:
        files.write_atomic(path, trust, mode=0o644)
    return str(path)


def build(
    auth_url: str, user: str, password: str, project: str, verify: str
) -> openstack.connection.Connection:
    """A connection that has not logged in yet, configured from the arguments alone.

    Handing the SDK a ready session is what keeps it from consulting OS_CLOUD,
    OS_* variables and clouds.yaml: it then builds its configuration from the
    session and the keywords given here only."""
    auth = v3.Password(
        auth_url=auth_url,
        username=user,
        password=password,
        project_name=project,
        user_domain_id=DOMAIN_ID,
        project_domain_id=DOMAIN_ID,
    )
    session = ks_session.Session(auth=auth, timeout=TIMEOUT, verify=verify)
    return openstack.connection.Connection(
        session=session,
        region_name=REGION,
        interface="public",
    )


def connect(
    auth_url: str, user: str, password: str, project: str, verify: str
) -> openstack.connection.Connection:
    """The process's logged-in connection of `user` in `project`; `verify` is the CA
    file the APIs' certificates are checked with."""
    key = (auth_url, user, password, project, verify)
    with _lock:
        conn = _connections.get(key)
        if conn is None:
            conn = build(auth_url, user, password, project, verify)
            # Log in now, so that a wrong password or a Keystone that is not up
            # shows here, as such, and is not kept.
            with api_errors("keystone", f"cannot log in to {auth_url} as {user}"):
                conn.session.get_token()
            _connections[key] = conn
        return conn


def admin(env: Env) -> openstack.connection.Connection:
    """The cloud's admin, in the admin project."""
    return connect(env.keystone_url, ADMIN, env.secrets["admin_password"], ADMIN, ca_file(env))


def forget() -> None:
    """Drop every kept connection (the next call logs in again)."""
    with _lock:
        _connections.clear()


@contextmanager
def api_errors(container: str, doing: str = "") -> Iterator[None]:
    """Turns a failed SDK or keystoneauth call into a DietStackError naming the
    container that serves the API, so that the user sees no traceback."""
    try:
        yield
    except API_ERRORS as exc:
        what = doing or f"a call to {container} failed"
        raise DietStackError(
            f"{what}: {exc.__class__.__name__}: {exc}",
            hint=f"check the {container} container: `docker logs {container}`",
        ) from None


def instances_on(conn: Any, host: str) -> list[Any]:
    # The query is `compute_host`: an unknown keyword would filter everything out.
    return list(conn.compute.servers(all_projects=True, compute_host=host))


def compute_service(conn: Any, host: str) -> Any | None:
    for service in conn.compute.services(host=host, binary="nova-compute"):
        return service
    return None


def ovn_agents(conn: Any, host: str) -> list[Any]:
    return [agent for agent in conn.network.agents(host=host)]


def chassis_alive(conn: Any, host: str) -> bool:
    return any(
        agent.agent_type in OVN_CONTROLLER_AGENTS and agent.is_alive
        for agent in ovn_agents(conn, host)
    )


def server_records(conn: Any) -> list[dict[str, Any]]:
    """Every server of every project, as a backup notes them."""
    return [
        {
            "id": server.id,
            "name": server.name,
            "status": server.status,
            "volume_backed": not _image_id(server),
        }
        for server in conn.compute.servers(all_projects=True)
    ]


def _image_id(server: Any) -> str:
    """The server's image; none for a server booted from a volume (Nova shows "")."""
    image = getattr(server, "image", None)
    if isinstance(image, dict):
        return str(image.get("id") or "")
    return str(image or "")
