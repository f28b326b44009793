"""Fixtures for the Terraform tests: the terraform binary, the parsed real configuration and a
generated, initialised offline copy.

The tests need `terraform` on the PATH; without it they fail and say so, they do not skip.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import hcl2
import pytest

from streamline.infra import offline
from streamline.paths import REPO_ROOT

REAL_CONFIG_DIR = REPO_ROOT / "infra" / "terraform"
MODULE_DIR = REAL_CONFIG_DIR / "modules" / "ordered-processor"
MIRROR_DIR = REPO_ROOT / "build" / "terraform-mirror"


@pytest.fixture(scope="session")
def terraform() -> str:
    """The binary; without one every test that needs it fails with how to install it."""
    try:
        return offline.terraform_binary()
    except FileNotFoundError as exc:
        pytest.fail(f"the infra tests need Terraform: {exc}", pytrace=False)


def _unquote(value: Any) -> Any:
    """python-hcl2 keeps string literals quoted ('"pk"'); expressions come as '${...}'."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def normalise(node: Any) -> Any:
    """python-hcl2's output without its markers and quotes, for plain comparisons."""
    if isinstance(node, dict):
        return {
            _unquote(key): normalise(value)
            for key, value in node.items()
            if key not in ("__is_block__", "__comments__")
        }
    if isinstance(node, list):
        return [normalise(item) for item in node]
    return _unquote(node)


def load_configuration(*directories: Path) -> dict[str, Any]:
    """Every *.tf of the directories, merged by block type and labels.

    {"resource": {type: {name: body}}, "variable": {name: body}, "output": {...},
     "provider": {name: body}, "locals": {name: expr}, "module": {name: body},
     "terraform": [body, ...]}
    Nested blocks stay lists of bodies, as python-hcl2 gives them.
    """
    merged: dict[str, Any] = {
        "resource": {},
        "data": {},
        "variable": {},
        "output": {},
        "provider": {},
        "locals": {},
        "module": {},
        "terraform": [],
    }
    for path in sorted(p for directory in directories for p in directory.glob("*.tf")):
        with path.open() as handle:
            parsed = normalise(hcl2.load(handle))
        for kind, blocks in parsed.items():
            for block in blocks:
                if kind in ("resource", "data"):
                    for type_, named in block.items():
                        merged[kind].setdefault(type_, {}).update(named)
                elif kind in ("variable", "output", "provider", "locals", "module"):
                    merged[kind].update(block)
                else:
                    merged[kind].append(block)
    return merged


@pytest.fixture(scope="session")
def real_config() -> dict[str, Any]:
    """The demo stack and the module it calls, as one configuration."""
    return load_configuration(REAL_CONFIG_DIR, MODULE_DIR)


@pytest.fixture(scope="session")
def module_config() -> dict[str, Any]:
    """The module alone: what a user's configuration calls."""
    return load_configuration(MODULE_DIR)


@pytest.fixture(scope="session")
def root_config() -> dict[str, Any]:
    """The demo stack alone (its own resources, variables, outputs and the module call)."""
    return load_configuration(REAL_CONFIG_DIR)


@pytest.fixture(scope="session")
def offline_copy(terraform, tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A freshly generated 3.39 copy, `terraform init`-ed from the mirror; (dir, env)."""
    work_dir = tmp_path_factory.mktemp("offline-copy")
    offline.write_offline_copy(work_dir)
    env = {
        **os.environ,
        "TF_CLI_CONFIG_FILE": str(offline.prepare_provider_mirror(MIRROR_DIR)),
    }
    result = subprocess.run(
        [terraform, f"-chdir={work_dir}", "init", "-input=false", "-no-color", "-backend=false"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return work_dir, env
