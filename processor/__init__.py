"""streamline's Lambda package: ordered, deduplicated stream processing with poison parking.

`from processor import OrderedProcessor, Record` is the public API. The names are imported on
first use: `processor.events` and `processor.aws` are also loaded by the local runner's worker
process, which should not pay for boto3 and protobuf before a handler that never uses them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from processor.exceptions import ContractViolation, InvalidPayloadError
    from processor.ordering import BatchResult, OrderedProcessor, RecordHandler
    from processor.records import Record, Source, Unparseable, parse_event

_EXPORTS = {
    "BatchResult": "processor.ordering",
    "ContractViolation": "processor.exceptions",
    "InvalidPayloadError": "processor.exceptions",
    "OrderedProcessor": "processor.ordering",
    "RecordHandler": "processor.ordering",
    "Record": "processor.records",
    "Source": "processor.records",
    "Unparseable": "processor.records",
    "parse_event": "processor.records",
}

__all__ = [
    "BatchResult",
    "ContractViolation",
    "InvalidPayloadError",
    "OrderedProcessor",
    "Record",
    "RecordHandler",
    "Source",
    "Unparseable",
    "parse_event",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'processor' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next access is a plain attribute
    return value
