"""Reading the small JSON files the tools keep (the stack file, the emulator's state file),
with the one-line errors the command lines print."""

from __future__ import annotations

import json
from pathlib import Path


def read_json(
    path: Path, error: type[Exception], what: str, missing: str, not_json: str = ""
) -> object:
    """The JSON value in `path` (`what` names the file in messages), or `error` with one line:
    `missing` when there is no such file, the reason when it cannot be read or parsed
    (`not_json` appended then: what to do about it)."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise error(missing) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"cannot read {what} {path}: {exc}") from exc
    except ValueError as exc:
        raise error(f"{what} {path} is not JSON: {exc}{not_json}") from exc
