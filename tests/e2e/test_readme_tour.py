"""The README's five-minute tour, run as a new user would run it, so it cannot drift.

The code blocks between `<!-- section:tour -->` and `<!-- /section:tour -->` are taken from
README.md as they are: the python block is written to the file its first line names
(`# orders/handler.py`), then every bash block runs in order in a temporary directory, through
`bash -c` with `.venv/bin` first on the PATH, the environment one block leaves (`eval` of the
emulator's variables) handed to the next, as in one terminal. The emulator it starts records
itself in a state file inside that directory and is stopped by its PID at the end, also when
a step fails.

Part 4, the deploy with the Terraform module, is not run: it needs AWS credentials and
Terraform's registry provider, neither of which is here. Its bash block starts with `# deploy`
and is skipped; the example configuration it points to must exist, and its module call may
only use the module's variables.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from streamline.emulator import emulator_client, read_state, stop_pid
from streamline.paths import REPO_ROOT

pytestmark = pytest.mark.integration

README = REPO_ROOT / "README.md"
VENV_BIN = REPO_ROOT / ".venv" / "bin"
MODULE_DIR = REPO_ROOT / "infra" / "terraform" / "modules" / "ordered-processor"
EXAMPLE = REPO_ROOT / "infra" / "terraform" / "examples" / "orders" / "main.tf"
TOUR_START, TOUR_END = "<!-- section:tour -->", "<!-- /section:tour -->"
DEPLOY_MARKER = "# deploy"
BLOCK_TIMEOUT_S = 60

EMULATOR_COMMAND = re.compile(r"streamline emulator (\w+[^)#\n]*)")
FENCE = re.compile(r"^```(?P<lang>\w*)\n(?P<code>.*?)^```$", re.MULTILINE | re.DOTALL)
# The tour's orders: o-3 lacks its amount and is parked, the others are applied per customer.
APPLIED = {"customer-1": ["o-1", "o-5"], "customer-0": ["o-2", "o-4", "o-6"]}
PARKED_ORDER = {"order_id": "o-3"}


@dataclass(frozen=True)
class Block:
    lang: str
    code: str

    @property
    def is_deploy(self) -> bool:
        return self.code.startswith(DEPLOY_MARKER)


@dataclass(frozen=True)
class Step:
    code: str
    returncode: int
    stdout: str
    stderr: str

    def describe(self) -> str:
        return f"$ {self.code}\n-> exit {self.returncode}\n{self.stdout}\n{self.stderr}"


def tour_blocks(readme: str) -> list[Block]:
    start, end = readme.index(TOUR_START), readme.index(TOUR_END)
    return [Block(m["lang"], m["code"]) for m in FENCE.finditer(readme[start:end])]


def blocks_of(lang: str) -> list[Block]:
    return [block for block in tour_blocks(README.read_text()) if block.lang == lang]


def state_file_of(blocks: list[Block]) -> Path:
    """The one emulator state file the tour names: relative, so it lands in the tour's
    directory and never in the checkout's `.emulator/`."""
    commands = [args for block in blocks for args in EMULATOR_COMMAND.findall(block.code)]
    assert commands, "the tour starts no emulator"
    names = set()
    for args in commands:
        named = re.search(r"--state-file\s+(\S+)", args)
        assert named, f"without --state-file it uses the checkout's: emulator {args}"
        names.add(named[1])
    assert len(names) == 1, f"the tour's emulator commands name different files: {names}"
    path = Path(names.pop())
    assert not path.is_absolute() and ".." not in path.parts, path
    return path


def runner_keeps_positions_out_of_the_checkout(blocks: list[Block]) -> bool:
    """`esm run` without either flag writes its shard positions to the checkout's .esm-state/."""
    runs = [block.code for block in blocks if "esm run" in block.code]
    return all("--checkpoint-table" in code or "--state-dir" in code for code in runs)


