"""Heat: orchestration, with its native and CloudFormation-compatible APIs and its
engine, all three in one process (each API worker runs one engine).

Stacks create users for their servers (wait conditions, signals) in a domain
of their own, administered by `heat_domain_admin`.
"""

from __future__ import annotations

from dietstack.model import PUBLIC_CA, USERS, Container, Endpoint, IniFile, Port
from dietstack.render import Env
from dietstack.services.common import (
    api_container,
    bootstrap_container,
    combine,
    keystone_authtoken,
    keystone_client,
    messaging,
)

PORT = 8004
CFN_PORT = 8000
ENDPOINTS = (
    Endpoint("orchestration", "heat", PORT, "/v1/%(project_id)s", "Orchestration"),
    Endpoint("cloudformation", "heat-cfn", CFN_PORT, "/v1", "Orchestration (CloudFormation)"),
)
#: The WSGI module that loads both APIs and then starts heat-engine in the same worker.
ENGINE_BESIDE_APIS = "dietstack.start.heat_services:application"
STACK_DOMAIN = "heat"
STACK_DOMAIN_ADMIN = "heat_domain_admin"


def config(env: Env) -> IniFile:
    cfn = env.url(CFN_PORT)
    return IniFile(
        "/etc/heat/heat.conf",
        combine(
            {
                "DEFAULT": {
                    # Servers in stacks call back here; it must be reachable from VMs.
                    "heat_metadata_server_url": cfn,
                    "heat_waitcondition_server_url": f"{cfn}/v1/waitcondition",
                    # What heat-cfntools in a guest is told: HTTPS, but without the
                    # cloud's CA (a guest image does not hold it) it cannot verify.
                    "instance_connection_is_secure": True,
                    "instance_connection_https_validate_certificates": False,
                    "stack_user_domain_name": STACK_DOMAIN,
                    "stack_domain_admin": STACK_DOMAIN_ADMIN,
                    "stack_domain_admin_password": env.secrets["heat_domain_admin_password"],
                    "auth_encryption_key": env.secrets["heat_auth_encryption_key"],
                    "region_name_for_services": "RegionOne",
                    "environment_dir": "/opt/openstack/etc/heat/environment.d",
                    "template_dir": "/opt/openstack/etc/heat/templates",
                },
                "database": {"connection": env.database_url("heat"), "max_retries": -1},
                "keystone_authtoken": keystone_authtoken(env, "heat"),
                # Heat adds the stack's trust to this login: a project beside it
                # would make keystoneauth refuse (one scope only), so none is given.
                "trustee": {
                    key: value
                    for key, value in keystone_client(env, "heat").items()
                    if key not in ("project_name", "project_domain_name")
                },
                # Heat's own clients of the other APIs; the keystone one has its own section.
                "clients": {"ca_file": PUBLIC_CA},
                "clients_keystone": {"auth_uri": env.url(5000), "ca_file": PUBLIC_CA},
                # 2026.2 removed [ec2authtoken] ca_file: keystoneauth's cafile is read.
                "ec2authtoken": keystone_client(env, "heat")
                | ({} if env.release_at_least("2026.2") else {"ca_file": PUBLIC_CA}),
                "paste_deploy": {"api_paste_config": "/opt/openstack/etc/heat/api-paste.ini"},
                "oslo_concurrency": {"lock_path": "/var/lib/heat/tmp"},
            },
            messaging(env),
        ),
    )


def containers(env: Env) -> list[Container]:
    # One process serves both APIs and runs the engine (dietstack/start/heat_services.py).
    return [
        api_container(
            env,
            "heat-api",
            "heat",
            "heat.wsgi.api:application",
            PORT,
            (config(env),),
            depends_on=("keystone", "rabbitmq"),
            # The CloudFormation API shares heat.conf: one process serves both.
            # Instances signal wait conditions through it: the cloud's users may reach it.
            sisters=(
                (
                    Port(CFN_PORT, USERS, "Heat CloudFormation API (wait condition signals)"),
                    "heat.wsgi.cfn:application",
                ),
            ),
            uwsgi_extra={"module": ENGINE_BESIDE_APIS},
        ),
    ]


def bootstrap(env: Env) -> Container:
    return bootstrap_container("heat-bootstrap", "heat", "heat-manage db_sync\n", (config(env),))
