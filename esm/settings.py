"""What the runner runs: a function's configuration and its stream mappings.

Both come from the endpoint's Lambda API (what Terraform created) or from command-line flags.
Defaults and ranges are Lambda's:
https://docs.aws.amazon.com/lambda/latest/api/API_CreateEventSourceMapping.html
"""

from __future__ import annotations

import enum
import hashlib
import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from esm.filtering import FilterError
from esm.filtering import validate as validate_filter_criteria
from processor.aws import parse_arn, unqualified_function_arn

log = logging.getLogger("esm")

DEFAULT_BATCH_SIZE = 100
DEFAULT_TIMEOUT_S = 3
DEFAULT_MEMORY_MB = 128


class StartingPosition(enum.Enum):
    TRIM_HORIZON = "TRIM_HORIZON"
    LATEST = "LATEST"
    AT_TIMESTAMP = "AT_TIMESTAMP"


# MetricsConfig's valid values; only EventCount applies to stream mappings (ErrorCount and
# KafkaMetrics are Kafka's). https://docs.aws.amazon.com/lambda/latest/api/API_EventSourceMappingMetricsConfig.html
EVENT_COUNT = "EventCount"
METRIC_GROUPS = (EVENT_COUNT, "ErrorCount", "KafkaMetrics")


class SettingsError(ValueError):
    """A mapping or function setting outside what Lambda accepts."""


@dataclass(frozen=True)
class FunctionSettings:
    name: str
    arn: str
    handler: str
    timeout_s: float = DEFAULT_TIMEOUT_S
    memory_mb: int = DEFAULT_MEMORY_MB
    environment: dict[str, str] = field(default_factory=dict)
    role_arn: str = ""

    @classmethod
    def from_api(cls, configuration: dict[str, Any]) -> FunctionSettings:
        """From a GetFunctionConfiguration response."""
        return cls(
            name=configuration["FunctionName"],
            arn=configuration["FunctionArn"],
            handler=configuration["Handler"],
            timeout_s=float(configuration.get("Timeout") or DEFAULT_TIMEOUT_S),
            memory_mb=int(configuration.get("MemorySize") or DEFAULT_MEMORY_MB),
            environment=dict((configuration.get("Environment") or {}).get("Variables") or {}),
            role_arn=configuration.get("Role", ""),
        )

    @property
    def region(self) -> str:
        return parse_arn(self.arn).region


