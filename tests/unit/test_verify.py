"""The verify runner records each step, and a failing step names itself."""

from __future__ import annotations

from unittest import mock

import pytest

from dietstack.apis import cloudrest
from dietstack.errors import DietStackError
from dietstack.ops import verify, verifystack, verifysteps


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


def test_a_failed_stack_shows_the_console_of_its_server(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stack = verifystack.Stack("https://c:8004/v1/p/stacks/s/1", "https://c:8004/v1/p/stacks", "1")
    answers = {
        stack.url: {
            "stack": {"stack_status": "CREATE_FAILED", "stack_status_reason": "0 of 1 received"}
        },
        f"{stack.url}/resources/server": {"resource": {"physical_resource_id": "srv-1"}},
        stack.listing: {"stacks": []},
    }
    posted: list[str] = []

    def post(conn: object, url: str, body: object, container: str) -> dict[str, str]:
        posted.append(url)
        return {"output": "DIETSTACK-TINY metadata=unreachable\n"}

    monkeypatch.setattr(cloudrest, "get", lambda conn, url, c, **q: answers[url])
    monkeypatch.setattr(cloudrest, "post", post)
    env = mock.Mock(url=lambda port, path: f"https://c:{port}{path}")
    v = verifysteps.Verification(env=env, demo=object())
    with pytest.raises(DietStackError) as failed:
        verifystack.finish_stack(v, stack)
    assert "0 of 1 received" in failed.value.message
    assert "srv-1" in failed.value.details
    assert "metadata=unreachable" in failed.value.details
    assert posted == ["https://c:8774/v2.1/servers/srv-1/action"]


def test_a_guest_without_an_address_shows_its_dhcp_client_and_its_port(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    output = "udhcpc: started, v1.37.0\nudhcpc: sending discover\n" + "wget: unreachable\n" * 20
    ports: dict[str, object] = {"ports": [{"id": "port-1", "status": "DOWN"}]}
    asked: list[str] = []

    def get(conn: object, url: str, container: str, **query: str) -> dict[str, object]:
        asked.append(f"{url}?{'&'.join(f'{k}={v}' for k, v in query.items())}")
        return ports

    monkeypatch.setattr(cloudrest, "get", get)
    monkeypatch.setattr(cloudrest, "post", lambda conn, url, body, c: {"output": output})
    env = mock.Mock(url=lambda port, path: f"https://c:{port}{path}")
    v = verifysteps.Verification(env=env, demo=object(), server_id="srv-1")
    shown = verifysteps.last_lines(lambda: verifysteps.no_address_evidence(v))
    assert shown.splitlines()[-1] == "its port: port-1 DOWN"
    assert "udhcpc: sending discover" in shown and "wget: unreachable" in shown
    assert asked == ["https://c:9696/v2.0/ports?device_id=srv-1"]
