"""The offline transform (streamline/infra/offline.py): real configuration in, 3.39 copy out.

Pure text in and out; no terraform, no server. The copy of the real configuration is also
validated by Terraform itself in test_infra_configuration.py.
"""

from __future__ import annotations

import io
import json

import hcl2
import pytest

from streamline.infra import offline
from streamline.infra.offline import GENERATED_FILE, TransformError, transform
from streamline.paths import REPO_ROOT

REAL_CONFIG_DIR = REPO_ROOT / "infra" / "terraform"
MODULE_DIR = REAL_CONFIG_DIR / "modules" / "ordered-processor"

VERSIONS = """\
terraform {
  required_version = ">= 1.4"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.0"
    }
  }
}
"""

PROVIDER = """\
provider "aws" {
  region = var.region

  endpoints {
    lambda = local.endpoints.lambda
    logs   = local.endpoints.logs
  }
}
"""

MAPPING = """\
resource "aws_lambda_event_source_mapping" "stream" {
  event_source_arn           = aws_kinesis_stream.events.arn
  function_name              = aws_lambda_function.processor.arn
  batch_size                 = 10
  tumbling_window_in_seconds = 30
  function_response_types = [
    "ReportBatchItemFailures",
  ]

  destination_config {
    on_failure {
      destination_arn = aws_sqs_queue.on_failure.arn
    }
  }
}
"""

MAPPING_WITH_OPTIONAL_BLOCKS = """\
resource "aws_lambda_event_source_mapping" "stream" {
  event_source_arn = aws_kinesis_stream.events.arn
  batch_size       = 10

  dynamic "filter_criteria" {
    for_each = length(local.filter_criteria.Filters) > 0 ? [local.filter_criteria] : []
    content {
      dynamic "filter" {
        for_each = filter_criteria.value.Filters
        content {
          pattern = filter.value.Pattern
        }
      }
    }
  }

  metrics_config {
    metrics = local.metrics_config.Metrics
  }
}
"""

BUCKET_ENCRYPTION = """\
resource "aws_s3_bucket" "failed" {
  count  = var.on ? 1 : 0
  bucket = "b"
}

resource "aws_s3_bucket_server_side_encryption_configuration" "failed" {
  count = var.on ? 1 : 0

  bucket = aws_s3_bucket.failed[0].id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "aws:kms"
    }
    bucket_key_enabled = true
  }
}
"""

FUNCTION = """\
resource "aws_lambda_function" "processor" {
  function_name = "f"
  runtime       = "python3.12"
  handler       = "processor.handler.handler"
}
"""

STREAM = """\
resource "aws_kinesis_stream" "events" {
  name        = "s"
  shard_count = 2

  stream_mode_details {
    stream_mode = var.stream_mode
  }
}
"""

QUEUE = """\
resource "aws_sqs_queue" "poison" {
  for_each                = toset(["a", "b"])
  name                    = each.key
  sqs_managed_sse_enabled = true
}
"""


def _parse(text: str) -> dict:
    return hcl2.load(io.StringIO(text))


def _resource(text: str, type_: str, name: str) -> dict:
    for block in _parse(text).get("resource", []):
        if f'"{type_}"' in block:
            return block[f'"{type_}"'][f'"{name}"']
    raise KeyError(f"{type_}.{name}")


def _post_apply_blocks(generated: str) -> dict[str, dict]:
    blocks = {}
    for block in _parse(generated)["resource"]:
        for name, body in block['"terraform_data"'].items():
            blocks[name.strip('"')] = body
    return blocks


# --- provider ---------------------------------------------------------------------------------


def test_provider_constraint_becomes_the_mirrored_version():
    out = transform({"versions.tf": VERSIONS})["versions.tf"]
    (terraform,) = _parse(out)["terraform"]
    (providers,) = terraform["required_providers"]
    assert providers["aws"]["version"] == '"3.39.0"'
    assert providers["aws"]["source"] == '"hashicorp/aws"'


