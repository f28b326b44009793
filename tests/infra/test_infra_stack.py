"""The stack applied to a real endpoint: moto's server (or AWS_ENDPOINT_URL when set).

One apply and one destroy for the whole module, through the same script `make infra-up` /
`make infra-down` run (streamline/infra/stack.py), with non-default settings so that every
variable is seen to reach the endpoint. The last test destroys the stack and checks that
nothing is left.
"""

from __future__ import annotations

import json
import shutil
import urllib.parse
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from processor.aws import parse_arn
from streamline.infra import lambda_zip as infra_lambda_zip
from streamline.infra import stack as infra_stack
from streamline.paths import REPO_ROOT

pytestmark = pytest.mark.integration

# Non-default values for every tunable the tests can observe.
SETTINGS = {
    "shard_count": 3,
    "stream_retention_hours": 48,
    "batch_size": 50,
    "batching_window_s": 2,
    "parallelization_factor": 2,
    "maximum_retry_attempts": 5,
    "maximum_record_age_s": 3600,
    "starting_position": "LATEST",
    "max_attempts": 4,
    "memory_mb": 512,
    "timeout_s": 20,
    "log_level": "DEBUG",
    "log_retention_days": 7,
    "iterator_age_alarm_ms": 30000,
    "tags": {"team": "streams"},
    # The optional mapping settings (set after apply on the offline path) and the S3
    # on-failure destination, its bucket created and encrypted (also after apply offline).
    "filter_criteria": ['{"data": {"kind": ["order"]}}', {"eventName": ["INSERT"]}],
    "tumbling_window_in_seconds": 60,
    "metrics_config": True,
    "on_failure_destination": "s3",
    # The Kinesis mapping reads through an enhanced fan-out consumer of its own.
    "enhanced_fan_out": True,
}


@dataclass
class Deployed:
    name: str
    args: list[str]
    outputs: dict
    destroyed: bool = False


@pytest.fixture(scope="module")
def lambda_zip(tmp_path_factory) -> Path:
    """A private copy: a rebuild of build/lambda.zip mid-module must not look like drift."""
    target = tmp_path_factory.mktemp("lambda") / "lambda.zip"
    built = REPO_ROOT / "build" / "lambda.zip"
    if built.exists():
        shutil.copyfile(built, target)
    else:
        infra_lambda_zip.build(target)
    return target


@pytest.fixture(scope="module")
def stack(aws_endpoint, terraform, lambda_zip, tmp_path_factory) -> Deployed:
    work = tmp_path_factory.mktemp("stack")
    name = f"sl-{uuid.uuid4().hex[:8]}"
    args = [
        "--work-dir",
        str(work / "terraform"),
        "--stack-json",
        str(work / "stack.json"),
        "--lambda-zip",
        str(lambda_zip),
        "--name",
        name,
    ]
    for key, value in SETTINGS.items():
        args += ["--var", f"{key}={json.dumps(value) if not isinstance(value, str) else value}"]
    assert infra_stack.main(["up", *args]) == 0, "make infra-up's script failed"
    deployed = Deployed(name, args, json.loads((work / "stack.json").read_text()))
    yield deployed
    if not deployed.destroyed:
        infra_stack.main(["down", *args])


@pytest.fixture(scope="module")
def clients(aws_session):
    return {
        service: aws_session.client(service)
        for service in ("kinesis", "dynamodb", "sqs", "lambda", "iam", "logs", "cloudwatch", "s3")
    }


def _account_region(function_arn: str) -> tuple[str, str]:
    arn = parse_arn(function_arn)
    return arn.account, arn.region


# --- outputs ----------------------------------------------------------------------------------


