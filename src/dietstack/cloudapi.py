"""The cloud's APIs through openstacksdk, as the admin: what managing nodes asks of
Nova, Placement and Neutron."""

from __future__ import annotations

from typing import Any

import keystoneauth1.exceptions
import openstack
import openstack.exceptions

from dietstack.errors import DietStackError
from dietstack.render import Env
from dietstack.services.common import REGION

#: What a call to the cloud's APIs may raise: the SDK's errors, keystoneauth's
#: (an API that does not answer), and ours (a login that failed).
CLOUD_ERRORS = (
    openstack.exceptions.SDKException,
    keystoneauth1.exceptions.ClientException,
    DietStackError,
)

#: Neutron's names for the agent each node's ovn-controller shows as (the gateway
#: chassis has its own).
OVN_CONTROLLER_AGENTS = ("OVN Controller agent", "OVN Controller Gateway agent")


def admin(env: Env) -> Any:
    """An authenticated openstacksdk connection as the cloud's admin."""
    try:
        return openstack.connect(
            auth_url=env.keystone_url,
            username="admin",
            password=env.secrets["admin_password"],
            project_name="admin",
            user_domain_name="Default",
            project_domain_name="Default",
            region_name=REGION,
            interface="public",
        )
    except openstack.exceptions.SDKException as exc:
        raise DietStackError(f"cannot log in to the cloud as admin: {exc}") from None


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
