"""The chaos run: the demo pipeline under faults, then every event checked.

    python -m streamline.chaos [--events 100000] [--shards 4] [--seed N] [--quick]

Kinesis is served by kinesalite (it reshards faithfully), everything else by moto's server;
both sit behind fault-injecting proxies (streamline/tools/proxy.py), so the load generator,
the ESM runners and the handler all see the same bad network. Faults, all seeded:

- on the wire: throttling, 5xx answers, connections dropped before or after the endpoint
  acted, and the checkpoint table unreachable for a few seconds (an outage);
- in the function (streamline/chaos/handler.py): transient record failures, crashes and
  timeouts after part of the batch took effect, and poison events (always failing, parked);
- in the ESM runner (esm/faults.py): duplicate deliveries and stale invocations beside
  fresh ones, and the runner itself SIGKILLed and restarted from its checkpoints;
- on the stream: a shard split and a merge while the load flows.

verify.py then checks every event: applied once and in order, or parked with its payload.
The run ends with one `chaos: ...` line and exits 1 on any loss, duplicate or reorder
(2: it could not run). Its files (logs, stack, manifest, timeline.png) go under build/chaos/.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from esm.private_files import make_private_dirs
from streamline.arguments import OneLineParser
from streamline.emulator import EMULATOR_ENV, Emulator, emulator_client, stop_pid
from streamline.paths import BUILD_DIR, REPO_ROOT
from streamline.tools.kinesalite import Kinesalite
from streamline.tools.proxy import Fault, Faults, Proxy

CHAOS_DIR = BUILD_DIR / "chaos"
HANDLER = "streamline.chaos.handler.handler"
FUNCTION_TIMEOUT_S = 15
KEY_SCHEMA = {
    "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
    "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
    "BillingMode": "PAY_PER_REQUEST",
}
_ITERATOR_AGE = re.compile(r"\[esm\] (\S+) (\S+): .*IteratorAge (\d+) ms")
_LOAD_PROGRESS = re.compile(r"(\d+)/(\d+) events")
_FINISHED = re.compile(r"\[esm\] (\S+) (\S+): \d+ records \(.*\), finished")
_INJECTED = re.compile(r"injected fault: (.+)$")
_DUPLICATES_SKIPPED = re.compile(r'"DuplicatesSkipped":\[([0-9.]+)\]')
_VERIFIED = re.compile(
    r"verified (\d+) events over (\d+) keys: (\d+) applied in order, (\d+) parked, "
    r"(\d+) (?:lost|not accounted for yet), (\d+) duplicated, (\d+) out of order"
)


@dataclass
class Plan:
    """What the run does: sizes, rates, and the schedule of the big faults."""

    events: int
    keys: int
    shards: int
    seed: int
    runner_kills: int
    # The rates are per draw: a record failure per record attempt, a crash per key commit (a
    # 500-record batch over 400 keys makes ~300 commits), a timeout, a duplicate and a stale
    # invocation per invocation, each wire fault per request.
    poison_fraction: float = 0.002
    record_failure_rate: float = 0.001
    crash_rate: float = 0.0003
    timeout_rate: float = 0.002
    duplicate_rate: float = 0.02
    stale_rate: float = 0.02
    wire_rate: float = 0.002  # each of throttle, 5xx, drop before, drop after
    outage_s: float = 4.0
    batch_size: int = 500
    # Attempts before a record is parked: enough that transient failures (drawn anew on each
    # attempt) never park a healthy record, few enough that each poison record costs only
    # that many redeliveries of the rest of its batch.
    max_attempts: int = 3
    parallelization_factor: int = 1
    reshard: bool = True
    outage: bool = True
    sure_faults: bool = True  # one handler crash and one timeout whatever the rates
    quick: bool = False
    load_rate: int = 0  # events/s; 0: as fast as the endpoint takes them

    @classmethod
    def full(cls, seed: int, events: int, shards: int) -> Plan:
        return cls(events=events, keys=400, shards=shards, seed=seed, runner_kills=6)

    @classmethod
    def small(cls, seed: int, events: int, shards: int) -> Plan:
        """A few thousand events, every fault kind at least once: rates raised to match."""
        return cls(
            events=events,
            keys=60,
            shards=shards,
            seed=seed,
            runner_kills=2,
            poison_fraction=0.01,
            record_failure_rate=0.03,
            crash_rate=0.03,
            timeout_rate=0.03,
            duplicate_rate=0.1,
            stale_rate=0.1,
            wire_rate=0.01,
            outage_s=3.0,
            batch_size=100,
            max_attempts=5,  # 0.03 ** 5 per record: no healthy record parked
            load_rate=150,  # the load flows for a while: the reshards happen during it
            quick=True,
        )


@dataclass
class Timeline:
    """What the picture shows, sampled as the run goes (seconds since the start)."""

    started: float = field(default_factory=time.time)
    applied: list[tuple[float, int]] = field(default_factory=list)  # (t, events in the sink)
    iterator_age: dict[str, list[tuple[float, int]]] = field(default_factory=dict)
    faults: list[tuple[float, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def at(self, wall_time: float) -> float:
        return wall_time - self.started

    def fault(self, kind: str, wall_time: float | None = None) -> None:
        with self.lock:
            self.faults.append((self.at(wall_time or time.time()), kind))

    def age(self, shard: str, age_ms: int) -> None:
        with self.lock:
            self.iterator_age.setdefault(shard, []).append((self.at(time.time()), age_ms))


def say(message: str) -> None:
    print(f"[chaos] {message}", flush=True)


class RunnerProcess:
    """One `python -m esm run` for one stream, restartable; its output is read line by line
    into its log, its IteratorAge and injected-fault lines into the timeline."""

    def __init__(self, name: str, command: list[str], env: dict, log_path: Path, timeline):
        self.name = name
        self.command = command
        self.env = env
        self.log_path = log_path
        self.timeline = timeline
        self.proc: subprocess.Popen | None = None
        self.workers: set[int] = set()  # pids seen under it, reaped by PID at the end
        self.injected: Counter = Counter()
        self.duplicates_skipped = 0  # records the processor skipped as already applied
        self.ages: dict[str, int] = {}  # shard -> its latest IteratorAge (ms; 0 finished)
        self._reader: threading.Thread | None = None

    def start(self) -> None:
        self.ages = {}  # a restarted runner reports its own shards afresh
        self.proc = subprocess.Popen(
            self.command,
            env=self.env,
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, args=(self.proc,), daemon=True)
        self._reader.start()

    def _read(self, proc: subprocess.Popen) -> None:
        with open(self.log_path, "a", encoding="utf-8", errors="replace") as log:
            for raw in proc.stdout:
                line = raw.decode("utf-8", errors="replace").rstrip("\n")
                log.write(f"{time.time():.3f} {line}\n")
                if (match := _ITERATOR_AGE.search(line)) is not None:
                    self.timeline.age(f"{self.name} {match[2]}", int(match[3]))
                    self.ages[match[2]] = int(match[3])
                elif (match := _FINISHED.search(line)) is not None:
                    self.ages[match[2]] = 0
                if (match := _DUPLICATES_SKIPPED.search(line)) is not None:
                    self.duplicates_skipped += int(float(match[1]))
                if (match := _INJECTED.search(line)) is not None:
                    self.injected[match[1]] += 1
                    self.timeline.fault(match[1])

    def remember_workers(self) -> None:
        if self.proc is not None:
            self.workers.update(children_of(self.proc.pid))

    def kill(self) -> None:
        """SIGKILL, as an ESM host dies: no flush, no goodbye. Its workers are orphaned
        mid-invocation, as Lambda's would be (they finish or die on their own)."""
        self.remember_workers()
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self._reader.join(timeout=5)

    def stop(self) -> int:
        if self.proc.returncode is not None:
            return self.proc.returncode
        self.remember_workers()
        stop_pid(self.proc.pid, timeout_s=FUNCTION_TIMEOUT_S + 10)
        code = self.proc.wait()
        self._reader.join(timeout=5)
        return code

    def reap_workers(self) -> None:
        """Workers left behind by a kill, stopped by PID once they are still workers."""
        for pid in self.workers:
            with contextlib.suppress(OSError):
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                if b"esm.worker" in cmdline:
                    os.kill(pid, signal.SIGKILL)


