"""Bootstrap steps started ahead of their turn: results in plan order, at most
EARLY_AT_ONCE at once, nothing left running or begun after close."""

from __future__ import annotations

import threading
import time

from dietstack.engine import earlysteps
from dietstack.engine.converge import Action, Desired
from dietstack.engine.deploy import Planned, _bootstraps
from dietstack.engine.earlysteps import EarlySteps
from dietstack.hosts.dockerdata import RunSpec
from dietstack.model import Container


def spec(name: str) -> RunSpec:
    return RunSpec(name=name, image="dietstack/openstack:test", command=(), labels={})


class SlowRunner:
    """Each step takes `seconds`; records the order steps began and the most at once."""

    def __init__(self, seconds: float = 0.05, failing: str = "") -> None:
        self.seconds = seconds
        self.failing = failing
        self.began: list[str] = []
        self.running = 0
        self.most = 0
        self.lock = threading.Lock()
        self.release = threading.Event()
        self.release.set()

    def run_oneshot(self, step: RunSpec) -> tuple[int, str]:
        with self.lock:
            self.began.append(step.name)
            self.running += 1
            self.most = max(self.most, self.running)
        self.release.wait(5)
        time.sleep(self.seconds)
        with self.lock:
            self.running -= 1
        if step.name == self.failing:
            return 1, f"{step.name}: migration failed"
        return 0, f"{step.name} done"


def test_started_steps_run_at_most_two_at_once_and_answer_in_plan_order() -> None:
    runner = SlowRunner()
    early = EarlySteps(runner)
    names = [f"{service}-bootstrap" for service in ("keystone", "glance", "nova", "heat")]
    early.start(spec(name) for name in names)
    try:
        for name in names:
            assert early.run(spec(name)) == (0, f"{name} done")
    finally:
        early.close()
    assert runner.began == names
    assert runner.most == earlysteps.EARLY_AT_ONCE < len(names)


def test_a_step_not_started_early_runs_when_its_turn_comes() -> None:
    runner = SlowRunner(seconds=0)
    early = EarlySteps(runner)
    assert early.run(spec("heat-bootstrap")) == (0, "heat-bootstrap done")
    assert runner.began == ["heat-bootstrap"]
    early.close()


def test_a_failed_early_step_reports_its_exit_code_and_log_at_its_turn() -> None:
    runner = SlowRunner(failing="nova-bootstrap")
    early = EarlySteps(runner)
    early.start([spec("nova-bootstrap"), spec("cinder-bootstrap")])
    try:
        assert early.run(spec("nova-bootstrap")) == (1, "nova-bootstrap: migration failed")
    finally:
        early.close()


def test_close_waits_for_steps_under_way_and_drops_those_not_begun() -> None:
    runner = SlowRunner(seconds=0)
    runner.release.clear()
    early = EarlySteps(runner)
    early.start(spec(name) for name in ("a", "b", "c", "d"))
    deadline = time.monotonic() + 5
    while len(runner.began) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert early.under_way() == ["a", "b"]
    threading.Timer(0.2, runner.release.set).start()
    early.close()
    assert runner.began == ["a", "b"]
    assert runner.running == 0


def test_a_step_is_started_once() -> None:
    runner = SlowRunner(seconds=0)
    early = EarlySteps(runner)
    early.start([spec("glance-bootstrap")])
    early.start([spec("glance-bootstrap")])
    early.close()
    assert runner.began == ["glance-bootstrap"]


def test_only_the_bootstraps_that_will_run_start_early() -> None:
    def planned(kind: str, name: str) -> Planned:
        container = Container(name, name.split("-")[0], "openstack", ())
        return Planned(Action(kind, name, "why"), container.service, Desired(container, spec(name)))

    steps = [
        planned("run", "glance-bootstrap"),
        planned("create", "glance-api"),
        planned("skip", "nova-bootstrap"),
        planned("run", "cinder-bootstrap"),
        Planned(Action("remove", "heat-engine", "retired")),
    ]
    assert [step.name for step in _bootstraps(steps)] == ["glance-bootstrap", "cinder-bootstrap"]
