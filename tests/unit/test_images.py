from __future__ import annotations

import io
import threading
import time
from pathlib import Path

import pytest

from dietstack.errors import BuildFailed
from dietstack.images import build, catalog, context, rootfs
from dietstack.images.catalog import BY_NAME, IMAGES, requirements_txt
from dietstack.progress import Progress
from dietstack.releases import GAZPACHO, HIBISCUS

from .fakes import FakeRuntime

ROOTFS = "dietstack/rootfs:trixie-000000000000"


def quiet() -> Progress:
    return Progress(total=len(IMAGES) + 1, stream=io.StringIO())


def test_tags_name_release_and_content() -> None:
    ctx = context.render(BY_NAME["openstack"], "dietstack/base:2026.1-aaaaaaaaaaaa", GAZPACHO)
    assert ctx.tag.startswith("dietstack/openstack:2026.1-")
    assert len(ctx.tag.rsplit("-", 1)[1]) == context.HASH_LENGTH


def test_only_the_pypi_images_differ_between_releases() -> None:
    """An upgrade changes the openstack and horizon images; MariaDB, RabbitMQ, OVN and
    libvirt (and so the guests) keep theirs."""
    for image in IMAGES:
        old = context.render(image, "parent", GAZPACHO)
        new = context.render(image, "parent", HIBISCUS)
        assert (old.tag != new.tag) == (image.name in ("openstack", "horizon")), image.name
    new = context.render(BY_NAME["openstack"], "parent", HIBISCUS)
    assert new.tag.startswith("dietstack/openstack:2026.2-")
    assert "nova==34.0.0" in new.files["requirements.txt"].content.decode().splitlines()
    constraints = new.files["upper-constraints.txt"].content.decode()
    assert "oslo.messaging===18.3.0" in constraints.splitlines()
    dashboard = context.render(BY_NAME["horizon"], "parent", HIBISCUS)
    assert "horizon==27.0.0" in dashboard.files["requirements.txt"].content.decode()
    assert context.render(BY_NAME["libvirt"], "parent", HIBISCUS).tag.startswith(
        "dietstack/libvirt:"
    )


def test_rendering_is_deterministic() -> None:
    one = context.render(BY_NAME["mariadb"], "dietstack/base:2026.1-x", GAZPACHO)
    two = context.render(BY_NAME["mariadb"], "dietstack/base:2026.1-x", GAZPACHO)
    assert one.tag == two.tag and one.files == two.files


def test_a_new_parent_changes_the_child_tag() -> None:
    one = context.render(BY_NAME["mariadb"], "dietstack/base:2026.1-x", GAZPACHO)
    two = context.render(BY_NAME["mariadb"], "dietstack/base:2026.1-y", GAZPACHO)
    assert one.tag != two.tag


def test_any_file_change_changes_the_tag() -> None:
    ctx = context.render(BY_NAME["memcached"], "dietstack/base:2026.1-x", GAZPACHO)
    changed = dict(ctx.files)
    changed["Dockerfile"] = context.ContextFile(ctx.files["Dockerfile"].content + b"\n")
    assert context.BuildContext(ctx.image, changed, ctx.buildargs).tag != ctx.tag


def test_openstack_context_pins_the_services_and_vendors_constraints() -> None:
    ctx = context.render(BY_NAME["openstack"], "dietstack/base:2026.1-x", GAZPACHO)
    requirements = ctx.files["requirements.txt"].content.decode()
    for pin in ("keystone==29.1.0", "nova==33.0.2", "neutron==28.0.2", "openstack-heat==26.0.2"):
        assert pin in requirements.splitlines()
    assert requirements == requirements_txt(BY_NAME["openstack"], GAZPACHO)
    constraints = ctx.files["upper-constraints.txt"].content.decode()
    assert "oslo.config===" in constraints
    assert ctx.buildargs == {"BASE": "dietstack/base:2026.1-x"}


def test_every_image_but_base_carries_the_start_program() -> None:
    for image in IMAGES:
        ctx = context.render(image, "parent", GAZPACHO)
        has_start = "start/dietstack-start" in ctx.files
        assert has_start == (image.name != "base"), image.name
        if has_start:
            assert ctx.files["start/dietstack-start"].mode == 0o755
            assert "start/dietstack/start/__init__.py" in ctx.files


def test_base_is_built_on_the_rootfs() -> None:
    ctx = context.render(BY_NAME["base"], ROOTFS, GAZPACHO)
    assert ctx.buildargs == {"ROOTFS": ROOTFS}
    assert b"ARG ROOTFS" in ctx.files["Dockerfile"].content


