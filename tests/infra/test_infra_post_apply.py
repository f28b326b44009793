"""streamline/infra/post_apply.py with a stand-in for the boto3 client (no server): the call it
makes and its patience with a mapping that is still being created. The real calls against the
emulator are checked in test_infra_stack.py."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from streamline.infra import post_apply


class LambdaStandIn:
    def __init__(self, busy_times: int = 0):
        self.busy_times = busy_times
        self.calls: list[dict] = []

    def update_event_source_mapping(self, **kwargs):
        self.calls.append(kwargs)
        if len(self.calls) <= self.busy_times:
            error = {"Error": {"Code": "ResourceInUseException", "Message": "Creating"}}
            raise ClientError(error, "UpdateEventSourceMapping")
        return {}


class SqsStandIn:
    def __init__(self):
        self.calls: list[dict] = []

    def set_queue_attributes(self, **kwargs):
        self.calls.append(kwargs)


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch):
    monkeypatch.setattr(post_apply.time, "sleep", lambda _s: None)


def test_mapping_update_passes_the_settings_as_api_parameters():
    client = LambdaStandIn()
    settings = {"FunctionResponseTypes": ["ReportBatchItemFailures"]}
    post_apply.update_event_source_mapping(client, "uuid-1", settings)
    assert client.calls == [{"UUID": "uuid-1", **settings}]


def test_mapping_update_waits_while_the_mapping_is_in_use():
    client = LambdaStandIn(busy_times=2)
    post_apply.update_event_source_mapping(client, "uuid-1", {"BatchSize": 10})
    assert len(client.calls) == 3


def test_mapping_update_reraises_other_errors():
    class Refusing(LambdaStandIn):
        def update_event_source_mapping(self, **kwargs):
            error = {"Error": {"Code": "InvalidParameterValueException", "Message": "no"}}
            raise ClientError(error, "UpdateEventSourceMapping")

    with pytest.raises(ClientError):
        post_apply.update_event_source_mapping(Refusing(), "uuid-1", {"BatchSize": 0})


def test_queue_attributes_are_sent_as_the_strings_sqs_expects():
    client = SqsStandIn()
    post_apply.update_queue(client, "http://q", {"SqsManagedSseEnabled": True, "X": 5})
    assert client.calls == [
        {"QueueUrl": "http://q", "Attributes": {"SqsManagedSseEnabled": "true", "X": "5"}}
    ]


@pytest.mark.parametrize("argv", [[], ["aws_s3_bucket"], ["aws_sqs_queue", "extra"]])
def test_unknown_resource_types_are_a_usage_error(argv, capsys):
    assert post_apply.main(argv) == 2
    assert "usage" in capsys.readouterr().err


class S3StandIn:
    def __init__(self):
        self.calls: list[dict] = []

    def put_bucket_encryption(self, **kwargs):
        self.calls.append(kwargs)


def test_bucket_encryption_is_one_rule_from_the_flattened_settings():
    client = S3StandIn()
    settings = {"SSEAlgorithm": "aws:kms", "BucketKeyEnabled": True}
    post_apply.put_bucket_encryption(client, "bucket-1", settings)
    assert client.calls == [
        {
            "Bucket": "bucket-1",
            "ServerSideEncryptionConfiguration": {
                "Rules": [
                    {
                        "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"},
                        "BucketKeyEnabled": True,
                    }
                ]
            },
        }
    ]
