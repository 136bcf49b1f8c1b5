from __future__ import annotations

import time

import pytest

from dietstack.errors import DietStackError
from dietstack.ops import logview

from .helpers import make_env


def test_a_service_name_means_all_its_containers() -> None:
    assert logview.select(make_env(), "heat") == ["heat-api"]
    assert logview.select(make_env(), "nova-compute") == ["nova-compute"]


def test_a_service_served_in_another_process_means_that_container() -> None:
    assert logview.select(make_env(), "placement") == ["nova-api"]


def test_no_name_means_every_container_but_no_one_shot_step() -> None:
    chosen = logview.select(make_env(), None)
    assert "keystone" in chosen and "horizon" in chosen
    assert not any(name.endswith("-bootstrap") for name in chosen)


def test_an_unknown_name_lists_the_choices() -> None:
    with pytest.raises(DietStackError) as caught:
        logview.select(make_env(), "novaa")
    assert "no container or service 'novaa'" in caught.value.message
    assert "nova-api" in (caught.value.hint or "")
    assert "placement" in (caught.value.hint or "")


def test_a_bad_since_is_refused_before_any_log_is_read() -> None:
    class Runtime:
        read: list[str] = []

        def logs(self, name: str, *args: object) -> list[bytes]:
            self.read.append(name)
            return []

    runtime = Runtime()
    with pytest.raises(DietStackError) as caught:
        logview.show(runtime, ["a", "b"], True, "yesterday", None, print)  # type: ignore[arg-type]
    assert "--since 'yesterday' is not a time" in caught.value.message and runtime.read == []
    assert logview.since_time("10m") <= time.time() - 600  # type: ignore[operator]
