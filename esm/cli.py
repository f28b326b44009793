"""``python -m esm``: run a function's stream event source mappings locally.

    python -m esm run --function-name NAME [--code-dir DIR] [--until-idle SECONDS]
    python -m esm event kinesis|dynamodb [--records N] [--keys K] ...   (esm/sample_events.py)
    python -m esm invoke --handler MODULE.FUNCTION --event FILE|- ...    (esm/oneshot.py)

reads the function's configuration and enabled mappings from the endpoint's Lambda API
(``AWS_ENDPOINT_URL``) and runs them. ``--stream-arn`` runs one mapping given by flags
instead; ``--handler`` (with ``--stream-arn``) needs no function at the endpoint at all.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path

import boto3
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
)

from esm import oneshot, sample_events
from esm.destinations import DestinationNotFound, destination_for
from esm.faults import DeliveryFaults
from esm.filtering import FilterError
from esm.filtering import validate as validate_filter_criteria
from esm.runner import DEFAULT_STATE_DIR, REPO_ROOT, Runner, RunnerFailed
from esm.sample_events import EventName
from esm.settings import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_MEMORY_MB,
    DEFAULT_TIMEOUT_S,
    EVENT_COUNT,
    FunctionSettings,
    MappingSettings,
    SettingsError,
    StartingPosition,
    load_function,
    load_mappings,
)
from esm.shard import Tuning
from esm.sources import source_for, through_consumer
from processor.aws import error_code, parse_arn


class _OneLineParser(argparse.ArgumentParser):
    """Errors in one line (what is wrong, where to look), not argparse's usage block."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: {message} (see --help)\n")


# Lambda's own limits for a function: timeout 1-900 s, memory 128-10240 MB.
# https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html
MAX_TIMEOUT_S = 900
MEMORY_MB = (128, 10240)
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _ranged(convert, what: str, test, bounds: str):
    """An argparse type: `convert(text)` (refused as not `what`), kept when `test` holds,
    else refused with `bounds` (what the value must be)."""

    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {what}: {text!r}") from None
        if not test(value):
            raise argparse.ArgumentTypeError(f"must be {bounds}, got {text}")
        return value

    return parse


_timeout = _ranged(
    float,
    "a number of seconds",
    lambda s: 0 < s <= MAX_TIMEOUT_S,
    f"more than 0 and at most {MAX_TIMEOUT_S} seconds",
)
_memory = _ranged(
    int,
    "a whole number of MB",
    lambda mb: MEMORY_MB[0] <= mb <= MEMORY_MB[1],
    f"from {MEMORY_MB[0]} to {MEMORY_MB[1]} MB",
)
# A duration flag: a finite number of seconds, 0 or more.
_seconds = _ranged(float, "a number of seconds", lambda s: 0 <= s < math.inf, "0 or more seconds")
# TumblingWindowInSeconds: "The range is 1-900 seconds" (0, the API's default, is no window).
# https://docs.aws.amazon.com/lambda/latest/api/API_CreateEventSourceMapping.html
_tumbling_window = _ranged(int, "a whole number of seconds", lambda s: 1 <= s <= 900, "1 to 900")
# A fault rate flag: a probability.
_rate = _ranged(float, "a rate", lambda r: 0 <= r <= 1, "from 0 to 1")


def _environment_pair(value: str) -> tuple[str, str]:
    name, equals, setting = value.partition("=")
    if not equals or not name.strip():
        raise argparse.ArgumentTypeError(f"not NAME=VALUE: {value!r}")
    return name, setting


def _add_env_flag(parser) -> None:
    """--env NAME=VALUE, repeated: `args.env` is a list of (name, value), `dict()`-able."""
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        type=_environment_pair,
        metavar="NAME=VALUE",
        help="function environment",
    )


def _describe(exc: BotoCoreError | ClientError, function_name: str | None) -> str:
    """One line for why the endpoint could not be asked, and what to do."""
    code = error_code(exc)
    if code == "ResourceNotFoundException":
        return f"function {function_name!r} is not at the endpoint: check --function-name"
    if isinstance(exc, NoRegionError):
        return "no AWS region: set AWS_DEFAULT_REGION (or AWS_REGION)"
    if isinstance(exc, NoCredentialsError):
        return "no AWS credentials: set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
    if isinstance(exc, EndpointConnectionError):
        return f"cannot reach the endpoint ({exc}): is it running? check AWS_ENDPOINT_URL"
    return f"the endpoint refused: {exc}"


