"""Tumbling windows: the pure rules, and one lane's open window.

Lambda groups a shard's records into windows by their arrival time, passes the state the
function returned last in the window to its next invocation, and ends the window with a final
invocation (``isFinalInvokeForWindow``); a state over 1 MB ends it early
(``isWindowTerminatedEarly``). The checkpoint moves only after the final invocation succeeds.
- https://docs.aws.amazon.com/lambda/latest/dg/services-kinesis-windows.html
- https://docs.aws.amazon.com/lambda/latest/dg/services-ddb-windows.html
- Field meanings: aws-lambda-go ``events`` (``TimeWindowProperties``), AWS's own library.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from esm.rules import InvalidBatchResponse

# "Your state can be a maximum of 1 MB per shard. If it exceeds that size, Lambda terminates
# the window early." Measured as the state's compact JSON in UTF-8.
MAX_STATE_BYTES = 1024 * 1024
# Room a windowed event needs beside its records: the largest state that keeps the window
# open, plus the window fields. Batches leave it free within the 6 MB payload limit.
WINDOW_OVERHEAD_BYTES = MAX_STATE_BYTES + 1024


@dataclass(frozen=True)
class Window:
    start_s: float
    end_s: float

    def as_event_field(self) -> dict[str, str]:
        return {"start": iso8601(self.start_s), "end": iso8601(self.end_s)}


def window_of(arrival_s: float, window_s: int) -> Window:
    """The window an arrival time falls in: windows are ``window_s`` long and start on
    multiples of it since the epoch (AWS's example: 07:04:00 to 07:06:00 for 120 s)."""
    start = math.floor(arrival_s / window_s) * window_s
    return Window(start, start + window_s)


def count_in_window(arrivals_s: Sequence[float], window_s: int) -> int:
    """How many records from the front share the first one's window: a batch never spans
    two windows."""
    if not arrivals_s:
        return 0
    first = window_of(arrivals_s[0], window_s)
    count = 0
    for arrival_s in arrivals_s:
        if window_of(arrival_s, window_s) != first:
            break
        count += 1
    return count


def iso8601(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def state_size(state: Any) -> int:
    return len(json.dumps(state, separators=(",", ":")).encode())


def state_too_large(state: Any) -> bool:
    return state_size(state) > MAX_STATE_BYTES


def returned_state(response: Any) -> dict[str, Any]:
    """The state in a windowed invocation's response. "If the response does not contain a
    state property, Lambda considers this a failed invocation"; we also fail one whose
    state is not a JSON object (null included)."""
    if not isinstance(response, dict) or "state" not in response:
        raise InvalidBatchResponse("tumbling window response without a state")
    state = response["state"]
    if not isinstance(state, dict):
        raise InvalidBatchResponse("tumbling window state is not an object", state)
    return state


def window_fields(
    window: Window,
    state: dict[str, Any],
    *,
    shard_id: str,
    event_source_arn: str,
    final: bool,
    terminated_early: bool,
) -> dict[str, Any]:
    """The fields a windowed event carries beside ``Records``, in AWS's example's order."""
    return {
        "window": window.as_event_field(),
        "state": state,
        "shardId": shard_id,
        "eventSourceARN": event_source_arn,
        "isFinalInvokeForWindow": final,
        "isWindowTerminatedEarly": terminated_early,
    }


def with_window_fields(payload: str, fields: dict[str, Any]) -> str:
    """``{"Records":[...]}`` (as ``esm.sources.event_payload`` builds it) plus ``fields``."""
    return payload[:-1] + "," + json.dumps(fields, separators=(",", ":"))[1:]


@dataclass
class LaneWindow:
    """One lane's open window: its bounds, the state the function returned last in it, and
    the records delivered in it (checkpointed only once its final invocation succeeds)."""

    window_s: int
    shard_id: str
    event_source_arn: str
    bounds: Window | None = None  # None: no window open
    state: dict[str, Any] = field(default_factory=dict)
    held: list[str] = field(default_factory=list)  # sequence numbers, in order

    def admits(self, arrival_s: float) -> bool:
        return self.bounds is None or window_of(arrival_s, self.window_s) == self.bounds

    def open_for(self, arrival_s: float) -> None:
        if self.bounds is None:
            self.bounds = window_of(arrival_s, self.window_s)

    def payload(self, records_payload: str, *, final: bool = False, early: bool = False) -> str:
        assert self.bounds is not None
        fields = window_fields(
            self.bounds,
            self.state,
            shard_id=self.shard_id,
            event_source_arn=self.event_source_arn,
            final=final,
            terminated_early=early,
        )
        return with_window_fields(records_payload, fields)

    def finish(self, *, early: bool) -> list[str]:
        """After a successful final invocation: the held records to checkpoint. The state
        starts afresh; an early end keeps the window's bounds (its later records go on in
        the same window), a normal end closes it."""
        held, self.held = self.held, []
        self.state = {}
        if not early:
            self.bounds = None
        return held
