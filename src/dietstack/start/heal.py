"""The watcher: each container checks itself, and ends itself when it stays broken.

A container with a health check runs, beside its service, a small shell loop (its
watcher, `watch_script`) that runs the check through `supervise` every interval.
The verdict is a symbolic link, LINK, to "STATUS FAILURES": deploy and status read
it through Docker's stat of a container path, which costs Docker about 1 ms of CPU
where a `docker exec` costs about 100.

Docker's restart policy only applies to containers that exit: a daemon whose
workers have all died, while the parent waits on, would stay running for ever. So
the watcher counts failures in a row; once the container has been unhealthy for a
while it sends the container's first process (tini) SIGTERM, which passes it on to
the service. If that does not end it, the next failure kills every process of the
container. Docker then restarts it, with its back-off between attempts.

Failures during the start period do not count, as Docker's own checks did not.
"""

from __future__ import annotations

import os
import sys

# Only what a round of checks uses is imported here: it starts a Python in every
# container every minute, and each import is CPU spent at every round.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

#: Failures in a row, beyond the check's retries, before the container is ended:
#: it stays visibly unhealthy for a couple of intervals first (a service may be
#: waiting on a dependency that restarts).
GRACE = 2
#: model.HEALTH_LINK, not imported: the check imports as little as it can, as it
#: runs in every container every minute.
LINK = "/run/dietstack-health"
#: model.STARTING_INTERVAL.
STARTING_INTERVAL = 5

STARTING, HEALTHY, UNHEALTHY = "starting", "healthy", "unhealthy"


