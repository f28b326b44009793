"""Where the demo app's resources are: `build/stack.json` (written by `make infra-up`), the
output of `terraform output -json`, or flags.

load.py, verify.py and replay.py share these options, so one stack file drives all three and
any name can be overridden on the command line (handy against resources made by hand).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

from processor.aws import error_code
from streamline.arguments import text
from streamline.files import read_json
from streamline.paths import REPO_ROOT

DEFAULT_STACK_FILE = REPO_ROOT / "build" / "stack.json"

# Stack output keys (infra's flat JSON) -> command-line flag.
STACK_KEYS = (
    "kinesis_stream_name",
    "kinesis_stream_arn",
    "source_table_name",
    "source_table_stream_arn",
    "checkpoint_table_name",
    "sink_table_name",
    "poison_queue_url",
    "on_failure_queue_url",
    "function_name",
)


def add_stack_arguments(parser: argparse.ArgumentParser, *keys: str) -> None:
    """`--stack FILE` plus one `--<key>` override per stack output the script uses."""
    # Empty values are refused, not taken for "not given": `--stack "$STACK"` with the variable
    # unset must not fall back to the default stack file.
    parser.add_argument(
        "--stack",
        type=text,
        default=None,
        help=f"stack outputs as flat JSON (default: {DEFAULT_STACK_FILE} when it exists)",
    )
    for key in keys:
        parser.add_argument(
            "--" + key.replace("_", "-"), dest=key, type=text, default=None, help=f"overrides {key}"
        )


class StackFileError(Exception):
    """The stack file cannot be used: missing, unreadable, not JSON, or not one object."""


def read_stack_file(path: Path) -> dict[str, str | None]:
    """A stack file's outputs, flat (`terraform output -json` values unwrapped)."""
    parsed = read_json(
        path,
        StackFileError,
        "stack file",
        missing=f"stack file {path} does not exist: run `make infra-up`, or pass --stack FILE",
    )
    if not isinstance(parsed, dict):
        raise StackFileError(
            f"stack file {path} holds a JSON {type(parsed).__name__}, not an object of outputs"
        )
    outputs: dict[str, str | None] = {}
    for key, value in parsed.items():
        # `terraform output -json` wraps each value: {"value": ..., "type": ...}
        if isinstance(value, dict) and "value" in value:
            value = value["value"]
        if value is not None and not isinstance(value, str):
            if key in STACK_KEYS:
                raise StackFileError(
                    f"stack file {path}: {key} is a {type(value).__name__}, not a string"
                )
            continue  # an output the scripts do not read
        outputs[key] = value
    return outputs


def resolve_stack(args: argparse.Namespace, *keys: str) -> dict[str, str | None]:
    """The stack file's outputs with command-line overrides applied; missing keys are None.

    Raises StackFileError when a stack file was given (or the default exists) and cannot be
    used.
    """
    outputs: dict[str, str | None] = {}
    stack_file = Path(args.stack) if args.stack else DEFAULT_STACK_FILE
    if args.stack or stack_file.exists():
        outputs.update(read_stack_file(stack_file))
    for key in keys:
        override = getattr(args, key, None)
        if override:
            outputs[key] = override
        outputs.setdefault(key, None)
    return outputs


# --- reaching the stack ----------------------------------------------------------------------

AWS_ERRORS = (ClientError, BotoCoreError)
"""What a boto3 call raises when the stack cannot be reached or a resource is not there."""

_NOT_FOUND = frozenset(
    {
        "ResourceNotFoundException",
        "AWS.SimpleQueueService.NonExistentQueue",
        "QueueDoesNotExist",
        "InvalidAddress",
    }
)


def describe_aws_error(exc: ClientError | BotoCoreError, what: str = "") -> str:
    """One line for a failed call: what was wrong, in the user's terms (no traceback)."""
    subject = f"{what}: " if what else ""
    if isinstance(exc, NoCredentialsError):
        return (
            f"{subject}no AWS credentials (set AWS_PROFILE, or AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY)"
        )
    if isinstance(exc, NoRegionError):
        return f"{subject}no AWS region (set AWS_REGION or AWS_DEFAULT_REGION)"
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = error_code(exc) or "?"
        if code in _NOT_FOUND:
            return f"{subject}does not exist ({code}: {error.get('Message', '')})"
        return f"{subject}{exc.operation_name} failed: {code}: {error.get('Message', '')}"
    return f"{subject}{exc}"
