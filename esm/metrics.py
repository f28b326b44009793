"""Lambda's event source mapping metrics (``MetricsConfig: {"Metrics": ["EventCount"]}``),
sent to CloudWatch at the endpoint with PutMetricData.

As Lambda publishes them: namespace ``AWS/Lambda``, dimension ``EventSourceMappingUUID``, unit
``Count``, at 1-minute intervals; what each count means is ``esm.stats.EventCounts``.
- https://docs.aws.amazon.com/lambda/latest/dg/monitoring-metrics-types.html#event-source-mapping-metrics
- https://docs.aws.amazon.com/lambda/latest/dg/monitoring-metrics-view.html (dimensions)
- https://docs.aws.amazon.com/lambda/latest/dg/monitoring-metrics.html (1-minute intervals)

Metrics are a side channel: a failing PutMetricData is logged and its counts are sent with the
next call; it never holds up or stops the stream.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from esm.settings import MappingSettings, stand_in_uuid
from esm.stats import EventCounts
from processor.aws import error_code

log = logging.getLogger("esm")

NAMESPACE = "AWS/Lambda"
DIMENSION = "EventSourceMappingUUID"
UNIT = "Count"
# "For event source mapping with a filter criteria" / "with an on-failure destination
# configured": these two are sent only for mappings that have one.
_NEEDS_FILTER = "FilteredOutEventCount"
_NEEDS_DESTINATION = "OnFailureDestinationDeliveredEventCount"
# Short timeouts and one retry: the run loop that publishes also starts new shards.
_CLIENT_CONFIG = Config(connect_timeout=2, read_timeout=5, retries={"max_attempts": 2})


def metrics_uuid(mapping: MappingSettings, function_arn: str) -> str:
    """The EventSourceMappingUUID dimension: the mapping's UUID; for a mapping given by flags
    (none exists), the stand-in that S3 on-failure keys use (esm/destinations.py)."""
    return mapping.uuid or stand_in_uuid(function_arn, mapping.event_source_arn)


def metric_data(
    mapping_uuid: str, counts: EventCounts, mapping: MappingSettings, timestamp: datetime
) -> list[dict]:
    """The datums for one mapping's counts over one interval (zeros included, as Lambda emits
    a 0 for an empty poll); FilteredOut and OnFailureDestinationDelivered only when the
    mapping has filters or an on-failure destination."""
    data = []
    for name, value in counts.as_dict().items():
        if name == _NEEDS_FILTER and not (mapping.filter_criteria or {}).get("Filters"):
            continue
        if name == _NEEDS_DESTINATION and not mapping.on_failure_destination_arn:
            continue
        data.append(
            {
                "MetricName": name,
                "Dimensions": [{"Name": DIMENSION, "Value": mapping_uuid}],
                "Timestamp": timestamp,
                "Value": float(value),
                "Unit": UNIT,
            }
        )
    return data


class EventCountPublisher:
    """Sends, every ``interval_s`` and when asked, what each mapping's counts added since the
    last call that CloudWatch took: one PutMetricData call per mapping (at most 6 datums)."""

    def __init__(
        self,
        mappings: Mapping[str, MappingSettings],
        *,
        interval_s: float,
        region_name: str | None = None,
        client=None,
        session: boto3.Session | None = None,
        namespace: str = NAMESPACE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.mappings = dict(mappings)  # by EventSourceMappingUUID
        self.interval_s = interval_s
        self.namespace = namespace
        self._region_name = region_name
        self._client = client
        self._session = session
        self._clock = clock
        self._due_s = clock() + interval_s
        self._sent = {mapping_uuid: EventCounts() for mapping_uuid in self.mappings}

    @property
    def client(self):
        if self._client is None:
            session = self._session or boto3.Session()
            self._client = session.client(
                "cloudwatch", region_name=self._region_name, config=_CLIENT_CONFIG
            )
        return self._client

    def due(self) -> bool:
        return self._clock() >= self._due_s

    def publish(self, totals: Mapping[str, EventCounts]) -> bool:
        """Send the counts added to ``totals`` (by mapping UUID) since the last success; False
        (and a warning) when PutMetricData failed: those counts go with the next call."""
        self._due_s = self._clock() + self.interval_s
        now = datetime.now(UTC)
        published = True
        for mapping_uuid, mapping in self.mappings.items():
            total = totals.get(mapping_uuid, EventCounts())
            data = metric_data(mapping_uuid, total - self._sent[mapping_uuid], mapping, now)
            try:
                self.client.put_metric_data(Namespace=self.namespace, MetricData=data)
            except (ClientError, BotoCoreError) as exc:
                log.warning(
                    "%s: PutMetricData failed (%s); these event counts go with the next call",
                    mapping_uuid,
                    error_code(exc) or exc,
                )
                published = False
                continue
            self._sent[mapping_uuid] = total
        return published
