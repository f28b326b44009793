"""The embedded AWS emulator: moto's server on 127.0.0.1, a free port, stopped by PID.

moto runs a mapped function in Docker on every write to a Kinesis stream or DynamoDB table
that has an event source mapping, and after a failed run it empties the table's stream. Our
ESM runner is the one that invokes, so `serve` switches both hooks off before moto starts;
mappings created by Terraform can stay in place.

    streamline emulator start   # prints the endpoint, writes .emulator/state.json
    streamline emulator stop    # stops the process recorded there
    streamline emulator env     # prints `export AWS_...` lines for a shell

(`python scripts/emulator.py start|stop|env`, the older spelling, does the same.)
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamline import arguments
from streamline.files import read_json
from streamline.paths import REPO_ROOT

DEFAULT_STATE_FILE = REPO_ROOT / ".emulator" / "state.json"
READY_TIMEOUT_S = 30.0

# Credentials and region for talking to an emulator; any non-empty values work there.
EMULATOR_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}


def emulator_client(service: str, endpoint: str, **options: Any) -> Any:
    """A boto3 client of `service` at `endpoint`, with the emulator's credentials and region
    (`options` go to boto3.client, a botocore `config=` for one)."""
    import boto3

    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=EMULATOR_ENV["AWS_DEFAULT_REGION"],
        aws_access_key_id=EMULATOR_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=EMULATOR_ENV["AWS_SECRET_ACCESS_KEY"],
        **options,
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class EmulatorNotReady(RuntimeError):
    """The emulator exited before it answered, or did not answer in time."""


class StateFileError(Exception):
    """The state file `start` writes cannot be used: missing, not JSON, or not its shape."""


def wait_until_ready(endpoint: str, timeout_s: float = READY_TIMEOUT_S, proc=None) -> None:
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise EmulatorNotReady(
                f"emulator exited with code {proc.returncode} before it was ready"
            )
        try:
            with urllib.request.urlopen(f"{endpoint}/moto-api/data.json", timeout=2):
                return
        except urllib.error.HTTPError:
            # It answered: alive. (data.json fails with 500 once a function exists.)
            return
        except OSError as exc:
            last_error = exc
            time.sleep(0.1)
    raise EmulatorNotReady(f"emulator at {endpoint} not ready after {timeout_s}s: {last_error}")


@dataclass
class Emulator:
    """A moto server process that this object started and will stop."""

    port: int
    pid: int
    log_path: Path | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @classmethod
    def start(cls, port: int | None = None, log_path: Path | None = None) -> Emulator:
        port = port or free_port()
        log = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
        try:
            proc = subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), "serve", "--port", str(port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # a Ctrl-C in the caller's terminal is ours to handle
            )
        finally:
            if log is not subprocess.DEVNULL:
                log.close()
        emulator = cls(port=port, pid=proc.pid, log_path=log_path)
        try:
            wait_until_ready(emulator.endpoint, proc=proc)
        except BaseException:
            emulator.stop()
            raise
        emulator._proc = proc
        return emulator

    def reset(self) -> None:
        """Clear every resource (moto's own reset API)."""
        req = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")
        with urllib.request.urlopen(req, timeout=10):
            pass

    def stop(self, timeout_s: float = 10.0) -> None:
        stop_pid(self.pid, timeout_s)
        proc = getattr(self, "_proc", None)
        if proc is not None:
            proc.wait(timeout=timeout_s)

    def env(self) -> dict[str, str]:
        return {**EMULATOR_ENV, "AWS_ENDPOINT_URL": self.endpoint}


def stop_pid(pid: int, timeout_s: float = 10.0) -> None:
    """SIGTERM the process we started, SIGKILL if it lingers. Never by name."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            finished, _ = os.waitpid(pid, os.WNOHANG)
            if finished == pid:
                return
        except ChildProcessError:  # not our child: poll for its exit instead
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


# DynamoDB backend methods that read or write items (the batch and PartiQL calls go through
# them item by item).
_DYNAMODB_ITEM_CALLS = (
    "get_item",
    "put_item",
    "update_item",
    "delete_item",
    "query",
    "scan",
    "transact_write_items",
)


def serialize_dynamodb_transactions() -> None:
    """Make moto's TransactWriteItems atomic and isolated, as DynamoDB's are.

    moto checks and writes a transaction's items one by one, with no lock, and on a failed
    condition restores copies of the touched tables taken when the transaction started. Its
    server answers requests on threads, so two transactions can both pass their conditions,
    and a failed one throws away every write other requests made to those tables meanwhile
    (seen in the chaos run: committed keyed state and sink rows rolled back). DynamoDB
    serializes a transaction against every other write and read of its items:
    https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/transaction-apis.html#transaction-isolation
    One lock around each item call and each whole transaction gives that.

    Under the lock, a failed transaction is also rolled back item by item (the items it names,
    as they were before it) instead of from whole-table copies: copying every touched table
    on every transaction cost tens of milliseconds on a checkpoint table of a few thousand
    items, and the lock made every other request wait for it.
    """
    import functools
    import threading

    import moto.dynamodb.models as models

    if getattr(models.DynamoDBBackend, "_transactions_serialized", False):
        return  # once per process
    models.DynamoDBBackend._transactions_serialized = True
    lock = threading.RLock()  # re-entrant: a transaction calls put_item/update_item itself

    def serialized(method):
        @functools.wraps(method)
        def call(self, *args, **kwargs):
            with lock:
                return method(self, *args, **kwargs)

        return call

    for name in _DYNAMODB_ITEM_CALLS:
        setattr(models.DynamoDBBackend, name, serialized(getattr(models.DynamoDBBackend, name)))

    class _TablesNotCopied:
        """The `copy` module as moto's DynamoDB models see it, but a Table is not deep-copied
        (its transactions' only use of it): the item-level rollback below replaces it."""

        def __getattr__(self, name: str) -> Any:
            return getattr(copy, name)

        @staticmethod
        def deepcopy(value: Any, memo: Any = None) -> Any:
            return value if isinstance(value, models.Table) else copy.deepcopy(value, memo)

    models.copy = _TablesNotCopied()
    transact = models.DynamoDBBackend.transact_write_items  # already serialized

    @functools.wraps(transact)
    def transact_write_items(self, transact_items):
        with lock:
            before = _items_before(self, transact_items)
            try:
                return transact(self, transact_items)
            except Exception:
                for table_name, key, attributes in before:
                    if attributes is None:
                        if self.get_item(table_name, key) is not None:
                            self.delete_item(table_name, key)
                    else:
                        self.put_item(table_name, attributes)
                raise

    models.DynamoDBBackend.transact_write_items = transact_write_items


def _items_before(backend: Any, transact_items: list) -> list[tuple[str, dict, dict | None]]:
    """(table, key, the item's attributes or None) of each item a transaction names, read
    before it runs; unreadable requests name nothing (moto refuses them before any write)."""
    before = []
    for request in transact_items if isinstance(transact_items, list) else ():
        try:
            ((operation, body),) = request.items()
            table_name = body["TableName"]
            if operation == "Put":
                table = backend.get_table(table_name)
                names = [table.hash_key_attr, table.range_key_attr]
                key = {name: body["Item"][name] for name in names if name is not None}
            else:
                key = body["Key"]
            item = backend.get_item(table_name, key)
        except Exception:  # noqa: BLE001 (moto's own checks name what is wrong)
            continue
        before.append((table_name, key, None if item is None else item.to_json()["Attributes"]))
    return before


def accept_consumer_event_sources() -> None:
    """Let a mapping's source be a Kinesis enhanced fan-out consumer, as Lambda's is.

    CreateEventSourceMapping takes "the ARN of the data stream or a stream consumer"
    (https://docs.aws.amazon.com/lambda/latest/api/API_CreateEventSourceMapping.html); moto
    only looks the ARN up among streams, queues and tables and answers "Invalid
    EventSourceArn" for a consumer. A registered consumer's ARN is now kept on the mapping as
    given; our runner resolves it (esm.sources.through_consumer).
    """
    from moto.awslambda.models import EventSourceMapping, LambdaBackend
    from moto.kinesis.models import kinesis_backends

    create = LambdaBackend.create_event_source_mapping

    def create_event_source_mapping(self, spec):
        arn = spec.get("EventSourceArn") or ""
        if "/consumer/" in arn and spec.get("FunctionName"):
            streams = kinesis_backends[self.account_id][self.region_name].streams.values()
            if any(stream.get_consumer_by_arn(arn) for stream in streams):
                function = self._lambdas.get_function_by_name_or_arn_with_qualifier(
                    spec["FunctionName"]
                )
                spec.update(
                    RegionName=self.region_name,
                    AccountId=self.account_id,
                    FunctionArn=function.function_arn,
                )
                mapping = EventSourceMapping(spec)
                self._event_source_mappings[mapping.uuid] = mapping
                return mapping
        return create(self, spec)

    LambdaBackend.create_event_source_mapping = create_event_source_mapping


def serve(port: int) -> None:
    """Run moto's server in this process with its own function invocation switched off."""
    from moto.awslambda.models import LambdaBackend

    def no_invoke(self, *args, **kwargs):
        return None  # falsy: moto keeps the DynamoDB stream's records

    LambdaBackend.send_kinesis_message = no_invoke
    LambdaBackend.send_dynamodb_items = no_invoke
    serialize_dynamodb_transactions()
    accept_consumer_event_sources()

    from moto.server import main

    main(["-H", "127.0.0.1", "-p", str(port)])


def read_state(state_file: Path) -> dict[str, Any]:
    """The emulator `start` recorded: {"pid": int, "endpoint": str}."""
    state = read_json(
        state_file,
        StateFileError,
        "state file",
        missing=f"no emulator recorded in {state_file}: run `streamline emulator start`",
        not_json="; remove it once no emulator runs",
    )
    pid = state.get("pid") if isinstance(state, dict) else None
    endpoint = state.get("endpoint") if isinstance(state, dict) else None
    # A pid of 0 or -1 would signal a whole process group, or every process we may signal.
    if type(pid) is not int or pid <= 1 or not isinstance(endpoint, str) or not endpoint:
        raise StateFileError(
            f'state file {state_file} is not {{"pid": <int>, "endpoint": <url>}}: '
            "remove it once no emulator runs"
        )
    return state


def _cmd_start(args: argparse.Namespace) -> int:
    state_file = args.state_file
    if state_file.exists():
        state = read_state(state_file)
        try:
            wait_until_ready(state["endpoint"], timeout_s=1)
            print(state["endpoint"])
            return 0
        except EmulatorNotReady:
            state_file.unlink()
    log_path = state_file.parent / "moto.log"
    try:
        state_file.parent.mkdir(parents=True, exist_ok=True)
        emulator = Emulator.start(port=args.port, log_path=log_path)
    except (OSError, EmulatorNotReady) as exc:
        print(f"emulator.py: cannot start the emulator: {exc} (log: {log_path})", file=sys.stderr)
        return 1
    state_file.write_text(json.dumps({"pid": emulator.pid, "endpoint": emulator.endpoint}))
    print(emulator.endpoint)
    return 0


def _cmd_stop(args: argparse.Namespace) -> int:
    state_file = args.state_file
    if not state_file.exists():
        print(f"no emulator recorded in {state_file}", file=sys.stderr)
        return 0
    state = read_state(state_file)
    stop_pid(state["pid"])
    state_file.unlink()
    print(f"stopped emulator pid {state['pid']} ({state['endpoint']})")
    return 0


def _cmd_env(args: argparse.Namespace) -> int:
    state = read_state(args.state_file)
    for name, value in {**EMULATOR_ENV, "AWS_ENDPOINT_URL": state["endpoint"]}.items():
        print(f"export {name}={value}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = arguments.OneLineParser(prog="emulator.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, func in (("start", _cmd_start), ("stop", _cmd_stop), ("env", _cmd_env)):
        p = sub.add_parser(name)
        p.add_argument("--state-file", type=arguments.path, default=DEFAULT_STATE_FILE)
        p.set_defaults(func=func)
    sub.choices["start"].add_argument("--port", type=arguments.port, default=None)
    p = sub.add_parser("serve", help="run moto in the foreground (used by start)")
    p.add_argument("--port", type=arguments.port, required=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # bad arguments: one line, exit 2
    if args.command == "serve":
        serve(args.port)
        return 0
    try:
        return args.func(args)
    except StateFileError as exc:
        print(f"emulator.py: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
