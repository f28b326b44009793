"""AWS primitives every layer shares: ARNs, error codes, throttling, backoff, lazy clients.

One definition each, in the Lambda package because `processor/` imports nothing of `esm/` or
`streamline/`, while both of those may import it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, NamedTuple


class Arn(NamedTuple):
    """An ARN's parts: arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE.

    https://docs.aws.amazon.com/IAM/latest/UserGuide/reference-arns.html
    """

    partition: str
    service: str
    region: str
    account: str
    resource: str  # everything after the account, colons and slashes included

    @property
    def resource_name(self) -> str:
        """The resource's name: `stream/NAME` → NAME, `function:NAME[:QUALIFIER]` → NAME,
        a queue's bare name → itself. For a DynamoDB stream, the table's name."""
        kind, sep, rest = self.resource.partition("/")
        if sep:
            return rest.split("/", 1)[0]
        kind, sep, rest = self.resource.partition(":")
        return rest.split(":", 1)[0] if sep else kind

    def __str__(self) -> str:
        return ":".join(("arn", *self))


def parse_arn(arn: str) -> Arn:
    """Split an ARN into its parts; a string that is not one raises ValueError."""
    parts = arn.split(":", 5) if isinstance(arn, str) else []
    if len(parts) != 6 or parts[0] != "arn" or not parts[2] or not parts[5]:
        raise ValueError(f"not an ARN: {arn!r}")
    return Arn(*parts[1:])


def unqualified_function_arn(function_arn: str) -> str:
    """A function ARN without its version or alias (`...:function:NAME`)."""
    arn = parse_arn(function_arn)
    return str(arn._replace(resource=f"function:{arn.resource_name}"))


def error_code(exc: BaseException) -> str:
    """The AWS error code of a botocore ClientError (`""` for anything else)."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return ""
    return response.get("Error", {}).get("Code", "") or ""


# Whole-request errors that mean "slow down, then try the same call again" rather than "you
# are wrong": Kinesis' and DynamoDB's throughput errors, the generic throttling codes, and
# the 5xx answers botocore gives a code to.
THROTTLING_ERRORS = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "LimitExceededException",
        "ThrottlingException",
        "Throttling",
        "RequestLimitExceeded",
        "InternalServerError",
        "InternalFailure",
        "ServiceUnavailable",
    }
)


def is_throttling(exc: BaseException) -> bool:
    return error_code(exc) in THROTTLING_ERRORS


@dataclass
class Backoff:
    """Exponential backoff, capped: `base_s * 2**attempt`, at most `cap_s`.

    With `jitter` (the default) a delay is drawn uniformly below that bound ("full jitter",
    https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/), so that many
    clients retrying at once spread out; without it the bound itself, for deterministic waits.
    """

    base_s: float = 0.05
    cap_s: float = 2.0
    jitter: bool = True
    rng: random.Random = field(default_factory=random.Random)

    def delay_s(self, attempt: int) -> float:
        bound = min(self.cap_s, self.base_s * 2 ** min(attempt, 30))
        return self.rng.uniform(0, bound) if self.jitter else bound


class LazyClient:
    """A boto3 client built on first use, unless one was injected.

    `client = LazyClient("sqs")` as a class attribute gives each instance a `client` property
    that returns the instance's `boto3_client` if set, else builds one from its
    `boto3_session` (or a default session) and keeps it. The instance may name the region
    with a `region_name` attribute (None: the session's).
    """

    def __init__(self, service: str) -> None:
        self.service = service

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self
        client = getattr(instance, "boto3_client", None)
        if client is None:
            import boto3

            session = getattr(instance, "boto3_session", None) or boto3.session.Session()
            region = getattr(instance, "region_name", None)
            client = session.client(self.service, region_name=region)
            instance.boto3_client = client
        return client
