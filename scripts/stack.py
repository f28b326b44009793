"""Where the demo app's resources are: `build/stack.json` (written by `make infra-up`), the
output of `terraform output -json`, or flags.

load.py, verify.py and replay.py share these options, so one stack file drives all three and
any name can be overridden on the command line (handy against resources made by hand).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
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
    parser.add_argument(
        "--stack",
        default=None,
        help=f"stack outputs as flat JSON (default: {DEFAULT_STACK_FILE} when it exists)",
    )
    for key in keys:
        parser.add_argument(
            "--" + key.replace("_", "-"), dest=key, default=None, help=f"overrides {key}"
        )


def resolve_stack(args: argparse.Namespace, *keys: str) -> dict[str, str | None]:
    """The stack file's outputs with command-line overrides applied; missing keys are None."""
    outputs: dict[str, str | None] = {}
    stack_file = Path(args.stack) if args.stack else DEFAULT_STACK_FILE
    if args.stack or stack_file.exists():
        for key, value in json.loads(stack_file.read_text()).items():
            # `terraform output -json` wraps each value: {"value": ..., "type": ...}
            is_wrapped = isinstance(value, dict) and "value" in value
            outputs[key] = value["value"] if is_wrapped else value
    for key in keys:
        override = getattr(args, key, None)
        if override:
            outputs[key] = override
        outputs.setdefault(key, None)
    return outputs
