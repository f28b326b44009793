"""The Terraform configuration against the AWS provider's own schema
(streamline/infra/provider_schema.py).

First the rules, on small schemas shaped like the cached subset; then the real configuration
(infra/terraform/ and its modules) against hashicorp/aws 6.62.0, and its offline copy against
3.39.0, both from the subsets `make provider-schema` caches in build/provider-schema/. No
server; terraform only for the offline copy's part (skipped, saying so, without it).
"""

from __future__ import annotations

import copy
import json
import time
from typing import Any

import hcl2
import pytest

from streamline.infra import offline
from streamline.infra import provider_schema as ps
from streamline.infra.provider_schema import (
    AttributeSchema,
    BlockSchema,
    Finding,
    Kind,
    NestedBlockSchema,
    Problem,
    ProviderSchema,
    Section,
    check_document,
)


def _attribute(kind: Kind, required: bool = False, nested: BlockSchema | None = None):
    attribute: AttributeSchema = {"kind": kind.value, "required": required}
    if nested is not None:
        attribute["nested"] = nested
    return attribute


def _block(attributes=None, blocks=None) -> BlockSchema:
    return {"attributes": attributes or {}, "blocks": blocks or {}}


def _nested(block: BlockSchema | None, *, required=False, max_one=True) -> NestedBlockSchema:
    return {"required": required, "max_one": max_one, "block": block}


MAPPING = _block(
    {
        "function_name": _attribute(Kind.STRING, required=True),
        "event_source_arn": _attribute(Kind.STRING),
        "batch_size": _attribute(Kind.NUMBER),
        "enabled": _attribute(Kind.BOOL),
        "function_response_types": _attribute(Kind.LIST),
        "tags": _attribute(Kind.MAP),
    },
    {
        "destination_config": _nested(
            _block(
                blocks={
                    "on_failure": _nested(
                        _block({"destination_arn": _attribute(Kind.STRING, required=True)})
                    )
                }
            )
        ),
        "filter_criteria": _nested(
            _block(
                blocks={
                    "filter": _nested(_block({"pattern": _attribute(Kind.STRING)}), max_one=False)
                }
            )
        ),
    },
)
TABLE = _block(
    {"name": _attribute(Kind.STRING, required=True)},
    {
        "attribute": _nested(
            _block({"name": _attribute(Kind.STRING, required=True)}), required=True, max_one=False
        )
    },
)
SECURITY_GROUP = _block(
    {
        "name": _attribute(Kind.STRING),
        "ingress": _attribute(Kind.LIST, nested=_block({"from_port": _attribute(Kind.NUMBER)})),
        "rules": _attribute(Kind.MAP, nested=_block({"port": _attribute(Kind.NUMBER)})),
    }
)
SCHEMA: ProviderSchema = {
    "provider_version": "6.62.0",
    "source": ps.SOURCE_JSII,
    "provider": _block(
        {"region": _attribute(Kind.STRING)},
        {"endpoints": _nested(_block({"lambda": _attribute(Kind.STRING)}))},
    ),
    "resource_types": [
        "aws_dynamodb_table",
        "aws_lambda_event_source_mapping",
        "aws_security_group",
        "aws_sqs_queue",
    ],
    "data_types": ["aws_region"],
    "resource": {
        "aws_lambda_event_source_mapping": MAPPING,
        "aws_dynamodb_table": TABLE,
        "aws_security_group": SECURITY_GROUP,
    },
    "data": {"aws_region": _block({"name": _attribute(Kind.STRING)})},
}

VALID_MAPPING = """
resource "aws_lambda_event_source_mapping" "source" {
  for_each = local.event_sources

  function_name           = aws_lambda_function.processor.arn
  event_source_arn        = each.value
  batch_size              = 100
  enabled                 = true
  function_response_types = ["ReportBatchItemFailures"]
  tags                    = { project = "streamline" }

  destination_config {
    on_failure {
      destination_arn = aws_sqs_queue.on_failure.arn
    }
  }

  depends_on = [aws_iam_role_policy.processor]
}
"""


def findings_in(text: str, schema: ProviderSchema = SCHEMA) -> list[Finding]:
    return check_document(hcl2.loads(text), schema, "main.tf")


def mapping(*lines: str, blocks: str = "") -> str:
    """A mapping with its required argument, the given arguments and nested blocks."""
    body = "\n".join(["  function_name = var.function", *(f"  {line}" for line in lines)])
    return f'resource "aws_lambda_event_source_mapping" "m" {{\n{body}\n{blocks}\n}}\n'


