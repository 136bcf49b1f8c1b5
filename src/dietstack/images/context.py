"""Build contexts: the pure step from an image spec to the files Docker builds.

A context is every file of the build plus its build arguments; its content
hash (and so the image tag) changes exactly when one of them does. Because a
parent's tag is one of the build arguments, a changed parent changes every
child's tag too.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from dietstack.images.catalog import ImageSpec, requirements_txt
from dietstack.releases import Release

#: Name of the CA bundle file inside contexts that need PyPI. It is not part of
#: the content hash: it only lets pip through a proxy and never reaches the image.
CA_BUNDLE_NAME = "build-ca.crt"

HASH_LENGTH = 12

#: The parts of the dietstack package the start program needs inside containers:
#: the service descriptions and the render step (standard library and PyYAML only).
IN_CONTAINER_MODULES = ("model.py", "render.py")
IN_CONTAINER_PACKAGES = ("start", "services")


@dataclass(frozen=True)
class ContextFile:
    content: bytes
    mode: int = 0o644


@dataclass(frozen=True)
class BuildContext:
    image: ImageSpec
    files: dict[str, ContextFile]
    buildargs: dict[str, str]
    #: The OpenStack release it is built for; "" for an image every release shares.
    release: str = ""

    @property
    def content_hash(self) -> str:
        digest = hashlib.sha256()
        digest.update(f"{self.image.name}\0{self.release}\0".encode())
        for key in sorted(self.buildargs):
            digest.update(f"arg {key}={self.buildargs[key]}\0".encode())
        for path in sorted(self.files):
            file = self.files[path]
            digest.update(f"file {path} {file.mode:o} {len(file.content)}\0".encode())
            digest.update(file.content)
        return digest.hexdigest()[:HASH_LENGTH]

    @property
    def tag(self) -> str:
        if self.release:
            return f"{self.image.repository}:{self.release}-{self.content_hash}"
        return f"{self.image.repository}:{self.content_hash}"


def _package_dir() -> Path:
    return Path(str(resources.files("dietstack")))


def _static_files(image: ImageSpec) -> dict[str, ContextFile]:
    root = _package_dir() / "images" / "files" / image.name
    return {
        str(path.relative_to(root)): ContextFile(path.read_bytes(), path.stat().st_mode & 0o777)
        for path in sorted(root.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }


def start_program_files() -> dict[str, ContextFile]:
    """The in-container start program: the launcher plus the stdlib-only modules it runs."""
    package = _package_dir()
    files = {
        "start/dietstack-start": ContextFile(
            (package / "images" / "files" / "launcher").read_bytes(), 0o755
        ),
        "start/dietstack/__init__.py": ContextFile((package / "__init__.py").read_bytes()),
    }
    for module in IN_CONTAINER_MODULES:
        files[f"start/dietstack/{module}"] = ContextFile((package / module).read_bytes())
    for subpackage in IN_CONTAINER_PACKAGES:
        for path in sorted((package / subpackage).glob("*.py")):
            files[f"start/dietstack/{subpackage}/{path.name}"] = ContextFile(path.read_bytes())
    return files


def _generated_files(image: ImageSpec, release: Release) -> dict[str, ContextFile]:
    if not image.needs_pypi:
        return {}
    constraints = (_package_dir() / "data" / release.constraints_file).read_bytes()
    return {
        "requirements.txt": ContextFile(requirements_txt(image, release).encode()),
        "upper-constraints.txt": ContextFile(constraints),
    }


def render(image: ImageSpec, parent_ref: str, release: Release) -> BuildContext:
    """The context of `image` for `release`, built on `parent_ref` (the rootfs for the
    base image)."""
    files = _static_files(image)
    files.update(_generated_files(image, release))
    if image.parent is not None:
        files.update(start_program_files())
    arg = "ROOTFS" if image.parent is None else "BASE"
    own_release = release.name if image.per_release else ""
    return BuildContext(image, files, {arg: parent_ref}, own_release)


def write(context: BuildContext, directory: Path, ca_bundle: bytes = b"") -> None:
    """Materialise the context in an empty directory for `docker build`."""
    for relative, file in context.files.items():
        target = directory / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(file.content)
        target.chmod(file.mode)
    if context.image.needs_pypi:
        (directory / CA_BUNDLE_NAME).write_bytes(ca_bundle)
