"""Domain exceptions. Each carries the coordinates it is about and chains its cause."""

from __future__ import annotations


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