def pid1_started(proc: str = "/proc") -> int:
    """When the container's first process started (clock ticks since boot)."""
    with open(f"{proc}/1/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return int(fields[19])


def seconds_up(proc: str = "/proc") -> float:
    with open(f"{proc}/uptime") as uptime:
        up = float(uptime.read().split()[0])
    return up - pid1_started(proc) / os.sysconf("SC_CLK_TCK")


def read_state(link: str = LINK) -> tuple[str, int]:
    """(status, failures in a row); a container not checked yet is starting."""
    try:
        status, failures = os.readlink(link).rsplit("/", 1)[-1].split()
        if status in (STARTING, HEALTHY, UNHEALTHY):
            return status, int(failures)
    except (OSError, ValueError):
        pass
    return STARTING, 0


def write_state(status: str, failures: int, link: str = LINK) -> None:
    """Replaced in one step, so a reader never finds it missing or half written."""
    new = f"{link}.new"
    try:
        if os.path.lexists(new):
            os.unlink(new)
        os.symlink(f"{status} {failures}", new)
        os.replace(new, link)
    except OSError as exc:
        print(f"cannot record the health check's verdict in {link}: {exc}", file=sys.stderr)


def verdict(status: str, failures: int, retries: int) -> str:
    """Docker's rule: unhealthy after `retries` failures in a row, else as before."""
    return UNHEALTHY if failures >= retries else status


def end_container(failures: int, retries: int) -> None:
    import signal

    if failures == retries + GRACE:
        print(
            f"unhealthy {failures} times in a row: ending the container so Docker restarts it",
            file=sys.stderr,
        )
        os.kill(1, signal.SIGTERM)
    elif failures > retries + GRACE:
        print(
            f"still running after SIGTERM ({failures} failures): killing its processes",
            file=sys.stderr,
        )
        # Every process of the container but its first and this one.
        os.kill(-1, signal.SIGKILL)


def supervise(
    retries: int,
    start_period: int,
    check: Callable[[], tuple[int, str]],
    ends: bool = True,
    link: str = LINK,
) -> int:
    """Run the check once, record the verdict; returns the check's exit code."""
    status, failures = read_state(link)
    counting = seconds_up() >= start_period
    if counting:
        failures += 1
        # Recorded before the check runs, so a check that never returns still counts.
        write_state(verdict(status, failures, retries), failures, link)
    code, output = check()
    if code == 0:
        write_state(HEALTHY, 0, link)
    elif counting:
        print(f"health check failed ({failures} in a row): {output.strip()}", file=sys.stderr)
        if ends:
            end_container(failures, retries)
    return code


def quick_check(check: tuple[str, ...]) -> tuple[str, ...] | None:
    """The check as the shell can run it without starting a Python: a program of
    its own as it is, a port through bash's /dev/tcp, HTTPS through curl, a held
    connection through ls and awk. None for what only Python does (plain HTTP, or
    arguments it does not recognise)."""
    if os.path.basename(check[0]) != "dietstack-start":
        return check
    if len(check) != 3:
        return None
    kind, target = check[1], check[2]
    if kind == "--health-tcp":
        host, _, port = target.rpartition(":")
        if host and port.isdigit():
            return ("bash", "-c", f": </dev/tcp/{host.strip('[]')}/{port}")
    if kind == "--health-http" and target.startswith("https://"):
        from dietstack.model import PUBLIC_CA

        return ("sh", "-c", https_script(target, PUBLIC_CA))
    ports = target.split(",")
    if kind == "--health-connected" and all(map(str.isdigit, ports)):
        return ("sh", "-c", _connected_script([int(port) for port in ports]))
    return None


def https_script(url: str, ca: str) -> str:
    """What health_http checks, with curl (in the images that have it): an HTTP
    answer below 500, over TLS verified by the CA `ca` for the URL's host."""
    import shlex

    return (
        f"code=$(curl -s -o /dev/null --max-time 8 --cacert {shlex.quote(ca)} "
        f"-w '%{{http_code}}' {shlex.quote(url)}) "
        '&& [ "$code" -gt 0 ] && [ "$code" -lt 500 ]'
    )


def _connected_script(ports: list[int]) -> str:
    """What health_connected checks, in the shell: an established connection to one
    of `ports`, held by a process of this container (its socket's inode is one of
    theirs)."""
    wanted = " ".join(f"{port:04X}" for port in ports)
    return (
        r"{ ls -l /proc/[0-9]*/fd 2>/dev/null | sed -n 's/.*socket:\[\([0-9]*\)\]$/\1/p'; "
        "echo --; cat /proc/net/tcp /proc/net/tcp6 2>/dev/null; } | "
        f"awk -v wanted='{wanted}' "
        '\'BEGIN { split(wanted, w, " "); for (i in w) port[w[i]] = 1 } '
        "/^--$/ { tables = 1; next } "
        "!tables { ours[$1] = 1; next } "
        '$4 == "01" && (substr($3, length($3) - 3) in port) && ($10 in ours) { found = 1 } '
        "END { exit !found }'"
    )


def watch_script(
    check: tuple[str, ...],
    interval: int,
    timeout: int,
    retries: int,
    start_period: int,
    ends: bool,
    link: str = LINK,
) -> str:
    """The watcher's loop, for `sh -c`. It checks every STARTING_INTERVAL seconds
    until a verdict is in, then every `interval`; a check's own lines are only shown
    when it fails (supervise prints them), so a healthy container logs nothing.

    A Python start costs more CPU than most checks: while the container is healthy
    with no failure counted, a check the shell can run alone (quick_check) is run
    without one, and only a failure goes to a round of `supervise`, which checks
    again and counts."""
    import shlex

    program = (
        # Without site's imports (-S): a round needs nothing outside the standard
        # library, and they cost a third of its CPU.
        "/usr/bin/python3",
        "-S",
        "/usr/lib/dietstack/dietstack-start",
        "--heal",
        f"{retries},{start_period},{timeout},{int(ends)}",
        "--",
        *check,
    )
    quick = quick_check(check)
    shortcut = (
        f'[ "$state" = "{HEALTHY} 0" ] && timeout {timeout} {shlex.join(quick)} '
        ">/dev/null 2>&1 && continue; "
        if quick
        else ""
    )
    return (
        "while :; do "
        f"state=$(readlink {shlex.quote(link)}); "
        f'case "$state" in '
        f"{HEALTHY}*|{UNHEALTHY}*) sleep {interval};; *) sleep {STARTING_INTERVAL};; esac; "
        f"{shortcut}{shlex.join(program)} >/dev/null; "
        "done"
    )


def start_watcher(script: str) -> None:
    """Start the loop in the background of a shell that exits at once, so the loop
    is the child of the container's first process (tini reaps what it leaves), not
    of the service it is about to become; in a session of its own, so the signals
    tini passes to the service's process group do not reach it."""
    import subprocess

    if os.path.lexists(LINK):
        os.unlink(LINK)  # the verdict of the container's last run
    subprocess.run(
        ["sh", "-c", f"{script} &"], stdin=subprocess.DEVNULL, start_new_session=True, check=True
    )