def test_provider_skips_ec2_platform_detection_and_names_the_logs_endpoint_as_3_39_does():
    out = transform({"providers.tf": PROVIDER})["providers.tf"]
    (provider,) = _parse(out)["provider"]
    body = provider['"aws"']
    assert body["skip_get_ec2_platforms"] is True
    (endpoints,) = body["endpoints"]
    assert endpoints["cloudwatchlogs"] == "${local.endpoints.logs}"
    assert "logs" not in endpoints
    assert endpoints["lambda"] == "${local.endpoints.lambda}"


def test_provider_s3_path_style_is_named_as_3_39_names_it():
    text = PROVIDER.replace("  endpoints {", "  s3_use_path_style = var.emulator\n\n  endpoints {")
    (provider,) = _parse(transform({"providers.tf": text})["providers.tf"])["provider"]
    assert provider['"aws"']["s3_force_path_style"] == "${var.emulator}"
    assert "s3_use_path_style" not in provider['"aws"']


def test_a_file_without_known_blocks_is_copied_verbatim():
    text = 'variable "x" {\n  type = string\n}\n'
    assert transform({"variables.tf": text}) == {"variables.tf": text}


def test_the_input_is_not_modified():
    files = {"mappings.tf": MAPPING}
    transform(files)
    assert files == {"mappings.tf": MAPPING}


# --- deferred arguments -----------------------------------------------------------------------


def test_mapping_arguments_3_39_rejects_are_taken_out():
    out = transform({"mappings.tf": MAPPING})
    mapping = _resource(out["mappings.tf"], "aws_lambda_event_source_mapping", "stream")
    assert "function_response_types" not in mapping
    assert "tumbling_window_in_seconds" not in mapping
    # everything else stays, nested blocks included
    assert mapping["batch_size"] == 10
    (destination,) = mapping["destination_config"]
    (on_failure,) = destination["on_failure"]
    assert on_failure["destination_arn"] == "${aws_sqs_queue.on_failure.arn}"


def test_mapping_arguments_taken_out_are_set_after_apply_with_their_real_values():
    out = transform({"mappings.tf": MAPPING}, python="/py", script="/post_apply.py")
    blocks = _post_apply_blocks(out[GENERATED_FILE])
    body = blocks["post_apply_aws_lambda_event_source_mapping_stream"]
    (triggers,) = [body["triggers_replace"]]
    assert triggers["id"] == "${aws_lambda_event_source_mapping.stream.uuid}"
    settings = triggers["settings"]
    assert "FunctionResponseTypes" in settings and '"ReportBatchItemFailures"' in settings
    assert "TumblingWindowInSeconds = 30" in settings
    (provisioner,) = body["provisioner"]
    exec_ = provisioner['"local-exec"']
    assert exec_["interpreter"] == ['"/py"', '"/post_apply.py"']
    assert exec_["command"] == '"aws_lambda_event_source_mapping"'
    assert exec_["environment"]["STREAMLINE_RESOURCE_ID"] == "${self.triggers_replace.id}"
    assert "local.endpoints.lambda" in exec_["environment"]["STREAMLINE_ENDPOINT"]


def test_mapping_blocks_3_39_lacks_are_taken_out_static_or_dynamic():
    out = transform({"mappings.tf": MAPPING_WITH_OPTIONAL_BLOCKS})
    mapping = _resource(out["mappings.tf"], "aws_lambda_event_source_mapping", "stream")
    assert "dynamic" not in mapping
    assert "metrics_config" not in mapping
    assert mapping["batch_size"] == 10


def test_mapping_blocks_taken_out_are_set_after_apply_from_what_they_are_built_from():
    out = transform({"mappings.tf": MAPPING_WITH_OPTIONAL_BLOCKS})
    body = _post_apply_blocks(out[GENERATED_FILE])[
        "post_apply_aws_lambda_event_source_mapping_stream"
    ]
    settings = body["triggers_replace"]["settings"]
    assert "FilterCriteria = local.filter_criteria" in settings
    assert "MetricsConfig = local.metrics_config" in settings


def test_a_mapping_block_built_from_anything_else_is_an_error():
    text = MAPPING_WITH_OPTIONAL_BLOCKS.replace("local.metrics_config.Metrics", '["EventCount"]')
    with pytest.raises(TransformError, match="metrics_config is not built from"):
        transform({"mappings.tf": text})


