"""`python -m esm invoke`: one invocation in a worker, and what Lambda would do with it.

Exit 0 when the function returned (whatever it reported), 1 on a function error, 2 on bad
input (one line on stderr, no traceback). No server: the handlers are in esm_handlers.py.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from conftest import CODE_DIR

from esm.cli import main
from esm.invoker import ErrorKind, FunctionError, Invocation
from esm.oneshot import Mapping, explain
from esm.sample_events import kinesis_event, sample_records

SEQUENCE_NUMBERS = [
    "49590338271490256608559692538361571095921575989136588898",
    "49590338271490256608559692540925702759324208523137515618",
    "49590338271490256608559692543489834422726841057138442338",
]


def _write_event(tmp_path: Path, poison_every: int = 0, count: int = 3) -> Path:
    records = sample_records(count, 2, poison_every=poison_every)
    path = tmp_path / "event.json"
    path.write_text(json.dumps(kinesis_event(records)))
    return path


def _invoke(capsys, event: Path | str, handler: str, *flags: str) -> tuple[int, object, list]:
    code = main(
        ["invoke", "--handler", f"esm_handlers.{handler}", "--code-dir", str(CODE_DIR)]
        + ["--event", str(event), *flags]
    )
    captured = capsys.readouterr()
    response = json.loads(captured.out) if captured.out else None
    explanation = [line for line in captured.err.splitlines() if line.startswith("[esm] ")]
    return code, response, explanation


def test_success_moves_the_checkpoint_past_the_last_record(tmp_path, capsys):
    code, response, explanation = _invoke(
        capsys, _write_event(tmp_path), "report_poison", "--report-batch-item-failures"
    )

    assert code == 0
    assert response == {"batchItemFailures": []}
    assert explanation == [
        f"[esm] all 3 records succeeded: the checkpoint moves past {SEQUENCE_NUMBERS[2]}"
    ]


def test_partial_failure_retries_from_the_lowest_named_record(tmp_path, capsys):
    code, response, explanation = _invoke(
        capsys,
        _write_event(tmp_path, poison_every=2),
        "report_poison",
        "--report-batch-item-failures",
    )

    assert code == 0
    assert response == {"batchItemFailures": [{"itemIdentifier": SEQUENCE_NUMBERS[1]}]}
    (line,) = explanation
    assert f"batchItemFailures names {SEQUENCE_NUMBERS[1]}, record 2 of 3" in line
    assert "records from it on (2) are retried" in line
    assert (
        f"the record before it is checkpointed (the checkpoint moves past {SEQUENCE_NUMBERS[0]})"
        in line
    )


def test_without_report_batch_item_failures_the_response_is_not_read(tmp_path, capsys):
    code, _, explanation = _invoke(capsys, _write_event(tmp_path, poison_every=2), "report_poison")

    assert code == 0
    (line,) = explanation
    assert f"all 3 records are done, the checkpoint moves past {SEQUENCE_NUMBERS[2]}" in line
    assert "--report-batch-item-failures" in line


def test_an_invalid_batch_response_retries_the_whole_batch(tmp_path, capsys):
    code, _, explanation = _invoke(
        capsys, _write_event(tmp_path), "empty_identifier", "--report-batch-item-failures"
    )

    assert code == 0
    (line,) = explanation
    assert line.startswith("[esm] invalid batch response (itemIdentifier is null, empty")
    assert f"the whole batch of 3 records is retried from {SEQUENCE_NUMBERS[0]}" in line


def test_a_raised_error_is_a_function_error_with_the_bisect_split(tmp_path, capsys):
    code, response, explanation = _invoke(
        capsys, _write_event(tmp_path, poison_every=3), "raise_on_poison"
    )

    assert code == 1
    assert response == {"errorType": "ValueError", "errorMessage": "poison in batch"}
    retried, split = explanation
    assert retried.startswith("[esm] function error (Unhandled: ValueError: poison in batch)")
    assert f"the whole batch of 3 records is retried from {SEQUENCE_NUMBERS[0]}" in retried
    assert split.startswith("[esm] with --bisect-batch-on-function-error it would be split")
    first, second, third = SEQUENCE_NUMBERS
    assert f"into 2 + 1 ({first}..{second}, then {third};" in split


def test_with_bisect_on_the_batch_is_split(tmp_path, capsys):
    _, _, explanation = _invoke(
        capsys,
        _write_event(tmp_path, poison_every=3),
        "raise_on_poison",
        "--bisect-batch-on-function-error",
    )

    assert explanation[1].startswith("[esm] with BisectBatchOnFunctionError it is split into 2 + 1")


def test_a_timeout_is_a_function_error(tmp_path, capsys):
    code, response, explanation = _invoke(
        capsys, _write_event(tmp_path, poison_every=1), "sleep_on_poison", "--timeout", "0.5"
    )

    assert code == 1
    assert response["errorMessage"] == "Task timed out after 0.50 seconds"
    assert explanation[0].startswith("[esm] function error (Timeout: ")
    assert "the whole batch of 3 records is retried" in explanation[0]


def test_a_crash_is_a_function_error(tmp_path, capsys):
    code, response, explanation = _invoke(
        capsys, _write_event(tmp_path, poison_every=1), "exit_on_poison"
    )

    assert code == 1
    assert response == {
        "errorType": "Runtime.ExitError",
        "errorMessage": "Runtime exited with error: exit status 3",
    }
    assert explanation[0].startswith("[esm] function error (Crash: Runtime.ExitError: ")


def test_a_single_record_cannot_be_bisected(tmp_path, capsys):
    _, _, explanation = _invoke(
        capsys, _write_event(tmp_path, poison_every=1, count=1), "raise_on_poison"
    )

    assert (
        explanation[1] == "[esm] a batch of one record cannot be bisected: it is retried as it is"
    )


def test_the_handler_gets_a_lambda_context_and_environment(tmp_path, capsys):
    code, response, _ = _invoke(
        capsys,
        _write_event(tmp_path),
        "echo_environment",
        "--env",
        "GREETING=hello",
        "--timeout",
        "5",
        "--function-name",
        "orders",
    )

    assert code == 0
    assert response["records"] == 3
    assert response["greeting"] == "hello"
    assert response["functionName"] == "orders"
    assert response["invokedFunctionArn"] == "arn:aws:lambda:us-east-1:123456789012:function:orders"
    assert 3000 < response["remainingMs"] <= 5000


def test_the_event_can_come_from_stdin(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(_write_event(tmp_path).read_text()))

    code, response, _ = _invoke(capsys, "-", "report_poison")

    assert code == 0 and response == {"batchItemFailures": []}


def _bad_input_cases(tmp_path: Path) -> dict[str, tuple[str, str, str]]:
    good = _write_event(tmp_path)
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text('{"Records": [')
    not_a_batch = tmp_path / "scheduled.json"
    not_a_batch.write_text('{"detail-type": "Scheduled Event"}')
    empty = tmp_path / "empty.json"
    empty.write_text('{"Records": []}')
    no_sequence = tmp_path / "no-sequence.json"
    no_sequence.write_text('{"Records": [{"eventSource": "aws:kinesis", "kinesis": {}}]}')
    return {
        "missing-file": (str(tmp_path / "nope.json"), "report_poison", "cannot read the event"),
        "corrupt-json": (str(corrupt), "report_poison", "is not JSON"),
        "not-a-batch": (str(not_a_batch), "report_poison", "no 'Records' list"),
        "no-records": (str(empty), "report_poison", "has no records"),
        "no-sequence-number": (str(no_sequence), "report_poison", "has no kinesis.sequenceNumber"),
        "no-such-function": (str(good), "no_such_function", "does not import"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "missing-file",
        "corrupt-json",
        "not-a-batch",
        "no-records",
        "no-sequence-number",
        "no-such-function",
    ],
)
def test_bad_input_is_one_line_and_exit_2(case, tmp_path, capsys):
    event, handler, expected = _bad_input_cases(tmp_path)[case]

    code = main(
        ["invoke", "--handler", f"esm_handlers.{handler}", "--code-dir", str(CODE_DIR)]
        + ["--event", event]
    )

    assert code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("[esm] ") and expected in err[0], err


def test_a_module_that_does_not_import_is_one_line_and_exit_2(tmp_path, capsys):
    code = main(
        ["invoke", "--handler", "no_such_module.handler", "--code-dir", str(CODE_DIR)]
        + ["--event", str(_write_event(tmp_path))]
    )

    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "[esm] handler no_such_module.handler does not import: No module named 'no_such_module'"
    ]


@pytest.mark.parametrize(
    "flags",
    [
        pytest.param(["--handler", "nodot"], id="handler-without-module"),
        pytest.param(["--handler", "a.b", "--timeout", "0"], id="zero-timeout"),
        pytest.param(["--handler", "a.b", "--env", "NOEQUALS"], id="env-not-a-pair"),
    ],
)
def test_bad_flags_are_one_line_and_exit_2(flags, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["invoke", "--event", "x.json", *flags])

    assert exit_.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


# --- the explanation alone (pure) ------------------------------------------------------------


def test_a_failure_at_the_first_record_checkpoints_nothing():
    invocation = Invocation("r", response={"batchItemFailures": [{"itemIdentifier": "10"}]})

    (line,) = explain(invocation, ["10", "20"], Mapping(report_batch_item_failures=True))

    assert line == (
        "batchItemFailures names 10, record 1 of 2: records from it on (2) are retried, "
        "nothing is checkpointed"
    )


@pytest.mark.parametrize("response", [None, "", [], {}, {"batchItemFailures": []}])
def test_every_success_response_checkpoints_the_batch(response):
    (line,) = explain(Invocation("r", response=response), ["1", "2"], Mapping(True))

    assert line == "all 2 records succeeded: the checkpoint moves past 2"


def test_a_timeout_names_its_kind():
    error = FunctionError(ErrorKind.TIMEOUT, "Timeout", "Task timed out after 3.00 seconds")

    lines = explain(Invocation("r", error=error), ["1", "2", "3", "4"], Mapping(False, True))

    assert lines[0].startswith("function error (Timeout: Task timed out")
    assert lines[1].startswith(
        "with BisectBatchOnFunctionError it is split into 2 + 2 (1..2, then 3..4"
    )
