"""The manifest load.py writes and verify.py checks against: one definition, both directions.

A manifest belongs to one run of load.py. The run id is part of every key the run sends
(`k-<run>-0001`, `d-<run>-0001`), so two runs against one stack never share a key, and
verify.py can tell this run's sink rows from other runs'. The body is sealed with a SHA-256
digest over its canonical JSON: a manifest edited by hand, truncated or half-written is
refused rather than verified. load.py writes the manifest, marked incomplete, before it
sends anything, and again when it is done: a load that was killed leaves an incomplete
manifest behind, never the previous run's.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from pathlib import Path
from typing import Literal, NotRequired, TypedDict

from esm.private_files import write_private_atomically

MANIFEST_VERSION = 2
RUN_ID_PATTERN = re.compile(r"[a-z0-9]{1,16}")
KEY_PREFIXES = {"kinesis": "k-", "dynamodb": "d-"}


class ManifestEvent(TypedDict):
    source: Literal["kinesis", "dynamodb"]
    key: str
    n: int
    payload: str
    payloadSha256: str
    poison: bool
    # Only for a poison event sent to break the event's contract (load --poison-kind): verify
    # then expects it parked at once as InvalidPayloadError.
    poisonKind: NotRequired[Literal["contract"]]
    # Kinesis, once the stream accepted the event:
    shardId: NotRequired[str]
    sequenceNumber: NotRequired[str]
    subSequenceNumber: NotRequired[int]


class Manifest(TypedDict):
    version: int  # MANIFEST_VERSION
    runId: str
    createdAt: str
    complete: bool  # false until every event was accepted
    seed: int
    aggregated: bool
    stack: dict[str, str]  # the resources the events went to
    eventCount: int
    events: list[ManifestEvent]
    sha256: str  # digest(manifest without this field)


class ManifestError(Exception):
    """The manifest cannot be verified against: missing, unreadable, modified or incomplete."""


def new_run_id() -> str:
    return secrets.token_hex(4)


def run_key(source: str, run_id: str, number: int, width: int) -> str:
    return f"{KEY_PREFIXES[source]}{run_id}-{number:0{width}d}"


def belongs_to_run(key: str, run_id: str) -> bool:
    """A key named by `run_key` for this run (whichever source)."""
    return any(key.startswith(f"{prefix}{run_id}-") for prefix in KEY_PREFIXES.values())


def digest(manifest: dict) -> str:
    """SHA-256 of the manifest's canonical JSON, the `sha256` field left out."""
    body = {name: value for name, value in manifest.items() if name != "sha256"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def payload_sha256(payload: str) -> str:
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def write_manifest(path: Path, manifest: Manifest) -> None:
    """Seal and write atomically: a reader sees the old file or the new one, never half. The
    manifest holds every event's payload, so only its owner may read it (0600; directories
    created for it 0700)."""
    manifest["sha256"] = digest(manifest)
    write_private_atomically(Path(path), json.dumps(manifest, separators=(",", ":")) + "\n")


def read_manifest(path: Path) -> Manifest:
    """The manifest at `path`, checked: sealed, complete, non-empty and well-formed."""
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise ManifestError(f"manifest {path} does not exist: run load.py first") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"cannot read manifest {path}: {exc}") from exc
    except ValueError as exc:
        raise ManifestError(f"manifest {path} is not JSON: {exc}") from exc
    if not isinstance(manifest, dict):
        raise ManifestError(
            f"manifest {path} holds a JSON {type(manifest).__name__}, not an object"
        )
    if manifest.get("version") != MANIFEST_VERSION:
        raise ManifestError(
            f"manifest {path} has version {manifest.get('version')!r}, this verify.py reads "
            f"version {MANIFEST_VERSION}: run load.py again"
        )
    if not isinstance(manifest.get("sha256"), str):
        raise ManifestError(f"manifest {path} carries no sha256 digest")
    if digest(manifest) != manifest["sha256"]:
        raise ManifestError(
            f"manifest {path} was modified after load.py wrote it (its sha256 does not match)"
        )
    problem = _shape_problem(manifest)
    if problem:
        raise ManifestError(f"manifest {path}: {problem}")
    if not manifest["complete"]:
        raise ManifestError(
            f"manifest {path} is incomplete: load.py (run {manifest['runId']}) stopped before "
            "every event was accepted, so what reached the stack is unknown; load again"
        )
    if not manifest["events"]:
        raise ManifestError(f"manifest {path} lists no events: there is nothing to verify")
    return manifest  # type: ignore[return-value]


_FIELDS: dict[str, type] = {
    "runId": str,
    "createdAt": str,
    "complete": bool,
    "seed": int,
    "aggregated": bool,
    "stack": dict,
    "eventCount": int,
    "events": list,
}
_EVENT_FIELDS: dict[str, type] = {
    "key": str,
    "n": int,
    "payload": str,
    "payloadSha256": str,
    "poison": bool,
}


def _shape_problem(manifest: dict) -> str | None:
    """What is wrong with a sealed manifest's fields, or None (the digest proves no edit,
    not that the writer was right)."""
    for name, kind in _FIELDS.items():
        if not isinstance(manifest.get(name), kind):
            return f"field {name!r} must be {_type_name(kind)}"
    if not RUN_ID_PATTERN.fullmatch(manifest["runId"]):
        return f"run id {manifest['runId']!r} is not 1-16 lowercase letters and digits"
    events = manifest["events"]
    if manifest["eventCount"] != len(events):
        return f"eventCount is {manifest['eventCount']} but {len(events)} events are listed"
    seen: set[tuple[str, int]] = set()
    for index, event in enumerate(events):
        if not isinstance(event, dict):
            return f"event {index} is not an object"
        if event.get("source") not in KEY_PREFIXES:
            return f"event {index}: source {event.get('source')!r} is not kinesis or dynamodb"
        for name, kind in _EVENT_FIELDS.items():
            value = event.get(name)
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                return f"event {index}: {name!r} must be {_type_name(kind)}"
        if event["n"] < 1:
            return f"event {index}: n={event['n']} (events are numbered from 1)"
        if payload_sha256(event["payload"]) != event["payloadSha256"]:
            return f"event {index}: payload does not match its payloadSha256"
        if (event["key"], event["n"]) in seen:
            return f"event {index}: {event['key']} n={event['n']} is listed twice"
        seen.add((event["key"], event["n"]))
    return None


def _type_name(kind: type) -> str:
    return {
        str: "a string",
        int: "an integer",
        bool: "a boolean",
        dict: "an object",
        list: "a list",
    }[kind]
