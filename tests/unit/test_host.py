from __future__ import annotations

import io
from pathlib import Path

import pytest

from dietstack.errors import DietStackError
from dietstack.hosts import provision as host
from dietstack.progress import Progress


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('ID=debian\nVERSION_ID="13"\n', True),
        ("ID=ubuntu\nID_LIKE=debian\n", True),
        ('ID=linuxmint\nID_LIKE="ubuntu debian"\n', True),
        ('ID="fedora"\n', False),
    ],
    ids=["debian", "ubuntu", "derivative", "fedora"],
)
def test_debian_like_hosts(tmp_path: Path, text: str, expected: bool) -> None:
    path = tmp_path / "os-release"
    path.write_text(text)
    assert host.is_debian_like(path) is expected


def test_elsewhere_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(host, "is_debian_like", lambda: False)
    with pytest.raises(DietStackError) as caught:
        host.apt_install(["docker.io"], "Docker engine not found", print)
    assert "install docker.io with your distribution's package manager" in str(caught.value)


def test_too_little_disk_is_refused_before_building(tmp_path: Path) -> None:
    with pytest.raises(DietStackError, match="not enough disk space") as caught:
        host.check_free_space(tmp_path, 10**18, "building the images")
    assert "docker system prune" in str(caught.value)


def test_progress_without_a_terminal_prints_steps_not_noise() -> None:
    out = io.StringIO()
    progress = Progress(total=2, stream=out)
    progress.step("openstack")
    progress.activity("Collecting nova==33.0.2")
    progress.activity("Step 3/9 : RUN pip install")
    progress.done("built dietstack/openstack:2026.1-abc")
    lines = out.getvalue().splitlines()
    assert lines[0] == "[1/2] openstack"
    assert lines[1].strip() == "Step 3/9 : RUN pip install"
    assert lines[2].strip().startswith("built dietstack/openstack:2026.1-abc (")
    assert "Collecting" not in out.getvalue()


def test_external_share_needs_a_kernel_nfs_client() -> None:
    from dietstack.engine import preflight
    from dietstack.render import Env

    from .fakes import FakeHost

    with_nfs = FakeHost(answers={"sh -c grep -qw nfs /proc/filesystems || modprobe nfs": (0, "")})
    share = Env({"nfs_share": "nas.lan:/v"}, {})
    assert preflight.nfs_problems(with_nfs, share) == []
    without = FakeHost(answers={"sh -c grep -qw nfs /proc/filesystems || modprobe nfs": (1, "")})
    (problem,) = preflight.nfs_problems(without, share)
    assert "no NFS client" in problem and "leave nfs_share empty" in problem
    assert preflight.nfs_problems(without, Env({"nfs_share": ""}, {})) == []


MOUNTINFO = """\
22 1 0:21 / / rw,relatime master:1 - overlay overlay rw
23 22 0:22 / /proc rw,nosuid - proc proc rw
30 22 8:1 /srv/dietstack /var/lib/diet\\040stack rw,relatime shared:7 - ext4 /dev/sda1 rw
31 30 0:40 / /var/lib/diet\\040stack/nova/mnt rw - tmpfs tmpfs rw
32 22 0:41 / /shared rw shared:9 - tmpfs tmpfs rw
"""


def test_mount_of_finds_the_innermost_mount_and_its_propagation() -> None:
    from dietstack.hosts.provision import mount_of

    assert mount_of(Path("/var/lib/diet stack/nova/mnt/abc"), MOUNTINFO) == (
        "/var/lib/diet stack/nova/mnt",
        False,
    )
    assert mount_of(Path("/var/lib/diet stack/glance"), MOUNTINFO) == ("/var/lib/diet stack", True)
    assert mount_of(Path("/shared/x"), MOUNTINFO) == ("/shared", True)
    assert mount_of(Path("/opt"), MOUNTINFO) == ("/", False)
    assert mount_of(Path("/sharedness"), MOUNTINFO) == ("/", False)
