"""The real configuration (infra/terraform/), read with python-hcl2, and Terraform's own
checks of it and of the generated offline copy. No server needed."""

from __future__ import annotations

import json
import subprocess

import pytest

from streamline.paths import REPO_ROOT

REAL_CONFIG_DIR = REPO_ROOT / "infra" / "terraform"

# Every argument an ordered-processing mapping must set explicitly (README, Infrastructure).
MAPPING_ARGUMENTS = (
    "function_response_types",
    "bisect_batch_on_function_error",
    "maximum_retry_attempts",
    "maximum_record_age_in_seconds",
    "parallelization_factor",
    "starting_position",
    "batch_size",
    "maximum_batching_window_in_seconds",
)

# The keys scripts/ read from build/stack.json (make infra-up flattens the outputs into it).
STACK_JSON_KEYS = (
    "kinesis_stream_name",
    "kinesis_stream_arn",
    "source_table_name",
    "source_table_stream_arn",
    "checkpoint_table_name",
    "sink_table_name",
    "poison_queue_url",
    "poison_queue_arn",
    "on_failure_queue_url",
    "on_failure_queue_arn",
    "function_name",
    "function_arn",
)


def _resources(config, type_):
    return config["resource"].get(type_, {})


def _single(config, type_, name):
    return _resources(config, type_)[name]


# --- provider and endpoints -------------------------------------------------------------------


def test_the_real_configuration_requires_the_modern_provider(real_config):
    # The stack and the module each say so (a module's user sees the module's constraint).
    assert len(real_config["terraform"]) == 2
    for terraform in real_config["terraform"]:
        (providers,) = terraform["required_providers"]
        assert providers["aws"] == {"source": "hashicorp/aws", "version": ">= 5.0"}


def test_the_module_has_no_provider_of_its_own(module_config):
    # The caller's provider (region, endpoints, credentials) is the one the module uses.
    assert module_config["provider"] == {}


def test_every_provider_endpoint_comes_from_the_endpoint_variables(real_config):
    provider = real_config["provider"]["aws"]
    (endpoints,) = provider["endpoints"]
    services = set(real_config["locals"]["endpoint_services"])
    assert set(endpoints) == services
    assert all(expr == f"${{local.endpoints.{svc}}}" for svc, expr in endpoints.items())
    resolution = real_config["locals"]["endpoints"]
    assert "var.endpoints" in resolution and "var.endpoint_url" in resolution


def test_emulator_checks_are_skipped_only_through_a_variable(real_config):
    provider = real_config["provider"]["aws"]
    skips = {name: value for name, value in provider.items() if name.startswith("skip_")}
    assert skips and set(skips.values()) == {"${var.emulator}"}
    assert real_config["variable"]["emulator"]["default"] is False


def test_every_variable_has_a_type_and_a_description(real_config):
    for name, variable in real_config["variable"].items():
        assert variable.get("description"), name
        assert variable.get("type"), name


# --- the mappings -----------------------------------------------------------------------------


def test_one_mapping_per_source(module_config, root_config):
    mappings = _resources(module_config, "aws_lambda_event_source_mapping")
    assert list(mappings) == ["source"]
    assert mappings["source"]["for_each"] == "${local.event_sources}"
    sources = module_config["locals"]["event_sources"]
    assert "var.kinesis_stream_arns" in sources and "var.dynamodb_stream_arns" in sources
    # The demo stack maps its stream and its table's stream
    processor = root_config["module"]["processor"]
    assert processor["source"] == "./modules/ordered-processor"
    assert processor["kinesis_stream_arns"] == {"kinesis": "${aws_kinesis_stream.events.arn}"}
    assert processor["dynamodb_stream_arns"] == {
        "dynamodb": "${aws_dynamodb_table.source.stream_arn}"
    }


def test_enhanced_fan_out_maps_each_stream_through_its_own_consumer(module_config):
    consumers = _resources(module_config, "aws_kinesis_stream_consumer")
    assert consumers["source"]["for_each"] == (
        "${var.enhanced_fan_out ? var.kinesis_stream_arns : {}}"
    )
    assert consumers["source"]["stream_arn"] == "${each.value}"
    assert (
        "aws_kinesis_stream_consumer.source[name].arn" in (module_config["locals"]["event_sources"])
    )
    assert module_config["variable"]["enhanced_fan_out"]["default"] is False


