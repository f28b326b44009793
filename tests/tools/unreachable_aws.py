"""AWS out of reach, for the tools' bad-input tests: an endpoint nothing listens on, or no
credentials anywhere boto3 looks. Set with pytest's monkeypatch, so each test undoes them."""

from __future__ import annotations

import boto3

from streamline.emulator import free_port

CREDENTIAL_VARIABLES = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
)


def unreachable_endpoint(monkeypatch, max_attempts: int = 2) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", str(max_attempts))


def no_credentials(monkeypatch, tmp_path) -> None:
    for name in CREDENTIAL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    # replay builds its clients from boto3's default session, which may hold credentials.
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