def _timestamp(value: str) -> datetime:
    try:
        try:
            return datetime.fromtimestamp(float(value), tz=UTC)
        except ValueError:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
            return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    except (ValueError, OverflowError, OSError):
        raise argparse.ArgumentTypeError(
            f"not a time (epoch seconds or ISO 8601): {value!r}"
        ) from None


def _filter_criteria(text: str) -> dict:
    """The API's shape, as the AWS CLI takes it: {"Filters": [{"Pattern": "<json>"}]}."""
    try:
        criteria = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None
    try:
        validate_filter_criteria(criteria)
    except FilterError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return criteria


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog="python -m esm",
        description="The local event source mapping runner: Kinesis and DynamoDB Streams into "
        "a Python handler with Lambda's batching, retry, bisect, batch item failure, "
        "on-failure and checkpoint semantics.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser(
        "run",
        help="run a function's mappings",
        description="Run the function's enabled stream mappings (or one given by flags). "
        "Per-shard progress goes to stderr every --progress-interval seconds; a summary when "
        "it stops (SIGINT/SIGTERM, or --until-idle).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    target = run.add_argument_group("what to run")
    target.add_argument("--function-name", help="the function at the endpoint (name or ARN)")
    target.add_argument(
        "--code-dir", type=Path, default=REPO_ROOT, help="where the handler module is imported from"
    )
    target.add_argument(
        "--until-idle",
        type=_seconds,
        metavar="SECONDS",
        help="exit once every shard has been caught up this long",
    )

    flags = run.add_argument_group(
        "without a mapping at the endpoint",
        "--stream-arn replaces the endpoint's mappings with one from these flags; the function "
        "settings override the endpoint's configuration (all of them are needed when no "
        "function exists there: --handler at least).",
    )
    flags.add_argument(
        "--stream-arn",
        help="Kinesis stream, Kinesis enhanced fan-out consumer, or DynamoDB stream ARN",
    )
    flags.add_argument("--handler", help="module.function, e.g. processor.handler.handler")
    flags.add_argument(
        "--timeout",
        type=_timeout,
        help=f"seconds; default: the function's configuration, else {DEFAULT_TIMEOUT_S}",
    )
    flags.add_argument(
        "--memory-size",
        type=_memory,
        help=f"MB; default: the function's configuration, else {DEFAULT_MEMORY_MB}",
    )
    _add_env_flag(flags)
    flags.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    flags.add_argument("--maximum-batching-window", type=float, default=0, metavar="SECONDS")
    flags.add_argument(
        "--starting-position",
        choices=[p.value for p in StartingPosition],
        default=StartingPosition.TRIM_HORIZON.value,
    )
    flags.add_argument(
        "--starting-position-timestamp",
        type=_timestamp,
        metavar="TIME",
        help="epoch seconds or ISO 8601, for AT_TIMESTAMP",
    )
    flags.add_argument("--maximum-retry-attempts", type=int, default=-1, help="-1: until expiry")
    flags.add_argument(
        "--maximum-record-age", type=int, default=-1, metavar="SECONDS", help="-1: retention"
    )
    flags.add_argument("--bisect-batch-on-function-error", action="store_true")
    flags.add_argument("--parallelization-factor", type=int, default=1)
    flags.add_argument("--report-batch-item-failures", action="store_true")
    flags.add_argument(
        "--on-failure-destination",
        metavar="ARN",
        help="an SQS queue, SNS topic or S3 bucket (arn:aws:s3:::BUCKET) for batches given up on",
    )
    flags.add_argument(
        "--filter-criteria",
        type=_filter_criteria,
        metavar="JSON",
        help='{"Filters": [{"Pattern": "..."}]}, as the Lambda API takes it; also replaces '
        "the FilterCriteria of the endpoint's mappings",
    )

    flags.add_argument(
        "--tumbling-window",
        type=_tumbling_window,
        metavar="SECONDS",
        help="TumblingWindowInSeconds (1-900); also replaces that of the endpoint's mappings",
    )
    flags.add_argument(
        "--metrics",
        choices=[EVENT_COUNT],
        help="MetricsConfig: count Lambda's EventCount metrics and send them to CloudWatch "
        "(AWS/Lambda, per EventSourceMappingUUID, once a minute); also enables them on the "
        "endpoint's mappings",
    )

    tuning = run.add_argument_group("pacing and state")
    defaults = Tuning()
    tuning.add_argument("--poll-interval", type=_seconds, default=defaults.poll_interval_s)
    tuning.add_argument("--retry-backoff", type=_seconds, default=defaults.retry_backoff_s)
    tuning.add_argument("--max-retry-backoff", type=_seconds, default=defaults.max_retry_backoff_s)
    tuning.add_argument("--throttle-backoff", type=_seconds, default=defaults.throttle_backoff_s)
    tuning.add_argument(
        "--max-throttle-backoff", type=_seconds, default=defaults.max_throttle_backoff_s
    )
    tuning.add_argument("--shard-refresh", type=_seconds, default=defaults.shard_refresh_s)
    tuning.add_argument(
        "--progress-interval",
        type=_seconds,
        default=defaults.progress_interval_s,
        help="seconds between progress lines; 0: none",
    )
    tuning.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    tuning.add_argument(
        "--checkpoint-table", help="keep checkpoints in this DynamoDB table instead of files"
    )
    tuning.add_argument("--log-level", type=str.upper, choices=LOG_LEVELS, default="WARNING")
    faults = run.add_argument_group(
        "injected faults",
        "Lambda's delivery is at least once; test a handler against it on purpose "
        "(each injection is logged as 'injected fault: <kind>').",
    )
    faults.add_argument(
        "--inject-duplicate-delivery",
        type=_rate,
        default=0.0,
        metavar="RATE",
        help="invoke this share of batches a second time once they returned",
    )
    faults.add_argument(
        "--inject-stale-invocation",
        type=_rate,
        default=0.0,
        metavar="RATE",
        help="run a second, stale invocation beside this share of batches",
    )
    faults.add_argument("--fault-seed", type=int, default=0, help="seed of the fault draws")
    _add_event_command(sub)
    _add_invoke_command(sub)
    # `python -m esm --help` shows everything, the run command's options included.
    parser.epilog = run.format_help()
    return parser