def test_every_module_input_the_stack_passes_exists(module_config, root_config):
    passed = set(root_config["module"]["processor"]) - {"source"}
    assert passed <= set(module_config["variable"]), passed - set(module_config["variable"])
    required = {n for n, v in module_config["variable"].items() if "default" not in v}
    assert required <= passed


@pytest.mark.parametrize("argument", MAPPING_ARGUMENTS)
def test_every_mapping_sets_the_argument(real_config, argument):
    for name, mapping in _resources(real_config, "aws_lambda_event_source_mapping").items():
        assert mapping.get(argument) not in (None, ""), f"{name}: {argument} is not set"


def test_mappings_report_batch_item_failures(real_config):
    for mapping in _resources(real_config, "aws_lambda_event_source_mapping").values():
        assert mapping["function_response_types"] == ["ReportBatchItemFailures"]


def test_mappings_send_exhausted_batches_to_the_chosen_destination_by_default_the_queue(
    real_config,
):
    for mapping in _resources(real_config, "aws_lambda_event_source_mapping").values():
        (destination,) = mapping["destination_config"]
        (on_failure,) = destination["on_failure"]
        assert on_failure["destination_arn"] == "${local.on_failure_destination_arn}"
    chosen = real_config["locals"]["on_failure_destination_arn"]
    assert "sqs = aws_sqs_queue.on_failure.arn" in " ".join(chosen.split())
    assert real_config["variable"]["on_failure_destination"]["default"] == "sqs"


# The optional mapping settings: variable -> its default, which leaves the mappings as they were.
OPTIONAL_MAPPING_VARIABLES = {
    "filter_criteria": [],
    "tumbling_window_in_seconds": 0,
    "metrics_config": False,
    "on_failure_destination": "sqs",
}


@pytest.mark.parametrize(("name", "default"), OPTIONAL_MAPPING_VARIABLES.items())
def test_optional_mapping_settings_are_variables_that_default_to_off(real_config, name, default):
    assert real_config["variable"][name]["default"] == default


@pytest.mark.parametrize(
    "name", ["filter_criteria", "tumbling_window_in_seconds", "on_failure_destination"]
)
def test_optional_mapping_settings_are_validated(real_config, name):
    assert real_config["variable"][name].get("validation"), name


def test_every_mapping_takes_the_optional_settings_from_the_variables(real_config):
    for mapping in _resources(real_config, "aws_lambda_event_source_mapping").values():
        assert mapping["tumbling_window_in_seconds"] == "${var.tumbling_window_in_seconds}"
        dynamic = {name: body for block in mapping["dynamic"] for name, body in block.items()}
        # A block only when there is something in it: the default mapping has neither.
        assert "local.filter_criteria" in dynamic["filter_criteria"]["for_each"]
        assert "local.metrics_config" in dynamic["metrics_config"]["for_each"]


def test_the_topic_and_bucket_exist_only_when_chosen_and_are_encrypted(real_config):
    topic = _single(real_config, "aws_sns_topic", "on_failure")
    assert topic["count"] == "${local.on_failure_sns ? 1 : 0}"
    assert topic["kms_master_key_id"] == "alias/aws/sns"
    for type_ in (
        "aws_s3_bucket",
        "aws_s3_bucket_server_side_encryption_configuration",
        "aws_s3_bucket_public_access_block",
    ):
        assert _single(real_config, type_, "on_failure")["count"] == (
            "${local.on_failure_s3 ? 1 : 0}"
        ), type_
    sse = _single(real_config, "aws_s3_bucket_server_side_encryption_configuration", "on_failure")
    (rule,) = sse["rule"]
    assert rule["apply_server_side_encryption_by_default"] == [{"sse_algorithm": "aws:kms"}]


def test_the_role_grants_the_topic_or_bucket_by_arn_only(real_config):
    # The applied statements are checked in test_infra_stack.py (S3); here, that each grant
    # names this stack's resource.
    policy = " ".join(_single(real_config, "aws_iam_role_policy", "processor")["policy"].split())
    assert 'Action = ["sns:Publish"], Resource = aws_sns_topic.on_failure[*].arn' in policy
    assert 'Action = ["s3:ListBucket"], Resource = aws_s3_bucket.on_failure[*].arn' in policy
    assert "for arn in aws_s3_bucket.on_failure[*].arn" in policy
    assert '"*"' not in policy


# --- sources, tables, queues, function --------------------------------------------------------


