"""streamline's Lambda package: ordered, deduplicated stream processing with poison parking."""

from processor.ordering import BatchResult, OrderedProcessor, RecordHandler
from processor.records import Record, Source, Unparseable, parse_event

__all__ = [
    "BatchResult",
    "OrderedProcessor",
    "Record",
    "RecordHandler",
    "Source",
    "Unparseable",
    "parse_event",
]