def children_of(pid: int) -> set[int]:
    pids: set[int] = set()
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            text = (task / "children").read_text()
            pids.update(int(p) for p in text.split())
    return pids


def create_stack(moto: str, kinesalite: str, shards: int, name: str) -> dict:
    kinesis = emulator_client("kinesis", kinesalite)
    dynamodb = emulator_client("dynamodb", moto)
    sqs = emulator_client("sqs", moto)
    kinesis.create_stream(StreamName=name, ShardCount=shards)
    kinesis.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig={"Delay": 0.2})
    source = dynamodb.create_table(
        TableName=f"{name}-src",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        **KEY_SCHEMA,
    )
    for table in ("sink", "ckpt"):
        dynamodb.create_table(TableName=f"{name}-{table}", **KEY_SCHEMA)
    queues = {
        role: sqs.create_queue(QueueName=f"{name}-{role}")["QueueUrl"]
        for role in ("poison", "onfail")
    }
    return {
        "kinesis_stream_name": name,
        "kinesis_stream_arn": kinesis.describe_stream_summary(StreamName=name)[
            "StreamDescriptionSummary"
        ]["StreamARN"],
        "source_table_name": f"{name}-src",
        "source_table_stream_arn": source["TableDescription"]["LatestStreamArn"],
        "sink_table_name": f"{name}-sink",
        "checkpoint_table_name": f"{name}-ckpt",
        "poison_queue_url": queues["poison"],
        "on_failure_queue_url": queues["onfail"],
        "on_failure_queue_arn": sqs.get_queue_attributes(
            QueueUrl=queues["onfail"], AttributeNames=["QueueArn"]
        )["Attributes"]["QueueArn"],
    }