def test_a_valid_configuration_has_no_findings():
    assert findings_in(VALID_MAPPING) == []


# --- the three failures the check exists for --------------------------------------------------


def test_a_misspelt_argument_is_unknown_and_the_nearest_valid_names_are_given():
    text = VALID_MAPPING.replace("function_response_types =", "function_reponse_types  =")

    (finding,) = findings_in(text)

    assert (finding.address, finding.name) == (
        "aws_lambda_event_source_mapping.source",
        "function_reponse_types",
    )
    assert finding.problem is Problem.UNKNOWN_NAME
    assert finding.nearest[0] == "function_response_types"


def test_a_block_nested_at_the_wrong_level_is_unknown_there_and_its_level_is_named():
    text = mapping(blocks="  on_failure {\n    destination_arn = var.arn\n  }")

    (finding,) = findings_in(text)

    assert (finding.name, finding.problem) == ("on_failure", Problem.UNKNOWN_NAME)
    assert "destination_config.on_failure" in finding.detail


def test_a_block_one_level_too_deep_is_unknown_there():
    blocks = """
  destination_config {
    on_failure {
      destination_arn = var.arn
      on_failure {}
    }
  }"""

    (finding,) = findings_in(mapping(blocks=blocks))

    assert finding.address == "aws_lambda_event_source_mapping.m.destination_config.on_failure"
    assert (finding.name, finding.problem) == ("on_failure", Problem.UNKNOWN_NAME)


def test_a_missing_required_argument_is_reported():
    text = VALID_MAPPING.replace(
        "  function_name           = aws_lambda_function.processor.arn\n", ""
    )

    (finding,) = findings_in(text)

    assert (finding.name, finding.problem) == ("function_name", Problem.MISSING_REQUIRED)


def test_a_missing_required_argument_of_a_nested_block_is_reported():
    blocks = "  destination_config {\n    on_failure {}\n  }"

    (finding,) = findings_in(mapping(blocks=blocks))

    assert finding.address == "aws_lambda_event_source_mapping.m.destination_config.on_failure"
    assert (finding.name, finding.problem) == ("destination_arn", Problem.MISSING_REQUIRED)


def test_a_missing_required_block_is_reported():
    (finding,) = findings_in('resource "aws_dynamodb_table" "t" {\n  name = "t"\n}\n')

    assert (finding.name, finding.problem) == ("attribute", Problem.MISSING_REQUIRED)


def test_a_finding_prints_the_file_address_name_and_nearest_valid_names():
    (finding,) = findings_in(mapping("bach_size = 10"))

    assert str(finding) == (
        "main.tf: aws_lambda_event_source_mapping.m: 'bach_size': unknown name:"
        " hashicorp/aws 6.62.0 has no argument of that name here;"
        " nearest valid names: batch_size"
    )


# --- values of the wrong kind ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "name"),
    [
        pytest.param(mapping(blocks="  batch_size {\n  }"), "batch_size", id="block-for-a-number"),
        pytest.param(
            mapping(blocks='  function_response_types {\n    x = "y"\n  }'),
            "function_response_types",
            id="block-for-a-list",
        ),
        pytest.param(mapping("batch_size = [10, 20]"), "batch_size", id="list-for-a-scalar"),
        pytest.param(mapping("enabled = { on = true }"), "enabled", id="object-for-a-scalar"),
        pytest.param(
            mapping('function_response_types = "ReportBatchItemFailures"'),
            "function_response_types",
            id="string-for-a-list",
        ),
        pytest.param(mapping('tags = ["a", "b"]'), "tags", id="list-for-a-map"),
        pytest.param(
            mapping("destination_config = { on_failure = {} }"),
            "destination_config",
            id="attribute-syntax-for-a-block",
        ),
        pytest.param(
            mapping(blocks="  destination_config {}\n  destination_config {}"),
            "destination_config",
            id="two-blocks-where-one-is-allowed",
        ),
        pytest.param(
            mapping(blocks='  dynamic "batch_size" {\n    for_each = [1]\n    content {}\n  }'),
            "batch_size",
            id="dynamic-block-for-an-argument",
        ),
    ],
)
def test_a_value_of_the_wrong_kind_is_reported(text, name):
    (finding,) = findings_in(text)

    assert (finding.name, finding.problem) == (name, Problem.WRONG_KIND)


