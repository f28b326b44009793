"""Build the Lambda deployment package: processor/ plus the project's runtime dependencies.

    python streamline/infra/lambda_zip.py --out build/lambda.zip

The dependencies are the `[project].dependencies` of pyproject.toml (less the local tools'
own, LOCAL_TOOL_DEPENDENCIES), installed with pip for
the Lambda runtime's platform (CPython 3.12, manylinux x86_64), not this machine's, into a
directory cached by their hash. The zip is written with Python's zipfile (no archive
provider offline) and is reproducible: sorted entries and fixed timestamps, so the same
sources give the same `source_code_hash` and Terraform sees no change.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path

from streamline import arguments
from streamline.paths import REPO_ROOT

PACKAGE_DIRS = ("processor",)
DEFAULT_OUT = REPO_ROOT / "build" / "lambda.zip"
DEPS_CACHE = REPO_ROOT / "build" / "lambda-deps"

# The function's runtime (infra/terraform/modules/ordered-processor/variables.tf, `runtime`):
# python3.12 on x86_64.
PIP_PLATFORM_ARGS = (
    "--platform",
    "manylinux2014_x86_64",
    "--implementation",
    "cp",
    "--python-version",
    "3.12",
    "--only-binary=:all:",
)
ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)
SKIPPED_PARTS = {"__pycache__"}
SKIPPED_SUFFIXES = {".pyc", ".pyo"}


class BuildFailed(RuntimeError):
    """The package could not be built; the message says why in one line."""


# Dependencies of the local tools (the `streamline` command's live tables and progress bars),
# installed by `pip install .` with the rest but not packaged for the function.
LOCAL_TOOL_DEPENDENCIES = frozenset({"rich"})


def runtime_dependencies(pyproject: Path = REPO_ROOT / "pyproject.toml") -> list[str]:
    """The function's dependencies: the project's, less the local tools' own."""
    dependencies = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    return [dep for dep in dependencies if _name(dep) not in LOCAL_TOOL_DEPENDENCIES]


def _name(requirement: str) -> str:
    """A requirement's distribution name, normalised (PEP 503): `Rich[jupyter]>=13` -> rich."""
    name = re.match(r"[A-Za-z0-9._-]+", requirement.strip())
    return re.sub(r"[-_.]+", "-", name.group(0)).lower() if name else requirement


def install_dependencies(requirements: list[str], cache_dir: Path = DEPS_CACHE) -> Path:
    """A directory holding the requirements installed for the Lambda runtime (cached)."""
    key = hashlib.sha256(json.dumps([requirements, PIP_PLATFORM_ARGS]).encode()).hexdigest()
    target = cache_dir / key[:16]
    if target.is_dir():
        return target
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    pip = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-compile",
            "--target",
            str(tmp),
            *PIP_PLATFORM_ARGS,
            *requirements,
        ],
    )
    if pip.returncode != 0:
        raise BuildFailed(
            f"pip could not install the Lambda's dependencies (exit {pip.returncode}; its "
            "output is above): is the package index reachable?"
        )
    tmp.rename(target)
    return target


def _files(root: Path) -> Iterator[tuple[str, Path]]:
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if path.is_dir() or SKIPPED_PARTS & set(relative.parts):
            continue
        if path.suffix in SKIPPED_SUFFIXES:
            continue
        yield relative.as_posix(), path


def entries(package_root: Path, deps_dir: Path) -> dict[str, Path]:
    """Archive name -> file. Our packages win over a dependency of the same name."""
    found = dict(_files(deps_dir))
    for package in PACKAGE_DIRS:
        for name, path in _files(package_root / package):
            found[f"{package}/{name}"] = path
    return dict(sorted(found.items()))


def write_zip(out: Path, files: dict[str, Path]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        for name, path in files.items():
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            mode = 0o755 if path.stat().st_mode & 0o111 else 0o644
            info.external_attr = (0o100000 | mode) << 16
            archive.writestr(info, path.read_bytes())
    tmp.replace(out)


def build(out: Path = DEFAULT_OUT, package_root: Path = REPO_ROOT) -> Path:
    deps_dir = install_dependencies(runtime_dependencies(package_root / "pyproject.toml"))
    write_zip(out, entries(package_root, deps_dir))
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = arguments.OneLineParser(prog="lambda_zip.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=arguments.path, default=DEFAULT_OUT)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # bad arguments: one line, exit 2
    try:
        out = build(args.out)
    except (BuildFailed, OSError) as exc:
        print(f"lambda_zip.py: cannot build {args.out}: {exc}", file=sys.stderr)
        return 1
    print(f"{out} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