def runner_command(plan: Plan, stack: dict, stream_arn: str, state_dir: Path, fault_log: Path):
    env = {
        "CHECKPOINT_TABLE": stack["checkpoint_table_name"],
        "SINK_TABLE": stack["sink_table_name"],
        "POISON_QUEUE_URL": stack["poison_queue_url"],
        "MAX_ATTEMPTS": str(plan.max_attempts),
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        "POWERTOOLS_METRICS_NAMESPACE": "chaos",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "CHAOS_SEED": str(plan.seed),
        "CHAOS_RECORD_FAILURE_RATE": str(plan.record_failure_rate),
        "CHAOS_CRASH_RATE": str(plan.crash_rate),
        "CHAOS_TIMEOUT_RATE": str(plan.timeout_rate),
        "CHAOS_SLEEP_S": str(FUNCTION_TIMEOUT_S + 5),
        "CHAOS_FAULT_LOG": str(fault_log),
        "CHAOS_COMMIT_LOG": str(fault_log.with_name("commits.jsonl")),
        "CHAOS_ONCE_DIR": str(fault_log.with_name("once")),
    }
    command = [
        sys.executable, "-m", "esm", "run",
        "--stream-arn", stream_arn,
        "--handler", HANDLER,
        "--timeout", str(FUNCTION_TIMEOUT_S),
        "--batch-size", str(plan.batch_size),
        "--starting-position", "TRIM_HORIZON",
        "--report-batch-item-failures",
        "--bisect-batch-on-function-error",
        "--maximum-retry-attempts", "-1",
        "--on-failure-destination", stack["on_failure_queue_arn"],
        "--poll-interval", "0.05",
        "--retry-backoff", "0.05",
        "--max-retry-backoff", "0.5",
        "--shard-refresh", "0.5",
        "--progress-interval", "1",
        "--state-dir", str(state_dir),
        "--inject-duplicate-delivery", str(plan.duplicate_rate),
        "--inject-stale-invocation", str(plan.stale_rate),
        "--fault-seed", str(plan.seed),
        "--parallelization-factor", str(plan.parallelization_factor),
    ]  # fmt: skip
    for name, value in env.items():
        command += ["--env", f"{name}={value}"]
    return command