# --- what is accepted as it is ------------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        pytest.param("batch_size = var.batch_size", id="reference"),
        pytest.param("batch_size = var.on ? 10 : 100", id="conditional"),
        pytest.param("function_response_types = concat(var.a, var.b)", id="call-for-a-list"),
        pytest.param("tags = merge(var.tags, { a = 1 })", id="call-for-a-map"),
        pytest.param('event_source_arn = "${var.prefix}-arn"', id="template"),
        pytest.param("batch_size = null", id="null"),
        pytest.param('batch_size = "100"', id="string-for-a-number-terraform-converts"),
        pytest.param("enabled = var.flags[0]", id="index"),
    ],
)
def test_expressions_are_accepted_for_any_kind(line):
    assert findings_in(mapping(line)) == []


def test_terraform_meta_arguments_are_always_valid():
    text = mapping(
        "count = 1",
        "provider = aws.west",
        "depends_on = [aws_iam_role.x]",
        blocks=(
            "  lifecycle {\n    ignore_changes = [tags]\n  }\n"
            '  provisioner "local-exec" {\n    command = "true"\n  }\n'
            '  connection {\n    host = "h"\n  }'
        ),
    )

    assert findings_in(text) == []


def test_a_list_of_objects_may_be_written_as_blocks_and_its_names_are_still_checked():
    ok = 'resource "aws_security_group" "g" {\n  ingress {\n    from_port = 443\n  }\n}\n'
    typo = ok.replace("from_port", "form_port")

    assert findings_in(ok) == []
    assert [(f.name, f.problem) for f in findings_in(typo)] == [("form_port", Problem.UNKNOWN_NAME)]


def test_a_list_of_objects_as_an_attribute_has_its_names_checked():
    text = 'resource "aws_security_group" "g" {\n  ingress = [{ from_prot = 443 }]\n}\n'

    assert [f.name for f in findings_in(text)] == ["from_prot"]


def test_quoted_keys_of_an_object_are_its_attribute_names():
    text = 'resource "aws_security_group" "g" {\n  ingress = [{ "from_port" = 443 }]\n}\n'

    assert findings_in(text) == []


def test_a_map_of_objects_has_free_keys_and_checked_objects():
    ok = 'resource "aws_security_group" "g" {\n  rules = { web = { port = 80 } }\n}\n'

    assert findings_in(ok) == []
    assert [f.name for f in findings_in(ok.replace("port", "prot"))] == ["prot"]


def test_a_dynamic_block_is_checked_as_the_block_it_builds():
    dynamic = """
  dynamic "filter_criteria" {
    for_each = var.filters
    content {
      dynamic "filter" {
        for_each = filter_criteria.value
        content {
          patern = filter.value
        }
      }
    }
  }"""

    (finding,) = findings_in(mapping(blocks=dynamic))

    assert finding.address == "aws_lambda_event_source_mapping.m.filter_criteria.filter"
    assert (finding.name, finding.nearest) == ("patern", ("pattern",))


def test_a_dynamic_block_of_an_unknown_name_is_reported():
    dynamic = '  dynamic "filter_criterias" {\n    for_each = []\n    content {}\n  }'

    (finding,) = findings_in(mapping(blocks=dynamic))

    assert (finding.name, finding.problem) == ("filter_criterias", Problem.UNKNOWN_NAME)
    assert finding.nearest[0] == "filter_criteria"


def test_a_required_block_built_by_a_dynamic_block_is_present():
    text = """
resource "aws_dynamodb_table" "t" {
  name = "t"
  dynamic "attribute" {
    for_each = var.keys
    content {
      name = attribute.value
    }
  }
}
"""
    assert findings_in(text) == []


def test_modules_other_providers_and_terraform_s_own_resources_are_not_checked():
    text = """
module "processor" {
  source    = "./modules/ordered-processor"
  whatever  = 1
}
resource "terraform_data" "step" {
  input = 1
}
resource "random_id" "suffix" {
  byte_length = 4
}
"""
    assert findings_in(text) == []


def test_data_sources_are_checked_against_their_own_schema():
    (finding,) = findings_in('data "aws_region" "current" {\n  nmae = "eu-west-1"\n}\n')

    assert (finding.address, finding.name) == ("data.aws_region.current", "nmae")


