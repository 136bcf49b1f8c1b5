"""Pieces every OpenStack service description shares.

Only what is the same across services lives here: how an API is served by
uWSGI, how a service authenticates with Keystone, and the health checks.
"""

from __future__ import annotations

from dietstack.model import (
    IN_PROCESS,
    PUBLIC_CA,
    PUBLIC_CERT,
    PUBLIC_KEY,
    PUBLIC_TRUST,
    START_PROGRAM,
    USERS,
    ConfigFile,
    Container,
    Healthcheck,
    IniFile,
    Mount,
    Port,
    Sections,
    TextFile,
    tls_secret_names,
)
from dietstack.render import AMQP_PORT, AMQPS_PORT, Env

REGION = "RegionOne"


def http_health(env: Env, port: int, path: str = "/") -> Healthcheck:
    """Healthy when the API answers HTTPS at all (401 and 300 count: it is serving),
    with a certificate the cloud's clients trust."""
    return Healthcheck((START_PROGRAM, "--health-http", env.url(port, path)))


def public_ca(env: Env) -> TextFile:
    """What every caller of the APIs verifies their certificate with."""
    return TextFile(PUBLIC_CA, env.secrets[PUBLIC_TRUST], 0o644)


def server_tls(env: Env) -> tuple[TextFile, TextFile]:
    """The certificate and key an API, the dashboard or the console proxy presents."""
    return (
        TextFile(PUBLIC_CERT, env.secrets["tls_server_certificate"], 0o644),
        TextFile(PUBLIC_KEY, env.secrets["tls_server_key"], 0o600),
    )


def https_socket(address: str) -> str:
    """uWSGI's HTTPS socket on `address` (HOST:PORT) with the cloud's certificate."""
    return f"{address},{PUBLIC_CERT},{PUBLIC_KEY}"


def tcp_health(host: str, port: int) -> Healthcheck:
    return Healthcheck((START_PROGRAM, "--health-tcp", f"{host}:{port}"), start_period=60)


def connected_health(*ports: int) -> Healthcheck:
    """Healthy while the daemon holds a connection to one of these ports."""
    return Healthcheck(
        (START_PROGRAM, "--health-connected", ",".join(map(str, ports))), start_period=60
    )


#: What a daemon without an API stays connected to while it works: RabbitMQ over
#: loopback on the control node, over TLS from the others.
RABBITMQ = (AMQP_PORT, AMQPS_PORT)
MARIADB = 3306
#: Where nova-compute finds what it presents to RabbitMQ: the node's certificate.
MESSAGING_TLS_DIR = "/etc/dietstack-tls/messaging"


def keystone_client(env: Env, service: str) -> dict[str, object]:
    """Password credentials of the service's own user, for calling other services."""
    return {
        "auth_url": env.keystone_url,
        "auth_type": "password",
        "project_domain_name": "Default",
        "user_domain_name": "Default",
        "project_name": "service",
        "username": service,
        "password": env.secrets[f"{service}_keystone_password"],
        "region_name": REGION,
        # keystoneauth verifies the APIs' certificates with certifi's bundle by default.
        "cafile": PUBLIC_CA,
    }


def keystone_authtoken(env: Env, service: str) -> dict[str, object]:
    """keystonemiddleware: validate tokens, authenticating as the service's own user."""
    return keystone_client(env, service) | {
        "www_authenticate_uri": env.keystone_url,
        "memcached_servers": env.memcached_servers,
        # Cached tokens are signed and encrypted with the cloud's key: a process that
        # reaches memcached can neither read nor forge a validation.
        "memcache_security_strategy": "ENCRYPT",
        "memcache_secret_key": env.secrets["memcache_secret_key"],
        "service_token_roles_required": True,
    }


def service_user(env: Env, service: str, section: str = "service_user") -> Sections:
    """Credentials a service uses to call another service on a user's behalf."""
    return {section: {"send_service_user_token": True} | keystone_client(env, service)}


