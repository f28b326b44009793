"""Domain exceptions. Each carries the coordinates it is about and chains its cause."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple


class StreamlineError(Exception):
    """Base class for every error this package raises on purpose."""


class InvalidEventError(StreamlineError):
    """The invocation event is not a stream batch at all (no `Records` list)."""


class RecordParseError(StreamlineError):
    """One record of the batch cannot be turned into a `Record`; it is parked at once."""

    def __init__(self, message: str, *, sequence_number: str | None = None) -> None:
        super().__init__(message)
        self.sequence_number = sequence_number


class CorruptAggregateError(RecordParseError):
    """A KPL aggregate whose MD5 trailer or protobuf body does not check out."""


class CheckpointStoreUnavailable(StreamlineError):
    """The checkpoint store could not be read or written: infrastructure, not the record.

    The processor re-raises it so the ESM retries (or bisects) the batch.
    """


class StaleCheckpointError(StreamlineError):
    """A conditional write found the stored position already at or past ours.

    Another (concurrent or later) invocation moved the checkpoint forward; ours must not
    move it back.
    """

    def __init__(self, key: object, position: object) -> None:
        super().__init__(f"checkpoint for {key} is already at or past {position}")
        self.key = key
        self.position = position


class EffectRejectedError(StreamlineError):
    """A record's DynamoDB transaction items were rejected (their own condition failed)."""

    def __init__(self, message: str, *, reasons: list[dict] | None = None) -> None:
        super().__init__(message)
        self.reasons = reasons or []


class PoisonSinkUnavailable(StreamlineError):
    """A record could not be parked; the batch fails so the record is not lost."""


class StateConflictError(StreamlineError):
    """A key's state moved since this invocation loaded it (another invocation committed).

    Nothing of this invocation is kept for the key; its records are retried from the stored
    state.
    """

    def __init__(self, key: object, version: object) -> None:
        super().__init__(f"state of {key} is no longer at version {version}")
        self.key = key
        self.version = version


class StateError(StreamlineError):
    """A fold returned a state that cannot be stored: not JSON, or past DynamoDB's item limit.

    It fails the record that produced it (and parks it after max_attempts), like any error of
    the user's code.
    """


class ContractViolation(StreamlineError):
    """The record can never succeed: park it now, without using up retries; its key goes on.

    Raise it from `apply` or `fold` for a check a schema cannot express (an amount that must
    match its line items, a currency the business does not trade). Any other exception is a
    transient failure: retried, and parked only after `max_attempts`. The poison message's
    `error.type` is the class raised (a subclass names itself) and `attempts` counts this one.
    """


class FieldError(NamedTuple):
    """One field of a payload that breaks its contract."""

    location: str  # "n", "items.0.price"; "(payload)" for the payload as a whole
    problem: str  # what the validator says is wrong
    given: str | None = None  # the offending input, shortened; None when there is none


class InvalidPayloadError(ContractViolation):
    """The payload does not match the processor's `model` or `schema` (processor/validation.py).

    Raised before the user's code runs; `errors` lists the broken fields. Its message carries
    the offending inputs, shortened, for the poison message; `summary()` leaves them out, for
    logs (payloads are not logged above DEBUG).
    """

    MAX_LISTED = 20  # fields named in the message; the rest are counted

    def __init__(self, contract: str, errors: Sequence[FieldError]) -> None:
        self.contract = contract  # "model DemoEventModel", "JSON schema"
        self.errors = tuple(errors)
        super().__init__(self._describe(with_inputs=True))

    def summary(self) -> str:
        return self._describe(with_inputs=False)

    def _describe(self, *, with_inputs: bool) -> str:
        count = len(self.errors)
        fields = "1 field" if count == 1 else f"{count} fields"
        lines = [f"payload breaks its contract ({self.contract}): {fields}"]
        for error in self.errors[: self.MAX_LISTED]:
            line = f"{error.location}: {error.problem}"
            if with_inputs and error.given is not None:
                line += f" (given {error.given})"
            lines.append(line)
        if count > self.MAX_LISTED:
            lines.append(f"... and {count - self.MAX_LISTED} more")
        return "\n".join(lines) if with_inputs else "; ".join(lines)
