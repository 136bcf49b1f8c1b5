"""DietStack's in-container start program.

Every DietStack image runs this first (as `dietstack-start`, under tini):

    dietstack-start NAME        render container NAME's files, run its prepare
                                steps, then become its command
    dietstack-start CMD ARG...  just run CMD (for one-off commands; also `--` CMD)
    dietstack-start --health-http URL | --health-tcp HOST:PORT | --health-connected PORTS
                                health checks
    dietstack-start --nova-ssh  run what another node's nova-compute asked for over SSH,
                                if it is one of Nova's file commands (nova_commands.py)
    dietstack-start --heal RETRIES,START_PERIOD,TIMEOUT,ENDS -- CHECK...
                                how the container's watcher runs its check: the
                                container ends when it fails for too long (heal.py)

It reads the node's settings and secrets, mounted read-only at /etc/dietstack,
and user overrides from /etc/dietstack/overrides. It runs on the image's system
Python, so it may only use the standard library and PyYAML.
"""

from __future__ import annotations

import os
import sys

# typing's import costs more than a health check's own work (it is not imported).
TYPE_CHECKING = False

if TYPE_CHECKING:
    import argparse
    import socket

    from dietstack.model import Container

# Each container's watcher runs its health check every minute: the check's path
# imports only what it uses (each import costs CPU at every check), the rest is
# imported where it is needed.


def parse_args(argv: list[str]) -> argparse.Namespace:
    import argparse

    from dietstack import __version__

    parser = argparse.ArgumentParser(
        prog="dietstack-start",
        description="Render a DietStack container's configuration, then run it.",
    )
    parser.add_argument("--version", action="version", version=__version__)
    parser.add_argument("--health-http", metavar="URL", help="healthy if URL answers HTTP")
    parser.add_argument("--health-tcp", metavar="HOST:PORT", help="healthy if a port accepts")
    parser.add_argument(
        "--health-connected",
        metavar="PORT[,PORT]",
        help="healthy if a process here has a connection open to one of these remote ports",
    )
    parser.add_argument("name", nargs="?", help="the DietStack container to start")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="a program to run instead")
    return parser.parse_args(argv)


def health_http(url: str) -> int:
    """Any HTTP answer below 500 means the server is up and serving; over HTTPS, only
    with a certificate for its address that the cloud's CA verifies. A plain socket
    request: http.client's imports alone cost more CPU than the check."""
    import socket

    try:
        scheme, _, rest = url.partition("://")
        address, _, path = rest.partition("/")
        default = "443" if scheme == "https" else "80"
        host, _, port = address.rpartition(":") if ":" in address else (address, "", default)
        if scheme not in ("http", "https") or not host:
            raise ValueError("only http(s)://HOST:PORT/PATH URLs are checked")
        request = f"GET /{path} HTTP/1.0\r\nHost: {address}\r\nConnection: close\r\n\r\n"
        # The address as bytes: a str would import the IDNA codec, at every check.
        where = (host.strip("[]").encode(), int(port))
        with socket.create_connection(where, timeout=8) as plain:  # type: ignore[arg-type]
            connection = _tls(plain, host.strip("[]")) if scheme == "https" else plain
            connection.sendall(request.encode())
            reply = connection.makefile("rb").readline(1024)
        version, _, rest = reply.decode("latin-1").partition(" ")
        if not version.startswith("HTTP/"):
            raise ValueError(f"not an HTTP answer: {reply[:60]!r}")
        status = int(rest.split(maxsplit=1)[0])
    except (OSError, ValueError, IndexError) as exc:
        print(f"unhealthy: {url}: {exc}")
        return 1
    print(f"{url}: HTTP {status}")
    return 0 if status < 500 else 1


def _tls(connection: socket.socket, host: str) -> socket.socket:
    import ssl

    from dietstack.model import PUBLIC_CA

    context = ssl.create_default_context(cafile=PUBLIC_CA)
    return context.wrap_socket(connection, server_hostname=host)


def health_tcp(target: str) -> int:
    import socket

    host, _, port = target.rpartition(":")
    try:
        with socket.create_connection((host.encode(), int(port)), timeout=5):  # type: ignore[arg-type]
            return 0
    except OSError as exc:
        print(f"unhealthy: {target}: {exc}")
        return 1