_count = _ranged(int, "a whole number", lambda n: n >= 1, "1 or more")


def _handler(text: str) -> str:
    module, dot, function = text.rpartition(".")
    if not dot or not module or not function:
        raise argparse.ArgumentTypeError(f"not MODULE.FUNCTION: {text!r}")
    return text


def _add_event_command(sub) -> None:
    event = sub.add_parser(
        "event",
        help="print a sample Lambda event",
        description="Print a Lambda stream event (JSON) with the shape the runner delivers: "
        "one batch from one shard, growing sequence numbers. By default the records carry the "
        'demo app\'s events {"key", "n", "payload"}.',
    )
    shared = _OneLineParser(add_help=False)
    shared.add_argument(
        "--records", type=_count, metavar="N", help="records in the batch (default 3)"
    )
    shared.add_argument(
        "--keys", type=_count, default=2, metavar="K", help="keys, round robin (default 2)"
    )
    shared.add_argument(
        "--poison-every",
        type=_count,
        default=0,
        metavar="N",
        help='mark every Nth record as the demo\'s poison ("poison": true)',
    )
    payload = shared.add_mutually_exclusive_group()
    payload.add_argument("--data", metavar="JSON", help="one payload for every record")
    payload.add_argument(
        "--data-file", metavar="FILE", help="one JSON payload per line, one record each"
    )
    payload.add_argument(
        "--model",
        metavar="MODULE:CLASS",
        help="payloads generated from this pydantic model (e.g. processor.handler:DemoEventModel)",
    )
    shared.add_argument(
        "--code-dir",
        type=Path,
        default=Path("."),
        help="where --model's module is imported from (default: the current directory)",
    )
    shared.add_argument("--event-source-arn", metavar="ARN", help="the stream's ARN")
    sources = event.add_subparsers(dest="source", required=True, metavar="{kinesis,dynamodb}")
    kinesis = sources.add_parser(
        "kinesis", parents=[shared], help="a Kinesis batch", description="A Kinesis batch."
    )
    kinesis.add_argument(
        "--aggregate", action="store_true", help="pack records into KPL aggregates"
    )
    kinesis.add_argument(
        "--aggregate-max-records",
        type=_count,
        default=10,
        metavar="N",
        help="user records per aggregate at most (default 10)",
    )
    dynamodb = sources.add_parser(
        "dynamodb",
        parents=[shared],
        help="a DynamoDB Streams batch",
        description="A DynamoDB Streams batch (NEW_AND_OLD_IMAGES, table key pk).",
    )
    dynamodb.add_argument(
        "--event-name",
        choices=[name.value for name in EventName],
        default=EventName.MIX.value,
        help="mix (default): a key's first record INSERT, later ones MODIFY",
    )


