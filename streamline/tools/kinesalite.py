"""kinesalite, a faithful Kinesis emulator, on 127.0.0.1 and a free port, stopped by PID.

It is installed from the committed lock (tools/kinesalite) into .tools/kinesalite, as
`make esm-tools` does (mk/esm.mk), when it is not there yet.

kinesalite 3.3.3 dies when a client goes away in the middle of a request: its request
handler (node_modules/kinesalite/index.js, `httpHandler`) adds

    req.on('error', function(err) { throw err })

and Node's HTTP server destroys a request whose connection closes (reset or not) before its
body is all in with `Error: aborted`, code ECONNRESET; the throw then escapes the event loop
and Node exits. A client killed while sending a request (a PutRecords body, say) so takes
Kinesis down with it, and the chaos run does exactly that to the ESM runner. (With Node 20, a
request whose body is in is already closed, so a client reset while kinesalite answers does
no harm; the tests check both.) We run kinesalite under a small Node wrapper (`_SERVE_JS`)
that replaces that one listener on each request: the errors of a client that went away are
logged on stderr and the request dropped (no one is left to answer); any other error is
thrown as before, so kinesalite still exits with its stack trace on stderr. node_modules is
left as installed.

    python -m streamline.tools.kinesalite   # prints the endpoint; serves until Ctrl-C/SIGTERM
"""

from __future__ import annotations

import argparse
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from streamline.emulator import free_port, stop_pid
from streamline.paths import REPO_ROOT

KINESALITE_SOURCE = REPO_ROOT / "tools" / "kinesalite"  # package.json + lock, committed
KINESALITE_DIR = REPO_ROOT / ".tools" / "kinesalite"  # installed here (gitignored)
READY_TIMEOUT_S = 30.0

# argv: kinesalite's package directory, port, shard limit, and the fd to write "ready" to.
# Errors of a client that went away: Node's "aborted" (ECONNRESET) when the connection closes
# with the request open, and the socket errors of a peer that reset or vanished.
_SERVE_JS = r"""
'use strict'
const fs = require('fs')
const [modulePath, port, shardLimit, readyFd] = process.argv.slice(1)
const CLIENT_WENT_AWAY = new Set([
  'ECONNRESET', 'EPIPE', 'ECONNABORTED', 'ETIMEDOUT', 'ERR_STREAM_PREMATURE_CLOSE',
])

const server = require(modulePath)({
  createStreamMs: 0, deleteStreamMs: 0, updateStreamMs: 0, shardLimit: Number(shardLimit),
})
const handlers = server.listeners('request')
if (handlers.length !== 1) {
  throw new Error(`expected one kinesalite request handler, found ${handlers.length}`)
}
server.removeAllListeners('request')
server.on('request', (req, res) => {
  handlers[0](req, res)
  // The handler has just added its `req.on('error', function(err) { throw err })`.
  req.removeAllListeners('error')
  req.on('error', (err) => {
    if (!CLIENT_WENT_AWAY.has(err.code)) throw err
    const call = req.headers['x-amz-target'] || `${req.method} ${req.url}`
    console.error(`kinesalite: client went away mid-request (${err.code} ${err.message}): ${call}`)
  })
})
server.listen(Number(port), '127.0.0.1', () => {
  fs.writeSync(Number(readyFd), 'ready\n')
  fs.closeSync(Number(readyFd))
})
"""


class KinesaliteError(RuntimeError):
    """kinesalite could not be installed or started; the message says why, in one line."""


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise KinesaliteError(f"`{name}` not found on PATH: kinesalite needs Node.js and npm")
    return path


def install(target: Path = KINESALITE_DIR) -> Path:
    """kinesalite's package directory under `target`, installed from the committed lock
    (`npm ci`) when it is missing."""
    module = target / "node_modules" / "kinesalite"
    if (module / "package.json").exists():
        return module
    npm = _tool("npm")
    target.mkdir(parents=True, exist_ok=True)
    for name in ("package.json", "package-lock.json"):
        shutil.copyfile(KINESALITE_SOURCE / name, target / name)
    result = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--prefix", str(target)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines()
        raise KinesaliteError(
            f"npm ci into {target} failed with code {result.returncode}: "
            f"{lines[-1] if lines else 'no output'}"
        )
    return module


