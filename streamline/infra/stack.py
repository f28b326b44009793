"""Apply / destroy infra/terraform against AWS_ENDPOINT_URL (`make infra-up` / `make infra-down`).

    python streamline/infra/stack.py up      # apply, write build/stack.json, print the apply time
    python streamline/infra/stack.py plan    # exit 0: no changes, 2: changes (-detailed-exitcode)
    python streamline/infra/stack.py down    # destroy, print the destroy time

With AWS_ENDPOINT_URL unset, `up` starts the embedded emulator (scripts/emulator.py) and leaves
it running; `down` destroys the stack there and stops it. Per-service endpoint variables
(AWS_ENDPOINT_URL_KINESIS, ...) are passed on as per-service endpoints. `--aws` targets AWS
itself with the caller's credentials and starts nothing.

The provider: `--provider offline` (the default) runs the 3.39 copy that
streamline/infra/offline.py derives, with the provider from the PyPI mirror (no download);
`--provider registry` runs the real configuration as it is, with whatever provider
`terraform init` installs (>= 5.0, needs the registry).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from streamline import arguments
from streamline.emulator import DEFAULT_STATE_FILE as EMULATOR_STATE_FILE
from streamline.emulator import EMULATOR_ENV, StateFileError, read_state
from streamline.infra import lambda_zip, offline
from streamline.paths import REPO_ROOT

BUILD_DIR = REPO_ROOT / "build"
DEFAULT_STACK_JSON = BUILD_DIR / "stack.json"
DEFAULT_MIRROR = BUILD_DIR / "terraform-mirror"
WORK_DIRS = {
    "offline": REPO_ROOT / "infra" / "terraform" / ".offline",
    "registry": BUILD_DIR / "terraform-registry",
}
VARS_FILE = "streamline.auto.tfvars.json"  # auto-loaded: a bare `terraform plan` there works

# boto3's per-service endpoint variables -> the configuration's endpoint keys.
SERVICE_ENDPOINT_ENV = {
    "AWS_ENDPOINT_URL_CLOUDWATCH": "cloudwatch",
    "AWS_ENDPOINT_URL_DYNAMODB": "dynamodb",
    "AWS_ENDPOINT_URL_IAM": "iam",
    "AWS_ENDPOINT_URL_KINESIS": "kinesis",
    "AWS_ENDPOINT_URL_LAMBDA": "lambda",
    "AWS_ENDPOINT_URL_CLOUDWATCH_LOGS": "logs",
    "AWS_ENDPOINT_URL_S3": "s3",
    "AWS_ENDPOINT_URL_SNS": "sns",
    "AWS_ENDPOINT_URL_SQS": "sqs",
    "AWS_ENDPOINT_URL_STS": "sts",
}


class TerraformFailed(RuntimeError):
    def __init__(self, args: list[str], returncode: int):
        super().__init__(f"terraform {' '.join(args)} exited with {returncode}")
        self.returncode = returncode


class CannotRun(Exception):
    """Terraform was not run, or not to the end, for a reason outside it (the endpoint, the
    emulator, the Lambda zip, the working directory); the message says which, in one line."""


@dataclass
class Stack:
    """One Terraform working directory and the environment it runs in."""

    work_dir: Path
    provider: str
    env: dict[str, str]

    def terraform(self, *args: str, ok_codes: tuple[int, ...] = (0,)) -> int:
        cmd = [offline.terraform_binary(), f"-chdir={self.work_dir}", *args]
        code = subprocess.run(cmd, env=self.env).returncode
        if code not in ok_codes:
            raise TerraformFailed(list(args), code)
        return code

    def output_json(self) -> dict:
        cmd = [offline.terraform_binary(), f"-chdir={self.work_dir}", "output", "-json"]
        raw = subprocess.run(cmd, env=self.env, capture_output=True, text=True)
        if raw.returncode != 0:
            sys.stderr.write(raw.stderr)
            raise TerraformFailed(["output", "-json"], raw.returncode)
        return {name: item["value"] for name, item in json.loads(raw.stdout).items()}


def endpoint_variables(environ: dict[str, str]) -> dict[str, object]:
    """The configuration's endpoint variables from boto3's environment variables."""
    endpoint_url = environ.get("AWS_ENDPOINT_URL") or None
    endpoints = {key: environ[var] for var, key in SERVICE_ENDPOINT_ENV.items() if environ.get(var)}
    return {
        "endpoint_url": endpoint_url,
        "endpoints": endpoints,
        "emulator": bool(endpoint_url or endpoints),
    }


def running_embedded_emulator(state_file: Path = EMULATOR_STATE_FILE) -> str | None:
    """The endpoint of the embedded emulator recorded in its state file, if it answers.

    Any HTTP answer counts: moto's /moto-api/data.json fails with 500 once a Lambda function
    exists (it serialises the function's Docker client), which `emulator.py start` would take
    for a dead server and start a second one.
    """
    if not state_file.exists():
        return None
    try:
        endpoint = read_state(state_file)["endpoint"]
    except StateFileError as exc:
        raise CannotRun(str(exc)) from exc
    try:
        with urllib.request.urlopen(f"{endpoint}/moto-api/data.json", timeout=5):
            return endpoint
    except urllib.error.HTTPError:
        return endpoint
    except OSError:
        return None


def parse_assignments(assignments: list[str]) -> dict[str, object]:
    """`--var NAME=VALUE` flags: JSON values (numbers, booleans, lists, maps) or strings."""
    variables: dict[str, object] = {}
    for assignment in assignments:
        name, sep, value = assignment.partition("=")
        if not sep or not name:
            raise SystemExit(f"--var {assignment!r}: expected NAME=VALUE")
        try:
            variables[name] = json.loads(value)
        except json.JSONDecodeError:
            variables[name] = value
    return variables


def start_embedded_emulator() -> str:
    running = running_embedded_emulator()
    if running:
        return running
    out = subprocess.run(
        [sys.executable, "-m", "streamline.emulator", "start"], capture_output=True, text=True
    )
    if out.returncode != 0:
        said = out.stderr.strip().splitlines() or [f"exit {out.returncode}"]
        raise CannotRun(f"the embedded emulator did not start: {said[-1]}")
    return out.stdout.strip().splitlines()[-1]


def stop_embedded_emulator() -> None:
    out = subprocess.run([sys.executable, "-m", "streamline.emulator", "stop"])
    if out.returncode != 0:
        raise CannotRun("the embedded emulator did not stop: `streamline emulator stop`")


def check_reachable(endpoint: str, timeout_s: float = 5.0) -> None:
    """CannotRun unless something listens at `endpoint`: Terraform would otherwise retry every
    call against a closed port for minutes before it says so."""
    parts = urllib.parse.urlsplit(endpoint)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:  # a port that is not a number, or out of range
        port = None
    if parts.scheme not in ("http", "https") or not parts.hostname or port is None:
        raise CannotRun(f"AWS_ENDPOINT_URL {endpoint!r} is not an http(s)://HOST[:PORT] URL")
    try:
        socket.create_connection((parts.hostname, port), timeout=timeout_s).close()
    except OSError as exc:
        raise CannotRun(
            f"AWS_ENDPOINT_URL {endpoint} does not answer ({exc}): start it, or unset "
            "AWS_ENDPOINT_URL to use the embedded emulator"
        ) from exc


def prepare(args: argparse.Namespace, environ: dict[str, str]) -> Stack:
    """Write the working directory (config copy, variables) and run `terraform init`."""
    work_dir = (args.work_dir or WORK_DIRS[args.provider]).resolve()
    if work_dir == offline.REAL_CONFIG_DIR.resolve():
        # Both providers rewrite the working directory's *.tf.
        raise CannotRun(f"--work-dir {args.work_dir} is the real configuration: pick another")
    env = dict(environ)
    if args.provider == "offline":
        offline.write_offline_copy(work_dir)
        env["TF_CLI_CONFIG_FILE"] = str(offline.prepare_provider_mirror(args.mirror))
    else:
        work_dir.mkdir(parents=True, exist_ok=True)
        for stale in work_dir.glob("*.tf"):
            stale.unlink()
        for source in sorted(offline.REAL_CONFIG_DIR.glob("*.tf")):
            shutil.copyfile(source, work_dir / source.name)
    variables: dict[str, object] = {
        **endpoint_variables(environ),
        "lambda_zip": str(args.lambda_zip.resolve()),
        "region": environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or "us-east-1",
    }
    if args.name:
        variables["name"] = args.name
    variables.update(parse_assignments(args.var))
    (work_dir / VARS_FILE).write_text(json.dumps(variables, indent=2) + "\n")
    stack = Stack(work_dir=work_dir, provider=args.provider, env=env)
    stack.terraform("init", "-input=false", "-no-color")
    return stack


def resolve_endpoint(args: argparse.Namespace, environ: dict[str, str]) -> tuple[dict, bool]:
    """The environment to run in and whether the embedded emulator is ours to manage.

    `--aws`: AWS itself, with the caller's credentials; nothing is started or faked.
    """
    env = dict(environ)
    if args.aws:
        if env.get("AWS_ENDPOINT_URL"):
            raise CannotRun("--aws with AWS_ENDPOINT_URL set: unset it or drop --aws")
        return env, False
    embedded = not env.get("AWS_ENDPOINT_URL")
    if embedded:
        env["AWS_ENDPOINT_URL"] = start_embedded_emulator()
        print(f"embedded emulator at {env['AWS_ENDPOINT_URL']}", flush=True)
    else:
        check_reachable(env["AWS_ENDPOINT_URL"])
    for name, value in EMULATOR_ENV.items():
        env.setdefault(name, value)
    return env, embedded


def _target(env: dict[str, str]) -> str:
    return env.get("AWS_ENDPOINT_URL") or "AWS"


def _build_lambda_zip(out: Path) -> None:
    try:
        lambda_zip.build(out)
    except (lambda_zip.BuildFailed, OSError) as exc:
        raise CannotRun(f"cannot build the Lambda zip {out}: {exc}") from exc


def cmd_up(args: argparse.Namespace) -> int:
    if not args.lambda_zip.exists():
        _build_lambda_zip(args.lambda_zip)
    env, _ = resolve_endpoint(args, dict(os.environ))
    stack = prepare(args, env)
    started = time.monotonic()
    stack.terraform("apply", "-input=false", "-auto-approve", "-no-color")
    apply_s = time.monotonic() - started
    outputs = stack.output_json()
    args.stack_json.parent.mkdir(parents=True, exist_ok=True)
    args.stack_json.write_text(json.dumps(outputs, indent=2, sort_keys=True) + "\n")
    print(f"stack outputs: {args.stack_json}")
    print(f"apply: {apply_s:.1f} s ({stack.provider} provider, {_target(env)})")
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    env, _ = resolve_endpoint(args, dict(os.environ))
    stack = prepare(args, env)
    return stack.terraform(
        "plan", "-input=false", "-no-color", "-detailed-exitcode", ok_codes=(0, 2)
    )


def cmd_down(args: argparse.Namespace) -> int:
    env, embedded = resolve_endpoint(args, dict(os.environ))
    if not args.lambda_zip.exists():  # destroy still evaluates filebase64sha256(var.lambda_zip)
        _build_lambda_zip(args.lambda_zip)
    stack = prepare(args, env)
    started = time.monotonic()
    stack.terraform("destroy", "-input=false", "-auto-approve", "-no-color")
    destroy_s = time.monotonic() - started
    args.stack_json.unlink(missing_ok=True)
    print(f"destroy: {destroy_s:.1f} s ({stack.provider} provider, {_target(env)})")
    if embedded and not args.keep_emulator:
        stop_embedded_emulator()
    return 0


def _assignment(value: str) -> str:
    """A `--var` flag: NAME=VALUE (parse_assignments reads the value)."""
    name, sep, _ = value.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {value!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = arguments.OneLineParser(prog="stack.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, func in (("up", cmd_up), ("plan", cmd_plan), ("down", cmd_down)):
        p = sub.add_parser(name)
        p.set_defaults(func=func)
        p.add_argument("--provider", choices=sorted(WORK_DIRS), default="offline")
        p.add_argument(
            "--work-dir", type=arguments.path, default=None, help="holds the copy and state"
        )
        p.add_argument("--mirror", type=arguments.path, default=DEFAULT_MIRROR)
        p.add_argument("--lambda-zip", type=arguments.path, default=BUILD_DIR / "lambda.zip")
        p.add_argument("--stack-json", type=arguments.path, default=DEFAULT_STACK_JSON)
        p.add_argument(
            "--name",
            type=arguments.text,
            default=None,
            help="resource name prefix (default: streamline)",
        )
        p.add_argument(
            "--aws", action="store_true", help="AWS itself: no emulator, your own credentials"
        )
        p.add_argument(
            "--var",
            type=_assignment,
            action="append",
            default=[],
            help="NAME=VALUE (JSON or a string)",
        )
    sub.choices["down"].add_argument("--keep-emulator", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # bad arguments: one line, exit 2
    try:
        # Before anything is built or started: every command runs terraform.
        offline.terraform_binary()
        return args.func(args)
    except (offline.MissingTool, CannotRun) as exc:
        print(f"{parser.prog}: {exc}", file=sys.stderr)
        return 2
    except (TerraformFailed, offline.TransformError) as exc:
        print(f"{parser.prog}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
