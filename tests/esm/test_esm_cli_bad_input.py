"""`python -m esm run` given what it cannot use: one line, exit 2, no traceback."""

from __future__ import annotations

import pytest

from esm.cli import main
from streamline.emulator import free_port


@pytest.mark.integration
def test_a_function_the_endpoint_does_not_have_is_named(aws_endpoint, capsys):
    assert main(["run", "--function-name", "no-such-function"]) == 2

    err = capsys.readouterr().err
    assert "function 'no-such-function' is not at the endpoint" in err
    assert "Traceback" not in err


def test_an_unreachable_endpoint_is_one_line(monkeypatch, capsys):
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")

    assert main(["run", "--function-name", "f"]) == 2

    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot reach the endpoint" in err[0]


@pytest.mark.parametrize(
    "flag", ["--until-idle", "--poll-interval", "--retry-backoff", "--progress-interval"]
)
@pytest.mark.parametrize("value", ["-1", "nan", "inf", "soon"])
def test_a_duration_must_be_zero_or_more_seconds(flag, value, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--function-name", "f", flag, value])

    assert exit_.value.code == 2
    assert flag in capsys.readouterr().err


def test_no_region_is_one_line(monkeypatch, tmp_path, capsys):
    for name in ("AWS_DEFAULT_REGION", "AWS_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))

    assert main(["run", "--function-name", "f"]) == 2

    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["[esm] cannot start: no AWS region: set AWS_DEFAULT_REGION (or AWS_REGION)"]


def test_a_stream_that_cannot_be_read_stops_it_at_once(monkeypatch, capsys):
    # The runner would retry listing shards for ever; the CLI asks once before it starts.
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    arn = "arn:aws:kinesis:us-east-1:000000000000:stream/s"

    assert main(["run", "--stream-arn", arn, "--handler", "a.b"]) == 2

    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"[esm] cannot read {arn}: cannot reach")


@pytest.mark.integration
def test_a_stream_the_endpoint_does_not_have_is_named(aws_endpoint, capsys):
    arn = "arn:aws:kinesis:us-east-1:123456789012:stream/no-such-stream"

    assert main(["run", "--stream-arn", arn, "--handler", "a.b"]) == 2

    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"[esm] cannot read {arn}: it is not at the endpoint: check the ARN and AWS_ENDPOINT_URL"
    ]