def clean_environment() -> dict[str, str]:
    """A new user's terminal: the venv first on the PATH, no AWS settings or stack variables."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AWS_", "POWERTOOLS_"))
        and name not in {"CHECKPOINT_TABLE", "POISON_QUEUE_URL", "MAX_ATTEMPTS", "PYTHONPATH"}
    }
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def run_block(code: str, cwd: Path, env: dict[str, str]) -> tuple[Step, dict[str, str]]:
    """One bash block, in the environment the previous one left; returns the environment it
    leaves (exported variables only, as a terminal keeps them)."""
    env_dump = cwd.parent / "env.bin"
    script = f'set -eo pipefail\n{code}\nenv -0 > "{env_dump}"\n'
    result = subprocess.run(
        ["bash", "-c", script],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=BLOCK_TIMEOUT_S,
    )
    step = Step(code, result.returncode, result.stdout, result.stderr)
    if result.returncode != 0:
        return step, env
    pairs = (entry.split("=", 1) for entry in env_dump.read_bytes().decode().split("\0") if entry)
    return step, dict(pairs)


def poison_messages(endpoint: str) -> list[dict]:
    """What the tour parked, read without consuming it (visibility 0)."""
    sqs = emulator_client("sqs", endpoint)
    queue_url = sqs.get_queue_url(QueueName="orders-poison")["QueueUrl"]
    messages = sqs.receive_message(
        QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=0
    ).get("Messages", [])
    return [json.loads(message["Body"]) for message in messages]


@dataclass
class Tour:
    steps: list[Step]
    poison: list[dict]  # the poison queue just before the tour stops the emulator

    def step_running(self, command: str) -> Step:
        matches = [step for step in self.steps if command in step.code]
        assert len(matches) == 1, f"{len(matches)} tour blocks run {command!r}"
        return matches[0]


@pytest.fixture(scope="module")
def tour(tmp_path_factory) -> Iterator[Tour]:
    """Every runnable block of the tour, in order, in an empty directory."""
    workdir = tmp_path_factory.mktemp("tour") / "work"
    workdir.mkdir()
    (handler_block,) = blocks_of("python")
    handler_path = handler_block.code.splitlines()[0].removeprefix("# ").strip()
    (workdir / handler_path).parent.mkdir(parents=True)
    (workdir / handler_path).write_text(handler_block.code)

    bash_blocks = [block for block in blocks_of("bash") if not block.is_deploy]
    state_file = workdir / state_file_of(bash_blocks)
    assert runner_keeps_positions_out_of_the_checkout(bash_blocks)
    env = clean_environment()
    tour = Tour(steps=[], poison=[])
    try:
        for block in bash_blocks:
            if "emulator stop" in block.code:
                tour.poison = poison_messages(env["AWS_ENDPOINT_URL"])
            step, env = run_block(block.code, workdir, env)
            tour.steps.append(step)
            assert step.returncode == 0, step.describe()
        yield tour
    finally:
        if state_file.exists():  # the tour failed before its own stop
            stop_pid(read_state(state_file)["pid"])
            state_file.unlink()


def test_the_tour_is_one_handler_then_commands_with_the_deploy_last():
    python_blocks, bash_blocks = blocks_of("python"), blocks_of("bash")
    assert len(python_blocks) == 1
    assert python_blocks[0].code.startswith("# orders/handler.py\n")
    assert sum(block.is_deploy for block in bash_blocks) == 1
    assert bash_blocks[-1].is_deploy, "the deploy comes last: nothing after it is run"


def test_one_invocation_applies_every_generated_record_and_reports_no_failure(tour):
    step = tour.step_running("streamline esm invoke")
    assert json.loads(step.stdout) == {"batchItemFailures": []}
    assert "the function returned: all 4 records are done" in step.stderr
    assert re.findall(r"^k-\d+: order-id-\d+ \d+$", step.stderr, re.MULTILINE) == [
        "k-0001: order-id-1 1",
        "k-0002: order-id-2 2",
        "k-0001: order-id-3 3",
        "k-0002: order-id-4 4",
    ]


def test_the_runner_applies_every_valid_order_in_its_customers_order(tour):
    step = tour.step_running("streamline esm run")
    applied = re.findall(r"^(customer-\d): (o-\d) \d+$", step.stderr, re.MULTILINE)
    per_customer = {key: [order for k, order in applied if k == key] for key in APPLIED}
    assert per_customer == APPLIED
    assert "[esm] summary: 6 records over 1 shards" in step.stderr
    assert "0 function errors, 0 partial failures" in step.stderr


def test_the_order_that_breaks_the_model_is_parked_with_its_payload(tour):
    (message,) = tour.poison
    assert message["partitionKey"] == "customer-1"
    assert message["error"]["type"] == "InvalidPayloadError"
    assert message["attempts"] == 1
    assert json.loads(base64.b64decode(message["data"])) == PARKED_ORDER


def test_the_tour_stops_the_emulator_it_started(tour):
    step = tour.step_running("emulator stop")
    assert step.stdout.startswith("stopped emulator pid ")


def test_the_deploy_points_at_the_module_example_and_uses_only_module_inputs():
    """Not run (AWS); checked against the files it names."""
    readme = README.read_text()
    tour_text = readme[readme.index(TOUR_START) : readme.index(TOUR_END)]
    assert str(EXAMPLE.relative_to(REPO_ROOT)) in tour_text
    assert EXAMPLE.is_file()
    (module_call,) = blocks_of("hcl")
    declared = (MODULE_DIR / "variables.tf").read_text()
    variables = set(re.findall(r'^variable "(\w+)"', declared, re.MULTILINE))
    inputs = set(re.findall(r"^\s*(\w+)\s*=", module_call.code, re.MULTILINE)) - {"source"}
    assert inputs and inputs <= variables, inputs - variables