def test_stack_json_is_a_flat_object_with_what_the_scripts_read(stack):
    required = {
        "kinesis_stream_name": f"{stack.name}-events",
        "source_table_name": f"{stack.name}-source",
        "checkpoint_table_name": f"{stack.name}-checkpoints",
        "sink_table_name": f"{stack.name}-sink",
        "function_name": f"{stack.name}-processor",
    }
    for key, value in required.items():
        assert stack.outputs[key] == value
    for key in (
        "kinesis_stream_arn",
        "source_table_stream_arn",
        "poison_queue_url",
        "poison_queue_arn",
        "on_failure_queue_url",
        "on_failure_queue_arn",
        "function_arn",
    ):
        assert isinstance(stack.outputs[key], str) and stack.outputs[key], key


# --- sources, tables, queues ------------------------------------------------------------------


def test_kinesis_stream_has_the_shards_retention_and_encryption(stack, clients):
    summary = clients["kinesis"].describe_stream_summary(
        StreamName=stack.outputs["kinesis_stream_name"]
    )["StreamDescriptionSummary"]
    assert summary["StreamARN"] == stack.outputs["kinesis_stream_arn"]
    assert summary["OpenShardCount"] == SETTINGS["shard_count"]
    assert summary["RetentionPeriodHours"] == SETTINGS["stream_retention_hours"]
    assert summary["EncryptionType"] == "KMS"
    assert summary["KeyId"] == "alias/aws/kinesis"


