"""Reading the settings file's text: its key/value pairs, or a clear error naming
what is wrong with the file itself (not UTF-8, not YAML, not a mapping)."""

from __future__ import annotations

from pathlib import Path

import yaml

from dietstack.errors import DietStackError


def read_raw(path: Path) -> dict[str, object]:
    """The key/value pairs in the settings file; empty when it does not exist yet."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except UnicodeDecodeError as exc:
        raise DietStackError(
            f"{path} is not UTF-8 text (byte {exc.start} cannot be read)",
            hint="save the file as UTF-8 (plain `key: value` lines); "
            "`dietstack config init --force` writes a fresh file",
        ) from None
    except OSError as exc:
        raise DietStackError(
            f"cannot read {path}: {exc.strerror}", hint="run as root or pass --config"
        ) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        raise DietStackError(
            f"{path} is not valid YAML{where}",
            hint="each line must look like `key: value`; `dietstack config init --force` "
            "writes a fresh file",
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise DietStackError(
            f"{path} must contain `key: value` lines, not a {type(data).__name__}",
            hint="`dietstack config init --force` writes a fresh file",
        )
    return {str(k): v for k, v in data.items()}