@dataclass(frozen=True)
class MappingSettings:
    event_source_arn: str
    batch_size: int = DEFAULT_BATCH_SIZE
    maximum_batching_window_s: float = 0
    starting_position: StartingPosition = StartingPosition.TRIM_HORIZON
    starting_position_timestamp: datetime | None = None
    maximum_retry_attempts: int = -1
    maximum_record_age_s: int = -1
    bisect_batch_on_function_error: bool = False
    parallelization_factor: int = 1
    report_batch_item_failures: bool = False
    on_failure_destination_arn: str | None = None
    uuid: str | None = None
    # 0: no tumbling window. https://docs.aws.amazon.com/lambda/latest/dg/services-kinesis-windows.html
    tumbling_window_s: int = 0
    # {"Filters": [{"Pattern": "<json>"}]}; None (or no filters) delivers every record.
    filter_criteria: dict[str, Any] | None = field(default=None, hash=False)
    # MetricsConfig.Metrics: with EventCount the runner sends the event counts to CloudWatch.
    metrics: tuple[str, ...] = ()
    # Set when the mapping's source is an enhanced fan-out consumer: event_source_arn is then
    # its stream's ARN, resolved by esm.sources.through_consumer before the runner starts.
    consumer_arn: str | None = None

    def __post_init__(self) -> None:
        self.validate()

    @property
    def source(self) -> str:
        """``kinesis`` or ``dynamodb``: the service of the event source ARN."""
        try:
            return parse_arn(self.event_source_arn).service
        except ValueError:
            raise SettingsError(f"not a stream event source: {self.event_source_arn}") from None

    @property
    def event_count_metrics(self) -> bool:
        return EVENT_COUNT in self.metrics

    @property
    def state_key(self) -> str:
        """Names this mapping's checkpoints: its UUID, else a digest of the stream ARN."""
        if self.uuid:
            return self.uuid
        # A consumer reads apart from the stream's other mappings: its own positions.
        source = self.consumer_arn or self.event_source_arn
        return "stream-" + hashlib.sha256(source.encode()).hexdigest()[:16]

    def validate(self) -> None:
        max_batch = {"kinesis": 10000, "dynamodb": 10000}.get(self.source)
        if max_batch is None:
            raise SettingsError(f"not a stream event source: {self.event_source_arn}")
        if not 1 <= self.batch_size <= max_batch:
            raise SettingsError(f"BatchSize {self.batch_size} is outside 1..{max_batch}")
        if not 0 <= self.maximum_batching_window_s <= 300:
            raise SettingsError("MaximumBatchingWindowInSeconds must be within 0..300")
        if not 1 <= self.parallelization_factor <= 10:
            raise SettingsError("ParallelizationFactor must be within 1..10")
        if not -1 <= self.maximum_retry_attempts <= 10000:
            raise SettingsError("MaximumRetryAttempts must be within -1..10000")
        if self.maximum_record_age_s != -1 and not 60 <= self.maximum_record_age_s <= 604800:
            raise SettingsError("MaximumRecordAgeInSeconds must be -1 or within 60..604800")
        if not 0 <= self.tumbling_window_s <= 900:
            raise SettingsError("TumblingWindowInSeconds must be within 0..900")
        if self.starting_position is StartingPosition.AT_TIMESTAMP:
            if self.source != "kinesis":
                raise SettingsError("AT_TIMESTAMP is a Kinesis starting position only")
            if self.starting_position_timestamp is None:
                raise SettingsError(
                    "AT_TIMESTAMP needs a starting position timestamp (moto's mapping listing "
                    "leaves it out: run with --stream-arn and --starting-position-timestamp)"
                )
        unknown = [m for m in self.metrics if m not in METRIC_GROUPS]
        if unknown:
            raise SettingsError(f"MetricsConfig: {unknown} not among {list(METRIC_GROUPS)}")
        try:
            validate_filter_criteria(self.filter_criteria)
        except FilterError as exc:
            raise SettingsError(f"FilterCriteria: {exc}") from None

    @classmethod
    def from_api(cls, mapping: dict[str, Any]) -> MappingSettings:
        """From a ListEventSourceMappings item."""
        on_failure = ((mapping.get("DestinationConfig") or {}).get("OnFailure") or {}).get(
            "Destination"
        )
        retries = mapping.get("MaximumRetryAttempts")
        age = mapping.get("MaximumRecordAgeInSeconds")
        return cls(
            event_source_arn=mapping["EventSourceArn"],
            batch_size=int(mapping.get("BatchSize") or DEFAULT_BATCH_SIZE),
            maximum_batching_window_s=float(mapping.get("MaximumBatchingWindowInSeconds") or 0),
            starting_position=StartingPosition(mapping.get("StartingPosition") or "TRIM_HORIZON"),
            starting_position_timestamp=mapping.get("StartingPositionTimestamp"),
            maximum_retry_attempts=-1 if retries is None else int(retries),
            maximum_record_age_s=-1 if age is None else int(age),
            bisect_batch_on_function_error=bool(mapping.get("BisectBatchOnFunctionError")),
            parallelization_factor=int(mapping.get("ParallelizationFactor") or 1),
            report_batch_item_failures="ReportBatchItemFailures"
            in (mapping.get("FunctionResponseTypes") or []),
            on_failure_destination_arn=on_failure or None,
            uuid=mapping.get("UUID"),
            tumbling_window_s=int(mapping.get("TumblingWindowInSeconds") or 0),
            filter_criteria=mapping.get("FilterCriteria") or None,
            metrics=tuple((mapping.get("MetricsConfig") or {}).get("Metrics") or ()),
        )


def load_function(lambda_client, function_name: str) -> FunctionSettings:
    configuration = lambda_client.get_function_configuration(FunctionName=function_name)
    return FunctionSettings.from_api(configuration)


def load_mappings(lambda_client, function: FunctionSettings) -> list[MappingSettings]:
    """The function's enabled stream mappings.

    Lists every mapping and filters by FunctionArn: moto's filter by FunctionName finds
    nothing for a mapping created with the function's ARN (Terraform's way); AWS accepts
    either, and this works on both.
    """
    mappings = []
    function_arn = unqualified_function_arn(function.arn)
    for page in lambda_client.get_paginator("list_event_source_mappings").paginate():
        for mapping in page["EventSourceMappings"]:
            if _unqualified_or_none(mapping.get("FunctionArn")) != function_arn:
                continue
            if mapping.get("State", "Enabled") not in ("Enabled", "Enabling", "Creating"):
                continue
            if _service_or_none(mapping.get("EventSourceArn")) not in ("kinesis", "dynamodb"):
                continue
            mappings.append(MappingSettings.from_api(mapping))
    return mappings


def _unqualified_or_none(function_arn: str | None) -> str | None:
    """None for a listing item without a usable ARN: not ours to run, nor an error of ours."""
    try:
        return unqualified_function_arn(function_arn or "")
    except ValueError:
        return None


def _service_or_none(arn: str | None) -> str | None:
    """None for a listing item without a usable ARN: not ours to run, nor an error of ours."""
    try:
        return parse_arn(arn or "").service
    except ValueError:
        return None


def stand_in_uuid(function_arn: str, event_source_arn: str) -> str:
    """The UUID a mapping given only by flags goes by (no mapping exists, so no UUID does):
    stable, derived from the function and the source. S3 on-failure keys and the event
    count metrics' EventSourceMappingUUID use it."""
    key = f"{unqualified_function_arn(function_arn)} {event_source_arn}"
    return str(uuid.uuid5(uuid.NAMESPACE_URL, key))