def test_ca_bundle_reaches_pypi_builds_only_and_not_the_hash(tmp_path: Path) -> None:
    ctx = context.render(BY_NAME["openstack"], "parent", GAZPACHO)
    context.write(ctx, tmp_path / "a", b"PROXY CA")
    assert (tmp_path / "a" / context.CA_BUNDLE_NAME).read_bytes() == b"PROXY CA"
    assert context.CA_BUNDLE_NAME not in ctx.files
    plain = context.render(BY_NAME["mariadb"], "parent", GAZPACHO)
    context.write(plain, tmp_path / "b", b"PROXY CA")
    assert not (tmp_path / "b" / context.CA_BUNDLE_NAME).exists()


def test_ca_bundle_never_reaches_the_final_image() -> None:
    dockerfile = BY_NAME["openstack"]
    text = context.render(dockerfile, "parent", GAZPACHO).files["Dockerfile"].content.decode()
    final_stage = text.rsplit("FROM ", 1)[1]
    assert "ca.crt" not in final_stage and "build-ca" not in final_stage


def test_plan_on_an_empty_host_builds_everything() -> None:
    planned = build.plan(FakeRuntime().as_runtime(), ROOTFS, GAZPACHO)
    assert [p.context.image.name for p in planned] == [i.name for i in IMAGES]
    assert not any(p.present for p in planned)


def test_no_change_rebuilds_nothing() -> None:
    fake = FakeRuntime({rootfs.debootstrap_tag()})
    build.build(fake.as_runtime(), "auto", "http://deb.debian.org/debian", quiet(), GAZPACHO)
    assert len(fake.builds) == len(IMAGES)
    fake.builds.clear()
    build.build(fake.as_runtime(), "auto", "http://deb.debian.org/debian", quiet(), GAZPACHO)
    assert fake.builds == []


def test_children_are_built_from_their_parents_tag() -> None:
    fake = FakeRuntime({rootfs.debootstrap_tag()})
    build.build(fake.as_runtime(), "auto", "http://deb.debian.org/debian", quiet(), GAZPACHO)
    tags = {labels[catalog.LABEL_IMAGE]: tag for tag, _, labels, _ in fake.builds}
    for tag, args, labels, _files in fake.builds:
        parent = BY_NAME[labels[catalog.LABEL_IMAGE]].parent
        expected = rootfs.debootstrap_tag() if parent is None else tags[parent]
        assert list(args.values()) == [expected], tag
        per_release = BY_NAME[labels[catalog.LABEL_IMAGE]].per_release
        assert labels[catalog.LABEL_RELEASE] == ("2026.1" if per_release else "any")
        assert tag.endswith(labels[catalog.LABEL_HASH])


def test_only_selects_the_image_and_its_ancestors() -> None:
    assert [i.name for i in build.select(["ovn"])] == ["base", "ovn"]
    fake = FakeRuntime({rootfs.debootstrap_tag()})
    build.build(
        fake.as_runtime(), "auto", "http://x/debian", quiet(), GAZPACHO, names=["openstack"]
    )
    assert [labels[catalog.LABEL_IMAGE] for _, _, labels, _ in fake.builds] == ["base", "openstack"]


def test_existing_local_registry_image_is_preferred() -> None:
    fake = FakeRuntime({rootfs.REGISTRY_IMAGE})
    ref = rootfs.resolve(fake.as_runtime(), "auto", "http://x/debian", quiet())
    assert ref == rootfs.REGISTRY_IMAGE


def test_sources_list_adds_updates_and_security() -> None:
    text = rootfs.sources_list("http://deb.debian.org/debian")
    assert "http://deb.debian.org/debian trixie-updates main" in text
    assert "http://deb.debian.org/debian-security trixie-security main" in text
    assert "security" not in rootfs.sources_list("http://mirror.example/debian-mirror")


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("E: Write error - write (28: No space left on device)", "disk"),
        ("ERROR: Could not find a version... No matching distribution found for nova", "PyPI"),
        ("SSLError(SSLCertVerificationError(1, '[SSL: CERTIFICATE_VERIFY_FAILED]", "CA"),
        ("E: Failed to fetch http://deb.debian.org/debian/pool/x.deb", "Debian package mirror"),
        ("something else", "fix the cause"),
    ],
    ids=["disk", "pypi", "tls", "mirror", "other"],
)
def test_build_failures_are_explained(output: str, expected: str) -> None:
    assert expected in build.explain_build_failure(output)


