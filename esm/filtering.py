"""Lambda event filtering (``FilterCriteria``) for one stream record, as a pure function.

A record is delivered when it matches any of the mapping's filters (at most five); otherwise
Lambda drops it and the stream's iterator moves past it.
https://docs.aws.amazon.com/lambda/latest/dg/invocation-eventfiltering.html

The rule syntax is EventBridge's (the Lambda page defers to it for the details):
https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-event-patterns.html
https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-create-pattern-operators.html

What a pattern sees of a record depends on the source (``_VIEWS``):
- Kinesis filters only on ``data``, the payload decoded from base64 and parsed as JSON; a
  record whose payload is not JSON is dropped by any filter on ``data``.
  https://docs.aws.amazon.com/lambda/latest/dg/with-kinesis-filtering.html
- DynamoDB: the record as delivered, typed attribute values and all (``eventName`` too).
  https://docs.aws.amazon.com/lambda/latest/dg/with-ddb-filtering.html
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
from collections.abc import Callable
from typing import Any

# The default quota of filters per event source mapping (AWS raises it to 10 on request).
MAX_FILTERS = 5
# CreateEventSourceMapping: a Filter's Pattern is at most 4096 characters.
# https://docs.aws.amazon.com/lambda/latest/api/API_Filter.html
MAX_PATTERN_CHARS = 4096

_KINESIS_DATA = "data"


class FilterError(ValueError):
    """A FilterCriteria that CreateEventSourceMapping would refuse."""


# --- validation ----------------------------------------------------------------------------


def validate(filter_criteria: Any) -> None:
    """Raise FilterError when the API would refuse this FilterCriteria."""
    _patterns(filter_criteria)


@functools.lru_cache(maxsize=64)
def _parsed_patterns(texts: tuple[str, ...]) -> tuple[dict, ...]:
    parsed = []
    for index, text in enumerate(texts):
        where = f"Filters[{index}].Pattern"
        if len(text) > MAX_PATTERN_CHARS:
            raise FilterError(f"{where} is longer than {MAX_PATTERN_CHARS} characters")
        try:
            pattern = json.loads(text)
        except ValueError as exc:
            raise FilterError(f"{where} is not JSON: {exc}") from None
        _check_object(pattern, where)
        parsed.append(pattern)
    return tuple(parsed)


def _patterns(filter_criteria: Any) -> tuple[dict, ...]:
    if filter_criteria is None:
        return ()
    if not isinstance(filter_criteria, dict):
        raise FilterError("FilterCriteria must be an object with a Filters list")
    unknown = set(filter_criteria) - {"Filters"}
    if unknown:
        raise FilterError(f"FilterCriteria has unknown keys: {sorted(unknown)}")
    filters = filter_criteria.get("Filters") or []
    if not isinstance(filters, list):
        raise FilterError("FilterCriteria.Filters must be a list")
    if len(filters) > MAX_FILTERS:
        raise FilterError(f"FilterCriteria has {len(filters)} filters; at most {MAX_FILTERS}")
    texts = []
    for index, item in enumerate(filters):
        if not isinstance(item, dict) or not isinstance(item.get("Pattern"), str):
            raise FilterError(f"Filters[{index}] must be an object with a Pattern string")
        texts.append(item["Pattern"])
    return _parsed_patterns(tuple(texts))


def _check_object(pattern: Any, where: str) -> None:
    if not isinstance(pattern, dict) or not pattern:
        raise FilterError(f"{where} must be a non-empty JSON object")
    for key, value in pattern.items():
        path = f"{where}.{key}"
        if key == "$or":
            if not isinstance(value, list) or len(value) < 2:
                raise FilterError(f"{path} must be a list of at least two patterns")
            for index, branch in enumerate(value):
                _check_object(branch, f"{path}[{index}]")
        elif isinstance(value, dict):
            _check_object(value, path)
        elif isinstance(value, list):
            for rule in value:
                _check_rule(rule, path)
        else:
            raise FilterError(f"{path}: a rule must be a list (or an object of fields)")


def _check_rule(rule: Any, where: str) -> None:
    if rule is None or isinstance(rule, (str, bool, int, float)):
        return
    if not isinstance(rule, dict) or len(rule) != 1:
        raise FilterError(f"{where}: {json.dumps(rule)} is not a value or a one-operator object")
    [(operator, operand)] = rule.items()
    check = _OPERAND_CHECKS.get(operator)
    if check is None:
        known = ", ".join(sorted(_OPERAND_CHECKS))
        raise FilterError(f"{where}: unknown operator {operator!r} (known: {known})")
    if not check(operand):
        raise FilterError(f"{where}: invalid {operator} operand {json.dumps(operand)}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_string_or_ignore_case(operand: Any) -> bool:
    """prefix/suffix take a string, or ``{"equals-ignore-case": string}``."""
    if isinstance(operand, dict):
        return list(operand) == ["equals-ignore-case"] and isinstance(
            operand["equals-ignore-case"], str
        )
    return isinstance(operand, str)


def _is_wildcard(operand: Any) -> bool:
    # EventBridge refuses consecutive wildcard characters.
    return isinstance(operand, str) and "**" not in operand


def _strings_or_string(operand: Any, test: Callable[[Any], bool]) -> bool:
    if isinstance(operand, list):
        return bool(operand) and all(test(item) for item in operand)
    return test(operand)


def _is_anything_but(operand: Any) -> bool:
    if isinstance(operand, dict):
        if len(operand) != 1:
            return False
        [(operator, inner)] = operand.items()
        if operator in ("prefix", "suffix"):
            return isinstance(inner, str)
        if operator == "equals-ignore-case":
            return _strings_or_string(inner, lambda item: isinstance(item, str))
        if operator == "wildcard":
            return _strings_or_string(inner, _is_wildcard)
        return False
    return _strings_or_string(operand, lambda item: isinstance(item, str) or _is_number(item))


_LOWER_BOUNDS = (">", ">=")
_UPPER_BOUNDS = ("<", "<=")


def _is_numeric(operand: Any) -> bool:
    """``["=", n]``, or one or two comparisons: at most one lower and one upper bound."""
    if not isinstance(operand, list) or len(operand) not in (2, 4):
        return False
    pairs = [(operand[i], operand[i + 1]) for i in range(0, len(operand), 2)]
    if not all(isinstance(op, str) and _is_number(n) for op, n in pairs):
        return False
    operators = [op for op, _ in pairs]
    if "=" in operators:
        return operators == ["="]
    lower = [op for op in operators if op in _LOWER_BOUNDS]
    upper = [op for op in operators if op in _UPPER_BOUNDS]
    if len(lower) + len(upper) != len(operators) or len(lower) > 1 or len(upper) > 1:
        return False
    if lower and upper:
        low = next(n for op, n in pairs if op in _LOWER_BOUNDS)
        high = next(n for op, n in pairs if op in _UPPER_BOUNDS)
        return low <= high
    return True


_OPERAND_CHECKS: dict[str, Callable[[Any], bool]] = {
    "prefix": _is_string_or_ignore_case,
    "suffix": _is_string_or_ignore_case,
    "equals-ignore-case": lambda operand: isinstance(operand, str),
    "wildcard": _is_wildcard,
    "anything-but": _is_anything_but,
    "numeric": _is_numeric,
    "exists": lambda operand: isinstance(operand, bool),
}


# --- matching ------------------------------------------------------------------------------


def matches(filter_criteria: dict, record: dict) -> bool:
    """Whether Lambda delivers ``record`` (as it appears in the event) under these criteria.

    No filters (``None``, ``{}``, an empty list) deliver everything.
    """
    parsed = _patterns(filter_criteria)
    if not parsed:
        return True
    view = _VIEWS.get(record.get("eventSource"), _as_delivered)(record)
    return any(_matches_pattern(pattern, view) for pattern in parsed)


class _RecordView:
    """What patterns see of a record; ``unparsed`` names data keys whose value is not JSON
    (any filter naming one of them drops the record)."""

    __slots__ = ("fields", "numeric_strings", "unparsed")

    def __init__(self, fields: dict, unparsed=(), numeric_strings: bool = False) -> None:
        self.fields = fields
        self.unparsed = frozenset(unparsed)
        self.numeric_strings = numeric_strings


def _kinesis_view(record: dict) -> _RecordView:
    encoded = (record.get("kinesis") or {}).get("data")
    try:
        data = json.loads(base64.b64decode(encoded or "", validate=True).decode("utf-8"))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return _RecordView({}, unparsed=[_KINESIS_DATA])
    return _RecordView({_KINESIS_DATA: data})


def _dynamodb_view(record: dict) -> _RecordView:
    # Number attributes are strings on the wire ({"N": "101"}); numeric rules read them.
    return _RecordView(record, numeric_strings=True)


def _as_delivered(record: dict) -> _RecordView:
    return _RecordView(record)


_VIEWS: dict[str | None, Callable[[dict], _RecordView]] = {
    "aws:kinesis": _kinesis_view,
    "aws:dynamodb": _dynamodb_view,
}


def _matches_pattern(pattern: dict, view: _RecordView) -> bool:
    if any(key in view.unparsed for key in _top_level_keys(pattern)):
        return False
    return _matches_object(pattern, [view.fields], view, leaf_key=None)


def _top_level_keys(pattern: dict) -> set[str]:
    keys = set()
    for key, value in pattern.items():
        if key == "$or":
            for branch in value:
                keys |= _top_level_keys(branch)
        else:
            keys.add(key)
    return keys


def _matches_object(pattern: dict, objects: list[dict], view: _RecordView, leaf_key) -> bool:
    """Every field of the pattern matches (AND); arrays in the record are flattened, so a
    field matches when any of its values does."""
    for key, expected in pattern.items():
        if key == "$or":
            if not any(_matches_object(branch, objects, view, leaf_key) for branch in expected):
                return False
            continue
        values = _flatten(obj[key] for obj in objects if key in obj)
        if isinstance(expected, dict):
            children = [value for value in values if isinstance(value, dict)]
            if not _matches_object(expected, children, view, key):
                return False
        else:
            leaves = [value for value in values if not isinstance(value, dict)]
            numeric_strings = view.numeric_strings and key == "N"
            if not any(_matches_rule(rule, leaves, numeric_strings) for rule in expected):
                return False
    return True


def _flatten(values) -> list:
    flat = []
    for value in values:
        if isinstance(value, list):
            flat.extend(_flatten(value))
        else:
            flat.append(value)
    return flat


def _matches_rule(rule: Any, values: list, numeric_strings: bool) -> bool:
    if isinstance(rule, dict):
        [(operator, operand)] = rule.items()
        if operator == "exists":
            return bool(values) is operand
        test = _OPERATORS[operator]
        return any(test(operand, value, numeric_strings) for value in values)
    return any(_equals(rule, value) for value in values)


def _equals(expected: Any, value: Any) -> bool:
    """Exact match: no case folding, and numbers by representation (Lambda: 300 and 300.0
    are not equal), so the types must agree as well as the values (True is not 1)."""
    return type(expected) is type(value) and expected == value


def _string_test(operand: Any, test: Callable[[str, str], bool]) -> Callable[[Any], bool]:
    if isinstance(operand, dict):
        folded = operand["equals-ignore-case"].casefold()
        return lambda value: isinstance(value, str) and test(value.casefold(), folded)
    return lambda value: isinstance(value, str) and test(value, operand)


def _prefix(operand, value, _numeric_strings) -> bool:
    return _string_test(operand, str.startswith)(value)


def _suffix(operand, value, _numeric_strings) -> bool:
    return _string_test(operand, str.endswith)(value)


def _equals_ignore_case(operand, value, _numeric_strings) -> bool:
    return isinstance(value, str) and value.casefold() == operand.casefold()


@functools.lru_cache(maxsize=256)
def _wildcard_regex(operand: str) -> re.Pattern:
    """``*`` is any run of characters; ``\\*`` a literal star, ``\\\\`` a literal backslash."""
    parts, index = [], 0
    while index < len(operand):
        char = operand[index]
        if char == "\\" and index + 1 < len(operand) and operand[index + 1] in "*\\":
            parts.append(re.escape(operand[index + 1]))
            index += 2
            continue
        parts.append(".*" if char == "*" else re.escape(char))
        index += 1
    return re.compile("".join(parts), re.DOTALL)


def _wildcard(operand, value, _numeric_strings) -> bool:
    return isinstance(value, str) and _wildcard_regex(operand).fullmatch(value) is not None


def _anything_but(operand, value, numeric_strings) -> bool:
    if value is None or isinstance(value, bool):
        return False
    if isinstance(operand, dict):
        [(operator, inner)] = operand.items()
        if not isinstance(value, str):
            return False
        candidates = inner if isinstance(inner, list) else [inner]
        return not any(_OPERATORS[operator](c, value, numeric_strings) for c in candidates)
    excluded = operand if isinstance(operand, list) else [operand]
    return not any(_equals(item, value) for item in excluded)


_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "=": lambda a, b: a == b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def _numeric(operand, value, numeric_strings) -> bool:
    if isinstance(value, str) and numeric_strings:
        try:
            value = float(value)
        except ValueError:
            return False
    if not _is_number(value):
        return False
    pairs = [(operand[i], operand[i + 1]) for i in range(0, len(operand), 2)]
    return all(_COMPARE[op](value, bound) for op, bound in pairs)


_OPERATORS: dict[str, Callable[[Any, Any, bool], bool]] = {
    "prefix": _prefix,
    "suffix": _suffix,
    "equals-ignore-case": _equals_ignore_case,
    "wildcard": _wildcard,
    "anything-but": _anything_but,
    "numeric": _numeric,
}
