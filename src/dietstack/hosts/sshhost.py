"""A node reached over SSH: the host adapter (hostio.Host) and its Docker engine.

Every connection checks the node's host key against DietStack's own known_hosts
file (beside the settings): the key is shown and pinned on first contact, and a
changed key stops everything. Commands share one SSH connection per node; the
node's Docker socket is forwarded to a local socket, so the Docker SDK talks to
the node's engine exactly as it talks to this host's.
"""

from __future__ import annotations

import atexit
import shlex
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dietstack.errors import DietStackError, NodeUnreachable
from dietstack.hosts import files, hostio

#: Where the shared SSH connections and forwarded Docker sockets live (root only).
CONTROL_DIR = Path("/run/dietstack/ssh")
REMOTE_DOCKER_SOCKET = "/var/run/docker.sock"
CONNECT_TIMEOUT = 10
#: Exit code of ssh itself failing (not the remote command).
SSH_FAILED = 255


@dataclass(frozen=True)
class SshTarget:
    """How to reach a node: address, user, port and (optionally) a private key."""

    host: str
    user: str = "root"
    port: int = 22
    identity: str = ""

    @property
    def known_hosts_name(self) -> str:
        """How known_hosts files name this host (with its port when not 22)."""
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"

    def as_dict(self) -> dict[str, object]:
        return {"user": self.user, "port": self.port, "identity": self.identity}


def _explain(target: SshTarget, output: str, known_hosts: Path) -> DietStackError:
    where = f"{target.user}@{target.host}:{target.port}"
    if "IDENTIFICATION HAS CHANGED" in output or "Host key verification failed" in output:
        return DietStackError(
            f"{where}: the node's SSH host key is not the one pinned on first contact",
            hint=f"if the node was reinstalled, remove its line from {known_hosts} "
            f"(`ssh-keygen -R '{target.known_hosts_name}' -f {known_hosts}`) and run the "
            "command again; otherwise something else answers at that address",
        )
    if "Permission denied" in output:
        return DietStackError(
            f"{where}: SSH refused the login (key authentication failed)",
            hint="put this host's public key in the node's ~/.ssh/authorized_keys, or pass "
            "--identity with the private key that it accepts",
        )
    return NodeUnreachable(
        f"{where}: cannot connect over SSH",
        details="\n".join(output.strip().splitlines()[-5:]),
        hint="check the address and port, and that sshd runs on the node",
    )


#: A node just started, or one busy booting, may not finish the key exchange in
#: time: ssh-keyscan is asked again this many times, this many seconds apart.
KEYSCAN_RETRIES = 2
KEYSCAN_PAUSE = 5


def _scan_host_keys(target: SshTarget) -> list[str]:
    scan = subprocess.run(
        ["ssh-keyscan", "-T", str(CONNECT_TIMEOUT), "-p", str(target.port), target.host],
        capture_output=True,
        text=True,
    )
    return [line for line in scan.stdout.splitlines() if line and not line.startswith("#")]


def pin_host_key(target: SshTarget, known_hosts: Path, say: Callable[[str], None]) -> bool:
    """Show and pin the node's host key on first contact; False when already pinned."""
    if known_hosts.exists():
        found = subprocess.run(
            ["ssh-keygen", "-F", target.known_hosts_name, "-f", str(known_hosts)],
            capture_output=True,
        )
        if found.returncode == 0:
            return False
    keys = _scan_host_keys(target)
    for _ in range(KEYSCAN_RETRIES):
        if keys:
            break
        say(f"      {target.host}: no host key yet; asking again in {KEYSCAN_PAUSE} s")
        time.sleep(KEYSCAN_PAUSE)
        keys = _scan_host_keys(target)
    if not keys:
        raise DietStackError(
            f"{target.host}: no SSH server answered on port {target.port}",
            hint="check the address, the port (--port) and that sshd runs on the node",
        )
    text = "\n".join(keys) + "\n"
    fingerprints = subprocess.run(
        ["ssh-keygen", "-l", "-f", "-"], input=text, capture_output=True, text=True
    ).stdout
    say(f"      {target.host}: first contact; its host keys are now pinned in {known_hosts}:")
    for line in fingerprints.splitlines():
        say(f"        {line}")
    known_hosts.parent.mkdir(parents=True, exist_ok=True)
    with known_hosts.open("a") as stream:
        stream.write(text)
    known_hosts.chmod(0o600)
    return True