def test_the_aws_provider_block_is_checked_alias_included():
    text = """
provider "aws" {
  alias  = "west"
  region = "eu-west-1"
  endpoints {
    lamda = "http://localhost:4566"
  }
}
provider "google" {
  project = "p"
}
"""
    (finding,) = findings_in(text)

    assert (finding.address, finding.name, finding.nearest) == (
        'provider "aws".endpoints',
        "lamda",
        ("lambda",),
    )


def test_an_unknown_resource_type_names_the_nearest_types():
    (finding,) = findings_in('resource "aws_sqs_queu" "q" {}\n')

    assert (finding.name, finding.problem) == ("aws_sqs_queu", Problem.UNKNOWN_TYPE)
    assert finding.nearest[0] == "aws_sqs_queue"


def test_a_type_the_provider_has_but_the_cached_subset_lacks_asks_for_a_refresh():
    with pytest.raises(ps.StaleSchema, match="aws_sqs_queue: run `make provider-schema`"):
        findings_in('resource "aws_sqs_queue" "q" {}\n')


# --- the schema's sources -----------------------------------------------------------------------

DOCS = "https://example.invalid/providers/hashicorp/aws/6.62.0/docs"


def _jsii_property(name, anchor, type_, optional=True, block=False):
    link = f"{{@link {DOCS}/resources/sqs_queue#{anchor} AwsSqsQueue#{anchor}}}"
    docs = {"summary": f"{anchor} block.", "remarks": link} if block else {"summary": link}
    return {"name": name, "optional": optional, "type": type_, "docs": docs}


def _jsii_class(fqn, link, config):
    return {
        "kind": "class",
        "fqn": fqn,
        "docs": {"summary": f"Represents a {{@link {link}}}."},
        "initializer": {"parameters": [{"name": "config", "type": {"fqn": config}}]},
    }


def _struct(*properties):
    return {"kind": "interface", "datatype": True, "properties": list(properties)}


RESOLVABLE = {"fqn": "cdktn.IResolvable"}
JSII_TYPES = {
    "p.AwsProvider": _jsii_class("p.AwsProvider", f"{DOCS} aws", "p.AwsProviderConfig"),
    "p.AwsProviderConfig": _struct(_jsii_property("region", "region", {"primitive": "string"})),
    "q.AwsSqsQueue": _jsii_class(
        "q.AwsSqsQueue", f"{DOCS}/resources/sqs_queue aws_sqs_queue", "q.AwsSqsQueueConfig"
    ),
    "q.AwsSqsQueueConfig": _struct(
        _jsii_property("name", "name", {"primitive": "string"}, optional=False),
        _jsii_property("delaySeconds", "delay_seconds", {"primitive": "number"}),
        _jsii_property(
            "fifoQueue", "fifo_queue", {"union": {"types": [{"primitive": "boolean"}, RESOLVABLE]}}
        ),
        _jsii_property(
            "tags", "tags", {"collection": {"kind": "map", "elementtype": {"primitive": "string"}}}
        ),
        _jsii_property("equalTo", "equals", {"primitive": "string"}),
        _jsii_property("timeouts", "timeouts", {"fqn": "q.Timeouts"}, block=True),
        _jsii_property(
            "rule",
            "rule",
            {
                "union": {
                    "types": [
                        RESOLVABLE,
                        {"collection": {"kind": "array", "elementtype": {"fqn": "q.Rule"}}},
                    ]
                }
            },
            optional=False,
            block=True,
        ),
        _jsii_property("redrive", "redrive", {"fqn": "q.Redrive"}),
    ),
    "q.Timeouts": _struct(_jsii_property("create", "create", {"primitive": "string"})),
    "q.Rule": _struct(_jsii_property("id", "id", {"primitive": "string"})),
    "q.Redrive": _struct(_jsii_property("maxCount", "max_count", {"primitive": "number"})),
    "q.AwsOther": _jsii_class(
        "q.AwsOther", f"{DOCS}/resources/other aws_other", "q.AwsSqsQueueConfig"
    ),
}


