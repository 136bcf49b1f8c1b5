"""What the instances and the APIs saw while a cloud was upgraded: each API's
longest time without an answer, probed the way `dietstack status` probes it."""

from __future__ import annotations

import threading
import time

from dietstack import services
from dietstack.ops import status
from dietstack.render import Env


class ApiWatch:
    """Asks every endpoint of the catalog (and the dashboard) for an answer every
    `interval` seconds in the background, each in its own thread."""

    def __init__(self, env: Env, verify: str, interval: float = 0.5) -> None:
        """`verify`: the file with the cloud's CA, which the APIs' certificates must
        verify against."""
        self.urls = {
            endpoint.service_type: env.url(
                endpoint.port, endpoint.path.split("%")[0].rstrip("/") or "/"
            )
            for service in services.SERVICES
            for endpoint in service.endpoints
        }
        self.verify = verify
        self.interval = interval
        self.answers: dict[str, list[tuple[float, bool]]] = {name: [] for name in self.urls}
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(name,), daemon=True) for name in self.urls
        ]

    def _run(self, name: str) -> None:
        while not self._stop.is_set():
            sent = time.monotonic()
            answer, latency = status.probe(self.urls[name], self.verify)
            ok = latency is not None and not answer.startswith("HTTP 5")
            self.answers[name].append((sent, ok))
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - sent)))

    def __enter__(self) -> ApiWatch:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def longest_gaps(self) -> dict[str, float]:
        """Per API, the longest time between two answers (0 if it always answered)."""
        gaps = {}
        for name, answers in self.answers.items():
            marks = [answers[0][0], *(sent for sent, ok in answers if ok), answers[-1][0]]
            gaps[name] = max((b - a for a, b in zip(marks, marks[1:], strict=False)), default=0.0)
            gaps[name] = max(0.0, gaps[name] - self.interval)
        return gaps