def test_failed_build_names_image_step_and_fix() -> None:
    class Failing(FakeRuntime):
        def build(self, context_dir, tag, buildargs, labels, on_line):  # type: ignore[no-untyped-def]
            raise BuildFailed(
                "x", details="Step 4/9 : RUN pip install\nERROR: No matching distribution found"
            )

    fake = Failing({rootfs.debootstrap_tag()})
    with pytest.raises(BuildFailed) as caught:
        build.build(fake.as_runtime(), "auto", "http://x/debian", quiet(), GAZPACHO, names=["base"])
    text = str(caught.value)
    assert "building image base" in text and "at Step 4/9 : RUN pip install" in text
    assert "PyPI" in text


class SlowBuilds(FakeRuntime):
    """Builds that take a moment, recording what ran at once and in which order."""

    def __init__(self, present: set[str], fail: str = "") -> None:
        super().__init__(present)
        self.fail = fail
        self.lock = threading.Lock()
        self.running: set[str] = set()
        self.most_at_once = 0
        self.events: list[tuple[str, str]] = []

    def build(self, context_dir, tag, buildargs, labels, on_line):  # type: ignore[no-untyped-def]
        name = labels[catalog.LABEL_IMAGE]
        with self.lock:
            self.running.add(name)
            self.most_at_once = max(self.most_at_once, len(self.running))
            self.events.append(("start", name))
        time.sleep(1.0 if name == "openstack" else 0.02)
        with self.lock:
            self.running.discard(name)
            self.events.append(("end", name))
        if name == self.fail:
            raise BuildFailed("x", details="Step 2/3 : RUN apt-get install\nE: Failed to fetch")
        super().build(context_dir, tag, buildargs, labels, on_line)


def test_images_build_two_at_a_time_each_after_its_parent() -> None:
    fake = SlowBuilds({rootfs.debootstrap_tag()})
    stream = io.StringIO()
    progress = Progress(total=len(IMAGES) + 1, stream=stream)
    build.build(fake.as_runtime(), "auto", "http://x/debian", progress, GAZPACHO)
    assert fake.most_at_once == build.PARALLEL_BUILDS
    built = [labels[catalog.LABEL_IMAGE] for _, _, labels, _ in fake.builds]
    assert sorted(built) == sorted(image.name for image in IMAGES)
    for image in IMAGES:
        if image.parent is not None:
            parent_end = fake.events.index(("end", image.parent))
            assert fake.events.index(("start", image.name)) > parent_end, image.name
    # The long build runs beside the others: every other image is done before it is.
    assert fake.events[-1] == ("end", "openstack")
    text = stream.getvalue()
    assert text.count("built dietstack/") == len(IMAGES)
    assert "openstack: Step 1/1" in text


def test_images_built_hears_of_each_image_as_it_is_there() -> None:
    fake = SlowBuilds({rootfs.debootstrap_tag()})
    heard: list[set[str]] = []
    build.build(
        fake.as_runtime(),
        "auto",
        "http://x/debian",
        quiet(),
        GAZPACHO,
        images_built=lambda tags: heard.append(set(tags)),
    )
    assert heard[0] == set()
    assert heard[-1] == {image.name for image in IMAGES}
    # The KVM probe's two images are there well before the long build ends.
    probe_ready = next(i for i, names in enumerate(heard) if {"base", "libvirt"} <= names)
    assert "openstack" not in heard[probe_ready]


def test_after_a_failed_build_nothing_new_starts_and_the_failure_is_raised() -> None:
    fake = SlowBuilds({rootfs.debootstrap_tag()}, fail="libvirt")
    with pytest.raises(BuildFailed) as caught:
        build.build(fake.as_runtime(), "auto", "http://x/debian", quiet(), GAZPACHO)
    assert "building image libvirt" in str(caught.value)
    assert "Debian package mirror" in str(caught.value)
    started = [name for event, name in fake.events if event == "start"]
    # base, then openstack beside libvirt; libvirt fails while openstack still builds,
    # and openstack is let finish, but nothing else starts.
    assert started[0] == "base" and sorted(started[1:]) == ["libvirt", "openstack"]
    assert ("end", "openstack") in fake.events


def test_a_failed_parent_stops_its_children() -> None:
    fake = SlowBuilds({rootfs.debootstrap_tag()}, fail="base")
    with pytest.raises(BuildFailed):
        build.build(fake.as_runtime(), "auto", "http://x/debian", quiet(), GAZPACHO)
    assert [name for event, name in fake.events if event == "start"] == ["base"]
