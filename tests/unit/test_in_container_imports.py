"""The start program runs inside the containers with only the part of the dietstack
package its build context ships (images.context.start_program_files): the service
descriptions must import nothing else of it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from dietstack.images.context import start_program_files


def test_the_shipped_modules_import_on_their_own(tmp_path: Path) -> None:
    for name, file in start_program_files().items():
        if name.startswith("start/dietstack/"):
            target = tmp_path / name.removeprefix("start/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(file.content)
    # Neither the source tree nor an editable install's import hook may answer.
    script = (
        "import sys; sys.path = [p for p in sys.path if not p.endswith('src')]; "
        "sys.meta_path = [f for f in sys.meta_path if 'editable' not in repr(f).lower()]; "
        f"sys.path.insert(0, {str(tmp_path)!r}); "
        "import dietstack.services, dietstack.start, dietstack.start.in_process; "
        "import dietstack.start.neutron_workers, dietstack.start.nova_commands; "
        "print(dietstack.services.__file__)"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": ""},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(str(tmp_path))