def _socket_inodes() -> set[str]:
    """Socket inodes held by the processes of this container (its own PID namespace)."""
    inodes: set[str] = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        fd_dir = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            # An fd closed since the listing is skipped, not the whole process.
            try:
                link = os.readlink(f"{fd_dir}/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
    return inodes


def health_connected(ports: str) -> int:
    """For daemons without an API: alive and connected to the message queue or database."""
    wanted = {int(port) for port in ports.split(",")}
    ours = _socket_inodes()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as lines:
                rows = lines.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            established = fields[3] == "01"
            if established and remote_port in wanted and fields[9] in ours:
                return 0
    print(f"unhealthy: no open connection to port(s) {ports}")
    return 1


def start(name: str) -> None:
    import subprocess

    from dietstack import services
    from dietstack.render import CONTAINER_CONFIG_DIR, load_env, render_files, write_files

    env = load_env()
    try:
        container = services.find(env, name)
    except KeyError:
        print(f"dietstack-start: unknown container {name!r}", file=sys.stderr)
        sys.exit(2)
    if holds_withheld_secret(container):
        print(
            f"dietstack-start: {name}: its configuration needs a secret this container was "
            "not given; run `dietstack deploy` to give each container its secrets again",
            file=sys.stderr,
        )
        sys.exit(2)
    write_files(render_files(container, CONTAINER_CONFIG_DIR / "overrides"))
    record_live_hash(container)
    for step in container.prepare:
        result = subprocess.run(["sh", "-ec", step])
        if result.returncode != 0:
            print(f"dietstack-start: {name}: preparing failed: {step}", file=sys.stderr)
            sys.exit(result.returncode)
    watch(container)
    exec_command(list(container.command), dict(container.environment))


def record_live_hash(container: Container) -> None:
    """What the container's live files are now: deploy compares it with what they
    should be, and rewrites them in place when they differ."""
    from dietstack.model import LIVE_HASH_FILE
    from dietstack.render import live_hash

    digest = live_hash(container)
    if digest:
        with open(LIVE_HASH_FILE, "w") as out:
            out.write(digest)


def holds_withheld_secret(container: Container) -> bool:
    import dataclasses
    import json

    from dietstack.render import WITHHELD

    return WITHHELD in json.dumps(dataclasses.asdict(container), default=str)


def exec_command(command: list[str], environment: dict[str, str]) -> None:
    sys.stdout.flush()
    try:
        os.execvpe(command[0], command, {**os.environ, **environment})
    except OSError as exc:
        print(f"dietstack-start: cannot run {command[0]!r}: {exc.strerror}", file=sys.stderr)
        sys.exit(127)


#: Our own checks, run in this process when the watcher asks through --heal.
CHECKS = {
    "--health-http": health_http,
    "--health-tcp": health_tcp,
    "--health-connected": health_connected,
}


def run_check(test: list[str], timeout: int = 10) -> tuple[int, str]:
    """(exit code, what the check printed)."""
    if len(test) == 3 and os.path.basename(test[0]) == "dietstack-start" and test[1] in CHECKS:
        import io

        # Its lines kept for the log (contextlib's redirect costs more to import).
        shown, printed = sys.stdout, io.StringIO()
        sys.stdout = printed
        try:
            return CHECKS[test[1]](test[2]), printed.getvalue()
        finally:
            sys.stdout = shown
    import subprocess

    try:
        done = subprocess.run(test, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return 1, f"{' '.join(test)}: no answer within {timeout} s"
    except OSError as exc:
        return 127, f"{test[0]}: {exc.strerror}"
    return done.returncode, done.stdout + done.stderr


def healing_check(argv: list[str]) -> int:
    """`--heal RETRIES,START_PERIOD,TIMEOUT,ENDS -- CHECK...`: one round of the watcher."""
    try:
        retries, start_period, timeout, ends = (int(part) for part in argv[1].split(","))
        test = argv[3:] if argv[2] == "--" else []
    except (IndexError, ValueError):
        test = []
    if not test:
        print(
            "dietstack-start: --heal RETRIES,START_PERIOD,TIMEOUT,ENDS -- CHECK...",
            file=sys.stderr,
        )
        return 2
    from dietstack.start import heal

    return heal.supervise(retries, start_period, lambda: run_check(test, timeout), bool(ends))


def watch(container: Container) -> None:
    """Start the container's watcher, which runs its health check (start/heal.py)."""
    health = container.healthcheck
    if health is None:
        return
    from dietstack.start import heal

    # In the host's process namespace, the first process is the host's own: the
    # watcher there only reports.
    ends = not container.privileges.pid_host
    heal.start_watcher(
        heal.watch_script(
            health.test, health.interval, health.timeout, health.retries, health.start_period, ends
        )
    )


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--heal"]:
        sys.exit(healing_check(argv))
    if argv[:1] == ["--nova-ssh"]:
        from dietstack.start import nova_commands

        nova_commands.main()
    args = parse_args(argv)
    if args.health_http:
        sys.exit(health_http(args.health_http))
    if args.health_tcp:
        sys.exit(health_tcp(args.health_tcp))
    if args.health_connected:
        sys.exit(health_connected(args.health_connected))
    if args.name is None:
        print("dietstack-start: give a container name, or -- and a command", file=sys.stderr)
        sys.exit(2)
    if args.name == "--":
        exec_command(args.command, {})
    from dietstack.render import CONTAINER_CONFIG_DIR

    if args.command or not (CONTAINER_CONFIG_DIR / "settings.yaml").exists():
        # Not a DietStack container start: run the program as given.
        exec_command([args.name, *args.command], {})
    start(args.name)
