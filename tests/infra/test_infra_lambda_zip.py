"""The deployment package builder (streamline/infra/lambda_zip.py), without pip or a network:
a fake project root and a fake dependency directory."""

from __future__ import annotations

import tomllib
import zipfile
from pathlib import Path

from streamline.infra import lambda_zip
from streamline.paths import REPO_ROOT


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def _package(tmp_path: Path) -> dict[str, Path]:
    project = _tree(
        tmp_path / "project",
        {
            "processor/__init__.py": "",
            "processor/handler.py": "def handler(event, context): ...\n",
            "processor/__pycache__/handler.cpython-312.pyc": "stale",
            "esm/runner.py": "not deployed\n",
        },
    )
    deps = _tree(
        tmp_path / "deps",
        {
            "boto3/__init__.py": "",
            "aws_kinesis_agg/__init__.py": "",
            "boto3/__pycache__/x.pyc": "",
            "processor/handler.py": "a dependency must not shadow our package\n",
        },
    )
    return lambda_zip.entries(project, deps)


def test_package_holds_processor_and_dependencies_only(tmp_path):
    names = set(_package(tmp_path))
    assert names == {
        "processor/__init__.py",
        "processor/handler.py",
        "boto3/__init__.py",
        "aws_kinesis_agg/__init__.py",
    }


def test_our_package_wins_over_a_dependency_of_the_same_name(tmp_path):
    files = _package(tmp_path)
    assert files["processor/handler.py"].read_text().startswith("def handler")


def test_zip_is_reproducible(tmp_path):
    files = _package(tmp_path)
    first, second = tmp_path / "a.zip", tmp_path / "b.zip"
    lambda_zip.write_zip(first, files)
    (tmp_path / "project" / "processor" / "handler.py").touch()  # a newer mtime changes nothing
    lambda_zip.write_zip(second, files)
    assert first.read_bytes() == second.read_bytes()
    with zipfile.ZipFile(first) as archive:
        assert archive.namelist() == sorted(files)
        assert archive.read("processor/handler.py").startswith(b"def handler")


def test_dependencies_are_the_projects_runtime_dependencies():
    names = {
        dep.split("[")[0].split(">")[0].split("=")[0].strip()
        for dep in lambda_zip.runtime_dependencies(REPO_ROOT / "pyproject.toml")
    }
    assert {"boto3", "aws-lambda-powertools", "aws-kinesis-agg"} <= names
    # The local tools' own: installed with the project, not packaged for the function
    assert "rich" not in names


def test_local_tool_dependencies_are_project_dependencies_too():
    # `pip install .` gives the streamline command everything it imports
    names = {lambda_zip._name(dep) for dep in _project_dependencies()}
    assert names >= lambda_zip.LOCAL_TOOL_DEPENDENCIES


def _project_dependencies() -> list[str]:
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]


def test_dependencies_are_installed_for_the_lambda_runtime_not_this_machine():
    args = lambda_zip.PIP_PLATFORM_ARGS
    assert args[args.index("--python-version") + 1] == "3.12"
    assert args[args.index("--platform") + 1] == "manylinux2014_x86_64"
    assert "--only-binary=:all:" in args
