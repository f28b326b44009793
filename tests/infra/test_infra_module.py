"""The module (infra/terraform/modules/ordered-processor/) as a user calls it: the README's
example configuration validates, a mistake in it does not, and the offline copy carries the
module along with whoever calls it."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import hcl2
import pytest
from conftest import normalise

from streamline.infra import offline
from streamline.paths import REPO_ROOT

REAL_CONFIG_DIR = REPO_ROOT / "infra" / "terraform"
EXAMPLE_DIR = REAL_CONFIG_DIR / "examples" / "orders"
MIRROR_DIR = REPO_ROOT / "build" / "terraform-mirror"


def _validate(terraform: str, config_dir: Path, work_dir: Path) -> subprocess.CompletedProcess:
    """`terraform validate` of a configuration's offline copy (provider 3.39 from the mirror:
    the modern provider cannot be downloaded here), module included."""
    offline.write_offline_copy(work_dir, config_dir)
    env = {**os.environ, "TF_CLI_CONFIG_FILE": str(offline.prepare_provider_mirror(MIRROR_DIR))}
    init = subprocess.run(
        [terraform, f"-chdir={work_dir}", "init", "-input=false", "-no-color", "-backend=false"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert init.returncode == 0, init.stdout + init.stderr
    return subprocess.run(
        [terraform, f"-chdir={work_dir}", "validate", "-no-color"],
        env=env,
        capture_output=True,
        text=True,
    )


def test_the_readme_example_calling_the_module_validates(terraform, tmp_path):
    result = _validate(terraform, EXAMPLE_DIR, tmp_path / "copy")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "The configuration is valid" in result.stdout


def test_a_misspelt_module_input_fails_validation(terraform, tmp_path):
    # Given the example and the module, side by side as in the repository, one input misspelt
    tree = tmp_path / "terraform"
    shutil.copytree(EXAMPLE_DIR, tree / "examples" / "orders")
    shutil.copytree(REAL_CONFIG_DIR / "modules", tree / "modules")
    main = tree / "examples" / "orders" / "main.tf"
    main.write_text(main.read_text().replace("  batch_size ", "  batch_sizes "))

    # Then validation fails, naming it
    result = _validate(terraform, main.parent, tmp_path / "copy")
    assert result.returncode != 0
    assert 'An argument named "batch_sizes" is not expected here' in result.stderr


def test_the_readme_shows_the_example():
    readme = (REPO_ROOT / "README.md").read_text()
    assert "infra/terraform/examples/orders/main.tf" in readme


# --- the offline copy of a configuration that calls the module --------------------------------


def _parsed(path: Path) -> dict:
    with path.open() as handle:
        return normalise(hcl2.load(handle))


@pytest.fixture(scope="module")
def stack_copy(tmp_path_factory, terraform) -> Path:
    out = tmp_path_factory.mktemp("stack-copy")
    offline.write_offline_copy(out)
    return out


def test_the_stacks_copy_calls_the_modules_copy_with_its_endpoints(stack_copy):
    (call,) = [m for m in _parsed(stack_copy / "processor.tf")["module"]]
    processor = call["processor"]
    assert processor["source"] == "./modules/ordered-processor"
    assert "local.endpoints" in processor["offline_endpoints"]
    assert processor["offline_region"] == "${var.region}"
    module_copy = stack_copy / "modules" / "ordered-processor"
    assert (module_copy / offline.MODULE_VARIABLES_FILE).exists()
    generated = (module_copy / offline.GENERATED_FILE).read_text()
    assert 'lookup(var.offline_endpoints, "lambda", "")' in generated
    assert "local.endpoints" not in generated


def test_a_users_copy_passes_nothing_it_does_not_have(tmp_path, terraform):
    # The example has neither local.endpoints nor var.region: its post-apply steps use the
    # SDK's own endpoint and region.
    offline.write_offline_copy(tmp_path, EXAMPLE_DIR)
    (call,) = _parsed(tmp_path / "main.tf")["module"]
    assert call["orders"]["source"] == "./modules/ordered-processor"
    assert "offline_endpoints" not in call["orders"]
    assert "offline_region" not in call["orders"]
