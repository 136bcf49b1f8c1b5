"""The verify runner records each step, and a failing step names itself."""

from __future__ import annotations

import pytest

from dietstack.errors import DietStackError
from dietstack.ops import verify


def test_a_failing_step_is_recorded_and_named() -> None:
    steps: list[verify.Step] = []
    said: list[str] = []
    with verify.recorded(steps, "first", said.append):
        pass
    with pytest.raises(verify.VerifyFailed) as failed:
        with verify.recorded(steps, "second", said.append):
            raise DietStackError("it broke", hint="look here")
    assert said == ["[1] first", "[2] second"]
    assert [(step.name, step.ok) for step in steps] == [("first", True), ("second", False)]
    assert failed.value.message == "verify failed at step 2 (second): it broke"
    assert failed.value.hint == "look here" and steps[1].detail == "it broke"
    assert "FAILED" in verify.summary(steps).splitlines()[2]
