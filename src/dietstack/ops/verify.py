"""`dietstack verify`: prove the cloud works end to end, as the demo user.

Boots a VM from the tiny test image, checks from its console that it got its
address by DHCP and read its instance id from the metadata service and that it
reaches no port of this host but the cloud's user-facing ones, pings it on a
floating IP from this host, attaches a volume it must see, and runs a Heat
stack whose server signals a wait condition. Everything made is deleted again.

This module runs the steps (verifysteps) in order and records each; the summary
is the table `dietstack verify` prints.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from dietstack.engine import cloudsetup
from dietstack.errors import DietStackError
from dietstack.ops import exposure, verifysteps
from dietstack.ops.verifystack import Stack, finish_stack, start_stack
from dietstack.ops.verifysteps import (
    Verification,
    anti_affinity_group,
    boot,
    check_console,
    check_isolation,
    check_peer,
    floating_ip,
    volume,
)
from dietstack.render import Env

#: The image verify boots: `dietstack verify` uploads it first.
TINY_IMAGE = verifysteps.TINY_IMAGE


class VerifyFailed(DietStackError):
    pass


@dataclass
class Step:
    name: str
    seconds: float = 0.0
    ok: bool = False
    detail: str = ""


@contextmanager
def recorded(steps: list[Step], name: str, say: Callable[[str], None]) -> Iterator[Step]:
    """Runs one step, appended to `steps` with its time and result; its failure
    becomes a VerifyFailed naming the step."""
    step = Step(name)
    steps.append(step)
    say(f"[{len(steps)}] {name}")
    started = time.monotonic()
    try:
        yield step
        step.ok = True
    except DietStackError as exc:
        step.detail = exc.message
        raise VerifyFailed(
            f"verify failed at step {len(steps)} ({name}): {exc.message}",
            details=exc.details,
            hint=exc.hint,
        ) from None
    finally:
        step.seconds = time.monotonic() - started


def run(
    env: Env,
    say: Callable[[str], None],
    steps: list[Step],
    probe: list[exposure.Target],
    listening: dict[int, str],
) -> list[Step]:
    """Runs every step, recording into `steps` (so a failure still leaves a summary).
    `probe` lists the host ports the VM tries, `listening` who listens on each."""
    v = Verification(env, cloudsetup.demo_connection(env), probe=probe, listening=listening)

    @contextmanager
    def step(name: str) -> Iterator[Step]:
        with recorded(steps, name, say) as current:
            yield current

    name = f"verify-{uuid.uuid4().hex[:8]}"
    compute_nodes = [node for node in env.nodes if "compute" in node.roles]
    try:
        if len(compute_nodes) > 1:
            anti_affinity_group(v)
        # Heat boots the stack's server while the steps below use the first VM;
        # its own step, last, waits for what is left of it (or reports why it
        # could not be created).
        stack: Stack | DietStackError
        try:
            stack = start_stack(v)
        except DietStackError as exc:
            stack = exc
        with step("boot a VM from the tiny image; wait for ACTIVE"):
            boot(v, name)
        with step("console shows a DHCP address and the instance id from metadata"):
            check_console(v)
        with step("instances cannot reach the control plane (only user-facing ports)"):
            check_isolation(v, say)
        with step("floating IP answers ping from this host"):
            floating_ip(v)
        if len(compute_nodes) > 1:
            with step("a VM on another node pings it over the project network"):
                check_peer(v, name)
        with step("1 GB volume: create, attach, seen by the guest, detach, delete"):
            volume(v)
        with step("Heat stack: network, port, server, wait condition; delete"):
            if isinstance(stack, DietStackError):
                raise stack
            finish_stack(v, stack)
    finally:
        for cleanup in reversed(v.cleanups):
            try:
                cleanup()
            except DietStackError:
                continue
    return steps


def summary(steps: list[Step]) -> str:
    lines = [f"{'#':<3} {'STEP':<68} {'RESULT':<7} TIME"]
    for number, step in enumerate(steps, 1):
        result = "ok" if step.ok else "FAILED"
        lines.append(f"{number:<3} {step.name:<68} {result:<7} {step.seconds:5.1f} s")
    return "\n".join(lines)