def test_a_resource_3_39_lacks_becomes_a_post_apply_step_with_the_same_count():
    out = transform({"s3.tf": BUCKET_ENCRYPTION})
    assert "aws_s3_bucket_server_side_encryption_configuration" not in out["s3.tf"]
    body = _post_apply_blocks(out[GENERATED_FILE])[
        "post_apply_aws_s3_bucket_server_side_encryption_configuration_failed"
    ]
    assert body["count"] == "${var.on ? 1 : 0}"
    assert body["triggers_replace"]["id"] == "${aws_s3_bucket.failed[0].id}"
    settings = body["triggers_replace"]["settings"]
    assert 'SSEAlgorithm = "aws:kms"' in settings
    assert "BucketKeyEnabled = true" in settings
    assert "KMSMasterKeyID" not in settings  # not in the configuration: left out
    (provisioner,) = body["provisioner"]
    exec_ = provisioner['"local-exec"']
    assert "local.endpoints.s3" in exec_["environment"]["STREAMLINE_ENDPOINT"]


def test_the_bucket_ignores_on_refresh_the_encryption_set_after_apply():
    out = transform({"s3.tf": BUCKET_ENCRYPTION})
    bucket = _resource(out["s3.tf"], "aws_s3_bucket", "failed")
    (lifecycle,) = bucket["lifecycle"]
    assert lifecycle["ignore_changes"] == ["server_side_encryption_configuration"]


def test_runtime_gets_a_placeholder_that_refresh_ignores_and_is_set_after_apply():
    out = transform({"lambda.tf": FUNCTION})
    function = _resource(out["lambda.tf"], "aws_lambda_function", "processor")
    assert function["runtime"] == '"python3.8"'
    (lifecycle,) = function["lifecycle"]
    assert lifecycle["ignore_changes"] == ["runtime"]
    body = _post_apply_blocks(out[GENERATED_FILE])["post_apply_aws_lambda_function_processor"]
    assert body["triggers_replace"]["id"] == "${aws_lambda_function.processor.function_name}"
    assert 'Runtime = "python3.12"' in body["triggers_replace"]["settings"]


def test_resources_with_for_each_get_one_post_apply_per_instance():
    out = transform({"queues.tf": QUEUE})
    queue = _resource(out["queues.tf"], "aws_sqs_queue", "poison")
    assert "sqs_managed_sse_enabled" not in queue
    body = _post_apply_blocks(out[GENERATED_FILE])["post_apply_aws_sqs_queue_poison"]
    assert body["for_each"] == "${aws_sqs_queue.poison}"
    assert body["triggers_replace"]["id"] == "${each.value.id}"
    assert "SqsManagedSseEnabled = true" in body["triggers_replace"]["settings"]


def test_stream_mode_block_is_dropped_with_a_precondition_that_it_was_provisioned():
    out = transform({"streams.tf": STREAM})
    stream = _resource(out["streams.tf"], "aws_kinesis_stream", "events")
    assert "stream_mode_details" not in stream
    assert stream["shard_count"] == 2
    (lifecycle,) = stream["lifecycle"]
    (precondition,) = lifecycle["precondition"]
    assert precondition["condition"] == '${var.stream_mode == "PROVISIONED"}'
    assert "real configuration" in precondition["error_message"]


def test_no_post_apply_file_when_nothing_is_deferred():
    assert GENERATED_FILE not in transform({"streams.tf": STREAM})


# --- what the transform refuses ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        pytest.param(
            FUNCTION.replace('  handler       = "processor.handler.handler"\n', "")
            .rstrip()
            .removesuffix("}")
            + "  lifecycle {\n    prevent_destroy = true\n  }\n}\n",
            "has a lifecycle block",
            id="own-lifecycle-on-a-placeholder-resource",
        ),
        pytest.param("locals {\n  x = <<EOT\nhello\nEOT\n}\n", "heredoc", id="heredoc"),
        pytest.param('resource "a" "b" {\n  x = 1\n', "is not closed", id="unclosed-block"),
        pytest.param("}\n", "unbalanced closing brace", id="stray-closing-brace"),
        pytest.param(
            'resource "a" "b" {\n  x = [\n    1,\n',
            "unterminated expression",
            id="unterminated-expression",
        ),
        pytest.param('resource "a" "b" { x = 1 }\n', "cannot read", id="one-line-block"),
        pytest.param(
            MAPPING.replace("  batch_size ", "  count = 2\n  batch_size "),
            "with count",
            id="count-instances",
        ),
    ],
)
def test_unknown_shapes_are_errors_not_silent_copies(text, reason):
    with pytest.raises(TransformError, match=reason):
        transform({"main.tf": text})


