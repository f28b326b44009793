"""Fixtures shared by every test folder.

Integration tests talk to a real AWS endpoint over HTTP: moto's server, started here on
127.0.0.1 with a free port and stopped by PID, or, when AWS_ENDPOINT_URL is set, whatever
runs there (a LocalStack, say). Resources get unique names, so tests never depend on a reset.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import boto3
import pytest

from scripts.emulator import EMULATOR_ENV, Emulator


@pytest.fixture(scope="session")
def aws_endpoint(tmp_path_factory) -> Iterator[str]:
    """The endpoint every integration test talks to; the process env points at it too."""
    saved = dict(os.environ)
    external = os.environ.get("AWS_ENDPOINT_URL")
    emulator = None
    if external:
        endpoint = external
        for name, value in EMULATOR_ENV.items():
            os.environ.setdefault(name, value)
    else:
        log = tmp_path_factory.mktemp("emulator") / "moto.log"
        emulator = Emulator.start(log_path=log)
        endpoint = emulator.endpoint
        os.environ.update(emulator.env())
    try:
        yield endpoint
    finally:
        if emulator is not None:
            emulator.stop()
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(scope="session")
def aws_session(aws_endpoint) -> boto3.Session:
    return boto3.Session(region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))


@pytest.fixture
def unique_name(request) -> str:
    """A resource name no other test uses: test name plus a random suffix, AWS-safe."""
    base = "".join(c if c.isalnum() else "-" for c in request.node.name)[:40].strip("-")
    return f"{base}-{uuid.uuid4().hex[:8]}"