def test_source_table_streams_both_images(real_config):
    table = _single(real_config, "aws_dynamodb_table", "source")
    assert table["hash_key"] == "pk"
    assert table["attribute"] == [{"name": "pk", "type": "S"}]
    assert table["stream_enabled"] is True
    assert table["stream_view_type"] == "NEW_AND_OLD_IMAGES"


def test_checkpoint_table_is_on_demand_with_ttl_and_point_in_time_recovery(real_config):
    table = _single(real_config, "aws_dynamodb_table", "checkpoints")
    assert table["hash_key"] == "pk"
    assert table["attribute"] == [{"name": "pk", "type": "S"}]
    assert table["billing_mode"] == "PAY_PER_REQUEST"
    assert table["ttl"] == [{"attribute_name": "expires_at", "enabled": True}]
    assert table["point_in_time_recovery"] == [{"enabled": True}]


def test_sink_table_is_keyed_by_pk(real_config):
    table = _single(real_config, "aws_dynamodb_table", "sink")
    assert table["hash_key"] == "pk"
    assert table["attribute"] == [{"name": "pk", "type": "S"}]


def test_every_table_requests_encryption_under_the_aws_managed_key(real_config):
    # Without the block a table is still encrypted, under an AWS owned key that nothing in
    # the account shows (test_infra_stack.py says why that is not enough).
    tables = _resources(real_config, "aws_dynamodb_table")
    assert tables
    for name, table in tables.items():
        assert table.get("server_side_encryption") == [{"enabled": True}], name


def test_every_queue_requests_server_side_encryption(real_config):
    queues = _resources(real_config, "aws_sqs_queue")
    assert queues
    for name, queue in queues.items():
        assert queue.get("sqs_managed_sse_enabled") is True or queue.get("kms_master_key_id"), name


def test_queues_are_the_last_stop(real_config):
    queues = _resources(real_config, "aws_sqs_queue")
    assert set(queues) == {"poison", "on_failure"}
    assert real_config["locals"]["queue_retention_s"] == 14 * 24 * 3600
    for name, queue in queues.items():
        assert "redrive_policy" not in queue, name
        assert queue["message_retention_seconds"] == "${local.queue_retention_s}", name
        assert queue["sqs_managed_sse_enabled"] is True, name


def test_function_runs_the_callers_handler_on_python_3_12(module_config, root_config):
    function = _single(module_config, "aws_lambda_function", "processor")
    assert function["runtime"] == "${var.runtime}"
    assert module_config["variable"]["runtime"]["default"] == "python3.12"
    assert function["handler"] == "${var.handler}"
    assert function["source_code_hash"] == "${filebase64sha256(var.lambda_zip)}"
    (environment,) = function["environment"]
    variables = environment["variables"]
    # The caller's variables first: the module's own win over a clash.
    assert variables.startswith("${merge(var.environment, {")
    for name in (
        "CHECKPOINT_TABLE",
        "POISON_QUEUE_URL",
        "MAX_ATTEMPTS",
        "POWERTOOLS_SERVICE_NAME",
        "POWERTOOLS_METRICS_NAMESPACE",
        "POWERTOOLS_LOG_LEVEL",
    ):
        assert f"{name} " in variables, name
    processor = root_config["module"]["processor"]
    assert processor["handler"] == "processor.handler.handler"
    assert processor["environment"] == {"SINK_TABLE": "${aws_dynamodb_table.sink.name}"}


def test_log_group_has_a_retention_and_exists_before_the_function(real_config):
    group = _single(real_config, "aws_cloudwatch_log_group", "processor")
    assert group["retention_in_days"] == "${var.log_retention_days}"
    function = _single(real_config, "aws_lambda_function", "processor")
    assert "${aws_cloudwatch_log_group.processor}" in function["depends_on"]


def test_alarms_watch_iterator_age_errors_and_queue_depth(real_config):
    alarms = _resources(real_config, "aws_cloudwatch_metric_alarm")
    watched = {(alarm["namespace"], alarm["metric_name"]) for alarm in alarms.values()}
    assert watched == {
        ("AWS/Lambda", "IteratorAge"),
        ("AWS/Lambda", "Errors"),
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible"),
    }
    assert real_config["locals"]["queue_alarms"] == {
        "poison": "${aws_sqs_queue.poison.name}",
        "on-failure": "${aws_sqs_queue.on_failure.name}",
    }


def test_outputs_cover_what_the_scripts_read(real_config):
    assert set(STACK_JSON_KEYS) <= set(real_config["output"])


