"""The runner: every mapping of a function, its shards and their lineage, progress, stop.

Shard lineage as Lambda follows it: a child shard starts only once its parents are fully
processed, and shards created by a reshard are picked up as they appear.
https://docs.aws.amazon.com/streams/latest/dev/kinesis-using-sdk-java-after-resharding.html
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from esm.checkpoints import DynamoDBShardCheckpoints, FileShardCheckpoints, ShardCheckpointStore
from esm.delivery import BatchDelivery
from esm.faults import DeliveryFaults
from esm.invoker import WorkerPool
from esm.metrics import EventCountPublisher, metrics_uuid
from esm.onfailure import destination_for
from esm.settings import FunctionSettings, MappingSettings, StartingPosition
from esm.shard import ShardProcessor, StartPoint, Tuning
from esm.sources import Shard, source_for
from esm.stats import EventCounts, ShardStats, StatusBoard
from processor.aws import Backoff

log = logging.getLogger("esm")

# Not streamline.paths.REPO_ROOT: esm imports processor only, never streamline (one-way imports).
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_STATE_DIR = REPO_ROOT / ".esm-state"


class RunnerFailed(RuntimeError):
    """The runner itself (not the function) failed; checkpoints stay before the failure."""


class MappingRunner:
    """Discovers one mapping's shards and runs a ShardProcessor for each eligible one."""

    def __init__(
        self,
        mapping: MappingSettings,
        function: FunctionSettings,
        *,
        pool: WorkerPool,
        store: ShardCheckpointStore,
        tuning: Tuning,
        stop: threading.Event,
        session: boto3.Session,
        source=None,
        destination=None,
        clock: Callable[[], float] = time.time,
        faults: DeliveryFaults | None = None,
    ) -> None:
        self.mapping = mapping
        self.function = function
        self.source = source or source_for(mapping.event_source_arn, function, session)
        self.destination = destination or destination_for(
            mapping.on_failure_destination_arn, session=session, mapping_uuid=mapping.uuid
        )
        self._pool = pool
        self._store = store
        self._tuning = tuning
        self._stop = stop
        self._clock = clock
        self._invoke = (faults or DeliveryFaults()).wrap(pool.invoke)
        self.processors: dict[str, ShardProcessor] = {}
        self.finished: set[str] = set()
        self.finished_stats: list[ShardStats] = []
        self._launched_fresh: bool | None = None  # no checkpoints at all when we started
        self._refresh_due = 0.0
        self._shard_finished = threading.Event()

    @property
    def stats(self) -> list[ShardStats]:
        return self.finished_stats + [p.stats for p in self.processors.values()]

    def poll(self) -> None:
        """Start shards that became eligible: on a timer, and whenever a shard finishes."""
        now = time.monotonic()
        if self._shard_finished.is_set() or now >= self._refresh_due:
            self._shard_finished.clear()
            self._refresh_due = now + self._tuning.shard_refresh_s
            try:
                self._discover()
            except (ClientError, BotoCoreError) as exc:
                # Throttled or briefly unreachable: the running shards go on; list again soon.
                log.warning("%s: listing shards failed, retrying: %s", self.source.stream_arn, exc)
                self._refresh_due = now + max(self._tuning.throttle_backoff_s, 0.1)
        for shard_id, processor in list(self.processors.items()):
            if processor.finished:
                processor.join()
                self.finished.add(shard_id)
                self.finished_stats.append(processor.stats)
                del self.processors[shard_id]

    @property
    def idle(self) -> bool:
        return not self._shard_finished.is_set() and all(
            p.idle and not p.finished for p in self.processors.values()
        )

    def _discover(self) -> None:
        first_listing = self._launched_fresh is None
        if first_listing and not self._store.for_stream(self.source.version()):
            log.warning(
                "%s: the saved shard positions belong to an earlier stream of the same name "
                "(deleted and created again); starting at %s instead",
                self.source.stream_arn,
                self.mapping.starting_position.value,
            )
        shards = self.source.list_shards()
        checkpoints = self._store.load()
        if first_listing:
            self._launched_fresh = not checkpoints
        listed = {s.shard_id for s in shards}
        for shard_id, checkpoint in checkpoints.items():
            if checkpoint.finished:
                self.finished.add(shard_id)
        if first_listing and self._launched_fresh:
            self._skip_closed_for_latest(shards)
        for shard in shards:
            if shard.shard_id in self.processors or shard.shard_id in self.finished:
                continue
            # A parent that the stream no longer lists (trimmed) counts as processed.
            if any(p in listed and p not in self.finished for p in shard.parent_ids):
                continue
            checkpoint = checkpoints.get(shard.shard_id)
            last = checkpoint.sequence_number if checkpoint else None
            start = self._start_point(shard, first_listing)
            processor = ShardProcessor(
                source=self.source,
                shard=shard,
                start=start,
                mapping=self.mapping,
                delivery_factory=self._delivery,
                store=self._store,
                tuning=self._tuning,
                stop=self._stop,
                on_finished=self._on_shard_finished,
                last_checkpoint=last,
                clock=self._clock,
            )
            self.processors[shard.shard_id] = processor
            processor.start()

    def _skip_closed_for_latest(self, shards: list[Shard]) -> None:
        """LATEST starts at the tip: closed shards hold nothing new, so treat them as done."""
        if self.mapping.starting_position is not StartingPosition.LATEST:
            return
        for shard in shards:
            if shard.closed:
                self.finished.add(shard.shard_id)

    def _start_point(self, shard: Shard, first_listing: bool) -> StartPoint:
        """The mapping's starting position applies to the shards there when it first ran;
        a shard that appears later (a reshard's child) is read from its start."""
        if not (first_listing and self._launched_fresh):
            return StartPoint("TRIM_HORIZON")
        position = self.mapping.starting_position
        if position is StartingPosition.AT_TIMESTAMP:
            return StartPoint("AT_TIMESTAMP", timestamp=self.mapping.starting_position_timestamp)
        return StartPoint(position.value)

    def _delivery(self, stats: ShardStats) -> BatchDelivery:
        return BatchDelivery(
            mapping=self.mapping,
            function=self.function,
            shard_id=stats.shard_id,
            invoke=self._invoke,
            destination=self.destination,
            stats=stats,
            retry_backoff=Backoff(
                base_s=self._tuning.retry_backoff_s,
                cap_s=self._tuning.max_retry_backoff_s,
                jitter=False,
            ),
            stop=self._stop,
            clock=self._clock,
        )

    @property
    def failed(self) -> list[str]:
        return [shard_id for shard_id, p in self.processors.items() if p.failed]

    def _on_shard_finished(self, shard_id: str) -> None:
        self._shard_finished.set()

    def join(self, timeout_s: float) -> None:
        for processor in self.processors.values():
            processor.join(timeout_s)