def test_the_type_system_gives_each_argument_its_snake_case_name_kind_and_requiredness():
    schema = ps.schema_from_jsii(
        JSII_TYPES, {Section.RESOURCE: {"aws_sqs_queue"}, Section.DATA: set()}
    )

    queue = schema["resource"]["aws_sqs_queue"]
    assert queue["attributes"] == {
        "name": {"kind": "string", "required": True},
        "delay_seconds": {"kind": "number", "required": False},
        "fifo_queue": {"kind": "bool", "required": False},
        "tags": {"kind": "map", "required": False},
        "equals": {"kind": "string", "required": False},
        "redrive": {
            "kind": "object",
            "required": False,
            "nested": {
                "attributes": {"max_count": {"kind": "number", "required": False}},
                "blocks": {},
            },
        },
    }
    assert queue["blocks"]["timeouts"]["max_one"] is True
    assert (queue["blocks"]["rule"]["max_one"], queue["blocks"]["rule"]["required"]) == (
        False,
        True,
    )
    assert schema["resource_types"] == ["aws_other", "aws_sqs_queue"]
    assert list(schema["resource"]) == ["aws_sqs_queue"]  # only the wanted types' schemas
    assert list(schema["provider"]["attributes"]) == ["region"]


def test_a_type_system_for_another_provider_version_is_refused():
    with pytest.raises(ps.SchemaSourceError, match="not 5.0.0"):
        ps.schema_from_jsii(JSII_TYPES, {Section.RESOURCE: set(), Section.DATA: set()}, "5.0.0")


def test_a_wheel_other_than_the_pinned_one_is_refused(tmp_path):
    wheel = tmp_path / ps.WHEEL_NAME
    wheel.write_bytes(b"not the pinned wheel")

    with pytest.raises(ps.SchemaSourceError, match="sha256"):
        ps.read_jsii_types(wheel)


TERRAFORM_DUMP = {
    "provider_schemas": {
        offline.PROVIDER_ADDRESS: {
            "provider": {"block": {"attributes": {"region": {"type": "string", "optional": True}}}},
            "resource_schemas": {
                "aws_sqs_queue": {
                    "block": {
                        "attributes": {
                            "name": {"type": "string", "required": True},
                            "arn": {"type": "string", "computed": True},
                            "id": {"type": "string", "optional": True, "computed": True},
                            "tags": {"type": ["map", "string"], "optional": True},
                            "ingress": {
                                "type": ["set", ["object", {"from_port": "number"}]],
                                "optional": True,
                            },
                        },
                        "block_types": {
                            "rule": {"nesting_mode": "list", "block": {}, "min_items": 1},
                            "timeouts": {"nesting_mode": "single", "block": {}},
                        },
                    }
                },
                "aws_other": {"block": {}},
            },
            "data_source_schemas": {},
        }
    }
}


def test_terraform_s_schema_gives_only_the_arguments_a_configuration_may_set():
    wanted = {Section.RESOURCE: {"aws_sqs_queue"}, Section.DATA: set()}
    schema = ps.schema_from_terraform(TERRAFORM_DUMP, wanted, "3.39.0")

    queue = schema["resource"]["aws_sqs_queue"]
    assert set(queue["attributes"]) == {"name", "id", "tags", "ingress"}  # not computed arn
    assert queue["attributes"]["name"] == {"kind": "string", "required": True}
    assert set(queue["attributes"]["ingress"]["nested"]["attributes"]) == {"from_port"}
    assert queue["blocks"]["rule"]["required"] and not queue["blocks"]["rule"]["max_one"]
    assert queue["blocks"]["timeouts"]["max_one"]
    assert schema["resource_types"] == ["aws_other", "aws_sqs_queue"]