def _wait_ready(ready_fd: int, proc: subprocess.Popen, timeout_s: float, log: str) -> None:
    """Block until the wrapper writes "ready" on `ready_fd` (it is listening), or fail."""
    deadline = time.monotonic() + timeout_s
    received = b""
    while b"\n" not in received:
        remaining_s = deadline - time.monotonic()
        if remaining_s <= 0:
            raise TimeoutError(f"kinesalite not ready after {timeout_s}s ({log})")
        readable, _, _ = select.select([ready_fd], [], [], remaining_s)
        if not readable:
            continue
        chunk = os.read(ready_fd, 64)
        if not chunk:  # the pipe closed without "ready": the process is gone
            code = proc.wait(timeout=timeout_s)
            raise KinesaliteError(f"kinesalite exited with code {code} before it was ready ({log})")
        received += chunk
    if received.strip() != b"ready":
        raise KinesaliteError(f"kinesalite sent {received!r} instead of ready ({log})")


@dataclass
class Kinesalite:
    """A kinesalite process that this object started and will stop."""

    endpoint: str
    pid: int
    _proc: subprocess.Popen | None = field(default=None, repr=False, compare=False)

    @classmethod
    def start(cls, log_path: Path | None = None, shard_limit: int = 100) -> Kinesalite:
        """Install if needed, start, and wait until it listens. Its stdout and stderr go to
        `log_path` (appended), or to ours when there is none."""
        node = _tool("node")
        module = install()
        port = free_port()
        ready_read, ready_write = os.pipe()
        log = open(log_path, "ab") if log_path else None  # noqa: SIM115
        try:
            proc = subprocess.Popen(
                [node, "-e", _SERVE_JS, str(module), str(port), str(shard_limit), str(ready_write)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT if log else None,
                pass_fds=(ready_write,),
                start_new_session=True,  # a Ctrl-C in the caller's terminal is ours to handle
            )
        except BaseException:
            os.close(ready_read)
            raise
        finally:
            os.close(ready_write)
            if log is not None:
                log.close()
        kinesalite = cls(f"http://127.0.0.1:{port}", proc.pid, proc)
        where = f"see {log_path}" if log_path else "see its output above"
        try:
            _wait_ready(ready_read, proc, READY_TIMEOUT_S, where)
        except BaseException:
            kinesalite.stop()
            raise
        finally:
            os.close(ready_read)
        return kinesalite

    def wait(self, timeout_s: float | None = None) -> int:
        """Block until the process ends; its exit code (negative: the signal that ended it)."""
        if self._proc is None:
            raise RuntimeError(f"kinesalite pid {self.pid} was not started by this object")
        return self._proc.wait(timeout=timeout_s)

    def stop(self, timeout_s: float = 10.0) -> None:
        if self._proc is not None and self._proc.poll() is not None:
            return  # exited and reaped already: its PID may belong to someone else by now
        stop_pid(self.pid, timeout_s)
        if self._proc is not None:
            self._proc.wait(timeout=timeout_s)

    def __enter__(self) -> Kinesalite:
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


class _Stop(Exception):
    """SIGTERM, raised in the main thread so `finally` stops kinesalite."""


def _raise_stop(signum, frame) -> None:
    raise _Stop


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shard-limit", type=int, default=100)
    parser.add_argument("--log", type=Path, default=None, help="append kinesalite's output here")
    args = parser.parse_args(argv)
    try:
        kinesalite = Kinesalite.start(log_path=args.log, shard_limit=args.shard_limit)
    except KinesaliteError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, _raise_stop)
    try:
        print(kinesalite.endpoint, flush=True)
        code = kinesalite.wait()  # only returns when kinesalite ended on its own
        how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
        print(f"error: kinesalite {how}", file=sys.stderr)
        return code if code > 0 else 1
    except (KeyboardInterrupt, _Stop):
        return 0
    finally:
        kinesalite.stop()


if __name__ == "__main__":
    sys.exit(main())