@dataclass
class Summary:
    shards: list[dict] = field(default_factory=list)

    @property
    def records(self) -> int:
        return sum(s["records"] for s in self.shards)

    @property
    def filtered(self) -> int:
        """Records dropped by the mappings' FilterCriteria."""
        return sum(s["filtered"] for s in self.shards)

    @property
    def event_counts(self) -> EventCounts:
        """Lambda's EventCount metrics, summed over every shard (esm/stats.py)."""
        return sum((EventCounts(**s["eventCounts"]) for s in self.shards), EventCounts())

    def lines(self) -> list[str]:
        lines = [f"[esm] summary: {self.records} records over {len(self.shards)} shards"]
        for s in self.shards:
            state = "finished" if s["finished"] else f"IteratorAge {s['iteratorAgeMs']} ms"
            filtered = f" ({s['filtered']} filtered out)" if s["filtered"] else ""
            lines.append(
                f"[esm]   {s['stream']} {s['shardId']}: {s['records']} records{filtered}, "
                f"{s['invocations']} invocations, {s['functionErrors']} function errors, "
                f"{s['partialFailures']} partial failures, {s['retries']} retries, "
                f"{s['bisections']} bisections, {s['retryAttemptsExhausted']} + "
                f"{s['recordAgeExceeded']} records to on-failure "
                f"(retries exhausted + too old), {s['throttles']} throttled reads, {state}"
            )
            lines.append(f"[esm]     {EventCounts(**s['eventCounts']).describe()}")
        return lines


