"""streamline/tools/stack.py: the tools read make infra-up's flat JSON, `terraform output -json`, or
flags that override either."""

from __future__ import annotations

import argparse
import json

from streamline.tools.stack import add_stack_arguments, resolve_stack


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_stack_arguments(parser, "sink_table_name", "poison_queue_url")
    return parser.parse_args(argv)


def test_flat_outputs_are_read_as_they_are(tmp_path):
    path = tmp_path / "stack.json"
    path.write_text(json.dumps({"sink_table_name": "sink", "poison_queue_url": "http://q"}))

    stack = resolve_stack(parse("--stack", str(path)), "sink_table_name", "poison_queue_url")

    assert (stack["sink_table_name"], stack["poison_queue_url"]) == ("sink", "http://q")


def test_terraform_output_json_values_are_unwrapped(tmp_path):
    path = tmp_path / "outputs.json"
    path.write_text(
        json.dumps({"sink_table_name": {"sensitive": False, "type": "string", "value": "sink"}})
    )

    stack = resolve_stack(parse("--stack", str(path)), "sink_table_name")

    assert stack["sink_table_name"] == "sink"


def test_a_flag_overrides_the_file_and_missing_names_are_none(tmp_path):
    path = tmp_path / "stack.json"
    path.write_text(json.dumps({"sink_table_name": "sink"}))

    stack = resolve_stack(
        parse("--stack", str(path), "--sink-table-name", "other"),
        "sink_table_name",
        "poison_queue_url",
    )

    assert stack["sink_table_name"] == "other"
    assert stack["poison_queue_url"] is None
