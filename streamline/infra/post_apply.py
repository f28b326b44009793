"""Set through the AWS API what the AWS provider 3.39 cannot (the offline path only).

Run by the `terraform_data` resources that streamline/infra/offline.py generates, once the
resource exists:

    STREAMLINE_RESOURCE_ID=<uuid> STREAMLINE_SETTINGS='{"FunctionResponseTypes": [...]}' \\
    STREAMLINE_ENDPOINT=http://127.0.0.1:PORT STREAMLINE_REGION=us-east-1 \\
        python streamline/infra/post_apply.py aws_lambda_event_source_mapping

Settings are named as the API names them; the real configuration's values, verbatim.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import boto3
from botocore.exceptions import ClientError

from processor.aws import error_code

Settings = dict[str, Any]


def update_event_source_mapping(client, uuid: str, settings: Settings) -> None:
    # A mapping is briefly "Creating"/"Updating" after Terraform's call; AWS refuses updates
    # then (ResourceInUseException), so wait for a settled state.
    for _ in range(60):
        try:
            client.update_event_source_mapping(UUID=uuid, **settings)
            return
        except ClientError as exc:
            if error_code(exc) != "ResourceInUseException":
                raise
            time.sleep(2)
    raise TimeoutError(f"event source mapping {uuid} stayed in use")


def update_function(client, function_name: str, settings: Settings) -> None:
    client.get_waiter("function_updated_v2").wait(FunctionName=function_name)
    client.update_function_configuration(FunctionName=function_name, **settings)
    client.get_waiter("function_updated_v2").wait(FunctionName=function_name)


def update_queue(client, queue_url: str, settings: Settings) -> None:
    # SetQueueAttributes takes every value as a string; booleans as "true"/"false".
    attributes = {
        name: json.dumps(value) if isinstance(value, bool) else str(value)
        for name, value in settings.items()
    }
    client.set_queue_attributes(QueueUrl=queue_url, Attributes=attributes)


def put_bucket_encryption(client, bucket: str, settings: Settings) -> None:
    """aws_s3_bucket_server_side_encryption_configuration (one rule): the settings are the
    rule's flattened fields, as streamline/infra/offline.py reads them."""
    default = {"SSEAlgorithm": settings["SSEAlgorithm"]}
    if settings.get("KMSMasterKeyID"):
        default["KMSMasterKeyID"] = settings["KMSMasterKeyID"]
    rule: dict[str, Any] = {"ApplyServerSideEncryptionByDefault": default}
    if "BucketKeyEnabled" in settings:
        rule["BucketKeyEnabled"] = settings["BucketKeyEnabled"]
    client.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [rule]})


# resource type (the generated file's command) -> (boto3 service, updater)
UPDATERS: dict[str, tuple[str, Callable[[Any, str, Settings], None]]] = {
    "aws_lambda_event_source_mapping": ("lambda", update_event_source_mapping),
    "aws_lambda_function": ("lambda", update_function),
    "aws_sqs_queue": ("sqs", update_queue),
    "aws_s3_bucket_server_side_encryption_configuration": ("s3", put_bucket_encryption),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or argv[0] not in UPDATERS:
        print(f"usage: infra_post_apply.py {{{','.join(UPDATERS)}}}", file=sys.stderr)
        return 2
    service, update = UPDATERS[argv[0]]
    resource_id = os.environ.get("STREAMLINE_RESOURCE_ID")
    try:
        settings = json.loads(os.environ.get("STREAMLINE_SETTINGS", ""))
    except ValueError:
        settings = None
    if not resource_id or not isinstance(settings, dict):
        # Terraform's generated local-exec sets both; run by hand, say what is missing.
        print(
            "post_apply.py: set STREAMLINE_RESOURCE_ID and STREAMLINE_SETTINGS (a JSON object)",
            file=sys.stderr,
        )
        return 2
    client = boto3.client(
        service,
        endpoint_url=os.environ.get("STREAMLINE_ENDPOINT") or None,
        region_name=os.environ.get("STREAMLINE_REGION") or None,
    )
    update(client, resource_id, settings)
    print(f"{argv[0]} {resource_id}: set {', '.join(sorted(settings))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
