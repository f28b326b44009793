"""The local event source mapping runner: ``python -m esm`` (see ``esm/cli.py``).

It replays Lambda's stream semantics (Kinesis, DynamoDB Streams) against any AWS endpoint:
shards and lineage, batching, ReportBatchItemFailures, retries, bisect, record age,
on-failure records, ParallelizationFactor, and its own persistent checkpoints.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from esm.runner import Runner, Summary
    from esm.settings import FunctionSettings, MappingSettings, StartingPosition
    from esm.shard import Tuning

# Imported on first use: the worker process (``python -m esm.worker``) loads this package
# too, and should not pay for boto3 and the runner before the handler's own imports.
_EXPORTS = {
    "FunctionSettings": "esm.settings",
    "MappingSettings": "esm.settings",
    "StartingPosition": "esm.settings",
    "Runner": "esm.runner",
    "Summary": "esm.runner",
    "Tuning": "esm.shard",
}

__all__ = [
    "FunctionSettings",
    "MappingSettings",
    "Runner",
    "StartingPosition",
    "Summary",
    "Tuning",
]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'esm' has no attribute {name!r}")
