from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest

from dietstack import releases
from dietstack.errors import DietStackError


def test_each_release_has_its_constraints_file_in_the_package() -> None:
    data = Path(str(resources.files("dietstack"))) / "data"
    for release in releases.RELEASES.values():
        lines = (data / release.constraints_file).read_text().splitlines()
        pins = dict(line.split("===", 1) for line in lines if "===" in line)
        # The constraints pin the libraries the services share, never the services.
        assert "oslo.messaging" in pins and "nova" not in pins, release.name
        dashboard = dict(package.split("==", 1) for package in release.dashboard)
        assert pins["horizon"].split(";")[0] == dashboard["horizon"], release.name


def test_releases_are_ordered_and_the_default_is_the_newest() -> None:
    assert releases.NAMES == ("2026.1", "2026.2")
    assert releases.DEFAULT == releases.NAMES[-1]
    assert releases.GAZPACHO.slurp and not releases.HIBISCUS.slurp


def test_the_supported_upgrade_is_allowed() -> None:
    assert releases.upgrade_problem("2026.1", "2026.2") is None
    assert releases.upgrade_targets("2026.1") == ["2026.2"]
    assert releases.upgrade_targets("2026.2") == []


@pytest.mark.parametrize(
    ("current", "target", "words"),
    [
        ("2026.2", "2026.1", "no downgrade"),
        ("2026.1", "2026.1", "already runs"),
        ("2026.1", "2027.1", "does not deploy"),
        ("2025.2", "2026.2", "no upgrade from 2025.2 to 2026.2; from 2025.2: none"),
    ],
)
def test_unsupported_paths_are_refused_and_say_why(current: str, target: str, words: str) -> None:
    problem = releases.upgrade_problem(current, target)
    assert problem is not None and words in problem


def test_an_unknown_release_names_the_known_ones() -> None:
    with pytest.raises(DietStackError) as caught:
        releases.named("2025.2")
    assert "2026.1, 2026.2" in str(caught.value.hint)