class Reshaper:
    """The stream's split and merge, straight to kinesalite (the reshard is not the fault
    under test; the load and the runners going through it are)."""

    def __init__(self, endpoint: str, stream: str, timeline: Timeline) -> None:
        self.kinesis = emulator_client("kinesis", endpoint)
        self.stream = stream
        self.timeline = timeline
        self.splits = 0
        self.merges = 0

    def _open_shards(self) -> list[dict]:
        shards = self.kinesis.list_shards(StreamName=self.stream)["Shards"]
        shards = [s for s in shards if "EndingSequenceNumber" not in s["SequenceNumberRange"]]
        return sorted(shards, key=lambda s: int(s["HashKeyRange"]["StartingHashKey"]))

    def _wait_active(self) -> None:
        self.kinesis.get_waiter("stream_exists").wait(
            StreamName=self.stream, WaiterConfig={"Delay": 0.2}
        )

    def split(self) -> None:
        shard = self._open_shards()[0]
        low = int(shard["HashKeyRange"]["StartingHashKey"])
        high = int(shard["HashKeyRange"]["EndingHashKey"])
        self.kinesis.split_shard(
            StreamName=self.stream,
            ShardToSplit=shard["ShardId"],
            NewStartingHashKey=str((low + high) // 2 + 1),
        )
        self._wait_active()
        self.splits += 1
        self.timeline.fault("shard split")
        say(f"split {shard['ShardId']}")

    def merge(self) -> None:
        shards = self._open_shards()
        first, second = shards[-2], shards[-1]
        self.kinesis.merge_shards(
            StreamName=self.stream,
            ShardToMerge=first["ShardId"],
            AdjacentShardToMerge=second["ShardId"],
        )
        self._wait_active()
        self.merges += 1
        self.timeline.fault("shard merge")
        say(f"merged {first['ShardId']} and {second['ShardId']}")


def sample_sink(moto: str, table: str, timeline: Timeline, stop: threading.Event) -> None:
    dynamodb = emulator_client("dynamodb", moto)
    while not stop.wait(1.0):
        with contextlib.suppress(Exception):  # a sample missed is a gap in the picture only
            total = 0
            for page in dynamodb.get_paginator("scan").paginate(
                TableName=table, ProjectionExpression="#c", ExpressionAttributeNames={"#c": "count"}
            ):
                total += sum(int(item.get("count", {}).get("N", 0)) for item in page["Items"])
            with timeline.lock:
                timeline.applied.append((timeline.at(time.time()), total))


def outage(proxy: Proxy, table: str, seconds: float, longest_s: float = 60.0) -> None:
    """The table unreachable for `seconds`, and on, a second at a time, until a request for it
    was refused (at most `longest_s`): an outage nobody asked through tests nothing."""
    proxy.outage(seconds, match=table)
    time.sleep(seconds)
    waited = seconds
    while not proxy.stats.faults[Fault.OUTAGE] and waited < longest_s:
        proxy.outage(1.0, match=table)
        time.sleep(1.0)
        waited += 1.0


def dump_tables(moto: str, stack_outputs: dict, out: Path) -> None:
    """The checkpoint and sink tables as the run left them (for a failure's post-mortem)."""
    dynamodb = emulator_client("dynamodb", moto)
    for role in ("checkpoint_table_name", "sink_table_name"):
        items = [
            item
            for page in dynamodb.get_paginator("scan").paginate(TableName=stack_outputs[role])
            for item in page["Items"]
        ]
        (out / f"{role.removesuffix('_table_name')}-table.json").write_text(json.dumps(items))


def read_fault_log(path: Path, timeline: Timeline) -> Counter:
    counts: Counter = Counter()
    if not path.exists():
        return counts
    for line in path.read_text().splitlines():
        with contextlib.suppress(ValueError, KeyError):
            entry = json.loads(line)
            counts[entry["kind"]] += 1
            timeline.fault(entry["kind"], entry["t"])
    return counts


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = OneLineParser(prog="python -m streamline.chaos", description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, help="default 100000 (--quick: 3000)")
    parser.add_argument("--shards", type=int, default=4, help="Kinesis shards at the start")
    parser.add_argument("--seed", type=int, help="default: random, printed at the start")
    parser.add_argument(
        "--quick", action="store_true", help="a few thousand events, every fault at least once"
    )
    parser.add_argument(
        "--parallelization-factor",
        type=int,
        default=1,
        help="the mappings' ParallelizationFactor (1 to 10)",
    )
    parser.add_argument(
        "--kills-only",
        action="store_true",
        help="no fault but the runner kills: measures what a kill redelivers",
    )
    parser.add_argument("--out", type=Path, default=CHAOS_DIR, help="where its files go")
    parser.add_argument(
        "--timeout", type=int, default=1500, help="seconds the pipeline has to drain"
    )
    args = parser.parse_args(argv)
    if args.events is None:
        args.events = 3000 if args.quick else 100_000
    if args.events < 100:
        parser.error(f"--events must be at least 100, got {args.events}")
    if not 2 <= args.shards <= 50:
        parser.error(f"--shards must be from 2 to 50, got {args.shards}")
    if not 1 <= args.parallelization_factor <= 10:
        parser.error(
            f"--parallelization-factor must be from 1 to 10, got {args.parallelization_factor}"
        )
    if args.timeout < 10:
        parser.error(f"--timeout must be at least 10 seconds, got {args.timeout}")
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1_000_000)
    return args