def test_source_table_streams_new_and_old_images(stack, clients):
    name = stack.outputs["source_table_name"]
    table = clients["dynamodb"].describe_table(TableName=name)["Table"]
    assert table["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    assert table["AttributeDefinitions"] == [{"AttributeName": "pk", "AttributeType": "S"}]
    assert table["StreamSpecification"] == {
        "StreamEnabled": True,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }
    assert table["LatestStreamArn"] == stack.outputs["source_table_stream_arn"]


def test_checkpoint_table_is_on_demand_with_ttl_and_point_in_time_recovery(stack, clients):
    ddb, name = clients["dynamodb"], stack.outputs["checkpoint_table_name"]
    table = ddb.describe_table(TableName=name)["Table"]
    assert table["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    ttl = ddb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"}
    backups = ddb.describe_continuous_backups(TableName=name)["ContinuousBackupsDescription"]
    assert backups["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "ENABLED"


def test_sink_table_is_keyed_by_pk(stack, clients):
    table = clients["dynamodb"].describe_table(TableName=stack.outputs["sink_table_name"])["Table"]
    assert table["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]


@pytest.mark.parametrize("queue", ["poison", "on_failure"])
def test_queues_keep_messages_14_days_encrypted_without_redrive(stack, clients, queue):
    attributes = clients["sqs"].get_queue_attributes(
        QueueUrl=stack.outputs[f"{queue}_queue_url"], AttributeNames=["All"]
    )["Attributes"]
    assert attributes["QueueArn"] == stack.outputs[f"{queue}_queue_arn"]
    assert attributes["MessageRetentionPeriod"] == str(14 * 24 * 3600)
    assert attributes["SqsManagedSseEnabled"] == "true"
    assert "RedrivePolicy" not in attributes


# --- encryption at rest -----------------------------------------------------------------------
# Read from the endpoint, every table and queue whose name carries the stack's prefix (not just
# the ones the outputs name), so one added later without encryption fails here too.


def table_encryption_problem(table: dict) -> str | None:
    """Why a DescribeTable `Table` does not show encryption under a KMS key in the account
    (the AWS managed key or a customer managed one), or None."""
    sse = table.get("SSEDescription")
    if sse is None:
        return "no SSEDescription: the AWS owned key only (request server_side_encryption)"
    if sse.get("Status") != "ENABLED" or sse.get("SSEType") != "KMS":
        return f"SSEDescription {sse}"
    return None


def queue_encryption_problem(attributes: dict) -> str | None:
    """Why a queue's attributes do not show server-side encryption, or None: SSE-SQS
    (`SqsManagedSseEnabled`) or SSE-KMS (`KmsMasterKeyId`) will do."""
    if attributes.get("SqsManagedSseEnabled") == "true" or attributes.get("KmsMasterKeyId"):
        return None
    return f"neither SqsManagedSseEnabled nor KmsMasterKeyId: {attributes}"


def _stack_tables(stack, clients) -> list[str]:
    paginator = clients["dynamodb"].get_paginator("list_tables")
    names = [name for page in paginator.paginate() for name in page["TableNames"]]
    return [name for name in names if name.startswith(f"{stack.name}-")]


def _stack_queue_urls(stack, clients) -> list[str]:
    return clients["sqs"].list_queues(QueueNamePrefix=f"{stack.name}-").get("QueueUrls", [])


def test_every_table_of_the_stack_is_encrypted_under_a_kms_key(stack, clients, real_config):
    """What "encrypted at rest" can honestly mean for a DynamoDB table.

    Every table is encrypted at rest, asked or not: by default under an AWS owned key, which
    DescribeTable does not report (no `SSEDescription`: "if there is no encryption type, data
    is encrypted using the AWS owned key",
    https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/encryption.usagenotes.html)
    and whose use the account cannot audit. A check for that would pass on any table and prove
    nothing. What the stack chooses, and this checks, is a KMS key in the account: `SSEType`
    KMS, `Status` ENABLED, which `server_side_encryption { enabled = true }` gives with the AWS
    managed key `aws/dynamodb` (its use is in CloudTrail, its policy readable). moto reports it
    as AWS does; before the tables asked for it, this failed for all three.
    """
    tables = _stack_tables(stack, clients)
    assert len(tables) == len(real_config["resource"]["aws_dynamodb_table"]), tables
    described = {name: clients["dynamodb"].describe_table(TableName=name) for name in tables}
    problems = {name: table_encryption_problem(d["Table"]) for name, d in described.items()}
    assert {name: p for name, p in problems.items() if p} == {}


def test_every_queue_of_the_stack_is_encrypted_at_rest(stack, clients, real_config):
    """moto gives a queue created without a word about encryption SSE-SQS (its default), so
    on moto this fails only for a queue whose configuration turns SSE off; the explicit
    request is held by test_infra_configuration.py."""
    urls = _stack_queue_urls(stack, clients)
    assert len(urls) == len(real_config["resource"]["aws_sqs_queue"]), urls
    sqs = clients["sqs"]
    described = {
        url: sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"]) for url in urls
    }
    problems = {url: queue_encryption_problem(d["Attributes"]) for url, d in described.items()}
    assert {url: p for url, p in problems.items() if p} == {}


def test_the_encryption_checks_catch_an_unencrypted_table_and_queue(clients, unique_name):
    # The checks above can fail on this endpoint: a table left on the AWS owned key and a
    # queue with SSE turned off are caught.
    ddb, sqs = clients["dynamodb"], clients["sqs"]
    ddb.create_table(
        TableName=unique_name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    url = sqs.create_queue(QueueName=unique_name, Attributes={"SqsManagedSseEnabled": "false"})[
        "QueueUrl"
    ]
    try:
        table = ddb.describe_table(TableName=unique_name)["Table"]
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        assert table_encryption_problem(table) is not None
        assert queue_encryption_problem(attributes) is not None
    finally:
        ddb.delete_table(TableName=unique_name)
        sqs.delete_queue(QueueUrl=url)


# --- the function -----------------------------------------------------------------------------


def test_function_configuration_including_the_runtime_set_after_apply(stack, clients):
    config = clients["lambda"].get_function_configuration(
        FunctionName=stack.outputs["function_name"]
    )
    assert config["FunctionArn"] == stack.outputs["function_arn"]
    assert config["Runtime"] == "python3.12"
    assert config["Handler"] == "processor.handler.handler"
    assert config["MemorySize"] == SETTINGS["memory_mb"]
    assert config["Timeout"] == SETTINGS["timeout_s"]
    assert config["Role"] == stack.outputs["role_arn"]
    assert config["Environment"]["Variables"] == {
        "CHECKPOINT_TABLE": stack.outputs["checkpoint_table_name"],
        "SINK_TABLE": stack.outputs["sink_table_name"],
        "POISON_QUEUE_URL": stack.outputs["poison_queue_url"],
        "MAX_ATTEMPTS": str(SETTINGS["max_attempts"]),
        "POWERTOOLS_SERVICE_NAME": stack.name,
        "POWERTOOLS_METRICS_NAMESPACE": "streamline",
        "POWERTOOLS_LOG_LEVEL": SETTINGS["log_level"],
    }


def test_function_carries_the_default_tags(stack, clients):
    tags = clients["lambda"].list_tags(Resource=stack.outputs["function_arn"])["Tags"]
    expected = {"project": "streamline", "stack": stack.name, **SETTINGS["tags"]}
    assert expected.items() <= tags.items()


def test_log_group_has_the_retention(stack, clients):
    groups = clients["logs"].describe_log_groups(logGroupNamePrefix=stack.outputs["log_group_name"])
    (group,) = groups["logGroups"]
    assert group["retentionInDays"] == SETTINGS["log_retention_days"]


# --- the mappings -----------------------------------------------------------------------------


def _mappings(stack, clients) -> dict[str, dict]:
    """This function's mappings by source ARN. Filtered by FunctionArn: moto finds nothing
    by FunctionName for a mapping created with the function's ARN; AWS finds it either way."""
    paginator = clients["lambda"].get_paginator("list_event_source_mappings")
    found = [
        mapping
        for page in paginator.paginate()
        for mapping in page["EventSourceMappings"]
        if mapping["FunctionArn"] == stack.outputs["function_arn"]
    ]
    return {mapping["EventSourceArn"]: mapping for mapping in found}


@pytest.mark.parametrize("source", ["kinesis_consumer_arn", "source_table_stream_arn"])
def test_mapping_has_every_ordered_processing_setting(stack, clients, source):
    mappings = _mappings(stack, clients)
    assert set(mappings) == {
        stack.outputs["kinesis_consumer_arn"],
        stack.outputs["source_table_stream_arn"],
    }
    mapping = clients["lambda"].get_event_source_mapping(
        UUID=mappings[stack.outputs[source]]["UUID"]
    )
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]  # set after apply
    assert mapping["BisectBatchOnFunctionError"] is True
    assert mapping["MaximumRetryAttempts"] == SETTINGS["maximum_retry_attempts"]
    assert mapping["MaximumRecordAgeInSeconds"] == SETTINGS["maximum_record_age_s"]
    assert mapping["ParallelizationFactor"] == SETTINGS["parallelization_factor"]
    assert mapping["StartingPosition"] == SETTINGS["starting_position"]
    assert mapping["BatchSize"] == SETTINGS["batch_size"]
    assert mapping["MaximumBatchingWindowInSeconds"] == SETTINGS["batching_window_s"]
    assert (
        mapping["DestinationConfig"]["OnFailure"]["Destination"]
        == stack.outputs["on_failure_destination_arn"]
    )
    assert mapping["State"] in ("Enabled", "Enabling", "Creating")


@pytest.mark.parametrize("source", ["kinesis_consumer_arn", "source_table_stream_arn"])
def test_mapping_has_the_filters_tumbling_window_and_event_count_metrics(stack, clients, source):
    uuid_ = _mappings(stack, clients)[stack.outputs[source]]["UUID"]
    mapping = clients["lambda"].get_event_source_mapping(UUID=uuid_)
    patterns = [json.loads(f["Pattern"]) for f in mapping["FilterCriteria"]["Filters"]]
    assert patterns == [{"data": {"kind": ["order"]}}, {"eventName": ["INSERT"]}]
    assert mapping["TumblingWindowInSeconds"] == SETTINGS["tumbling_window_in_seconds"]
    assert mapping["MetricsConfig"] == {"Metrics": ["EventCount"]}


def test_the_kinesis_mapping_reads_through_a_consumer_of_the_stream(stack, clients):
    consumer = clients["kinesis"].describe_stream_consumer(
        ConsumerARN=stack.outputs["kinesis_consumer_arn"]
    )["ConsumerDescription"]
    assert consumer["StreamARN"] == stack.outputs["kinesis_stream_arn"]
    assert consumer["ConsumerName"] == f"{stack.name}-kinesis"
    assert consumer["ConsumerStatus"] == "ACTIVE"


def test_on_failure_bucket_is_encrypted_under_the_aws_managed_key_and_private(stack, clients):
    bucket = stack.outputs["on_failure_destination_arn"].removeprefix("arn:aws:s3:::")
    assert bucket.startswith(f"{stack.name}-")
    (rule,) = clients["s3"].get_bucket_encryption(Bucket=bucket)[
        "ServerSideEncryptionConfiguration"
    ]["Rules"]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    assert rule["BucketKeyEnabled"] is True
    block = clients["s3"].get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert all(block.values()), block


# --- alarms -----------------------------------------------------------------------------------


def test_alarms_watch_iterator_age_errors_and_both_queues(stack, clients):
    alarms = clients["cloudwatch"].describe_alarms(AlarmNamePrefix=f"{stack.name}-")["MetricAlarms"]
    watched = {
        (a["Namespace"], a["MetricName"], a["Dimensions"][0]["Value"], a["Threshold"])
        for a in alarms
    }
    function = stack.outputs["function_name"]
    assert watched == {
        ("AWS/Lambda", "IteratorAge", function, float(SETTINGS["iterator_age_alarm_ms"])),
        ("AWS/Lambda", "Errors", function, 0.0),
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible", f"{stack.name}-poison", 0.0),
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible", f"{stack.name}-on-failure", 0.0),
    }
    assert set(stack.outputs["alarm_names"]) == {a["AlarmName"] for a in alarms}


# --- least privilege --------------------------------------------------------------------------


def _role_policies(stack, clients) -> list[dict]:
    iam = clients["iam"]
    role = stack.outputs["role_arn"].rsplit("/", 1)[1]
    assert iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"] == []
    documents = []
    for policy_name in iam.list_role_policies(RoleName=role)["PolicyNames"]:
        document = iam.get_role_policy(RoleName=role, PolicyName=policy_name)["PolicyDocument"]
        if isinstance(document, str):
            document = json.loads(urllib.parse.unquote(document))
        documents.append(document)
    return documents


def test_role_grants_exact_actions_on_exact_arns(stack, clients):
    out = stack.outputs
    account, region = _account_region(out["function_arn"])
    log_streams = f"arn:aws:logs:{region}:{account}:log-group:{out['log_group_name']}:*"
    table_arn = f"arn:aws:dynamodb:{region}:{account}:table/"
    expected = {
        out["kinesis_stream_arn"]: {
            "kinesis:DescribeStream",
            "kinesis:DescribeStreamSummary",
            "kinesis:GetRecords",
            "kinesis:GetShardIterator",
            "kinesis:ListShards",
        },
        out["kinesis_consumer_arn"]: {
            "kinesis:DescribeStreamConsumer",
            "kinesis:SubscribeToShard",
        },
        out["source_table_stream_arn"]: {
            "dynamodb:DescribeStream",
            "dynamodb:GetRecords",
            "dynamodb:GetShardIterator",
            "dynamodb:ListStreams",
        },
        table_arn + out["checkpoint_table_name"]: {"dynamodb:BatchGetItem", "dynamodb:UpdateItem"},
        table_arn + out["sink_table_name"]: {"dynamodb:GetItem", "dynamodb:UpdateItem"},
        out["poison_queue_arn"]: {"sqs:SendMessage"},
        # on_failure_destination = "s3": the bucket, not the on-failure queue.
        out["on_failure_destination_arn"]: {"s3:ListBucket"},
        f"{out['on_failure_destination_arn']}/*": {"s3:PutObject"},
        log_streams: {"logs:CreateLogStream", "logs:PutLogEvents"},
    }
    granted: dict[str, set[str]] = {}
    for document in _role_policies(stack, clients):
        for statement in document["Statement"]:
            assert statement["Effect"] == "Allow"
            assert "NotAction" not in statement and "NotResource" not in statement
            actions = statement["Action"]
            resources = statement["Resource"]
            actions = [actions] if isinstance(actions, str) else actions
            resources = [resources] if isinstance(resources, str) else resources
            for resource in resources:
                granted.setdefault(resource, set()).update(actions)
    assert granted == expected


def test_no_statement_uses_a_wildcard_resource_or_action(stack, clients):
    for document in _role_policies(stack, clients):
        for statement in document["Statement"]:
            resources = statement["Resource"]
            resources = [resources] if isinstance(resources, str) else resources
            assert "*" not in resources, statement
            assert all(r.startswith("arn:aws:") for r in resources), statement
            actions = statement["Action"]
            actions = [actions] if isinstance(actions, str) else actions
            assert not any("*" in action for action in actions), statement


def test_only_lambda_can_assume_the_role(stack, clients):
    role_name = stack.outputs["role_arn"].rsplit("/", 1)[1]
    document = clients["iam"].get_role(RoleName=role_name)["Role"]["AssumeRolePolicyDocument"]
    if isinstance(document, str):
        document = json.loads(urllib.parse.unquote(document))
    (statement,) = document["Statement"]
    assert statement["Principal"] == {"Service": "lambda.amazonaws.com"}
    assert statement["Action"] == "sts:AssumeRole"


# --- the offline path's limits ---------------------------------------------------------------


def test_offline_copy_refuses_an_on_demand_stream_at_plan_time(
    aws_endpoint, terraform, lambda_zip, tmp_path, capfd
):
    args = ["--work-dir", str(tmp_path / "terraform"), "--lambda-zip", str(lambda_zip)]
    args += ["--stack-json", str(tmp_path / "stack.json"), "--name", "sl-on-demand"]
    assert infra_stack.main(["plan", *args, "--var", "stream_mode=ON_DEMAND"]) == 1
    captured = capfd.readouterr()
    assert "supports stream_mode" in " ".join(captured.err.split())


# --- idempotence and teardown (keep these last: the final one destroys the stack) -------------


def test_a_second_plan_shows_no_changes(stack):
    assert infra_stack.main(["plan", *stack.args]) == 0  # 2 would mean changes


def test_destroy_leaves_nothing(stack, clients):
    assert infra_stack.main(["down", *stack.args]) == 0
    stack.destroyed = True
    out = stack.outputs

    streams = clients["kinesis"].list_streams()["StreamNames"]
    assert out["kinesis_stream_name"] not in streams
    tables = clients["dynamodb"].list_tables()["TableNames"]
    assert not [t for t in tables if t.startswith(f"{stack.name}-")]
    queues = clients["sqs"].list_queues(QueueNamePrefix=f"{stack.name}-").get("QueueUrls", [])
    assert queues == []
    functions = clients["lambda"].list_functions()["Functions"]
    assert not [f for f in functions if f["FunctionName"].startswith(f"{stack.name}-")]
    assert _mappings(stack, clients) == {}
    roles = clients["iam"].list_roles()["Roles"]
    assert not [r for r in roles if r["RoleName"].startswith(f"{stack.name}-")]
    alarms = clients["cloudwatch"].describe_alarms(AlarmNamePrefix=f"{stack.name}-")
    assert alarms["MetricAlarms"] == []
    groups = clients["logs"].describe_log_groups(logGroupNamePrefix=out["log_group_name"])
    assert groups["logGroups"] == []
    buckets = clients["s3"].list_buckets()["Buckets"]
    assert not [b for b in buckets if b["Name"].startswith(f"{stack.name}-")]
