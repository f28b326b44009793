"""Invoking the function: warm worker processes with Lambda's timeout and error semantics.

A worker (``esm/worker.py``) lives as long as it behaves, like a reused Lambda execution
environment. A crash or a timeout is a function error, and the worker is replaced: Lambda
also discards an environment whose invocation timed out.
https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtime-environment.html
"""

from __future__ import annotations

import contextlib
import enum
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from esm.framing import FRAME_HEADER
from esm.settings import FunctionSettings

# Lambda's init phase has its own limit, separate from the function timeout.
INIT_TIMEOUT_S = 10.0


class ErrorKind(enum.Enum):
    UNHANDLED = "Unhandled"  # the handler raised (or its response could not be serialised)
    TIMEOUT = "Timeout"  # ran past the function's timeout; the worker is killed
    CRASH = "Crash"  # the worker process died mid-invocation


@dataclass(frozen=True)
class FunctionError:
    kind: ErrorKind
    error_type: str
    message: str

    # What the on-failure record's responseContext.functionError says for every kind.
    function_error = "Unhandled"


@dataclass(frozen=True)
class Invocation:
    request_id: str
    response: Any = None
    error: FunctionError | None = None


class WorkerDied(Exception):
    pass


class FunctionWorker:
    """One worker process that this object started and stops (by PID, never by name)."""

    def __init__(
        self, function: FunctionSettings, code_dir: Path, base_env: dict[str, str] | None = None
    ) -> None:
        self.function = function
        env = dict(os.environ if base_env is None else base_env)
        env.update(lambda_environment(function, code_dir))
        env.update(function.environment)
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "esm.worker", function.handler],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            cwd=str(code_dir),
            start_new_session=True,  # our signals are ours; the worker is stopped by PID
        )
        self._buffer = b""
        ready = self._read_frame(time.monotonic() + INIT_TIMEOUT_S)
        if ready is None:
            self.kill()
            raise WorkerDied("worker did not start")

    @property
    def pid(self) -> int:
        return self._proc.pid

    def invoke(self, payload: str, timeout_s: float) -> Invocation:
        request_id = str(uuid.uuid4())
        deadline_ms = int(time.time() * 1000 + timeout_s * 1000)
        meta = json.dumps({"requestId": request_id, "deadlineMs": deadline_ms}).encode()
        body = payload.encode()
        try:
            stdin = self._proc.stdin
            stdin.write(FRAME_HEADER.pack(len(meta)) + meta + FRAME_HEADER.pack(len(body)))
            stdin.write(body)
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError):
            return Invocation(request_id, error=self._crash_error())
        try:
            frame = self._read_frame(time.monotonic() + timeout_s)
        except WorkerDied:
            return Invocation(request_id, error=self._crash_error())
        if frame is None:
            self.kill()
            message = f"Task timed out after {timeout_s:.2f} seconds"
            error = FunctionError(ErrorKind.TIMEOUT, "Timeout", message)
            return Invocation(request_id, error=error)
        reply = json.loads(frame)
        if reply.get("ok"):
            return Invocation(request_id, response=reply.get("response"))
        error = FunctionError(ErrorKind.UNHANDLED, reply["errorType"], reply["errorMessage"])
        return Invocation(request_id, error=error)

    @property
    def alive(self) -> bool:
        return self._proc.poll() is None

    def _crash_error(self) -> FunctionError:
        self.kill()
        code = self._proc.returncode
        message = f"Runtime exited with error: exit status {code}"
        return FunctionError(ErrorKind.CRASH, "Runtime.ExitError", message)

    def _read_frame(self, deadline: float) -> bytes | None:
        """The next reply frame; None when the deadline passes first; WorkerDied at EOF."""
        header = self._read_exact(FRAME_HEADER.size, deadline)
        if header is None:
            return None
        (length,) = FRAME_HEADER.unpack(header)
        return self._read_exact(length, deadline)

    def _read_exact(self, size: int, deadline: float) -> bytes | None:
        fd = self._proc.stdout.fileno()
        while len(self._buffer) < size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            readable, _, _ = select.select([fd], [], [], remaining)
            if not readable:
                return None
            chunk = os.read(fd, max(65536, size - len(self._buffer)))
            if not chunk:
                raise WorkerDied("worker closed its output")
            self._buffer += chunk
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def stop(self, timeout_s: float = 2.0) -> None:
        """Close its input (the worker exits on EOF); kill it if it lingers."""
        with contextlib.suppress(OSError):
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        if self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._proc.pid, signal.SIGKILL)
            self._proc.wait()
        for stream in (self._proc.stdin, self._proc.stdout):
            with contextlib.suppress(OSError):
                stream.close()


def lambda_environment(function: FunctionSettings, code_dir: Path) -> dict[str, str]:
    """The reserved variables Lambda's Python runtime sets, plus the code on the path.
    https://docs.aws.amazon.com/lambda/latest/dg/configuration-envvars.html#configuration-envvars-runtime
    """
    region = function.region
    return {
        "PYTHONPATH": str(code_dir),
        "PYTHONUNBUFFERED": "1",
        "LAMBDA_TASK_ROOT": str(code_dir),
        "_HANDLER": function.handler,
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "AWS_EXECUTION_ENV": f"AWS_Lambda_python{sys.version_info.major}.{sys.version_info.minor}",
        "AWS_LAMBDA_FUNCTION_NAME": function.name,
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.memory_mb),
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{function.name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": f"esm/[$LATEST]{uuid.uuid4().hex}",
        "ESM_FUNCTION_ARN": function.arn,
    }


class WorkerPool:
    """Warm workers shared by every concurrent batch of a function (its concurrency)."""

    def __init__(
        self,
        function: FunctionSettings,
        code_dir: Path,
        base_env: dict[str, str] | None = None,
    ) -> None:
        self.function = function
        self.code_dir = code_dir
        self._base_env = base_env
        self._idle: list[FunctionWorker] = []
        self._cond = threading.Condition()
        self._prewarming = 0
        self._closed = False
        self.started = 0

    def invoke(self, payload: str) -> Invocation:
        worker = self._acquire()
        if worker is None:
            request_id = str(uuid.uuid4())
            message = "worker failed to initialise within the init timeout"
            error = FunctionError(ErrorKind.CRASH, "Runtime.InitError", message)
            return Invocation(request_id, error=error)
        invocation = worker.invoke(payload, self.function.timeout_s)
        with self._cond:
            if worker.alive and not self._closed:
                self._idle.append(worker)
                self._cond.notify()
                return invocation
        worker.kill()
        return invocation

    def _acquire(self) -> FunctionWorker | None:
        with self._cond:
            while True:
                while self._idle:
                    worker = self._idle.pop()
                    if worker.alive:
                        return worker
                    worker.kill()
                if not self._prewarming:
                    break
                self._cond.wait()  # a worker is starting: take it rather than start another
        return self._start_worker()

    def _start_worker(self) -> FunctionWorker | None:
        try:
            worker = FunctionWorker(self.function, self.code_dir, self._base_env)
        except WorkerDied:
            return None
        with self._cond:
            self.started += 1
        return worker

    def prewarm(self) -> None:
        """Start one worker in the background, so the first batch finds it warm."""

        def start() -> None:
            worker = self._start_worker()
            with self._cond:
                self._prewarming -= 1
                if worker is not None and not self._closed:
                    self._idle.append(worker)
                    worker = None
                self._cond.notify_all()
            if worker is not None:
                worker.stop()

        with self._cond:
            self._prewarming += 1
        threading.Thread(target=start, name="esm-prewarm", daemon=True).start()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.stop()