@dataclass
class Outcome:
    verified: str
    counts: dict
    exit_code: int


class ChaosRun:
    def __init__(self, plan: Plan, out: Path, timeout_s: int) -> None:
        self.plan = plan
        self.out = out
        self.timeout_s = timeout_s
        self.timeline = Timeline()
        self.started = time.monotonic()

    def run(self) -> int:
        plan, out = self.plan, self.out
        make_private_dirs(out)
        # A run starts from nothing: the runners' checkpoints of an earlier run would name
        # positions of a stream that is gone.
        for earlier in out.iterdir():
            if earlier.is_dir():
                shutil.rmtree(earlier)
            else:
                earlier.unlink()
        say(
            f"seed {plan.seed} (replay: python -m streamline.chaos --seed {plan.seed} "
            f"--events {plan.events} --shards {plan.shards}"
            f"{' --quick' if plan.quick else ''})"
        )
        with contextlib.ExitStack() as stack:
            moto = Emulator.start(log_path=out / "moto.log")
            stack.callback(moto.stop)
            self.moto_endpoint = moto.endpoint
            kinesalite = Kinesalite.start(log_path=out / "kinesalite.log")
            stack.callback(kinesalite.stop)
            wire = dict(
                throttle_rate=plan.wire_rate,
                server_error_rate=plan.wire_rate,
                drop_before_rate=plan.wire_rate,
                drop_after_rate=plan.wire_rate,
            )
            moto_proxy = Proxy(moto.endpoint, faults=Faults(seed=plan.seed, **wire)).start()
            stack.callback(moto_proxy.stop)
            kinesis_proxy = Proxy(
                kinesalite.endpoint, faults=Faults(seed=plan.seed + 1, **wire)
            ).start()
            stack.callback(kinesis_proxy.stop)
            name = f"chaos-{plan.seed}"
            stack_outputs = create_stack(moto.endpoint, kinesalite.endpoint, plan.shards, name)
            stack_file = out / "stack.json"
            stack_file.write_text(json.dumps(stack_outputs, indent=2))
            env = {
                **os.environ,
                **EMULATOR_ENV,
                "AWS_ENDPOINT_URL": moto_proxy.endpoint,
                "AWS_ENDPOINT_URL_KINESIS": kinesis_proxy.endpoint,
            }
            fault_log = out / "faults.jsonl"
            once = out / "once"  # a token per fault that must happen at least once
            make_private_dirs(once)
            for kind in ("handler-crash", "handler-timeout") if plan.sure_faults else ():
                (once / kind).touch(mode=0o600)
            runners = [
                RunnerProcess(
                    source,
                    runner_command(
                        plan, stack_outputs, stack_outputs[arn], out / f"esm-state-{source}",
                        fault_log,
                    ),
                    env,
                    out / f"esm-{source}.log",
                    self.timeline,
                )
                for source, arn in (
                    ("kinesis", "kinesis_stream_arn"),
                    ("dynamodb", "source_table_stream_arn"),
                )
            ]  # fmt: skip
            for runner in runners:
                runner.start()
                stack.callback(runner.reap_workers)
                stack.callback(runner.stop)  # runs first: a no-op when already stopped
            stop_sampling = threading.Event()
            sampler = threading.Thread(
                target=sample_sink,
                args=(
                    moto.endpoint,
                    stack_outputs["sink_table_name"],
                    self.timeline,
                    stop_sampling,
                ),
                daemon=True,
            )
            sampler.start()
            stack.callback(stop_sampling.set)
            reshaper = Reshaper(kinesalite.endpoint, name, self.timeline)
            load = self._start_load(stack_file, env)
            kills = self._fault_schedule(load, runners, reshaper, moto_proxy, stack_outputs)
            load_code = load.wait()
            if load_code != 0:
                say(f"load.py failed (exit {load_code}): see {out / 'load.log'}")
                return 2
            self._drain(runners)
            outcome = self._verify(stack_file)
            dump_tables(moto.endpoint, stack_outputs, out)
            codes = [runner.stop() for runner in runners]
            stop_sampling.set()
            counts = Counter()
            for runner in runners:
                counts.update(runner.injected)
            counts.update(read_fault_log(fault_log, self.timeline))
            for proxy in (moto_proxy, kinesis_proxy):
                counts.update({str(fault): n for fault, n in proxy.stats.faults.items()})
                for at, fault in proxy.stats.fault_times:
                    if fault is not Fault.OUTAGE:  # the outage has its own mark
                        self.timeline.fault(f"wire: {fault}", at)
            counts["runner kill"] = kills
            self.redelivered = sum(runner.duplicates_skipped for runner in runners)
            if any(code not in (0, -signal.SIGTERM) for code in codes):
                say(f"a runner exited with {codes}: see {out}/esm-*.log")
            self._finish(outcome, counts, reshaper)
            return outcome.exit_code

    def _start_load(self, stack_file: Path, env: dict) -> subprocess.Popen:
        plan = self.plan
        command = [
            sys.executable, "scripts/load.py",
            "--stack", str(stack_file),
            "--source", "both",
            "--count", str(plan.events),
            "--keys", str(plan.keys),
            "--poison-fraction", str(plan.poison_fraction),
            "--seed", str(plan.seed),
            "--workers", "4",
            "--manifest", str(self.out / "manifest.json"),
        ]  # fmt: skip
        if plan.load_rate:
            command += ["--rate", str(plan.load_rate)]
        say(f"load: {plan.events} events over {plan.keys} keys, both sources")
        log = open(self.out / "load.log", "wb")  # noqa: SIM115 (closed with the process)
        proc = subprocess.Popen(
            command, env=env, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        log.close()
        return proc

    def _fault_schedule(self, load, runners, reshaper, moto_proxy, stack_outputs) -> int:
        """The big faults: the split, the outage and the merge at points of the load's
        progress (so they happen while it flows), the kills at points in time spread over
        the run's expected length (some after the load, so restarts also meet a stream with
        nothing new); returns the kills."""
        plan = self.plan
        rng = random.Random(plan.seed)
        started = time.monotonic()
        expected_s = max(20.0, plan.events / 400)  # ~400 events/s processed, measured
        pending: list[tuple[str, float]] = []  # (step, load fraction or seconds)
        if plan.reshard:
            pending += [("split", 0.15), ("merge", 0.55)]
        if plan.outage:
            pending.append(("outage", 0.35))
        for index in range(plan.runner_kills):
            pending.append(("kill", (0.1 + 0.8 * (index + 0.5) / plan.runner_kills) * expected_s))
        kills = 0
        while pending:
            progress = self._load_progress(load)
            elapsed = time.monotonic() - started
            due = [
                (step, at)
                for step, at in pending
                if (elapsed >= at if step == "kill" else progress >= at)
            ]
            if not due:
                time.sleep(0.2)
                continue
            step, at = due[0]
            pending.remove((step, at))
            if step == "split":
                reshaper.split()
            elif step == "merge":
                reshaper.merge()
            elif step == "outage":
                say(f"checkpoint table unreachable for {plan.outage_s:.0f}s")
                threading.Thread(
                    target=outage,
                    args=(moto_proxy, stack_outputs["checkpoint_table_name"], plan.outage_s),
                    daemon=True,
                ).start()
                self.timeline.fault("checkpoint table outage")
            else:
                runner = runners[rng.randrange(len(runners))]
                say(f"SIGKILL the {runner.name} runner (pid {runner.proc.pid}), restarting it")
                runner.kill()
                self.timeline.fault("runner kill")
                kills += 1
                time.sleep(rng.uniform(0.2, 1.5))
                runner.start()
        return kills

    def _load_progress(self, load: subprocess.Popen) -> float:
        """How far the load is, 0 to 1, from its progress lines (1 once it exited)."""
        if load.poll() is not None:
            return 1.0
        with contextlib.suppress(OSError):
            tail = (self.out / "load.log").read_bytes()[-600:].decode("utf-8", "replace")
            if found := _LOAD_PROGRESS.findall(tail):
                done, total = found[-1]
                return int(done) / max(1, int(total))
        return 0.0

    def _drain(self, runners: list[RunnerProcess]) -> None:
        """Until every shard is caught up (IteratorAge 0) for a few progress lines, or the
        timeout: verify's own settling cannot tell a pipeline that stopped from one that
        is retrying a slow batch."""
        deadline = time.monotonic() + self.timeout_s
        caught_up_since = None
        next_line = 0.0
        while time.monotonic() < deadline:
            ages = [age for runner in runners for age in runner.ages.values()]
            behind = max(ages, default=1)
            now = time.monotonic()
            if behind == 0:
                caught_up_since = caught_up_since or now
                if now - caught_up_since >= 5:
                    return
            else:
                caught_up_since = None
            if now >= next_line:
                say(f"draining: the furthest shard is {behind / 1000:.0f}s behind")
                next_line = now + 30
            time.sleep(1)
        say(f"still behind after {self.timeout_s}s: verify judges what is there")

    def _verify(self, stack_file: Path) -> Outcome:
        say(f"verify: waiting for the pipeline to drain (at most {self.timeout_s}s)")
        env = {**os.environ, **EMULATOR_ENV}
        # verify reads the sink and the queue without the faults: it is the judge.
        env.pop("AWS_ENDPOINT_URL_KINESIS", None)
        env["AWS_ENDPOINT_URL"] = self.moto_endpoint
        result = subprocess.run(
            [
                sys.executable, "scripts/verify.py",
                "--stack", str(stack_file),
                "--manifest", str(self.out / "manifest.json"),
                "--timeout", str(self.timeout_s),
                "--settle", "20",
                "--poll", "2",
            ],
            env=env, cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        (self.out / "verify.txt").write_text(result.stdout)
        lines = result.stdout.splitlines()
        for line in lines[:12]:
            say(f"verify: {line}")
        match = next((m for line in lines if (m := _VERIFIED.search(line))), None)
        counts = {}
        if match is not None:
            names = ("events", "keys", "applied", "parked", "lost", "duplicated", "reordered")
            counts = dict(zip(names, map(int, match.groups()), strict=True))
        return Outcome(lines[0] if lines else "", counts, 0 if result.returncode == 0 else 1)

    def _finish(self, outcome: Outcome, faults: Counter, reshaper: Reshaper) -> None:
        plan = self.plan
        elapsed = time.monotonic() - self.started
        wire = sum(faults[str(kind)] for kind in Fault)
        injected_errors = wire + faults["record failure"]
        c = outcome.counts
        shards = f"{plan.shards} shards"
        line = (
            f"chaos: {c.get('events', plan.events)} events, {plan.keys} keys, {shards}, "
            f"{reshaper.splits} split, {reshaper.merges} merge, {faults['runner kill']} runner "
            f"kills, {faults['handler crash']} handler crashes, {faults['handler timeout']} "
            f"handler timeouts, {injected_errors} injected errors -> "
            f"{c.get('applied', 0)} applied in order, {c.get('parked', 0)} parked, "
            f"{c.get('lost', '?')} lost, {c.get('duplicated', '?')} duplicated, "
            f"{c.get('reordered', '?')} out of order"
        )
        breakdown = ", ".join(f"{n} {kind}" for kind, n in sorted(faults.items()) if n)
        summary = {
            "seed": plan.seed,
            "plan": plan.__dict__,
            "seconds": round(elapsed, 1),
            "faults": dict(faults),
            "verified": outcome.verified,
            "counts": c,
            "redelivered_skipped": self.redelivered,
            "line": line,
        }
        (self.out / "summary.json").write_text(json.dumps(summary, indent=2))
        try:
            from streamline.chaos.timeline import draw

            draw(self.timeline, self.out / "timeline.png", title=line)
            say(f"timeline: {self.out / 'timeline.png'}")
        except ImportError as exc:
            say(f"no timeline ({exc}): pip install matplotlib")
        say(f"faults by kind: {breakdown}")
        say(
            f"{self.redelivered} records redelivered and skipped as already applied "
            f"(ParallelizationFactor {plan.parallelization_factor})"
        )
        say(f"done in {elapsed:.0f}s; seed {plan.seed}")
        print(line, flush=True)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)  # stopped like Ctrl-C: everything torn down
    make = Plan.small if args.quick else Plan.full
    plan = make(args.seed, args.events, args.shards)
    plan.parallelization_factor = args.parallelization_factor
    if args.kills_only:
        plan = dataclasses.replace(
            plan,
            poison_fraction=0.0,
            record_failure_rate=0.0,
            crash_rate=0.0,
            timeout_rate=0.0,
            duplicate_rate=0.0,
            stale_rate=0.0,
            wire_rate=0.0,
            reshard=False,
            outage=False,
            sure_faults=False,
        )
    try:
        return ChaosRun(plan, args.out, args.timeout).run()
    except KeyboardInterrupt:
        say("interrupted: everything it started was stopped")
        return 130