class SshHost:
    """hostio.Host for a node reached over SSH."""

    def __init__(self, name: str, target: SshTarget, known_hosts: Path) -> None:
        self.name = name
        self.target = target
        self.known_hosts = known_hosts
        self._forward: subprocess.Popen[bytes] | None = None

    def _options(self) -> list[str]:
        # The key pinned in DietStack's own file is the only one accepted: not one the
        # system's known_hosts or DNS (SSHFP) would vouch for.
        options = [
            "-p",
            str(self.target.port),
            "-o",
            f"UserKnownHostsFile={self.known_hosts}",
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "VerifyHostKeyDNS=no",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            f"ConnectTimeout={CONNECT_TIMEOUT}",
            "-o",
            "ServerAliveInterval=15",
        ]
        if self.target.identity:
            options += ["-i", self.target.identity, "-o", "IdentitiesOnly=yes"]
        return options

    def _destination(self) -> str:
        return f"{self.target.user}@{self.target.host}"

    def _shared(self) -> list[str]:
        CONTROL_DIR.mkdir(parents=True, exist_ok=True, mode=0o700)
        return [
            "-o",
            "ControlMaster=auto",
            "-o",
            f"ControlPath={CONTROL_DIR}/%C",
            "-o",
            "ControlPersist=60",
        ]

    def call(self, command: list[str], stdin: bytes | None = None) -> tuple[int, str]:
        args = ["ssh", *self._options(), *self._shared(), self._destination(), "--"]
        result = subprocess.run([*args, shlex.join(command)], input=stdin, capture_output=True)
        output = hostio.output_of(result)
        if result.returncode == SSH_FAILED and _is_ssh_error(output):
            raise _explain(self.target, output, self.known_hosts)
        return result.returncode, output

    def read_text(self, path: Path) -> str | None:
        code, output = self.call(
            [
                "sh",
                "-c",
                f"test -e {shlex.quote(str(path))} || exit 3; cat -- {shlex.quote(str(path))}",
            ]
        )
        if code == 3:
            return None
        if code != 0:
            raise DietStackError(f"{self.name}: cannot read {path}", details=output.strip())
        return output

    def write_file(self, path: Path, content: bytes, mode: int) -> None:
        target = shlex.quote(str(path))
        tmp = shlex.quote(str(files.temporary(path)))
        # As files.replacing does on this host: the temporary file is made anew,
        # private until it has its mode, then renamed over the target.
        script = (
            f"umask 077; mkdir -p {shlex.quote(str(path.parent))}; rm -f {tmp}; cat > {tmp}; "
            f"chmod {mode:o} {tmp}; mv -f {tmp} {target}"
        )
        code, output = self.call(["sh", "-c", script], stdin=content)
        if code != 0:
            raise DietStackError(f"{self.name}: cannot write {path}", details=output.strip())

    def docker_url(self) -> str:
        """A local socket forwarded to the node's Docker engine (kept until exit)."""
        socket = CONTROL_DIR / f"{self.target.host}-{self.target.port}-docker.sock"
        if self._forward is not None and self._forward.poll() is None and socket.exists():
            return f"unix://{socket}"
        CONTROL_DIR.mkdir(parents=True, exist_ok=True, mode=0o700)
        socket.unlink(missing_ok=True)
        self._forward = subprocess.Popen(
            [
                "ssh",
                *self._options(),
                "-o",
                "ExitOnForwardFailure=yes",
                "-N",
                "-L",
                f"{socket}:{REMOTE_DOCKER_SOCKET}",
                self._destination(),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        atexit.register(self.close)
        deadline = time.monotonic() + CONNECT_TIMEOUT + 5
        while not socket.exists():
            if self._forward.poll() is not None or time.monotonic() > deadline:
                error = self._forward.stderr.read().decode() if self._forward.stderr else ""
                self.close()
                raise _explain(self.target, error, self.known_hosts)
            time.sleep(0.1)
        return f"unix://{socket}"

    def close(self) -> None:
        if self._forward is not None and self._forward.poll() is None:
            self._forward.terminate()
            self._forward.wait(timeout=10)
        self._forward = None


def _is_ssh_error(output: str) -> bool:
    markers = (
        "Host key verification failed",
        "IDENTIFICATION HAS CHANGED",
        "Permission denied",
        "Connection refused",
        "Connection timed out",
        "Could not resolve hostname",
        "No route to host",
        "Connection closed by",
        "kex_exchange_identification",
    )
    return any(marker in output for marker in markers)