def _add_invoke_command(sub) -> None:
    invoke = sub.add_parser(
        "invoke",
        help="run a handler once and explain the response",
        description="Run the handler once on the event in a worker process, with Lambda's "
        "timeout and context; print the response (stdout), then what the stream mapping "
        "would do with it (stderr). Exit 0 when the function returned, 1 on a function "
        "error, 2 on bad input.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    invoke.add_argument(
        "--handler",
        required=True,
        type=_handler,
        help="module.function, e.g. processor.handler.handler",
    )
    invoke.add_argument("--event", required=True, metavar="FILE", help="the event; - for stdin")
    invoke.add_argument(
        "--code-dir", type=Path, default=REPO_ROOT, help="where the handler module is imported from"
    )
    invoke.add_argument("--timeout", type=_timeout, default=DEFAULT_TIMEOUT_S, help="seconds")
    invoke.add_argument("--memory-size", type=_memory, default=DEFAULT_MEMORY_MB, help="MB")
    invoke.add_argument("--function-name", default="esm-local", help="the context's function name")
    _add_env_flag(invoke)
    invoke.add_argument("--report-batch-item-failures", action="store_true")
    invoke.add_argument("--bisect-batch-on-function-error", action="store_true")


def _function(args, lambda_client) -> FunctionSettings:
    if args.function_name and not (args.stream_arn and args.handler):
        base = load_function(lambda_client, args.function_name)
    else:
        name = args.function_name or "esm-local"
        region = _region_of(args.stream_arn) if args.stream_arn else "us-east-1"
        base = FunctionSettings(
            name=name,
            arn=f"arn:aws:lambda:{region}:000000000000:function:{name}",
            handler=args.handler,
        )
    environment = {**base.environment, **dict(args.env)}
    return FunctionSettings(
        name=base.name,
        arn=base.arn,
        handler=args.handler or base.handler,
        timeout_s=base.timeout_s if args.timeout is None else args.timeout,
        memory_mb=base.memory_mb if args.memory_size is None else args.memory_size,
        environment=environment,
        role_arn=base.role_arn,
    )


def _region_of(stream_arn: str) -> str:
    try:
        return parse_arn(stream_arn).region
    except ValueError as exc:
        raise SettingsError(f"--stream-arn: {exc}") from None


def _mapping_from_flags(args) -> MappingSettings:
    return MappingSettings(
        event_source_arn=args.stream_arn,
        batch_size=args.batch_size,
        maximum_batching_window_s=args.maximum_batching_window,
        starting_position=StartingPosition(args.starting_position),
        starting_position_timestamp=args.starting_position_timestamp,
        maximum_retry_attempts=args.maximum_retry_attempts,
        maximum_record_age_s=args.maximum_record_age,
        bisect_batch_on_function_error=args.bisect_batch_on_function_error,
        parallelization_factor=args.parallelization_factor,
        report_batch_item_failures=args.report_batch_item_failures,
        on_failure_destination_arn=args.on_failure_destination,
        filter_criteria=args.filter_criteria,
        tumbling_window_s=args.tumbling_window or 0,
        metrics=(args.metrics,) if args.metrics else (),
    )