def test_the_generated_file_name_is_reserved():
    with pytest.raises(TransformError):
        transform({GENERATED_FILE: ""})


# --- the real configuration -------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_copy() -> dict[str, str]:
    """The stack's copy by file name, and its module's as `modules/NAME`."""
    files = {p.name: p.read_text() for p in sorted(REAL_CONFIG_DIR.glob("*.tf"))}
    module = {p.name: p.read_text() for p in sorted(MODULE_DIR.glob("*.tf"))}
    root_copy = transform(files, python="/py", script="/post_apply.py")
    assert GENERATED_FILE not in root_copy  # everything deferred is in the module
    module_copy = transform(module, python="/py", script="/post_apply.py", module=True)
    return {**root_copy, **{f"modules/{name}": text for name, text in module_copy.items()}}


def test_real_copy_has_none_of_the_arguments_3_39_rejects(real_copy):
    text = "\n".join(real_copy.values())
    parsed = {name: _parse(body) for name, body in real_copy.items()}  # all of it parses
    assert parsed
    mapping = _resource(
        real_copy["modules/mappings.tf"], "aws_lambda_event_source_mapping", "source"
    )
    assert "function_response_types" not in mapping
    assert "tumbling_window_in_seconds" not in mapping
    assert "dynamic" not in mapping and "metrics_config" not in mapping
    assert (
        "aws_s3_bucket_server_side_encryption_configuration"
        not in real_copy["modules/destinations.tf"]
    )
    assert "stream_mode_details" not in _resource(
        real_copy["streams.tf"], "aws_kinesis_stream", "events"
    )
    assert ">= 5.0" not in text
    assert '"python3.12"' not in real_copy["modules/lambda.tf"]


def test_real_copy_sets_every_deferred_argument_after_apply(real_copy):
    blocks = _post_apply_blocks(real_copy[f"modules/{GENERATED_FILE}"])
    settings = {name: body["triggers_replace"]["settings"] for name, body in blocks.items()}
    assert set(settings) == {
        "post_apply_aws_lambda_event_source_mapping_source",
        "post_apply_aws_lambda_function_processor",
        "post_apply_aws_sqs_queue_poison",
        "post_apply_aws_sqs_queue_on_failure",
        "post_apply_aws_s3_bucket_server_side_encryption_configuration_on_failure",
    }
    mapping = settings["post_apply_aws_lambda_event_source_mapping_source"]
    assert '"ReportBatchItemFailures"' in mapping
    assert "TumblingWindowInSeconds = var.tumbling_window_in_seconds" in mapping
    assert "FilterCriteria = local.filter_criteria" in mapping
    assert "MetricsConfig = local.metrics_config" in mapping
    assert "Runtime = var.runtime" in settings["post_apply_aws_lambda_function_processor"]


def test_real_copy_leaves_other_files_untouched(real_copy):
    for name in ("variables.tf", "tables.tf", "outputs.tf", "processor.tf"):
        assert real_copy[name] == (REAL_CONFIG_DIR / name).read_text(), name
    for name in ("iam.tf", "alarms.tf", "checkpoints.tf", "outputs.tf"):
        assert real_copy[f"modules/{name}"] == (MODULE_DIR / name).read_text(), name


# --- the provider mirror ----------------------------------------------------------------------


def test_cli_config_takes_only_the_aws_provider_from_the_mirror(tmp_path):
    text = offline.cli_config(tmp_path)
    (installation,) = _parse(text)["provider_installation"]
    (mirror,) = installation["filesystem_mirror"]
    (direct,) = installation["direct"]
    assert json.loads(mirror["path"]) == str(tmp_path)
    assert mirror["include"] == [f'"{offline.PROVIDER_ADDRESS}"']
    assert direct["exclude"] == mirror["include"]
