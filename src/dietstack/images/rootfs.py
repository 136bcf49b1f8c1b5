"""The Debian 13 root filesystem under the base image, from one of two sources.

- registry: `debian:trixie-slim`, for hosts that reach Docker Hub;
- debootstrap: a minimal trixie made from a Debian mirror and `docker import`ed,
  for hosts that reach only a package mirror (and for air-gapped mirrors).

`auto` prefers whatever is already on the host, so a rebuild never waits on
the network, then tries the registry, then falls back to debootstrap.
"""

from __future__ import annotations

import collections
import hashlib
import shutil
import subprocess
import tempfile
from pathlib import Path

from dietstack.errors import DietStackError
from dietstack.hosts.provision import Say, apt_install, check_free_space, ensure_command
from dietstack.hosts.runtime import DockerRuntime
from dietstack.images.catalog import LABEL_IMAGE
from dietstack.progress import Progress

SUITE = "trixie"
REGISTRY_IMAGE = f"debian:{SUITE}-slim"
ROOTFS_REPOSITORY = "dietstack/rootfs"
DEBOOTSTRAP_ARGS = ("--variant=minbase", "--components=main", "--include=ca-certificates")
DEBIAN_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
PULL_TIMEOUT = 45.0

#: Paths emptied before import: documentation, and (keeping the directories apt
#: expects) downloaded packages, package lists and logs.
TRIM_PATHS = ("usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale")
TRIM_FILES_IN = ("var/cache/apt/archives", "var/lib/apt/lists", "var/log")


def debootstrap_tag() -> str:
    recipe = "\0".join((SUITE, *DEBOOTSTRAP_ARGS, *TRIM_PATHS, *TRIM_FILES_IN, "sources-v1"))
    return f"{ROOTFS_REPOSITORY}:{SUITE}-{hashlib.sha256(recipe.encode()).hexdigest()[:12]}"


def resolve(runtime: DockerRuntime, source: str, mirror: str, progress: Progress) -> str:
    """The image reference to build the base image FROM, making it first if needed."""
    own = debootstrap_tag()
    if source == "registry" or (source == "auto" and runtime.image_id(REGISTRY_IMAGE)):
        return _from_registry(runtime, progress)
    if source == "auto" and not runtime.image_id(own):
        why = runtime.pull(REGISTRY_IMAGE, PULL_TIMEOUT)
        if why is None:
            progress.say(f"      pulled {REGISTRY_IMAGE} from the registry")
            return REGISTRY_IMAGE
        progress.say(
            f"      registry not reachable ({why}); making the base with debootstrap from {mirror}"
        )
    if not runtime.image_id(own):
        make_with_debootstrap(runtime, mirror, own, progress)
    return own


def resolve_local(runtime: DockerRuntime, source: str) -> str:
    """The root filesystem `resolve` would pick, judged from local images only."""
    if source == "registry" or (source == "auto" and runtime.image_id(REGISTRY_IMAGE)):
        return REGISTRY_IMAGE
    return debootstrap_tag()


def _from_registry(runtime: DockerRuntime, progress: Progress) -> str:
    if runtime.image_id(REGISTRY_IMAGE):
        return REGISTRY_IMAGE
    progress.activity(f"pulling {REGISTRY_IMAGE}")
    why = runtime.pull(REGISTRY_IMAGE, PULL_TIMEOUT * 4)
    if why is not None:
        raise DietStackError(
            f"cannot pull {REGISTRY_IMAGE}: {why}",
            hint="check the host's internet access, or set `base_image: debootstrap` to build "
            "the base from a Debian mirror instead",
        )
    return REGISTRY_IMAGE


def _security_mirror(mirror: str) -> str | None:
    # Debian's own mirrors publish security updates beside the archive.
    return mirror[: -len("/debian")] + "/debian-security" if mirror.endswith("/debian") else None


def sources_list(mirror: str) -> str:
    lines = [f"deb {mirror} {SUITE} main", f"deb {mirror} {SUITE}-updates main"]
    security = _security_mirror(mirror)
    if security:
        lines.append(f"deb {security} {SUITE}-security main")
    return "\n".join(lines) + "\n"


def _prepare_host(say: Say) -> None:
    ensure_command("debootstrap", "debootstrap", "building the base image needs debootstrap", say)
    if not DEBIAN_KEYRING.exists():
        apt_install(["debian-archive-keyring"], "debootstrap needs Debian's archive keys", say)


def make_with_debootstrap(
    runtime: DockerRuntime, mirror: str, tag: str, progress: Progress
) -> None:
    _prepare_host(progress.say)
    workdir = Path(tempfile.mkdtemp(prefix="dietstack-rootfs-", dir="/var/tmp"))
    try:
        check_free_space(workdir, 1024**3, "the debootstrap root filesystem")
        target = workdir / "rootfs"
        _debootstrap(target, mirror, progress)
        for relative in TRIM_PATHS:
            _empty(target / relative, files_only=False)
        for relative in TRIM_FILES_IN:
            _empty(target / relative, files_only=True)
        (target / "etc/apt/sources.list").write_text(sources_list(mirror))
        progress.activity(f"importing the root filesystem as {tag}")
        tar = subprocess.Popen(
            ["tar", "--numeric-owner", "-C", str(target), "-c", "."], stdout=subprocess.PIPE
        )
        assert tar.stdout is not None
        runtime.import_rootfs(tar.stdout, tag, {LABEL_IMAGE: "rootfs"})
        if tar.wait() != 0:
            raise DietStackError("packing the debootstrap root filesystem failed")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _debootstrap(target: Path, mirror: str, progress: Progress) -> None:
    command = [
        "debootstrap",
        *DEBOOTSTRAP_ARGS,
        f"--keyring={DEBIAN_KEYRING}",
        SUITE,
        str(target),
        mirror,
    ]
    tail: collections.deque[str] = collections.deque(maxlen=15)
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        tail.append(line.rstrip())
        progress.activity(line.rstrip())
    if proc.wait() != 0:
        log = target / "debootstrap" / "debootstrap.log"
        if log.exists():
            tail.extend(log.read_text(errors="replace").splitlines()[-10:])
        raise DietStackError(
            f"debootstrap of Debian {SUITE} from {mirror} failed",
            details="\n".join(tail),
            hint="check that the host reaches the mirror (set `debian_mirror` to one it "
            "does reach) and has free disk space, then retry",
        )


def _empty(path: Path, files_only: bool) -> None:
    if not path.is_dir():
        return
    for child in list(path.rglob("*") if files_only else path.iterdir()):
        if child.is_dir() and not child.is_symlink():
            if not files_only:
                shutil.rmtree(child)
        else:
            child.unlink()
