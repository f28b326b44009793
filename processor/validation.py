"""Payload contracts: a record's payload checked against the user's model and/or JSON Schema
before the user's code runs (`OrderedProcessor(..., model=..., schema=...)`).

What is validated, per source (`_PAYLOADS`):
- Kinesis: the user record's data as JSON (after KPL deaggregation). Data that is not JSON
  breaks the contract.
- DynamoDB: the NewImage as plain Python values (`Record.new_image`: integral numbers as int,
  others as Decimal, sets as set, binary as bytes). A REMOVE carries no NewImage: it is not
  validated and `record.model` stays None (the item's last image was validated when it was
  written, and a deletion is the handler's to interpret). An INSERT or MODIFY without a
  NewImage (a stream whose view type is KEYS_ONLY or OLD_IMAGE) breaks the contract: there is
  nothing to check it against.

A payload that breaks the contract raises `InvalidPayloadError`, a `ContractViolation`: the
processor parks the record at once (it can never succeed), with every broken field in the
poison message's `error.message`, and the key goes on.

How, and why not through Powertools' utilities (`make bench`, line
`processor.payload_validation`, measured side by side in one run):
- the model goes through a pydantic `TypeAdapter` built once per processor (any type pydantic
  validates: a BaseModel, a dataclass, a TypedDict, a discriminated union), `validate_json`
  straight on the Kinesis bytes (0.7 µs for the benchmark's payload). Powertools'
  `parser.parse(event=..., model=...)` makes the same TypeAdapter call behind a cache lookup
  and a `str` it needs decoded first: 1.4 µs, for the same errors;
- the schema is compiled once with fastjsonschema, the engine of Powertools' validation
  utility (2.6 µs with the JSON parse); `validation.validate(event=..., schema=...)` compiles
  the schema again on every call: about 430 µs per payload. fastjsonschema stops at the
  first violation, so a schema reports one field where a model reports them all.
With both, the schema is checked first, then the model; `record.model` is the model's object
(with a schema alone, the validated JSON value, the schema's defaults filled in).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

from processor.exceptions import FieldError, InvalidPayloadError
from processor.records import Record, Source

PayloadCheck = Callable[[Record], None]
"""Validates a record's payload and sets `record.model`, or raises InvalidPayloadError (or
RecordParseError for Kinesis data that is not base64)."""

WHOLE_PAYLOAD = "(payload)"
MAX_GIVEN_CHARS = 80


def payload_check(model: Any = None, schema: dict | None = None) -> PayloadCheck | None:
    """The check for a processor's `model` and `schema`; None when neither is given (then
    nothing runs per record). Raises TypeError or ValueError for a model pydantic cannot
    validate or a schema that is not JSON Schema: at construction, not per record."""
    if model is None and schema is None:
        return None
    validate_model = _model_validator(model) if model is not None else None
    validate_schema = _schema_validator(schema) if schema is not None else None
    contract = " and ".join(
        part
        for part, given in (
            (f"JSON schema{_schema_title(schema)}", schema is not None),
            (f"model {getattr(model, '__name__', repr(model))}", model is not None),
        )
        if given
    )

    def check(record: Record) -> None:
        payload = _PAYLOADS[record.source](record, contract)
        if payload is _NOT_VALIDATED:
            record._model = None
            return
        value = None
        if validate_schema is not None:
            value = validate_schema(payload, contract)
        if validate_model is not None:
            value = validate_model(payload, contract)
        record._model = value

    return check


def with_payload_check(apply: Callable, check: PayloadCheck, *, keyed: bool) -> Callable:
    """`apply` (or a keyed-state `fold`) that runs only on a payload the check accepts."""
    if keyed:

        def checked_fold(record: Record, state: Any) -> Any:
            check(record)
            try:
                return apply(record, state)
            finally:
                # Released as soon as the function is done with it: kept to the end of a
                # 10,000-record batch, the parsed payloads tripled validation's cost per
                # record (+4.5 us instead of +1.2 us, mostly the garbage collector walking them).
                del record._model

        return checked_fold

    def checked_apply(record: Record) -> Any:
        check(record)
        try:
            return apply(record)
        finally:
            del record._model

    return checked_apply


# --- the payload of each source ---------------------------------------------------------------

_NOT_VALIDATED = object()


def _kinesis_payload(record: Record, contract: str) -> bytes:
    return record.data  # RecordParseError for data that is not base64: parked as such


def _dynamodb_payload(record: Record, contract: str) -> Any:
    if record.event_name == "REMOVE":
        return _NOT_VALIDATED
    if record.new_image is None:
        problem = (
            f"{record.event_name} carries no NewImage: the stream's view type must be NEW_IMAGE "
            "or NEW_AND_OLD_IMAGES for its records to be validated"
        )
        raise InvalidPayloadError(contract, [FieldError(WHOLE_PAYLOAD, problem)])
    return record.new_image


_PAYLOADS: dict[Source, Callable[[Record, str], Any]] = {
    Source.KINESIS: _kinesis_payload,
    Source.DYNAMODB: _dynamodb_payload,
}


# --- validators ---------------------------------------------------------------------------


def _model_validator(model: Any) -> Callable[[Any, str], Any]:
    from pydantic import TypeAdapter, ValidationError

    adapter = TypeAdapter(model)  # PydanticSchemaGenerationError (a TypeError) if it cannot
    validate_json, validate_python = adapter.validate_json, adapter.validate_python

    def validate(payload: Any, contract: str) -> Any:
        try:
            if type(payload) is bytes:
                return validate_json(payload)
            return validate_python(payload)
        except ValidationError as exc:
            raise InvalidPayloadError(contract, _pydantic_errors(exc)) from exc

    return validate


def _pydantic_errors(exc: Any) -> list[FieldError]:
    errors = []
    for error in exc.errors(include_url=False):
        # A missing field's input is the whole object around it: not worth repeating.
        given = None if error["type"] == "missing" else shorten(error.get("input"))
        errors.append(FieldError(_location(error["loc"]), error["msg"], given))
    return errors


def _schema_validator(schema: dict) -> Callable[[Any, str], Any]:
    import fastjsonschema

    try:
        compiled = fastjsonschema.compile(schema)
    except fastjsonschema.JsonSchemaDefinitionException as exc:
        raise ValueError(f"schema is not a usable JSON Schema: {exc}") from exc
    # fastjsonschema fills a schema's defaults into the value it checks: a DynamoDB image is
    # the record's own `new_image`, so it gets a copy (only when the schema has defaults).
    fills_defaults = '"default"' in json.dumps(schema, default=str)

    def validate(payload: Any, contract: str) -> Any:
        if type(payload) is bytes:
            payload = _parsed_json(payload, contract)
        elif fills_defaults:
            payload = copy.deepcopy(payload)
        try:
            return compiled(payload)
        except fastjsonschema.JsonSchemaValueException as exc:
            # e.path is ["data", "items", 0, "price"]: the first is the validator's own name.
            location = _location(exc.path[1:] if exc.path else ())
            problem = exc.message.removeprefix(exc.name).strip() or exc.message
            error = FieldError(location, problem, shorten(exc.value))
            raise InvalidPayloadError(contract, [error]) from exc

    return validate


def _parsed_json(data: bytes, contract: str) -> Any:
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError, depth
        error = FieldError(WHOLE_PAYLOAD, f"not JSON: {exc}", shorten(data))
        raise InvalidPayloadError(contract, [error]) from exc


def _schema_title(schema: dict | None) -> str:
    title = schema.get("title") or schema.get("$id") if isinstance(schema, dict) else None
    return f" {title!r}" if isinstance(title, str) else ""


def _location(path: Any) -> str:
    return ".".join(str(part) for part in path) or WHOLE_PAYLOAD


def shorten(value: Any, limit: int = MAX_GIVEN_CHARS) -> str:
    """repr() of an offending input, cut to `limit` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