def _cmd_run(args) -> int:
    if not args.function_name and not (args.stream_arn and args.handler):
        print("need --function-name, or --stream-arn with --handler", file=sys.stderr)
        return 2
    session = boto3.Session()
    try:
        lambda_client = session.client("lambda")
        function = _function(args, lambda_client)
        if args.stream_arn:
            mappings = [_mapping_from_flags(args)]
        else:
            mappings = load_mappings(lambda_client, function)
            if args.filter_criteria is not None:
                mappings = [
                    dataclasses.replace(m, filter_criteria=args.filter_criteria) for m in mappings
                ]
            if args.tumbling_window is not None:
                mappings = [
                    dataclasses.replace(m, tumbling_window_s=args.tumbling_window) for m in mappings
                ]
            if args.metrics is not None:
                mappings = [dataclasses.replace(m, metrics=(args.metrics,)) for m in mappings]
    except SettingsError as exc:
        print(f"invalid setting: {exc}", file=sys.stderr)
        return 2
    except (BotoCoreError, ClientError) as exc:
        print(f"[esm] cannot start: {_describe(exc, args.function_name)}", file=sys.stderr)
        return 2
    resolved = []
    for mapping in mappings:
        # Once before anything starts: a stream (or consumer) that is not there, or an
        # endpoint that does not answer, is a clear error now rather than retries for ever.
        arn = mapping.event_source_arn
        try:
            mapping = through_consumer(mapping, session)
            source_for(mapping.event_source_arn, function, session).list_shards()
        except ValueError as exc:
            print(f"invalid setting: {exc}", file=sys.stderr)
            return 2
        except (BotoCoreError, ClientError) as exc:
            if error_code(exc) == "ResourceNotFoundException":
                reason = "it is not at the endpoint: check the ARN and AWS_ENDPOINT_URL"
            else:
                reason = _describe(exc, args.function_name)
            print(f"[esm] cannot read {arn}: {reason}", file=sys.stderr)
            return 2
        try:
            destination = destination_for(mapping.on_failure_destination_arn, session)
            if destination is not None:
                destination.check()
        except ValueError as exc:
            print(f"invalid setting: {exc}", file=sys.stderr)
            return 2
        except DestinationNotFound as exc:
            # At run time a missing destination holds the shard at its first given-up batch,
            # retrying: refuse it now, as a missing stream is.
            print(f"[esm] {exc}: check the ARN and AWS_ENDPOINT_URL", file=sys.stderr)
            return 2
        except (BotoCoreError, ClientError) as exc:
            print(
                f"[esm] cannot reach on-failure destination {mapping.on_failure_destination_arn}: "
                f"{_describe(exc, args.function_name)}",
                file=sys.stderr,
            )
            return 2
        resolved.append(mapping)
    mappings = resolved
    if not mappings:
        print(f"function {function.name} has no enabled stream mappings", file=sys.stderr)
        return 1
    tuning = Tuning(
        poll_interval_s=args.poll_interval,
        retry_backoff_s=args.retry_backoff,
        max_retry_backoff_s=args.max_retry_backoff,
        throttle_backoff_s=args.throttle_backoff,
        max_throttle_backoff_s=args.max_throttle_backoff,
        shard_refresh_s=args.shard_refresh,
        progress_interval_s=args.progress_interval,
    )
    runner = Runner(
        function,
        mappings,
        code_dir=args.code_dir.resolve(),
        session=session,
        tuning=tuning,
        state_dir=args.state_dir,
        checkpoint_table=args.checkpoint_table,
        faults=DeliveryFaults(
            duplicate_rate=args.inject_duplicate_delivery,
            stale_rate=args.inject_stale_invocation,
            seed=args.fault_seed,
        ),
    )
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: runner.stop())
    for mapping in mappings:
        through = (
            f" through consumer {mapping.consumer_arn} (enhanced fan-out, read with GetRecords)"
            if mapping.consumer_arn
            else ""
        )
        print(
            f"[esm] running {function.name} ({function.handler}) on "
            f"{mapping.event_source_arn}{through}",
            file=sys.stderr,
            flush=True,
        )
    try:
        runner.run(until_idle_s=args.until_idle)
    except RunnerFailed as exc:
        print(f"[esm] {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, str(getattr(args, "log_level", "WARNING")), logging.WARNING),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if args.command == "run":
        return _cmd_run(args)
    return _COMMANDS[args.command](args)


# The other commands' logic lives in their own modules.
_COMMANDS = {"event": sample_events.command, "invoke": oneshot.command}