def test_every_tf_file_of_every_module_is_read_but_not_hidden_directories(tmp_path):
    for name in ("main.tf", "modules/m/main.tf", ".offline/main.tf", "modules/m/.terraform/x.tf"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")

    assert [p.relative_to(tmp_path).as_posix() for p in ps.tf_files(tmp_path)] == [
        "main.tf",
        "modules/m/main.tf",
    ]


@pytest.mark.parametrize(
    ("path", "found"),
    [
        (("function_name",), True),
        (("destination_config",), True),
        (("destination_config", "on_failure", "destination_arn"), True),
        (("on_failure",), False),
        (("destination_config", "destination_arn"), False),
    ],
)
def test_a_schema_path_is_a_chain_of_blocks_ending_in_a_name(path, found):
    assert ps.has_path(MAPPING, path) is found


# --- the real configuration against hashicorp/aws 6.62.0 ---------------------------------------


@pytest.fixture(scope="session")
def aws_schema() -> ProviderSchema:
    """The cached 6.62.0 subset, covering every type in use; else fail: how to refresh it."""
    try:
        schema = ps.load_schema(ps.SCHEMA_FILE, ps.SOURCE_JSII, ps.PROVIDER_VERSION)
        ps.require_types(schema, ps.wanted_types())
    except ps.StaleSchema as exc:
        pytest.fail(str(exc), pytrace=False)
    return schema


@pytest.fixture(scope="session")
def real_documents() -> dict[str, Any]:
    return ps.load_documents()


def test_the_real_configuration_matches_the_aws_provider_schema(aws_schema, real_documents):
    started = time.monotonic()
    findings = ps.check_documents(real_documents, aws_schema)

    assert not findings, "\n".join(map(str, findings))
    assert time.monotonic() - started < 5


def test_the_check_command_prints_nothing_and_exits_0_on_the_real_configuration(aws_schema, capsys):
    assert ps.main(["check"]) == 0
    assert capsys.readouterr().out == ""


def _mapping_body(documents: dict[str, Any]) -> dict[str, Any]:
    """The real configuration's event source mapping (python-hcl2's body)."""
    for document in documents.values():
        for block in document.get("resource", []):
            for named in block.get('"aws_lambda_event_source_mapping"', {}).values():
                if isinstance(named, dict):
                    return named
    raise AssertionError("no aws_lambda_event_source_mapping in infra/terraform")


def _misspell(body):
    body["function_response_type"] = body.pop("function_response_types")


def _misplace(body):
    (destination,) = body.pop("destination_config")
    body["on_failure"] = destination["on_failure"]


def _leave_out(body):
    del body["function_name"]


@pytest.mark.parametrize(
    ("mutate", "name", "problem"),
    [
        pytest.param(_misspell, "function_response_type", Problem.UNKNOWN_NAME, id="misspelt"),
        pytest.param(_misplace, "on_failure", Problem.UNKNOWN_NAME, id="misplaced-block"),
        pytest.param(_leave_out, "function_name", Problem.MISSING_REQUIRED, id="missing-required"),
    ],
)
def test_the_real_mapping_with_a_mistake_fails_the_check(
    aws_schema, real_documents, mutate, name, problem
):
    # Given the real configuration with one mistake in its mapping
    documents = copy.deepcopy(real_documents)
    mutate(_mapping_body(documents))

    # When it is checked against the provider's schema
    findings = ps.check_documents(documents, aws_schema)

    # Then that mistake, and only it, is reported
    assert [(f.name, f.problem) for f in findings] == [(name, problem)]


# --- the offline copy: what it takes out, against 6.62.0; what it keeps, against 3.39.0 --------


def test_what_the_offline_transform_takes_out_exists_in_the_modern_provider(aws_schema):
    paths = ps.taken_out_by_transform()

    assert paths and ps.missing_paths(aws_schema, paths) == []


@pytest.fixture(scope="session")
def offline_schema() -> ProviderSchema:
    """The cached 3.39.0 subset. It comes from terraform itself: without the binary, the
    offline part is skipped, and says why."""
    try:
        offline.terraform_binary()
    except offline.MissingTool as exc:
        pytest.skip(f"the 3.39 schema comes from terraform: {exc}")
    try:
        schema = ps.load_schema(
            ps.OFFLINE_SCHEMA_FILE, ps.SOURCE_TERRAFORM, offline.PROVIDER_VERSION
        )
        ps.require_types(schema, ps.wanted_types())
    except ps.StaleSchema as exc:
        pytest.fail(str(exc), pytrace=False)
    return schema


def test_the_offline_copy_matches_the_offline_provider_schema(offline_schema, tmp_path):
    documents = ps.offline_documents(tmp_path)

    findings = ps.check_documents(documents, offline_schema)

    assert ps.types_in(documents.values())[Section.RESOURCE]
    assert not findings, "\n".join(map(str, findings))


def test_the_offline_transform_takes_out_only_what_the_offline_provider_lacks(offline_schema):
    present = ps.present_paths(offline_schema, ps.lacking_in_offline_provider())

    assert present == [], "3.39 has these: " + ", ".join(map(str, present))


def test_what_the_offline_copy_ignores_on_refresh_exists_in_the_offline_provider(offline_schema):
    missing = ps.missing_paths(offline_schema, ps.kept_for_offline_provider())

    assert missing == [], "3.39 lacks these: " + ", ".join(map(str, missing))


def test_the_cached_subset_is_small_and_has_the_types_in_use(aws_schema):
    assert ps.SCHEMA_FILE.stat().st_size < 2_000_000
    assert (
        set(json.loads(ps.SCHEMA_FILE.read_text())["resource"])
        >= ps.wanted_types()[Section.RESOURCE]
    )
