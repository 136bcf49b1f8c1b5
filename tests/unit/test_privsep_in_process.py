"""The switch that makes a service's oslo.privsep calls in its own process."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from dietstack.start import privsep_in_process

#: Enough of oslo.privsep's PrivContext to tell a daemon call from a direct one.
FAKE_PRIV_CONTEXT = """
class PrivContext:
    started = 0

    def __init__(self, prefix, capabilities=None):
        self.client_mode = True

    def set_client_mode(self, enabled):
        self.client_mode = enabled

    def start(self, method=None):
        PrivContext.started += 1

    def entrypoint(self, func):
        def call(*args):
            if self.client_mode:
                self.start()
                return ("through the daemon", func(*args))
            return func(*args)
        return call
"""


@pytest.fixture
def fake_privsep(tmp_path: Path) -> Iterator[Path]:
    package = tmp_path / "oslo_privsep"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "priv_context.py").write_text(textwrap.dedent(FAKE_PRIV_CONTEXT))
    sys.path.insert(0, str(tmp_path))
    meta_path = list(sys.meta_path)
    yield tmp_path
    sys.meta_path[:] = meta_path
    sys.path.remove(str(tmp_path))
    for name in ("oslo_privsep", privsep_in_process.MODULE):
        sys.modules.pop(name, None)


def test_privileged_calls_run_in_the_caller_and_no_daemon_starts(fake_privsep: Path) -> None:
    privsep_in_process.install()
    from oslo_privsep import priv_context  # type: ignore[import-not-found]

    context = priv_context.PrivContext("neutron", capabilities=[])
    double = context.entrypoint(lambda x: x * 2)
    assert double(21) == 42
    context.set_client_mode(True)
    context.start()
    assert double(2) == 4 and priv_context.PrivContext.started == 0


def test_without_the_switch_the_fake_goes_through_its_daemon(fake_privsep: Path) -> None:
    from oslo_privsep import priv_context

    context = priv_context.PrivContext("neutron", capabilities=[])
    assert context.entrypoint(lambda x: x * 2)(21) == ("through the daemon", 42)


def test_the_command_runs_as_its_own_main_script(tmp_path: Path, fake_privsep: Path) -> None:
    script = tmp_path / "bin" / "fake-agent"
    script.parent.mkdir()
    script.write_text(
        "import sys\n"
        "from oslo_privsep import priv_context\n"
        "if __name__ == '__main__':\n"
        "    context = priv_context.PrivContext('x', capabilities=[])\n"
        "    sys.modules['fake_agent_result'] = (sys.argv[1:], context.client_mode)\n"
    )
    script.chmod(0o755)
    sys.path.insert(0, "placeholder for the script's directory")
    privsep_in_process.main([str(script), "--config-file", "a.conf"])
    assert sys.modules.pop("fake_agent_result") == (["--config-file", "a.conf"], False)  # type: ignore[comparison-overlap]
