"""The pure parts of streamline/infra/stack.py: endpoints from the environment, --var flags."""

from __future__ import annotations

import pytest

from streamline.infra.offline import terraform_binary
from streamline.infra.stack import endpoint_variables, parse_assignments


def test_no_endpoint_variables_means_aws_with_every_check():
    assert endpoint_variables({}) == {"endpoint_url": None, "endpoints": {}, "emulator": False}


def test_aws_endpoint_url_reaches_every_service_and_marks_an_emulator():
    env = {"AWS_ENDPOINT_URL": "http://127.0.0.1:4566"}
    assert endpoint_variables(env) == {
        "endpoint_url": "http://127.0.0.1:4566",
        "endpoints": {},
        "emulator": True,
    }


def test_per_service_variables_become_per_service_endpoints():
    env = {
        "AWS_ENDPOINT_URL": "http://127.0.0.1:5000",
        "AWS_ENDPOINT_URL_KINESIS": "http://127.0.0.1:4567",
        "AWS_ENDPOINT_URL_CLOUDWATCH_LOGS": "http://127.0.0.1:4568",
        "AWS_ENDPOINT_URL_SQS": "",
    }
    assert endpoint_variables(env)["endpoints"] == {
        "kinesis": "http://127.0.0.1:4567",
        "logs": "http://127.0.0.1:4568",
    }


def test_var_flags_take_json_values_and_fall_back_to_strings():
    flags = ["shard_count=3", "bisect_batch_on_function_error=false", 'tags={"a":"b"}', "name=x-1"]
    assert parse_assignments(flags) == {
        "shard_count": 3,
        "bisect_batch_on_function_error": False,
        "tags": {"a": "b"},
        "name": "x-1",
    }


@pytest.mark.parametrize("flag", ["shard_count", "=3"])
def test_var_flags_without_a_name_and_value_are_refused(flag):
    with pytest.raises(SystemExit):
        parse_assignments([flag])


def test_missing_terraform_is_an_error_that_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="terraform not found on PATH.*install"):
        terraform_binary()