def nodes_ca_files(
    env: Env, secrets: tuple[str, str], ca: str, cert: str, key: str
) -> tuple[TextFile, ...]:
    """The nodes' CA, and the certificate and key of `secrets` (key name, certificate
    name), at these paths: what a TLS end between nodes presents and checks by."""
    key_name, cert_name = secrets
    return (
        TextFile(ca, env.secrets["libvirt_ca_certificate"], 0o644),
        TextFile(cert, env.secrets[cert_name], 0o644),
        TextFile(key, env.secrets[key_name], 0o600),
    )


def messaging_tls_files(env: Env) -> tuple[TextFile, ...]:
    """What a compute node's RabbitMQ client presents and verifies the server with:
    its own certificate and the nodes' CA (none on the control node: loopback)."""
    if env.is_control:
        return ()
    return nodes_ca_files(
        env,
        tls_secret_names(env.node),
        f"{MESSAGING_TLS_DIR}/ca.pem",
        f"{MESSAGING_TLS_DIR}/node.crt",
        f"{MESSAGING_TLS_DIR}/node.key",
    )


def combine(*parts: Sections) -> Sections:
    """Merge section dicts, later parts adding to (and overriding) earlier ones."""
    merged: Sections = {}
    for part in parts:
        for section, options in part.items():
            merged.setdefault(section, {}).update(options)
    return merged


#: How often Nova's and Cinder's daemons write "alive" to their service list, and
#: how old that may get before a daemon counts as down. Upstream's 10 and 60 s
#: suit hundreds of hosts watched closely; a small cloud pays the writes (and, from
#: a compute node, a message through RabbitMQ to the conductor) every minute of
#: the day, and a dead daemon still shows down within two minutes.
HEARTBEAT = {"report_interval": 30, "service_down_time": 120}


#: AMQP heartbeats on every daemon's connections to RabbitMQ. Each connection wakes
#: its thread every threshold / rate / 2 seconds to send and read them: upstream's
#: 60 s and 3 wake every 10 s, on each of the cloud's few dozen connections, all day.
#: A single local broker needs no quicker detection of a dead peer than two
#: minutes (a broker that restarts closes the connections, which the daemons see
#: at once), so every 30 s.
HEARTBEATS = {"heartbeat_timeout_threshold": 120, "heartbeat_rate": 2}


def messaging(env: Env) -> Sections:
    """oslo.messaging over the single RabbitMQ node (over TLS from a compute node)."""
    tls: dict[str, object] = {}
    if not env.is_control:
        tls = {
            "ssl": True,
            "ssl_ca_file": f"{MESSAGING_TLS_DIR}/ca.pem",
            "ssl_cert_file": f"{MESSAGING_TLS_DIR}/node.crt",
            "ssl_key_file": f"{MESSAGING_TLS_DIR}/node.key",
        }
    return {
        # A single node: oslo.messaging's classic queues are the lightest choice.
        "DEFAULT": {
            "transport_url": env.transport_url,
            # oslo.service waits up to 60 s by default for RPC work to drain on
            # SIGTERM (nova's conductor and scheduler then outwait `docker stop`);
            # a small cloud's calls finish in well under this.
            "graceful_shutdown_timeout": 5,
        },
        "oslo_messaging_rabbit": {"rabbit_quorum_queue": False, **HEARTBEATS, **tls},
        "oslo_messaging_notifications": {"driver": "noop"},
    }


