"""Plan, then build, every image the cloud needs.

The plan renders each image's context (parents first, since a child's context
names its parent's tag) and marks the ones whose tag already exists: those are
up to date and are not touched. A rebuild with nothing changed therefore only
hashes files and asks Docker a few questions.

Missing images build two at a time, each once its parent is there: on two cores
the long OpenStack build runs beside the dashboard's and the small ones, instead
of before them.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from dietstack.errors import BuildFailed
from dietstack.hosts.provision import BUILD_SPACE_BYTES, ca_bundle, check_free_space
from dietstack.hosts.runtime import DockerRuntime
from dietstack.images import context, rootfs
from dietstack.images.catalog import (
    BY_NAME,
    IMAGES,
    LABEL_HASH,
    LABEL_IMAGE,
    LABEL_RELEASE,
    ImageSpec,
)
from dietstack.progress import Progress
from dietstack.releases import Release


@dataclass(frozen=True)
class PlannedImage:
    context: context.BuildContext
    present: bool

    @property
    def tag(self) -> str:
        return self.context.tag


def select(names: list[str]) -> list[ImageSpec]:
    """The named images plus every ancestor they need, parents first."""
    wanted: set[str] = set()
    for name in names:
        while name is not None and name not in wanted:
            wanted.add(name)
            name = BY_NAME[name].parent  # type: ignore[assignment]
    return [image for image in IMAGES if image.name in wanted]


def plan(
    runtime: DockerRuntime,
    rootfs_ref: str,
    release: Release,
    images: list[ImageSpec] | None = None,
) -> list[PlannedImage]:
    tags: dict[str, str] = {}
    planned = []
    for image in images or list(IMAGES):
        parent_ref = rootfs_ref if image.parent is None else tags[image.parent]
        ctx = context.render(image, parent_ref, release)
        tags[image.name] = ctx.tag
        planned.append(PlannedImage(ctx, present=runtime.image_id(ctx.tag) is not None))
    return planned


def plan_local(runtime: DockerRuntime, base_source: str, release: Release) -> list[PlannedImage]:
    """The plan from what is on this host only: no pulls, no builds."""
    return plan(runtime, rootfs.resolve_local(runtime, base_source), release)


def tags_of(planned: list[PlannedImage]) -> dict[str, str]:
    """Image name (e.g. `ovn`) -> the tag the plan gives it."""
    return {item.context.image.name: item.tag for item in planned}


def local_tags(runtime: DockerRuntime, base_source: str, release: Release) -> dict[str, str]:
    """The tags of the images on this host, by image name."""
    return tags_of(plan_local(runtime, base_source, release))


def build(
    runtime: DockerRuntime,
    base_source: str,
    debian_mirror: str,
    progress: Progress,
    release: Release,
    names: list[str] | None = None,
    images_built: Callable[[dict[str, str]], None] | None = None,
) -> list[PlannedImage]:
    """Build whatever is missing for `release`; returns the plan (all of it present
    afterwards). `images_built`, if given, is called with the tags of the images
    there so far, at the start and after each build, so that work needing only
    some of them can start early."""
    images = select(names) if names else list(IMAGES)
    progress.step(f"Debian {rootfs.SUITE} root filesystem")
    rootfs_ref = rootfs.resolve(runtime, base_source, debian_mirror, progress)
    progress.done(f"using {rootfs_ref}")
    planned = plan(runtime, rootfs_ref, release, images)
    if any(not item.present for item in planned):
        check_free_space(runtime.root_dir(), BUILD_SPACE_BYTES, "building the images")
    for item in planned:
        if item.present:
            progress.step(_title(item.context))
            progress.done(f"up to date: {item.tag}")
    there = {item.context.image.name: item.tag for item in planned if item.present}

    def built(ctx: context.BuildContext) -> None:
        there[ctx.image.name] = ctx.tag
        if images_built is not None:
            images_built(dict(there))

    if images_built is not None:
        images_built(dict(there))
    missing = [item.context for item in planned if not item.present]
    _build_missing(runtime, missing, progress, built)
    return [PlannedImage(item.context, present=True) for item in planned]


#: Builds run at once. Two keep both cores of a small host busy (a pip install
#: is mostly one core) without doubling the peak memory of the largest build.
PARALLEL_BUILDS = 2


def _build_missing(
    runtime: DockerRuntime,
    missing: list[context.BuildContext],
    progress: Progress,
    built: Callable[[context.BuildContext], None],
) -> None:
    """Builds `missing` (parents before children), PARALLEL_BUILDS at a time, each
    once its parent is built. After a failure nothing new starts; the builds under
    way finish, then the first failure is raised."""
    bundle = ca_bundle()
    waiting = list(missing)
    unbuilt = {ctx.image.name for ctx in missing}
    running: dict[Future[None], tuple[context.BuildContext, float]] = {}
    failure: BaseException | None = None
    with ThreadPoolExecutor(max_workers=PARALLEL_BUILDS) as pool:
        while running or (waiting and failure is None):
            if failure is None:
                for ctx in _startable(waiting, unbuilt, PARALLEL_BUILDS - len(running)):
                    waiting.remove(ctx)
                    started = progress.step(_title(ctx))
                    future = pool.submit(_build_one, runtime, ctx, bundle, progress)
                    running[future] = (ctx, started)
            if not running:
                break  # only after a failure: what waits needs what failed
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                ctx, started = running.pop(future)
                error = future.exception()
                if error is not None:
                    failure = failure or error
                    continue
                unbuilt.discard(ctx.image.name)
                progress.done(f"built {ctx.tag}", since=started)
                built(ctx)
    if failure is not None:
        raise failure


def _startable(
    waiting: list[context.BuildContext], unbuilt: set[str], slots: int
) -> list[context.BuildContext]:
    """Up to `slots` waiting builds whose parent is not still to be built."""
    ready = [ctx for ctx in waiting if ctx.image.parent not in unbuilt]
    return ready[: max(slots, 0)]


def _title(ctx: context.BuildContext) -> str:
    return f"{ctx.image.name}: {ctx.image.description}"


def _build_one(
    runtime: DockerRuntime, ctx: context.BuildContext, bundle: bytes, progress: Progress
) -> None:
    labels = {
        LABEL_IMAGE: ctx.image.name,
        LABEL_RELEASE: ctx.release or "any",
        LABEL_HASH: ctx.content_hash,
    }
    with tempfile.TemporaryDirectory(prefix=f"dietstack-build-{ctx.image.name}-") as tmp:
        context.write(ctx, Path(tmp), bundle)
        try:
            runtime.build(
                Path(tmp),
                ctx.tag,
                ctx.buildargs,
                labels,
                lambda line: progress.activity(line, source=ctx.image.name),
            )
        except BuildFailed as exc:
            exc.message = f"building image {ctx.image.name} ({ctx.tag}) failed{_failed_step(exc)}"
            exc.hint = explain_build_failure(exc.details)
            raise


def _failed_step(exc: BuildFailed) -> str:
    steps = [line for line in exc.details.splitlines() if line.startswith("Step ")]
    return f" at {steps[-1][:120]}" if steps else ""


#: Known causes of build failures, recognised in the build output, and what to do.
FAILURE_PATTERNS: tuple[tuple[str, str], ...] = (
    (
        r"No space left on device",
        "the disk holding Docker's data is full: free space (`docker system prune` removes "
        "unused images and build cache) and run the build again",
    ),
    (
        r"CERTIFICATE_VERIFY_FAILED|SSLError|certificate verify failed",
        "TLS to PyPI failed: if a TLS-inspecting proxy is in the way, add its CA to the host's "
        "/etc/ssl/certs/ca-certificates.crt (run update-ca-certificates); builds use that bundle",
    ),
    (
        r"Could not fetch URL|Max retries exceeded|No matching distribution found|"
        r"Failed to establish a new connection|ProxyError|Read timed out",
        "PyPI (https://pypi.org) is not reachable from the build: check the host's internet "
        "access or proxy, then run the build again; finished images are kept",
    ),
    (
        r"Failed to fetch|Temporary failure resolving|Could not resolve|Unable to fetch some "
        r"archives|Unable to connect to",
        "the Debian package mirror is not reachable from the build: check the host's network "
        "(or set `debian_mirror`), then run the build again; finished images are kept",
    ),
)


def explain_build_failure(output: str) -> str:
    for pattern, hint in FAILURE_PATTERNS:
        if re.search(pattern, output):
            return hint
    return "the lines above show the failing step; fix the cause and run the build again"
