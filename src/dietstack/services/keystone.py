"""Keystone: identity, the catalog and tokens (Fernet, keys kept on the data volume)."""

from __future__ import annotations

from dietstack.model import Container, Endpoint, IniFile, Mount
from dietstack.render import Env
from dietstack.services.common import REGION, api_container, bootstrap_container

PORT = 5000
ENDPOINTS = (Endpoint("identity", "keystone", PORT, "/v3", "OpenStack Identity"),)

KEYS = (
    Mount("keystone/fernet-keys", "/etc/keystone/fernet-keys"),
    Mount("keystone/credential-keys", "/etc/keystone/credential-keys"),
)


def config(env: Env) -> IniFile:
    return IniFile(
        "/etc/keystone/keystone.conf",
        {
            "DEFAULT": {"max_token_size": 255},
            "database": {"connection": env.database_url("keystone"), "max_retries": -1},
            "token": {"provider": "fernet", "expiration": 3600 * 12},
            "fernet_tokens": {"key_repository": "/etc/keystone/fernet-keys"},
            "credential": {"key_repository": "/etc/keystone/credential-keys"},
            "cache": {
                "enabled": True,
                # The pooled python-memcached client takes a memcached it cannot
                # reach for a cache miss; pymemcache's raised, and each of Keystone's
                # threads failed requests with a 500 while memcached restarted (and
                # once after, on its dead connection). Misses cost only speed; the
                # server is tried again after a few seconds.
                "backend": "oslo_cache.memcache_pool",
                "memcache_servers": env.memcached_servers,
                "memcache_dead_retry": 5,
            },
        },
    )


#: Requests one Keystone worker serves at once; more than the cores of a small box
#: only queue inside the process instead of in the listen queue.
HASHING_THREADS = 4


def containers(env: Env) -> list[Container]:
    return [
        api_container(
            env,
            "keystone",
            "keystone",
            "keystone.wsgi.api:application",
            PORT,
            (config(env),),
            KEYS,
            health_path="/v3",
            depends_on=("mariadb", "memcached"),
            # Checking a password is a bcrypt hash of about 0.2 s, during which the
            # hashing library lets go of Python's lock: with threads, one worker
            # checks as many passwords at once as the host has cores.
            uwsgi_extra={"threads": HASHING_THREADS},
        )
    ]


def bootstrap(env: Env) -> Container:
    url = env.keystone_url
    # Expand and migrate while the old Keystone may still run; contract once every
    # service is new (an upgrade runs this again with its pins lifted).
    contract = "" if env.upgrading else "keystone-manage db_sync --contract\n"
    script = f"""
keystone-manage db_sync --expand
keystone-manage db_sync --migrate
{contract}# Keys are made once and kept: new ones would invalidate every token and credential.
[ -e /etc/keystone/fernet-keys/0 ] || \\
    keystone-manage fernet_setup --keystone-user root --keystone-group root
[ -e /etc/keystone/credential-keys/0 ] || \\
    keystone-manage credential_setup --keystone-user root --keystone-group root
# The directories are bind mounts made by Docker (world-readable); the keys are not.
chmod 0700 /etc/keystone/fernet-keys /etc/keystone/credential-keys
OS_BOOTSTRAP_PASSWORD='{env.secrets["admin_password"]}' keystone-manage bootstrap \\
    --bootstrap-username admin --bootstrap-project-name admin \\
    --bootstrap-role-name admin --bootstrap-service-name keystone \\
    --bootstrap-region-id {REGION} \\
    --bootstrap-admin-url {url} --bootstrap-internal-url {url} --bootstrap-public-url {url}
"""
    return bootstrap_container("keystone-bootstrap", "keystone", script, (config(env),), KEYS)
