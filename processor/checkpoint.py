"""Checkpoint stores: per (event source ARN, shard, partition key), the position of the last
record applied, plus the failed-attempt counter of the record that is failing there.

Positions only move forward. The DynamoDB store says so in every write's condition
(`attribute_not_exists(position) OR position <= :position`), so a stale or concurrent
invocation can never move a checkpoint back. Positions are stored as fixed-width decimal
strings, which DynamoDB compares exactly as integers: Kinesis sequence numbers have up to 129
digits, beyond a DynamoDB number's 38 digits of precision.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from processor.aws import LazyClient, error_code
from processor.exceptions import (
    CheckpointStoreUnavailable,
    EffectRejectedError,
    StaleCheckpointError,
    StateConflictError,
    StateError,
)
from processor.records import Position

# Beyond Kinesis' longest retention option of 7 days extended (365 days is possible: pass
# ttl_s). https://docs.aws.amazon.com/streams/latest/dev/kinesis-extended-retention.html
DEFAULT_TTL_S = 8 * 24 * 3600
_SEQUENCE_DIGITS = 130  # Kinesis: 0|([1-9]\d{0,128})
_SUB_SEQUENCE_DIGITS = 20
# Unsettled positions kept per key: ~60 bytes each in DynamoDB, well inside the 400 KB item.
MAX_UNSETTLED = 2000
# A key's state, as JSON text, stays below DynamoDB's 400 KB item limit with room for the
# item's key and attributes. https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ServiceQuotas.html
MAX_STATE_BYTES = 390_000


class CheckpointKey(NamedTuple):
    event_source_arn: str
    shard_id: str
    partition_key: str


@dataclass(frozen=True, slots=True)
class KeyState:
    """What the store knows about one key."""

    position: Position | None = None  # last applied (or parked) record
    failing_position: Position | None = None  # the record whose attempts are counted
    attempts: int = 0
    first_failure_at: str | None = None
    parked: frozenset[Position] = frozenset()  # parked records not yet replayed
    # Records seen but not applied (failed, blocked behind a failure, cut by the time budget)
    # and not applied since. When the ESM gives up on them they stay here, which is how a
    # replay tells "left unapplied" from "applied" once the key's position has moved past.
    unsettled: frozenset[Position] = frozenset()
    unsettled_truncated: bool = False  # more were unsettled than MAX_UNSETTLED kept
    replayed: frozenset[Position] = frozenset()  # applied by a replay (never twice)

    def attempts_at(self, position: Position) -> int:
        return self.attempts if self.failing_position == position else 0


@dataclass(slots=True)
class CheckpointUpdate:
    """The one write a batch makes for one key."""

    key: CheckpointKey
    position: Position | None  # new position; None when nothing was applied for the key
    failing_position: Position | None = None
    attempts: int = 0
    first_failure_at: str | None = None
    parked: tuple[Position, ...] = ()  # records parked in this batch
    replayed: tuple[Position, ...] = ()  # records applied by a replay
    # Of those, the ones that leave the key's parked / unsettled sets. (DynamoDB's DELETE is
    # only sent for a set the record is known to be in.)
    leaves_parked: tuple[Position, ...] = ()
    leaves_unsettled: tuple[Position, ...] = ()
    touch_failure: bool = True  # False: leave the key's attempt counter as it is (replays)
    unsettled: frozenset[Position] | None = None  # the key's new unsettled set; None: as is
    unsettled_truncated: bool = False  # some unsettled records were not kept (sticky)


class StateKey(NamedTuple):
    """Whose state: a key's state belongs to its event source, not to a shard, so that it
    survives a reshard (the key's records move to a child shard)."""

    event_source_arn: str
    partition_key: str


@dataclass(frozen=True, slots=True)
class StoredState:
    value: Any = None  # the decoded JSON; None: no state yet
    version: int = 0  # bumped by every commit; 0: never committed


@dataclass(frozen=True, slots=True)
class StateWrite:
    """A key's new state, committed only if the stored one is still at `expected_version`."""

    key: StateKey
    encoded: str  # the state as JSON text (`encode_state`)
    expected_version: int


def encode_state(value: Any) -> str:
    """A state as the JSON text the store keeps; StateError when it cannot be kept."""
    try:
        text = json.dumps(value, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise StateError(f"the state is not JSON: {exc}") from exc
    # ensure_ascii (json's default) makes one character one byte.
    if len(text) > MAX_STATE_BYTES:
        raise StateError(
            f"the state is {len(text)} bytes as JSON, past the {MAX_STATE_BYTES} a DynamoDB "
            "item can hold: keep large data elsewhere and a reference in the state"
        )
    return text


@dataclass
class StoreStats:
    reads: int = 0  # read calls (a batch read of many keys counts once)
    writes: int = 0  # item writes, transactional ones included
    stale_writes: int = 0  # writes refused because the stored position was ahead


class CheckpointStore(Protocol):
    stats: StoreStats

    def load(self, keys: Iterable[CheckpointKey]) -> dict[CheckpointKey, KeyState]: ...

    def save(self, updates: Sequence[CheckpointUpdate]) -> None:
        """Write every update; forward-only. Raises CheckpointStoreUnavailable."""

    def commit_with_effects(self, update: CheckpointUpdate, effects: list[dict]) -> None:
        """Commit DynamoDB transaction items together with the key's checkpoint.

        Raises StaleCheckpointError when the checkpoint is already at or past the position
        (the effect was committed before), EffectRejectedError when an effect's own condition
        fails, CheckpointStoreUnavailable for anything else.
        """

    def load_states(self, keys: Iterable[StateKey]) -> dict[StateKey, StoredState]: ...

    def commit_state(
        self, update: CheckpointUpdate, state: StateWrite, effects: Sequence[dict] = ()
    ) -> None:
        """Commit a key's new state, its checkpoint and the effects, all or nothing.

        Raises StateConflictError when the state is no longer at `state.expected_version`,
        StaleCheckpointError when the checkpoint is already at or past the update's position,
        EffectRejectedError and CheckpointStoreUnavailable as `commit_with_effects` does.
        """

    def state_of(self, event_source_arn: str, partition_key: str) -> Any:
        """A key's committed state, or None."""


def encode_position(position: Position) -> str:
    sequence, sub_sequence = position
    return f"{sequence:0{_SEQUENCE_DIGITS}d}.{sub_sequence:0{_SUB_SEQUENCE_DIGITS}d}"


def encode_position_compact(position: Position) -> str:
    """For set members, which need no ordering: "SEQ.SUB" without padding."""
    return f"{position[0]}.{position[1]}"


def decode_position(value: str | None) -> Position | None:
    if not value:
        return None
    sequence, sub_sequence = value.split(".")
    return (int(sequence), int(sub_sequence))


# --- in memory -----------------------------------------------------------------------------


class MemoryCheckpointStore:
    """Checkpoints in a dict: for tests, benchmarks and single-container use.

    Transactional effects are recorded in `effects` (in commit order) instead of being sent
    anywhere, so tests can see what would have been committed.
    """

    def __init__(self) -> None:
        self._states: dict[CheckpointKey, KeyState] = {}
        self._key_states: dict[StateKey, tuple[str, int]] = {}  # (JSON text, version)
        self._lock = threading.Lock()
        self.effects: list[dict] = []
        self.stats = StoreStats()

    def load(self, keys: Iterable[CheckpointKey]) -> dict[CheckpointKey, KeyState]:
        self.stats.reads += 1
        with self._lock:
            return {key: self._states[key] for key in keys if key in self._states}

    def save(self, updates: Sequence[CheckpointUpdate]) -> None:
        with self._lock:
            for update in updates:
                self.stats.writes += 1
                try:
                    self._apply(update)
                except StaleCheckpointError:
                    self.stats.stale_writes += 1

    def commit_with_effects(self, update: CheckpointUpdate, effects: list[dict]) -> None:
        with self._lock:
            self.stats.writes += 1
            state = self._states.get(update.key, KeyState())
            current = state.position
            if current is not None and update.position is not None and current >= update.position:
                raise StaleCheckpointError(update.key, update.position)
            if state.replayed.intersection(update.replayed):  # a replay commits once
                raise StaleCheckpointError(update.key, update.replayed)
            self._apply(update)
            self.effects.extend(effects)

    def load_states(self, keys: Iterable[StateKey]) -> dict[StateKey, StoredState]:
        self.stats.reads += 1
        with self._lock:
            stored = {key: self._key_states[key] for key in keys if key in self._key_states}
        return {
            key: StoredState(json.loads(text), version) for key, (text, version) in stored.items()
        }

    def commit_state(
        self, update: CheckpointUpdate, state: StateWrite, effects: Sequence[dict] = ()
    ) -> None:
        with self._lock:
            self.stats.writes += 1
            _, version = self._key_states.get(state.key, ("", 0))
            if version != state.expected_version:
                raise StateConflictError(state.key, state.expected_version)
            current = self._states.get(update.key, KeyState())
            position = current.position
            if position is not None and update.position is not None and position >= update.position:
                raise StaleCheckpointError(update.key, update.position)
            if current.replayed.intersection(update.replayed):
                raise StaleCheckpointError(update.key, update.replayed)
            self._apply(update)
            self._key_states[state.key] = (state.encoded, version + 1)
            self.effects.extend(effects)

    def state_of(self, event_source_arn: str, partition_key: str) -> Any:
        with self._lock:
            stored = self._key_states.get(StateKey(event_source_arn, partition_key))
        return None if stored is None else json.loads(stored[0])

    def _apply(self, update: CheckpointUpdate) -> None:
        current = self._states.get(update.key, KeyState())
        moves_back = (
            update.position is not None
            and current.position is not None
            and current.position > update.position
        )
        if moves_back:
            raise StaleCheckpointError(update.key, update.position)
        position = update.position if update.position is not None else current.position
        failure = (
            (update.failing_position, update.attempts, update.first_failure_at)
            if update.touch_failure
            else (current.failing_position, current.attempts, current.first_failure_at)
        )
        unsettled = current.unsettled if update.unsettled is None else update.unsettled
        self._states[update.key] = KeyState(
            position,
            *failure,
            parked=current.parked.union(update.parked).difference(update.leaves_parked),
            unsettled=unsettled.difference(update.leaves_unsettled),
            unsettled_truncated=current.unsettled_truncated or update.unsettled_truncated,
            replayed=current.replayed.union(update.replayed),
        )

    def position(self, key: CheckpointKey) -> Position | None:
        """The stored position of one key (a convenience for tests and tools)."""
        state = self._states.get(key)
        return state.position if state else None


# --- DynamoDB ------------------------------------------------------------------------------


@dataclass
class DynamoDBCheckpointStore:
    """Checkpoints in a DynamoDB table with a string hash key `pk` and TTL on `expires_at`.

    Pass `boto3_client` (a low-level DynamoDB client) or `boto3_session`; by default a client
    is built on first use, honouring AWS_ENDPOINT_URL like every boto3 client.
    """

    table_name: str
    boto3_client: Any = None
    boto3_session: Any = None
    ttl_s: int = DEFAULT_TTL_S
    max_parallel_writes: int = 16
    # A key's state is durable data: it outlives the checkpoints' TTL unless this is set.
    state_ttl_s: int | None = None
    stats: StoreStats = field(default_factory=StoreStats)

    key_attr = "pk"
    client = LazyClient("dynamodb")

    @staticmethod
    def item_key(key: CheckpointKey) -> str:
        return f"{key.event_source_arn}#{key.shard_id}#{key.partition_key}"

    @staticmethod
    def state_item_key(key: StateKey) -> str:
        # "state#" keeps these apart from checkpoint items, whose keys start with "arn:".
        return f"state#{key.event_source_arn}#{key.partition_key}"

    def load(self, keys: Iterable[CheckpointKey]) -> dict[CheckpointKey, KeyState]:
        by_item_key = {self.item_key(key): key for key in keys}
        items = self._batch_get(list(by_item_key))
        return {by_item_key[k]: _state_from_item(item) for k, item in items.items()}

    def load_states(self, keys: Iterable[StateKey]) -> dict[StateKey, StoredState]:
        by_item_key = {self.state_item_key(key): key for key in keys}
        items = self._batch_get(list(by_item_key))
        return {by_item_key[k]: _stored_state(item) for k, item in items.items()}

    def state_of(self, event_source_arn: str, partition_key: str) -> Any:
        key = self.state_item_key(StateKey(event_source_arn, partition_key))
        self.stats.reads += 1
        response = self._call(
            "get_item",
            TableName=self.table_name,
            Key={self.key_attr: {"S": key}},
            ConsistentRead=True,
        )
        return _stored_state(response["Item"]).value if "Item" in response else None

    def commit_state(
        self, update: CheckpointUpdate, state: StateWrite, effects: Sequence[dict] = ()
    ) -> None:
        names = {"#state": "state", "#ver": "version"}
        values = {
            ":state": {"S": state.encoded},
            ":next": {"N": str(state.expected_version + 1)},
        }
        expression = "SET #state = :state, #ver = :next"
        if state.expected_version:
            values[":ver"] = {"N": str(state.expected_version)}
            condition = "#ver = :ver"
        else:
            condition = "attribute_not_exists(#ver)"
        if self.state_ttl_s:
            names["#exp"] = "expires_at"
            values[":exp"] = {"N": str(int(time.time()) + self.state_ttl_s)}
            expression += ", #exp = :exp"
        state_update = {
            "Update": {
                "TableName": self.table_name,
                "Key": {self.key_attr: {"S": self.state_item_key(state.key)}},
                "UpdateExpression": expression,
                "ConditionExpression": condition,
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": values,
            }
        }
        checkpoint = {"Update": self._update_request(update, strictly_forward=True)}
        self.stats.writes += 1
        try:
            self._call(
                "transact_write_items",
                passthrough="TransactionCanceledException",
                TransactItems=[state_update, checkpoint, *effects],
            )
        except ClientError as exc:  # only TransactionCanceledException passes through
            reasons = exc.response.get("CancellationReasons") or []
            codes = [reason.get("Code") for reason in reasons]
            if codes[:1] == ["ConditionalCheckFailed"]:
                raise StateConflictError(state.key, state.expected_version) from exc
            if codes[1:2] == ["ConditionalCheckFailed"]:
                raise StaleCheckpointError(update.key, update.position) from exc
            if "ConditionalCheckFailed" in codes[2:]:
                raise EffectRejectedError(
                    f"a transaction item's condition failed: {codes}", reasons=reasons
                ) from exc
            raise CheckpointStoreUnavailable(f"transaction for {state.key}: {exc}") from exc

    def _batch_get(self, item_keys: list[str]) -> dict[str, dict]:
        """The items of these keys that exist, by key: consistent reads, 100 a request."""
        pending = item_keys
        found: dict[str, dict] = {}
        while pending:
            chunk, pending = pending[:100], pending[100:]  # BatchGetItem's limit
            request = {
                self.table_name: {
                    "Keys": [{self.key_attr: {"S": k}} for k in chunk],
                    "ConsistentRead": True,
                }
            }
            while request:
                self.stats.reads += 1
                response = self._call("batch_get_item", RequestItems=request)
                for item in response.get("Responses", {}).get(self.table_name, []):
                    found[item[self.key_attr]["S"]] = item
                request = response.get("UnprocessedKeys") or None
                if request:
                    time.sleep(0.05)
        return found

    def save(self, updates: Sequence[CheckpointUpdate]) -> None:
        if not updates:
            return
        if len(updates) == 1 or self.max_parallel_writes <= 1:
            for update in updates:
                self._save_one(update)
            return
        workers = min(self.max_parallel_writes, len(updates))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            # list() re-raises the first CheckpointStoreUnavailable, after all writes ran.
            list(pool.map(self._save_one, updates))

    def _save_one(self, update: CheckpointUpdate) -> None:
        self.stats.writes += 1
        try:
            self._call(
                "update_item",
                passthrough="ConditionalCheckFailedException",
                **self._update_request(update),
            )
        except ClientError:  # only the condition passes through: a later write is ahead
            self.stats.stale_writes += 1

    def commit_with_effects(self, update: CheckpointUpdate, effects: list[dict]) -> None:
        request = self._update_request(update, strictly_forward=True)
        checkpoint = {"Update": request}
        self.stats.writes += 1
        try:
            self._call(
                "transact_write_items",
                passthrough="TransactionCanceledException",
                TransactItems=[*effects, checkpoint],
            )
        except ClientError as exc:  # only TransactionCanceledException passes through
            reasons = exc.response.get("CancellationReasons") or []
            codes = [reason.get("Code") for reason in reasons]
            if len(codes) == len(effects) + 1 and codes[-1] == "ConditionalCheckFailed":
                raise StaleCheckpointError(update.key, update.position) from exc
            if "ConditionalCheckFailed" in codes[:-1]:
                raise EffectRejectedError(
                    f"a transaction item's condition failed: {codes}", reasons=reasons
                ) from exc
            raise CheckpointStoreUnavailable(f"transaction for {update.key}: {exc}") from exc

    def _update_request(self, update: CheckpointUpdate, strictly_forward: bool = False) -> dict:
        names = {"#exp": "expires_at"}
        values: dict[str, dict] = {":exp": {"N": str(int(time.time()) + self.ttl_s)}}
        sets = ["#exp = :exp"]
        removes: list[str] = []
        condition = None
        if update.position is not None:
            values[":pos"] = {"S": encode_position(update.position)}
            values[":seq"] = {"S": str(update.position[0])}
            values[":sub"] = {"N": str(update.position[1])}
            names |= {"#pos": "position", "#seq": "sequence_number", "#sub": "sub_sequence_number"}
            sets += ["#pos = :pos", "#seq = :seq", "#sub = :sub"]
            # Only forward. A plain write may rewrite the same position (it only counts an
            # attempt); a transaction must not, or a redelivered effect would commit twice.
            operator = "<" if strictly_forward else "<="
            condition = f"attribute_not_exists(#pos) OR #pos {operator} :pos"
        conditions = [condition] if condition else []
        if update.touch_failure:
            names |= {"#fpos": "failing_position", "#att": "attempts", "#ffa": "first_failure_at"}
            if update.failing_position is not None:
                values[":fpos"] = {"S": encode_position(update.failing_position)}
                values[":att"] = {"N": str(update.attempts)}
                values[":ffa"] = {"S": update.first_failure_at or ""}
                sets += ["#fpos = :fpos", "#att = :att", "#ffa = :ffa"]
            else:
                removes += ["#fpos", "#att", "#ffa"]
        if update.unsettled is not None:
            names["#unsettled"] = "unsettled"
            if update.unsettled:
                values[":unsettled"] = {
                    "SS": sorted(encode_position_compact(p) for p in update.unsettled)
                }
                sets.append("#unsettled = :unsettled")
            else:
                removes.append("#unsettled")
        if update.unsettled_truncated:
            names["#untrunc"] = "unsettled_truncated"
            values[":true"] = {"BOOL": True}
            sets.append("#untrunc = :true")
        expression = "SET " + ", ".join(sets)
        if removes:
            expression += " REMOVE " + ", ".join(removes)
        # Parked, unsettled and replayed positions live in string sets on the key's item, so
        # a replay can tell a record left unapplied (apply it once more) from an applied one.
        adds, deletes = [], []
        if update.parked:
            names["#parked"] = "parked"
            values[":parked"] = {"SS": sorted({encode_position(p) for p in update.parked})}
            adds.append("#parked :parked")
        if update.replayed:
            names["#replayed"] = "replayed"
            values[":replayed"] = {
                "SS": sorted({encode_position_compact(p) for p in update.replayed})
            }
            adds.append("#replayed :replayed")
            if update.position is None or strictly_forward:
                # Once only: a replay commits while the record is not yet in the set. (Not on
                # the stream's own writes: a lost condition would drop the position too.)
                for i, position in enumerate(update.replayed):
                    values[f":replayed{i}"] = {"S": encode_position_compact(position)}
                    conditions.append(f"NOT contains(#replayed, :replayed{i})")
        if update.leaves_parked:
            if update.parked:
                raise ValueError("an update either parks records or unparks them")
            names["#parked"] = "parked"
            values[":unpark"] = {"SS": sorted({encode_position(p) for p in update.leaves_parked})}
            deletes.append("#parked :unpark")
        if update.leaves_unsettled:
            if update.unsettled is not None:
                raise ValueError("an update either sets the unsettled records or removes some")
            names["#unsettled"] = "unsettled"
            values[":unsettle"] = {
                "SS": sorted({encode_position_compact(p) for p in update.leaves_unsettled})
            }
            deletes.append("#unsettled :unsettle")
        if adds:
            expression += " ADD " + ", ".join(adds)
        if deletes:
            expression += " DELETE " + ", ".join(deletes)
        condition = " AND ".join(f"({c})" for c in conditions) if conditions else None
        request = {
            "TableName": self.table_name,
            "Key": {self.key_attr: {"S": self.item_key(update.key)}},
            "UpdateExpression": expression,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }
        if condition:
            request["ConditionExpression"] = condition
        return request

    def _call(self, operation: str, passthrough: str = "", **kwargs: Any) -> dict:
        """Call the client; every error but the `passthrough` code is infrastructure."""
        try:
            return getattr(self.client, operation)(**kwargs)
        except (ClientError, BotoCoreError) as exc:  # refused, timeouts, credentials too
            if passthrough and error_code(exc) == passthrough:
                raise
            raise CheckpointStoreUnavailable(f"{operation} on {self.table_name}: {exc}") from exc


def _state_from_item(item: dict) -> KeyState:
    def s(name: str) -> str | None:
        return item.get(name, {}).get("S")

    attempts = item.get("attempts", {}).get("N")
    return KeyState(
        position=decode_position(s("position")),
        failing_position=decode_position(s("failing_position")),
        attempts=int(attempts) if attempts else 0,
        first_failure_at=s("first_failure_at") or None,
        parked=_positions(item, "parked"),
        unsettled=_positions(item, "unsettled"),
        unsettled_truncated=item.get("unsettled_truncated", {}).get("BOOL", False),
        replayed=_positions(item, "replayed"),
    )


def _stored_state(item: dict) -> StoredState:
    return StoredState(
        json.loads(item.get("state", {}).get("S", "null")),
        int(item.get("version", {}).get("N", "0")),
    )


def _positions(item: dict, name: str) -> frozenset[Position]:
    return frozenset(decode_position(p) for p in item.get(name, {}).get("SS", []))


__all__ = [
    "CheckpointKey",
    "CheckpointStore",
    "CheckpointUpdate",
    "DynamoDBCheckpointStore",
    "KeyState",
    "MAX_UNSETTLED",
    "MAX_STATE_BYTES",
    "MemoryCheckpointStore",
    "StateKey",
    "StateWrite",
    "StoreStats",
    "StoredState",
    "decode_position",
    "encode_position",
    "encode_state",
]
