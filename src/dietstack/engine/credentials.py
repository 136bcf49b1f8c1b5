"""Credentials for the `openstack` client: clouds.yaml and openrc exports."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import yaml

from dietstack.apis import cloudapi
from dietstack.hosts import files
from dietstack.render import Env
from dietstack.services.common import REGION

CLOUDS_YAML = Path("/etc/openstack/clouds.yaml")
CLOUDS = ("admin", "demo")


def cloud(env: Env, name: str) -> dict[str, Any]:
    user, project, secret = {
        "admin": ("admin", "admin", "admin_password"),
        "demo": ("demo", "demo", "demo_password"),
    }[name]
    return {
        "auth": {
            "auth_url": env.keystone_url,
            "username": user,
            "password": env.secrets[secret],
            "project_name": project,
            "user_domain_name": "Default",
            "project_domain_name": "Default",
        },
        "region_name": REGION,
        "interface": "public",
        "identity_api_version": 3,
        # The cloud's own CA: the client, openstacksdk and Ansible verify with it.
        "cacert": cloudapi.ca_file(env),
    }


def clouds_yaml(env: Env) -> str:
    body = {"clouds": {name: cloud(env, name) for name in CLOUDS}}
    return "# Written by `dietstack deploy`.\n" + yaml.safe_dump(body, sort_keys=False)


def write_clouds_yaml(env: Env, path: Path = CLOUDS_YAML) -> None:
    """Readable by root only: it holds the admin password."""
    text = clouds_yaml(env)
    if path.exists() and path.read_text() == text:
        return
    files.write_atomic(path, text, mode=0o600)


def openrc(env: Env, name: str) -> str:
    auth = cloud(env, name)["auth"]
    exports = {
        "OS_AUTH_URL": auth["auth_url"],
        "OS_USERNAME": auth["username"],
        "OS_PASSWORD": auth["password"],
        "OS_PROJECT_NAME": auth["project_name"],
        "OS_USER_DOMAIN_NAME": "Default",
        "OS_PROJECT_DOMAIN_NAME": "Default",
        "OS_REGION_NAME": REGION,
        "OS_IDENTITY_API_VERSION": "3",
        "OS_INTERFACE": "public",
        "OS_CACERT": cloud(env, name)["cacert"],
    }
    return "".join(f"export {key}={shlex.quote(str(value))}\n" for key, value in exports.items())
