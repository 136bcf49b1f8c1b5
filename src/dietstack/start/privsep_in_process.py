"""Runs an OpenStack command with its oslo.privsep calls made in its own process.

    python3 privsep_in_process.py COMMAND [ARG ...]

oslo.privsep starts one helper daemon per privilege context a service uses
(neutron's metadata agent three, nova-compute three: sys_admin, os-vif, os-brick),
each a Python process that imports the service's libraries again: about 100 MiB
apiece, over 400 MiB for an all-in-one cloud. Inside a DietStack container the
service already runs as root with the container's capabilities, which are
exactly what its helpers are given (a helper cannot hold more than its
container), so the helpers separate nothing here. Made in process, a privileged
call is the same function called directly, as oslo.privsep does in client mode
off.

The switch is made when the service itself first imports oslo.privsep, so its
import order (and any monkey patching done before) stays as it was.
Standard library only: it runs in the service's own interpreter.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import runpy
import shutil
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

MODULE = "oslo_privsep.priv_context"


def make_in_process(module: ModuleType) -> None:
    """Every PrivContext of `module` runs its entrypoints in the caller and starts
    no daemon, even when a service asks it to."""
    context = module.PrivContext
    original_init = context.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        self.client_mode = False

    def start(self: Any, *args: Any, **kwargs: Any) -> None:
        return None

    context.__init__ = init
    context.start = start
    # A service that turns client mode back on would start the daemon again.
    context.set_client_mode = lambda self, enabled: None


class _PatchOnImport(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds oslo_privsep.priv_context the usual way and patches it once loaded."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != MODULE:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return None
        self.loader = spec.loader
        spec.loader = self
        return spec

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self.loader.exec_module(module)
        make_in_process(module)


def install() -> None:
    sys.meta_path.insert(0, _PatchOnImport())


def main(argv: list[str]) -> None:
    if not argv:
        raise SystemExit("usage: privsep_in_process.py COMMAND [ARG ...]")
    script = shutil.which(argv[0])
    if script is None:
        raise SystemExit(f"privsep_in_process.py: {argv[0]}: command not found")
    # This file's directory is not the service's: nothing in it may shadow a module.
    del sys.path[0]
    install()
    sys.argv = [script, *argv[1:]]
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
