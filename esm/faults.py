"""Delivery faults the runner can inject, to test a handler against what Lambda allows.

Lambda's stream delivery is at least once: a batch may be invoked again after it succeeded
(a lost checkpoint, a retried invocation), and an invocation that outlived its timeout may
still be running while the retry of the same records starts. A handler that keeps its
promises has to survive both, so the runner can do them on purpose, at seeded rates:

- a duplicate delivery: once the batch's invocation returns, the same batch is invoked again
  (its result is not used: the first one settled the batch);
- a stale invocation: a second invocation of the same batch starts just before the fresh one
  and runs beside it on another worker (its result is not used either).

Each one is logged as `injected fault: <kind>` on the `esm` logger (the chaos run counts the
lines).
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass

from esm.invoker import Invocation

log = logging.getLogger("esm")

DUPLICATE_DELIVERY = "duplicate delivery"
STALE_INVOCATION = "stale invocation"


@dataclass
class DeliveryFaults:
    duplicate_rate: float = 0.0
    stale_rate: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        rates = (self.duplicate_rate, self.stale_rate)
        if any(not 0 <= rate <= 1 for rate in rates):
            raise ValueError(f"fault rates must be from 0 to 1, got {rates}")
        self._rng = random.Random(self.seed)
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return bool(self.duplicate_rate or self.stale_rate)

    def _roll(self, rate: float) -> bool:
        if not rate:
            return False
        with self._lock:
            return self._rng.random() < rate

    def wrap(self, invoke: Callable[[str], Invocation]) -> Callable[[str], Invocation]:
        """`invoke`, with this object's faults around each call."""
        if not self.enabled:
            return invoke

        def faulty_invoke(payload: str) -> Invocation:
            stale = None
            if self._roll(self.stale_rate):
                log.warning("injected fault: %s", STALE_INVOCATION)
                stale = threading.Thread(
                    target=invoke, args=(payload,), name="esm-stale", daemon=True
                )
                stale.start()
            invocation = invoke(payload)
            if self._roll(self.duplicate_rate):
                log.warning("injected fault: %s", DUPLICATE_DELIVERY)
                invoke(payload)
            if stale is not None:
                stale.join()
            return invocation

        return faulty_invoke
