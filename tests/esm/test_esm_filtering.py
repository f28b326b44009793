"""Lambda event filtering as a pure function: AWS's documented examples, no server.

https://docs.aws.amazon.com/lambda/latest/dg/invocation-eventfiltering.html
https://docs.aws.amazon.com/lambda/latest/dg/with-kinesis-filtering.html
https://docs.aws.amazon.com/lambda/latest/dg/with-ddb-filtering.html
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from esm.filtering import FilterError, matches, validate
from processor.events import dynamodb_event_record, kinesis_event_record


def criteria(*patterns: dict | str) -> dict:
    return {"Filters": [{"Pattern": p if isinstance(p, str) else json.dumps(p)} for p in patterns]}


def kinesis(data: bytes | dict | list | str | float | None) -> dict:
    if not isinstance(data, bytes):
        data = json.dumps(data).encode()
    return kinesis_event_record(
        event_source_arn="arn:aws:kinesis:us-east-2:123456789012:stream/lambda-stream",
        shard_id="shardId-000000000006",
        partition_key="1",
        sequence_number="49590338271490256608559692538361571095921575989136588898",
        data=data,
        arrival_s=1545084650.987,
        invoke_identity_arn="arn:aws:iam::123456789012:role/lambda-role",
    )


def dynamodb(event_name: str = "INSERT", **stream_record) -> dict:
    stream_record = {
        "SequenceNumber": "111",
        "SizeBytes": 26,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
        **stream_record,
    }
    return dynamodb_event_record(
        event_source_arn="arn:aws:dynamodb:us-east-2:123456789012:table/t/stream/2024",
        stream_record=stream_record,
        event_name=event_name,
        event_id="1",
    )


def data_matches(rule_or_pattern, data) -> bool:
    """A data-key pattern against a Kinesis record carrying `data` as JSON."""
    return matches(criteria({"data": rule_or_pattern}), kinesis(data))


# --- the comparison operators (invocation-eventfiltering.html's table) ---------------------


def test_equals_matches_the_exact_string():
    rule = {"Name": ["Alice"]}
    assert data_matches(rule, {"Name": "Alice"})
    assert not data_matches(rule, {"Name": "alice"})
    assert not data_matches(rule, {"Other": "Alice"})


def test_or_of_values_matches_any_of_them():
    rule = {"PaymentType": ["Credit", "Debit"]}
    assert data_matches(rule, {"PaymentType": "Debit"})
    assert not data_matches(rule, {"PaymentType": "Cash"})


def test_and_needs_every_field():
    rule = {"Location": ["New York"], "Day": ["Monday"]}
    assert data_matches(rule, {"Location": "New York", "Day": "Monday"})
    assert not data_matches(rule, {"Location": "New York", "Day": "Friday"})
    assert not data_matches(rule, {"Location": "New York"})


def test_null_matches_a_null_value_not_a_missing_field():
    rule = {"UserID": [None]}
    assert data_matches(rule, {"UserID": None})
    assert not data_matches(rule, {})
    assert not data_matches(rule, {"UserID": ""})


def test_empty_matches_the_empty_string():
    rule = {"LastName": [""]}
    assert data_matches(rule, {"LastName": ""})
    assert not data_matches(rule, {"LastName": None})
    assert not data_matches(rule, {"LastName": "Doe"})


def test_equals_ignore_case():
    rule = {"Name": [{"equals-ignore-case": "alice"}]}
    assert data_matches(rule, {"Name": "ALICE"})
    assert not data_matches(rule, {"Name": "Alicia"})


def test_prefix_begins_with():
    rule = {"Region": [{"prefix": "us-"}]}
    assert data_matches(rule, {"Region": "us-east-1"})
    assert not data_matches(rule, {"Region": "eu-west-1"})
    assert not data_matches({"Region": [{"prefix": "1"}]}, {"Region": 123})


def test_suffix_ends_with():
    rule = {"FileName": [{"suffix": ".png"}]}
    assert data_matches(rule, {"FileName": "cat.png"})
    assert not data_matches(rule, {"FileName": "cat.jpg"})


def test_prefix_and_suffix_ignoring_case():
    assert data_matches({"Region": [{"prefix": {"equals-ignore-case": "US-"}}]}, {"Region": "us-1"})
    assert data_matches({"F": [{"suffix": {"equals-ignore-case": ".PNG"}}]}, {"F": "a.png"})


def test_anything_but_a_list_of_values():
    rule = {"Weather": [{"anything-but": ["Raining"]}]}
    assert data_matches(rule, {"Weather": "Sunny"})
    assert not data_matches(rule, {"Weather": "Raining"})
    assert not data_matches(rule, {}), "the field must still be there"


def test_anything_but_a_single_value_and_numbers():
    assert data_matches({"x": [{"anything-but": "a"}]}, {"x": "b"})
    assert not data_matches({"x": [{"anything-but": [1, 2]}]}, {"x": 2})
    assert data_matches({"x": [{"anything-but": [1, 2]}]}, {"x": 3})


def test_anything_but_prefix():
    rule = {"state": [{"anything-but": {"prefix": "init"}}]}
    assert data_matches(rule, {"state": "running"})
    assert not data_matches(rule, {"state": "initializing"})


def test_anything_but_suffix_ignore_case_and_wildcard():
    assert not data_matches({"f": [{"anything-but": {"suffix": ".tmp"}}]}, {"f": "a.tmp"})
    assert not data_matches({"f": [{"anything-but": {"equals-ignore-case": ["A"]}}]}, {"f": "a"})
    assert data_matches({"f": [{"anything-but": {"wildcard": "*.tmp"}}]}, {"f": "a.txt"})


def test_numeric_equals():
    rule = {"Price": [{"numeric": ["=", 100]}]}
    assert data_matches(rule, {"Price": 100})
    assert data_matches(rule, {"Price": 100.0})
    assert not data_matches(rule, {"Price": 101})
    assert not data_matches(rule, {"Price": "100"}), "a string is not a number"


@pytest.mark.parametrize(
    ("temperature", "expected"),
    [(50, False), (50.5, True), (60, True), (60.01, False), (-5, False)],
)
def test_numeric_range(temperature, expected):
    # invocation-eventfiltering.html: Temperature more than 50, at most 60.
    rule = {"Temperature": [{"numeric": [">", 50, "<=", 60]}]}
    assert data_matches(rule, {"Temperature": temperature}) is expected


def test_exists_true_and_false():
    assert data_matches({"ProductName": [{"exists": True}]}, {"ProductName": "x"})
    assert not data_matches({"ProductName": [{"exists": True}]}, {"Other": 1})
    assert data_matches({"ProductName": [{"exists": False}]}, {"Other": 1})
    assert not data_matches({"ProductName": [{"exists": False}]}, {"ProductName": None})


def test_exists_false_holds_when_the_parent_object_is_missing():
    assert data_matches({"order": {"coupon": [{"exists": False}]}}, {"record": 1})


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("*.png", "dir/cat.png", True),
        ("*.png", "cat.jpg", False),
        ("dir/*/cat", "dir/a/b/cat", True),
        ("a\\*b", "a*b", True),
        ("a\\*b", "axxb", False),
        ("exact", "exact", True),
    ],
)
def test_wildcard(pattern, value, expected):
    assert data_matches({"f": [{"wildcard": pattern}]}, {"f": value}) is expected


def test_dollar_or_matches_either_branch():
    rule = {"$or": [{"Location": ["New York"]}, {"Day": ["Monday"]}]}
    assert data_matches(rule, {"Location": "New York", "Day": "Friday"})
    assert data_matches(rule, {"Location": "Paris", "Day": "Monday"})
    assert not data_matches(rule, {"Location": "Paris", "Day": "Friday"})


def test_nested_fields():
    rule = {"order": {"type": ["buy"]}}
    assert data_matches(rule, {"record": 12345, "order": {"type": "buy", "stock": "ANYCO"}})
    assert not data_matches(rule, {"record": 12345, "order": {"type": "sell"}})


def test_an_array_in_the_record_matches_when_any_element_does():
    assert data_matches({"tags": ["red"]}, {"tags": ["blue", "red"]})
    assert not data_matches({"tags": ["red"]}, {"tags": ["blue"]})
    assert data_matches(
        {"items": {"sku": [{"prefix": "A"}]}}, {"items": [{"sku": "B"}, {"sku": "A1"}]}
    )


def test_numbers_and_booleans_match_by_type_too():
    # Lambda compares numbers by representation: 300 is not 300.0.
    assert not data_matches({"n": [300]}, {"n": 300.0})
    assert data_matches({"n": [300]}, {"n": 300})
    assert not data_matches({"flag": [True]}, {"flag": 1})
    assert data_matches({"flag": [True]}, {"flag": True})


# --- Kinesis: only the data key, and only JSON data -----------------------------------------


def test_kinesis_doc_example_filters_on_decoded_data():
    # with-kinesis-filtering.html: the order type is "buy".
    pattern = '{ "data" : { "order" : { "type" : [ "buy" ] } } }'
    record = {"record": 12345, "order": {"type": "buy", "stock": "ANYCO", "quantity": 1000}}
    assert matches(criteria(pattern), kinesis(record))
    record["order"]["type"] = "sell"
    assert not matches(criteria(pattern), kinesis(record))


@pytest.mark.parametrize(
    "payload", [b"not json", b"\xff\xfe", b""], ids=["text", "not-utf8", "empty"]
)
def test_kinesis_non_json_data_is_dropped_by_a_data_filter(payload):
    assert not matches(criteria({"data": {"x": [{"exists": False}]}}), kinesis(payload))
    assert not matches(criteria({"data": [{"exists": False}]}), kinesis(payload))


def test_kinesis_filters_only_on_data_not_on_metadata():
    # with-kinesis-filtering.html: "Kinesis event source mappings only support filtering on
    # the data key" - a pattern on partitionKey finds nothing to match.
    assert not matches(criteria({"partitionKey": ["1"]}), kinesis({"a": 1}))
    assert not matches(criteria({"kinesis": {"partitionKey": ["1"]}}), kinesis({"a": 1}))


def test_kinesis_json_scalar_data_can_be_matched():
    assert matches(criteria({"data": ["hello"]}), kinesis("hello"))


# --- DynamoDB: typed images and the event name ---------------------------------------------


def test_dynamodb_filter_on_table_keys():
    pattern = (
        '{ "dynamodb" : { "Keys" : { "CustomerName" : { "S" : [ "AnyCompany Industries" ] } } } }'
    )
    record = dynamodb(Keys={"CustomerName": {"S": "AnyCompany Industries"}})
    assert matches(criteria(pattern), record)
    other = dynamodb(Keys={"CustomerName": {"S": "Other"}})
    assert not matches(criteria(pattern), other)


def test_dynamodb_filter_on_new_image_attribute():
    rule = {"dynamodb": {"NewImage": {"status": {"S": ["open"]}}}}
    assert matches(criteria(rule), dynamodb(NewImage={"status": {"S": "open"}}))
    assert not matches(criteria(rule), dynamodb(NewImage={"status": {"S": "closed"}}))
    assert not matches(criteria(rule), dynamodb("REMOVE", OldImage={"status": {"S": "open"}}))


def test_dynamodb_number_attribute_equals_its_string_and_compares_numerically():
    # invocation-eventfiltering.html's multi-level example: "N": [ "101" ].
    record = dynamodb(Keys={"Id": {"N": "101"}})
    assert matches(criteria({"dynamodb": {"Keys": {"Id": {"N": ["101"]}}}}), record)
    assert matches(
        criteria({"dynamodb": {"Keys": {"Id": {"N": [{"numeric": [">", 100]}]}}}}), record
    )
    assert not matches(
        criteria({"dynamodb": {"Keys": {"Id": {"N": [{"numeric": ["<", 100]}]}}}}), record
    )


def test_dynamodb_filter_on_event_name():
    rule = {"eventName": ["INSERT", "MODIFY"]}
    assert matches(criteria(rule), dynamodb("MODIFY"))
    assert not matches(criteria(rule), dynamodb("REMOVE"))


# --- criteria as a whole ---------------------------------------------------------------------


def test_filters_are_ored():
    both = criteria({"data": {"a": [1]}}, {"data": {"b": [2]}})
    assert matches(both, kinesis({"b": 2}))
    assert not matches(both, kinesis({"a": 2, "b": 1}))


@pytest.mark.parametrize("empty", [None, {}, {"Filters": []}], ids=["none", "empty", "no-filters"])
def test_no_filters_deliver_everything(empty):
    assert matches(empty, kinesis(b"anything"))


def test_five_filters_are_accepted():
    validate(criteria(*({"data": {"n": [i]}} for i in range(5))))


@pytest.mark.parametrize(
    ("filter_criteria", "message"),
    [
        pytest.param(
            criteria(*({"data": {"n": [i]}} for i in range(6))), "at most 5", id="six-filters"
        ),
        pytest.param(criteria("{not json"), "not JSON", id="not-json"),
        pytest.param(criteria("[1, 2]"), "object", id="not-an-object"),
        pytest.param(criteria("{}"), "object", id="empty-object"),
        pytest.param(criteria({"a": "x"}), "must be a list", id="rule-not-a-list"),
        pytest.param(criteria({"a": 5}), "must be a list", id="number-not-a-list"),
        pytest.param(criteria({"a": [{"regex": "x"}]}), "unknown operator", id="unknown-operator"),
        pytest.param(criteria({"a": [{"prefix": 5}]}), "invalid prefix", id="prefix-not-string"),
        pytest.param(criteria({"a": [{"exists": "yes"}]}), "invalid exists", id="exists-not-bool"),
        pytest.param(
            criteria({"a": [{"numeric": [">", "5"]}]}), "invalid numeric", id="numeric-str"
        ),
        pytest.param(
            criteria({"a": [{"numeric": [">", 5, ">", 6]}]}), "invalid numeric", id="two-lower"
        ),
        pytest.param(
            criteria({"a": [{"numeric": [">", 9, "<", 1]}]}), "invalid numeric", id="empty-range"
        ),
        pytest.param(
            criteria({"a": [{"numeric": ["!=", 1]}]}), "invalid numeric", id="bad-comparison"
        ),
        pytest.param(
            criteria({"a": [{"prefix": "x", "suffix": "y"}]}), "one-operator", id="two-ops"
        ),
        pytest.param(criteria({"a": [{"wildcard": "a**b"}]}), "invalid wildcard", id="double-star"),
        pytest.param(
            criteria({"a": [{"anything-but": []}]}), "invalid anything-but", id="empty-but"
        ),
        pytest.param(criteria({"$or": [{"a": [1]}]}), "at least two", id="or-of-one"),
        pytest.param({"Filters": [{"pattern": "{}"}]}, "Pattern string", id="no-pattern-key"),
        pytest.param({"Filters": "x"}, "must be a list", id="filters-not-list"),
        pytest.param({"Filter": []}, "unknown keys", id="misspelt-filters"),
        pytest.param(criteria({"a": ["x" * 5000]}), "4096", id="pattern-too-long"),
    ],
)
def test_malformed_criteria_are_refused(filter_criteria, message):
    with pytest.raises(FilterError, match=message):
        validate(filter_criteria)
    with pytest.raises(ValueError):
        matches(filter_criteria, kinesis({"a": 1}))


# --- properties ------------------------------------------------------------------------------

_texts = st.text(max_size=8)


@given(value=_texts, excluded=st.lists(_texts, min_size=1, max_size=4))
def test_anything_but_is_the_complement_of_equals_for_strings(value, excluded):
    equals = data_matches({"v": excluded}, {"v": value})
    anything_but = data_matches({"v": [{"anything-but": excluded}]}, {"v": value})
    assert equals is not anything_but


@given(value=_texts, prefix=_texts)
def test_prefix_is_the_complement_of_anything_but_prefix(value, prefix):
    has_prefix = data_matches({"v": [{"prefix": prefix}]}, {"v": value})
    assert has_prefix is value.startswith(prefix)
    assert (
        data_matches({"v": [{"anything-but": {"prefix": prefix}}]}, {"v": value}) is not has_prefix
    )


@given(value=st.text(alphabet="ab*", max_size=8), pattern=st.text(alphabet="ab", max_size=4))
def test_a_wildcard_without_stars_is_equals(value, pattern):
    assert data_matches({"v": [{"wildcard": pattern}]}, {"v": value}) is (value == pattern)
