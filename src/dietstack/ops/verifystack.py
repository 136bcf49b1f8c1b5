"""The last step of `dietstack verify`: a Heat stack (a network routed to the
outside, a port, and a server that signals a wait condition). It is started first,
so its server boots while the other steps run, and checked last."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

from dietstack.apis import cloudrest
from dietstack.engine import cloudsetup
from dietstack.errors import DietStackError
from dietstack.ops.verifysteps import TINY_IMAGE, Verification, console, last_lines, wait_for
from dietstack.services import heat

STACK_TEMPLATE = Path(__file__).parents[1] / "data" / "verify-stack.yaml"


@dataclass(frozen=True)
class Stack:
    """A stack being created: verify starts it first and checks it last, so its
    server boots while the other steps work on the first VM."""

    url: str
    listing: str
    id: str


def start_stack(v: Verification) -> Stack:
    project = v.demo.current_project_id
    base = v.url(heat.PORT, f"/v1/{project}")
    name = f"verify-{uuid.uuid4().hex[:8]}"
    body = {
        "stack_name": name,
        "template": STACK_TEMPLATE.read_text(),
        "parameters": {
            "image": TINY_IMAGE,
            "flavor": cloudsetup.FLAVORS[0].name,
            "router": cloudsetup.DEMO_ROUTER,
        },
        "timeout_mins": 10,
    }
    created = cloudrest.post(v.demo, f"{base}/stacks", body, "heat-api")["stack"]
    stack = Stack(f"{base}/stacks/{name}/{created['id']}", f"{base}/stacks", str(created["id"]))
    # Should a step before the stack's fail, the stack goes too.
    v.cleanups.append(lambda: delete_stack(v, stack))
    return stack


def finish_stack(v: Verification, stack: Stack) -> None:
    """Wait until the stack's server has signalled its wait condition, then delete it."""

    def complete() -> bool:
        status = cloudrest.get(v.demo, stack.url, "heat-api")["stack"]
        if status["stack_status"].endswith("FAILED"):
            raise DietStackError(
                f"the stack failed: {status['stack_status_reason']}",
                hint="see `docker logs heat-api` (Heat's APIs and its engine)",
                details=last_lines(lambda: stack_console(v, stack), count=25),
            )
        return bool(status["stack_status"] == "CREATE_COMPLETE")

    try:
        wait_for(
            "the stack (its server signals the wait condition)",
            complete,
            timeout=600,
            interval=1,
            evidence=lambda: stack_console(v, stack),
        )
    finally:
        delete_stack(v, stack)


def stack_console(v: Verification, stack: Stack) -> str:
    """The console of the stack's server: whether it reached metadata, ran its
    user data and what the signal's request answered."""
    resource = cloudrest.get(v.demo, f"{stack.url}/resources/server", "heat-api")["resource"]
    server_id = resource.get("physical_resource_id") or ""
    if not server_id:
        return "the stack's server was not created"
    return f"the console of the stack's server {server_id} ends:\n" + console(v, server_id)


def delete_stack(v: Verification, stack: Stack) -> None:
    """Delete the stack unless it is gone already, and wait until it is."""

    def deleted() -> bool:
        return not cloudrest.get(v.demo, stack.listing, "heat-api", id=stack.id)["stacks"]

    if deleted():
        return
    cloudrest.delete(v.demo, stack.url, "heat-api")
    wait_for("the stack to be deleted", deleted, timeout=300, interval=1)
