"""The demo app's resources, made with boto3 on the test endpoint (no Terraform needed)."""

from __future__ import annotations

import json

import pytest

KEY_SCHEMA = {
    "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
    "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
    "BillingMode": "PAY_PER_REQUEST",
}


@pytest.fixture
def demo_stack(aws_session, unique_name, tmp_path) -> dict:
    """Stream, source table (with stream), sink and checkpoint tables, poison and on-failure
    queues, named uniquely; the dict has build/stack.json's keys, plus `path` to such a file."""
    kinesis = aws_session.client("kinesis")
    dynamodb = aws_session.client("dynamodb")
    sqs = aws_session.client("sqs")
    name = unique_name[-40:].strip("-")
    kinesis.create_stream(StreamName=name, ShardCount=2)
    kinesis.get_waiter("stream_exists").wait(StreamName=name)
    source = dynamodb.create_table(
        TableName=f"{name}-src",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        **KEY_SCHEMA,
    )
    for table in ("sink", "ckpt"):
        dynamodb.create_table(TableName=f"{name}-{table}", **KEY_SCHEMA)
    stream_arn = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"][
        "StreamARN"
    ]
    stack = {
        "kinesis_stream_name": name,
        "kinesis_stream_arn": stream_arn,
        "source_table_name": f"{name}-src",
        "source_table_stream_arn": source["TableDescription"]["LatestStreamArn"],
        "sink_table_name": f"{name}-sink",
        "checkpoint_table_name": f"{name}-ckpt",
        "poison_queue_url": sqs.create_queue(QueueName=f"{name}-poison")["QueueUrl"],
        "on_failure_queue_url": sqs.create_queue(QueueName=f"{name}-onfail")["QueueUrl"],
    }
    path = tmp_path / "stack.json"
    path.write_text(json.dumps(stack))
    yield {**stack, "path": str(path)}
    kinesis.delete_stream(StreamName=name, EnforceConsumerDeletion=True)
    for table in ("src", "sink", "ckpt"):
        dynamodb.delete_table(TableName=f"{name}-{table}")
    for queue in ("poison_queue_url", "on_failure_queue_url"):
        sqs.delete_queue(QueueUrl=stack[queue])
