"""The local event source mapping runner: ``python -m esm`` (see ``esm/cli.py``).

It replays Lambda's stream semantics (Kinesis, DynamoDB Streams) against any AWS endpoint:
shards and lineage, batching, ReportBatchItemFailures, retries, bisect, record age,
on-failure records, ParallelizationFactor, and its own persistent checkpoints.
"""

from esm.runner import Runner, Summary
from esm.settings import FunctionSettings, MappingSettings, StartingPosition
from esm.shard import Tuning

__all__ = [
    "FunctionSettings",
    "MappingSettings",
    "Runner",
    "StartingPosition",
    "Summary",
    "Tuning",
]