# --- Terraform's own checks -------------------------------------------------------------------


def _run(cmd, **kwargs):
    return subprocess.run(cmd, capture_output=True, text=True, **kwargs)


def test_real_configuration_is_terraform_fmt_clean(terraform):
    result = _run([terraform, "fmt", "-check", "-diff", str(REAL_CONFIG_DIR)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_offline_copy_is_terraform_fmt_clean(terraform, offline_copy):
    work_dir, _ = offline_copy
    result = _run([terraform, "fmt", "-check", "-diff", str(work_dir)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_offline_copy_validates_against_provider_3_39(terraform, offline_copy):
    work_dir, env = offline_copy
    result = _run([terraform, f"-chdir={work_dir}", "validate", "-no-color"], env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    lock = (work_dir / ".terraform.lock.hcl").read_text()
    assert 'version     = "3.39.0"' in lock


# --- the variables, evaluated by Terraform (console: no endpoint, no state) -------------------


def _console(terraform, offline_copy, expression: str, **variables) -> subprocess.CompletedProcess:
    """Evaluate an expression in the offline copy of the module (its locals and variables are
    the real configuration's), as a root with the inputs it requires; `variables` as JSON."""
    work_dir, env = offline_copy
    module_dir = work_dir / "modules" / "ordered-processor"
    if not (module_dir / ".terraform").exists():
        init = [terraform, f"-chdir={module_dir}", "init", "-input=false", "-backend=false"]
        assert _run(init, env=env).returncode == 0
    args = [terraform, f"-chdir={module_dir}", "console", "-no-color"]
    args += ["-var", f"lambda_zip={REPO_ROOT / 'build' / 'lambda.zip'}"]
    args += ["-var", "name=streamline", "-var", "handler=processor.handler.handler"]
    for name, value in variables.items():
        args += ["-var", f"{name}={value if isinstance(value, str) else json.dumps(value)}"]
    return _run(args, input=f"jsonencode({expression})\n", env=env)


def _evaluate(terraform, offline_copy, expression: str, **variables):
    result = _console(terraform, offline_copy, expression, **variables)
    assert "Error" not in result.stdout + result.stderr, result.stdout + result.stderr
    return json.loads(json.loads(result.stdout.strip().splitlines()[-1]))


def test_default_variables_leave_the_mappings_as_they_were(terraform, offline_copy):
    settings = _evaluate(
        terraform,
        offline_copy,
        "[local.filter_criteria, local.metrics_config, var.tumbling_window_in_seconds,"
        " local.on_failure_sns, local.on_failure_s3]",
    )
    assert settings == [{"Filters": []}, {"Metrics": []}, 0, False, False]


def test_filter_patterns_as_strings_or_objects_become_the_apis_filter_criteria(
    terraform, offline_copy
):
    filter_criteria = _evaluate(
        terraform,
        offline_copy,
        "local.filter_criteria",
        filter_criteria=['{"data": {"kind": ["order"]}}', {"eventName": ["INSERT"]}],
    )
    patterns = [json.loads(f["Pattern"]) for f in filter_criteria["Filters"]]
    assert patterns == [{"data": {"kind": ["order"]}}, {"eventName": ["INSERT"]}]


def test_event_count_metrics_when_asked(terraform, offline_copy):
    metrics = _evaluate(terraform, offline_copy, "local.metrics_config", metrics_config=True)
    assert metrics == {"Metrics": ["EventCount"]}


@pytest.mark.parametrize(
    ("name", "value"),
    [
        pytest.param("tumbling_window_in_seconds", 901, id="window-over-900"),
        pytest.param("tumbling_window_in_seconds", -1, id="window-negative"),
        pytest.param("tumbling_window_in_seconds", 1.5, id="window-fraction"),
        pytest.param("filter_criteria", ["not json"], id="pattern-not-json"),
        pytest.param("filter_criteria", ['["a"]'], id="pattern-not-an-object"),
        pytest.param("filter_criteria", [{"a": [1]}] * 6, id="six-filters"),
        pytest.param("filter_criteria", '{"a": [1]}', id="not-a-list"),
        pytest.param("on_failure_destination", "lambda", id="unknown-destination"),
    ],
)
def test_invalid_mapping_settings_are_refused(terraform, offline_copy, name, value):
    result = _console(terraform, offline_copy, f"var.{name}", **{name: value})
    assert "Invalid value for variable" in result.stdout + result.stderr, result.stdout