def uwsgi_file(
    env: Env, path: str, apps: tuple[tuple[int, str], ...], extra: dict[str, object]
) -> IniFile:
    """uWSGI serving WSGI applications straight over HTTPS on the management address.

    Several (port, module) applications are sister APIs of one project served by one
    process: uWSGI's own `for` loop opens a socket per port, and the dispatcher in
    dietstack.start.wsgi_ports picks the application by the port a request came in on.
    """
    (port, module), *sisters = apps
    options: dict[str, object] = {
        "https-socket": https_socket(f"{env.ip}:{port}"),
        "module": module,
        "master": True,
        "processes": env.workers,
        "threads": 1,
        "enable-threads": True,
        "lazy-apps": True,
        "die-on-term": True,
        "need-app": True,
        "buffer-size": 65535,
        "thunder-lock": True,
        "hook-master-start": "unix_signal:15 gracefully_kill_them_all",
        "add-header": "Connection: close",
        "disable-logging": True,
        "log-4xx": True,
        "log-5xx": True,
        # Before the application: RPC replies are waited on, not polled for.
        "pythonpath": "/usr/lib/dietstack",
        "import": "dietstack.start.api_patches",
    }
    if sisters:
        del options["https-socket"]
        options |= {
            "module": "dietstack.start.wsgi_ports:application",
            "env": "DIETSTACK_WSGI_APPS=" + " ".join(f"{p}={m}" for p, m in apps),
        }
    options.update(extra)
    # An extra of None removes a default (e.g. https-socket when the router is used).
    options = {key: value for key, value in options.items() if value is not None}
    if sisters:
        # The loop comes last: uWSGI reads its options in order.
        loop = " ".join(f"{env.ip}:{p}" for p, _ in apps)
        options |= {"for": loop, "https-socket": https_socket("%(_)")}
        options["endfor"] = ""
    return IniFile(path, {"uwsgi": options})


def api_container(
    env: Env,
    name: str,
    service: str,
    module: str,
    port: int,
    files: tuple[ConfigFile, ...],
    volumes: tuple[Mount, ...] = (),
    health_path: str = "/",
    uwsgi_extra: dict[str, object] | None = None,
    depends_on: tuple[str, ...] = (),
    sisters: tuple[tuple[Port, str], ...] = (),
) -> Container:
    """An API under uWSGI, for the cloud's users; each of `sisters` (port, module)
    is another API served by the same process."""
    apps = ((port, module), *((sister.number, app) for sister, app in sisters))
    own = Port(port, USERS, f"{service.capitalize()} API")
    uwsgi = uwsgi_file(env, f"/etc/{service}/uwsgi-{name}.ini", apps, uwsgi_extra or {})
    return Container(
        name=name,
        service=service,
        image="openstack",
        command=("uwsgi", "--ini", uwsgi.path),
        files=(*files, uwsgi, public_ca(env), *server_tls(env)),
        volumes=volumes,
        healthcheck=http_health(env, port, health_path),
        depends_on=depends_on,
        ports=(own, *(sister for sister, _ in sisters)),
    )


def worker_container(
    env: Env,
    name: str,
    service: str,
    command: tuple[str, ...],
    files: tuple[ConfigFile, ...],
    volumes: tuple[Mount, ...] = (),
    depends_on: tuple[str, ...] = (),
    connected_to: tuple[int, ...] = RABBITMQ,
) -> Container:
    """A daemon without an API, healthy while connected to what it works through.
    It runs with its privileged calls and its one worker in its own process."""
    return Container(
        name=name,
        service=service,
        image="openstack",
        command=(*IN_PROCESS, *command),
        files=(*files, public_ca(env)),
        volumes=volumes,
        healthcheck=connected_health(*connected_to),
        depends_on=depends_on,
    )


def bootstrap_container(
    name: str,
    service: str,
    script: str,
    files: tuple[IniFile, ...],
    volumes: tuple[Mount, ...] = (),
) -> Container:
    """A one-shot step: its script is a rendered file, so secrets never appear in
    the container's command line or in `docker inspect`."""
    path = f"/etc/{service}/dietstack-bootstrap.sh"
    return Container(
        name=name,
        service=service,
        image="openstack",
        command=("sh", "-eu", path),
        files=(*files, TextFile(path, script, 0o700)),
        volumes=volumes,
        oneshot=True,
    )
