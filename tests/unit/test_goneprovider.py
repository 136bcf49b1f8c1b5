"""Placement forgets a gone node: claims of moved instances lose only the gone
provider, a claim left with nothing is deleted, then the provider goes."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest

from dietstack.errors import DietStackError
from dietstack.ops import goneprovider

BASE = "https://10.0.0.1:8778"
GONE, OTHER = "rp-gone", "rp-other"


class FakePlacement:
    """Placement's REST API for one gone provider and two consumers."""

    def __init__(self) -> None:
        self.allocations: dict[str, dict[str, Any]] = {
            "moved": {GONE: {"VCPU": 1}, OTHER: {"VCPU": 1}},
            "orphan": {GONE: {"MEMORY_MB": 64}},
        }
        self.providers = {GONE: "node-1", OTHER: "node-2"}
        self.calls: list[tuple[str, str, Any]] = []
        #: A claim changed by the scheduler between our read and our write.
        self.conflict = False

    def request(self, url: str, method: str, raise_exc: bool, **kwargs: Any) -> Any:
        assert kwargs["headers"]["OpenStack-API-Version"] == "placement 1.28"
        path = url.removeprefix(BASE)
        self.calls.append((method, path, kwargs.get("json")))
        if method == "GET" and path == "/resource_providers":
            name = kwargs["params"]["name"]
            found = [{"uuid": u} for u, n in self.providers.items() if n == name]
            return answer({"resource_providers": found})
        if method == "GET" and path.endswith("/allocations") and "resource_providers" in path:
            provider = path.split("/")[2]
            held: dict[str, Any] = {c: {} for c, a in self.allocations.items() if provider in a}
            return answer({"allocations": held})
        consumer = path.split("/")[-1]
        if method == "GET":
            claims = {rp: {"resources": r} for rp, r in self.allocations[consumer].items()}
            return answer(
                {"allocations": claims, "project_id": "p", "user_id": "u", "consumer_generation": 3}
            )
        if method == "PUT":
            body = kwargs["json"]
            assert body["consumer_generation"] == 3 and body["project_id"] == "p"
            if self.conflict:
                return SimpleNamespace(status_code=409, text="consumer generation conflict")
            self.allocations[consumer] = {
                rp: claim["resources"] for rp, claim in body["allocations"].items()
            }
            if not body["allocations"]:  # Placement drops a consumer left with nothing
                del self.allocations[consumer]
        elif method == "DELETE" and "resource_providers" in path:
            assert not any(consumer in a for a in self.allocations.values()), "claims left"
            del self.providers[consumer]
        elif method == "DELETE":
            del self.allocations[consumer]
        return answer({})


def answer(body: dict[str, Any]) -> SimpleNamespace:
    text = json.dumps(body)
    return SimpleNamespace(status_code=200, text=text, content=text.encode(), json=lambda: body)


def test_the_gone_provider_loses_its_claims_then_goes() -> None:
    placement = FakePlacement()
    conn = SimpleNamespace(session=placement)
    assert goneprovider.forget(conn, BASE, "node-1") == 2
    assert placement.allocations == {"moved": {OTHER: {"VCPU": 1}}}
    assert placement.providers == {OTHER: "node-2"}


def test_a_name_placement_does_not_know_changes_nothing() -> None:
    placement = FakePlacement()
    assert goneprovider.forget(SimpleNamespace(session=placement), BASE, "node-9") == 0
    assert [call[0] for call in placement.calls] == ["GET"]


def test_a_claim_changed_meanwhile_is_refused_and_the_provider_kept() -> None:
    placement = FakePlacement()
    placement.conflict = True
    with pytest.raises(DietStackError, match="HTTP 409"):
        goneprovider.forget(SimpleNamespace(session=placement), BASE, "node-1")
    assert GONE in placement.providers and "orphan" in placement.allocations
