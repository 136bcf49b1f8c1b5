"""Every image the cloud needs, described as data.

An image is a directory under images/files/ holding its Dockerfile and static
files, plus the generated files listed here. Each image is built FROM its parent
(passed in as the BASE build argument) and so inherits the parent's content hash.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from dietstack.releases import Release

#: What the services need at run time besides themselves. Versions come from the
#: upstream constraints file; the ones it leaves open are pinned here so that a
#: rebuild gives the same image.
OPENSTACK_EXTRAS = (
    "python-openstackclient",
    "PyMySQL",
    "python-memcached",
    "pymemcache",
    "libvirt-python",
    "os-brick",
    "uWSGI==2.0.31",
    "setuptools==84.2.1",
    "certifi==2026.10.19.post1",
)

#: What the dashboard needs besides Horizon and the Heat panels.
DASHBOARD_EXTRAS = (
    "pymemcache",
    "uWSGI==2.0.31",
    "setuptools==84.2.1",
)


def openstack_packages(release: Release) -> tuple[str, ...]:
    return (*release.services, *release.undeclared, *OPENSTACK_EXTRAS)


def dashboard_packages(release: Release) -> tuple[str, ...]:
    """The dashboard, in an image of its own."""
    return (*release.dashboard, *DASHBOARD_EXTRAS)


#: Labels on every DietStack image: which image it is, for which release (`any`
#: for those every release shares), and the content hash its tag ends with.
#: Containers carry LABEL_RELEASE too: the release the cloud ran them for.
LABEL_IMAGE = "dietstack.image"
LABEL_RELEASE = "dietstack.release"
LABEL_HASH = "dietstack.content-hash"


@dataclass(frozen=True)
class ImageSpec:
    """One image: where it comes from and how to check that it works."""

    name: str
    description: str
    parent: str | None
    #: What pip installs for a release (against that release's upstream constraints).
    #: An image that installs from PyPI is built once per release, and its build gets
    #: the host's CA bundle; every other image is shared by all releases.
    packages: Callable[[Release], tuple[str, ...]] | None = None
    #: Commands that print a version; each must succeed inside the built image.
    version_commands: tuple[tuple[str, ...], ...] = ()

    @property
    def needs_pypi(self) -> bool:
        return self.packages is not None

    @property
    def per_release(self) -> bool:
        return self.needs_pypi

    @property
    def repository(self) -> str:
        return f"dietstack/{self.name}"


#: In build order: two build at once, so the long OpenStack build starts first and
#: libvirt beside it, which lets deploy's KVM probe run while the rest builds.
IMAGES: tuple[ImageSpec, ...] = (
    ImageSpec(
        "base",
        "Debian 13 with Python, the parent of every other image",
        parent=None,
        version_commands=(("python3", "--version"),),
    ),
    ImageSpec(
        "openstack",
        "Keystone, Glance, Placement, Nova, Neutron, Cinder and Heat from PyPI",
        parent="base",
        packages=openstack_packages,
        version_commands=(
            ("keystone-manage", "--version"),
            ("glance-manage", "--version"),
            ("placement-manage", "--version"),
            ("nova-manage", "--version"),
            ("neutron-rpc-server", "--version"),
            ("cinder-manage", "--version"),
            ("heat-manage", "--version"),
            ("openstack", "--version"),
            # Built with OpenSSL: the APIs serve HTTPS from uWSGI itself.
            ("sh", "-c", "uwsgi --version && uwsgi --help | grep -q -- --https-socket"),
            ("python3", "-c", "import libvirt, os_brick, pymysql, memcache; print('ok')"),
        ),
    ),
    ImageSpec(
        "libvirt",
        "libvirt and QEMU for nova-compute",
        parent="base",
        version_commands=(
            ("libvirtd", "--version"),
            ("qemu-system-x86_64", "--version"),
        ),
    ),
    ImageSpec(
        "horizon",
        "The Horizon dashboard with Heat's panels, static files compressed",
        parent="base",
        packages=dashboard_packages,
        version_commands=(
            ("python3", "-c", "import horizon, heat_dashboard; print(horizon.__file__)"),
            # The offline-compressed blocks: 7 with Heat's panels, Angular templates included.
            (
                "python3",
                "-c",
                "import json; m = json.load(open('/var/lib/horizon/static/dashboard/"
                "manifest.json')); assert len(m) >= 7, m; print(len(m), 'compressed blocks')",
            ),
            # Built with OpenSSL: the APIs serve HTTPS from uWSGI itself.
            ("sh", "-c", "uwsgi --version && uwsgi --help | grep -q -- --https-socket"),
        ),
    ),
    ImageSpec(
        "mariadb",
        "MariaDB, the SQL database",
        parent="base",
        version_commands=(("mariadbd", "--version"), ("mariadb-dump", "--version")),
    ),
    ImageSpec(
        "rabbitmq",
        "RabbitMQ, the message queue",
        parent="base",
        version_commands=(("rabbitmqctl", "version"),),
    ),
    ImageSpec(
        "memcached",
        "memcached, the token cache",
        parent="base",
        version_commands=(("memcached", "--version"),),
    ),
    ImageSpec(
        "ovn",
        "Open vSwitch and OVN",
        parent="base",
        version_commands=(
            ("ovs-vswitchd", "--version"),
            ("ovn-northd", "--version"),
            ("ovn-controller", "--version"),
        ),
    ),
    ImageSpec(
        "nfs",
        "nfs-ganesha userspace NFS server",
        parent="base",
        version_commands=(("ganesha.nfsd", "-v"),),
    ),
)

BY_NAME = {image.name: image for image in IMAGES}


def requirements_txt(image: ImageSpec, release: Release) -> str:
    """The pip requirements of an image that installs from PyPI."""
    assert image.packages is not None, image.name
    return "\n".join(image.packages(release)) + "\n"