class Runner:
    """Runs a function's stream mappings locally with Lambda's semantics."""

    def __init__(
        self,
        function: FunctionSettings,
        mappings: list[MappingSettings],
        *,
        code_dir: Path = REPO_ROOT,
        session: boto3.Session | None = None,
        tuning: Tuning | None = None,
        state_dir: Path | None = DEFAULT_STATE_DIR,
        checkpoint_table: str | None = None,
        progress: TextIO | None = sys.stderr,
        worker_env: dict[str, str] | None = None,
        clock: Callable[[], float] = time.time,
        faults: DeliveryFaults | None = None,
        cloudwatch=None,
    ) -> None:
        if not mappings:
            raise ValueError(f"function {function.name} has no enabled stream mappings")
        self.function = function
        self.mappings = mappings
        self.session = session or boto3.Session()
        self.tuning = tuning or Tuning()
        self.stop_event = threading.Event()
        self.pool = WorkerPool(function, Path(code_dir), base_env=worker_env)
        self._progress = progress
        # A live per-shard table on a terminal, the plain lines every interval otherwise.
        self._status = (
            StatusBoard(progress, self.tuning.progress_interval_s) if progress is not None else None
        )
        self.mapping_runners = [
            MappingRunner(
                mapping,
                function,
                pool=self.pool,
                store=self._store_for(mapping, state_dir, checkpoint_table),
                tuning=self.tuning,
                stop=self.stop_event,
                session=self.session,
                clock=clock,
                faults=faults,
            )
            for mapping in mappings
        ]
        # MetricsConfig EventCount: the mappings whose counts go to CloudWatch (esm/metrics.py).
        self._metered = {
            metrics_uuid(runner.mapping, function.arn): runner
            for runner in self.mapping_runners
            if runner.mapping.event_count_metrics
        }
        self.metrics = None
        if self._metered:
            self.metrics = EventCountPublisher(
                {key: runner.mapping for key, runner in self._metered.items()},
                interval_s=self.tuning.metrics_interval_s,
                region_name=function.region,
                client=cloudwatch,
                session=self.session,
            )

    def _store_for(
        self, mapping: MappingSettings, state_dir: Path | None, checkpoint_table: str | None
    ) -> ShardCheckpointStore:
        key = f"{self.function.name}-{mapping.state_key}"
        if checkpoint_table:
            store = DynamoDBShardCheckpoints(checkpoint_table, key, session=self.session)
            store.ensure_table()
            return store
        return FileShardCheckpoints(Path(state_dir or DEFAULT_STATE_DIR) / f"{key}.json")

    def stop(self) -> None:
        self.stop_event.set()

    @property
    def stats(self) -> list[ShardStats]:
        return [s for runner in self.mapping_runners for s in runner.stats]

    def run(self, until_idle_s: float | None = None, tick_s: float = 0.05) -> Summary:
        """Run until stopped, or until every shard has been caught up for ``until_idle_s``."""
        idle_since: float | None = None
        self.pool.prewarm()
        try:
            while not self.stop_event.is_set():
                for runner in self.mapping_runners:
                    runner.poll()
                now = time.monotonic()
                if until_idle_s is not None:
                    if all(runner.idle for runner in self.mapping_runners):
                        idle_since = idle_since or now
                        if now - idle_since >= until_idle_s:
                            break
                    else:
                        idle_since = None
                if self._status is not None and self._status.due(now):
                    self._status.show([s.status(time.time()) for s in self.stats])
                if self.metrics is not None and self.metrics.due():
                    self.metrics.publish(self._event_counts())
                self.stop_event.wait(tick_s)
        finally:
            self.stop_event.set()
            for runner in self.mapping_runners:
                runner.join(timeout_s=self.function.timeout_s + 5)
            self.pool.close()
            if self.metrics is not None:
                self.metrics.publish(self._event_counts())
            if self._status is not None:
                self._status.close()
        summary = Summary([s.summary() for s in self.stats])
        self._print(summary.lines())
        failed = [shard for runner in self.mapping_runners for shard in runner.failed]
        if failed:
            raise RunnerFailed(f"the runner failed on shards {failed}; see the log above")
        return summary

    def _event_counts(self) -> dict[str, EventCounts]:
        return {key: EventCounts.total(runner.stats) for key, runner in self._metered.items()}

    def _print(self, lines: list[str]) -> None:
        if self._progress is None:
            return
        for line in lines:
            print(line, file=self._progress, flush=True)
