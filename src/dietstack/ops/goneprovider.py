"""Placement forgets a compute node that will not come back.

Nova's evacuate leaves each moved instance's claim on its old node in Placement:
the old nova-compute removes it when it starts again, which a dead node never
does, and Placement refuses to delete a provider that still holds claims (the
HTTP 409 `node remove` once ended in). Here each such claim is rewritten without
the gone node's provider, as that nova-compute would have done, and only then is
the provider deleted. The caller makes sure no instance lives on the node any more.
"""

from __future__ import annotations

from typing import Any

from dietstack.apis import cloudrest

#: The first version that shows and checks consumer generations.
VERSION = {"OpenStack-API-Version": "placement 1.28"}
#: The container whose process serves Placement.
CONTAINER = "nova-api"


def _get(conn: Any, url: str) -> dict[str, Any]:
    response = cloudrest.request(conn, "GET", url, CONTAINER, headers=VERSION)
    return dict(response.json())


def providers(conn: Any, base: str, name: str) -> list[str]:
    response = cloudrest.request(
        conn, "GET", f"{base}/resource_providers", CONTAINER, headers=VERSION,
        params={"name": name},
    )  # fmt: skip
    return [str(provider["uuid"]) for provider in response.json()["resource_providers"]]


def consumers(conn: Any, base: str, provider: str) -> list[str]:
    return sorted(_get(conn, f"{base}/resource_providers/{provider}/allocations")["allocations"])


def drop_claims_on(conn: Any, base: str, consumer: str, provider: str) -> None:
    """`consumer`'s allocations without those against `provider`."""
    url = f"{base}/allocations/{consumer}"
    current = _get(conn, url)
    kept = {
        uuid: {"resources": claim["resources"]}
        for uuid, claim in current["allocations"].items()
        if uuid != provider
    }
    # Written with the generation read, even when nothing is kept (an empty PUT
    # rather than a DELETE, which would not check it): a claim the scheduler makes
    # meanwhile is refused here (409), never wiped.
    body = {
        "allocations": kept,
        "project_id": current["project_id"],
        "user_id": current["user_id"],
        "consumer_generation": current["consumer_generation"],
    }
    cloudrest.request(conn, "PUT", url, CONTAINER, json=body, headers=VERSION)


def forget(conn: Any, base: str, name: str) -> int:
    """Every provider named `name` deleted, after its claims; how many claims went."""
    dropped = 0
    for provider in providers(conn, base, name):
        for consumer in consumers(conn, base, provider):
            drop_claims_on(conn, base, consumer, provider)
            dropped += 1
        cloudrest.request(
            conn,
            "DELETE",
            f"{base}/resource_providers/{provider}",
            CONTAINER,
            missing_ok=True,
            headers=VERSION,
        )
    return dropped
