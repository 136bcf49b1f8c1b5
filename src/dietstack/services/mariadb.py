"""MariaDB: one server, one database and one user per OpenStack service.

Root logs in only through the local socket inside the container, so the
server has no root password that could leak; service users get generated ones.
"""

from __future__ import annotations

from dietstack.model import HOST, Container, IniFile, Mount, Port, TextFile
from dietstack.render import LOOPBACK, Env
from dietstack.services.common import tcp_health

PORT = 3306
SETUP_FILE = "/etc/mysql/dietstack-setup.sql"
#: Run by deploy inside the running container; the SQL (with the passwords) is a
#: rendered file, so no secret appears on a command line.
SETUP_COMMAND = ("mariadb", "--protocol=socket", "-e", f"source {SETUP_FILE}")
#: The compute hosts Nova has mapped to a cell, one per line.
HOST_MAPPINGS_QUERY = (
    "mariadb",
    "--protocol=socket",
    "--batch",
    "--skip-column-names",
    "-e",
    "SELECT host FROM nova_api.host_mappings",
)

#: database name -> owning service (the user that gets all rights on it).
DATABASES = {
    "keystone": "keystone",
    "glance": "glance",
    "placement": "placement",
    "nova_api": "nova",
    "nova": "nova",
    "nova_cell0": "nova",
    "neutron": "neutron",
    "cinder": "cinder",
    "heat": "heat",
}


def containers(env: Env) -> list[Container]:
    config = IniFile(
        "/etc/mysql/mariadb.conf.d/99-dietstack.cnf",
        {
            "mysqld": {
                "bind-address": LOOPBACK,
                "port": PORT,
                "datadir": "/var/lib/mysql",
                "socket": "/run/mysqld/mysqld.sock",
                "skip-name-resolve": True,
                "character-set-server": "utf8mb4",
                "collation-server": "utf8mb4_general_ci",
                "max_connections": 1000,
                # Sized for a small box: the OpenStack databases are tiny.
                "innodb_buffer_pool_size": "64M",
                "innodb_log_file_size": "48M",
                "innodb_log_buffer_size": "4M",
                # Aria and MyISAM hold only MariaDB's own small system tables.
                "aria_pagecache_buffer_size": "8M",
                "key_buffer_size": "8M",
                "query_cache_size": 0,
                "performance_schema": "OFF",
                "table_open_cache": 1000,
                # MariaDB 11.8 (Debian 13) fails a transaction that updates a row
                # another one changed since its snapshot (error 1020), where MySQL
                # and older MariaDB, which OpenStack is written and tested against,
                # wait for the lock. Two logins of one user at once both update its
                # last_active_at: with this on, one fails with a 500.
                "innodb_snapshot_isolation": "OFF",
            },
            "client": {"socket": "/run/mysqld/mysqld.sock"},
        },
        mode=0o644,
    )
    return [
        Container(
            name="mariadb",
            service="mariadb",
            image="mariadb",
            command=("mariadbd", "--user=mysql"),
            files=(config, TextFile(SETUP_FILE, setup_sql(env), mode=0o600)),
            volumes=(Mount("mariadb", "/var/lib/mysql"),),
            environment=(("MALLOC_ARENA_MAX", "2"),),
            healthcheck=tcp_health(LOOPBACK, PORT),
            # Compute nodes reach the databases only through nova-conductor.
            ports=(Port(PORT, HOST, "MariaDB: every service's database"),),
            prepare=(
                "mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld /var/lib/mysql",
                "[ -d /var/lib/mysql/mysql ] || mariadb-install-db --user=mysql "
                "--datadir=/var/lib/mysql --auth-root-authentication-method=socket "
                "--skip-test-db >/dev/null",
            ),
        )
    ]


def setup_sql(env: Env) -> str:
    """Idempotent SQL: creates what is missing and (re)sets every service password."""
    statements = []
    for database, service in DATABASES.items():
        password = env.secrets[f"{service}_database_password"]
        statements.append(f"CREATE DATABASE IF NOT EXISTS `{database}`;")
        statements.append(f"CREATE USER IF NOT EXISTS '{service}'@'%' IDENTIFIED BY '{password}';")
        statements.append(f"ALTER USER '{service}'@'%' IDENTIFIED BY '{password}';")
        statements.append(f"GRANT ALL PRIVILEGES ON `{database}`.* TO '{service}'@'%';")
    return "\n".join(statements) + "\n"
