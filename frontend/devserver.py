"""`flask dev`: the web app and a Celery worker together, for `make run`.

Each process gets its own session, so the terminal's Ctrl-C reaches only this
supervisor, which then stops each one by its main process: Celery's warm shutdown
lets its pool processes finish and exit on their own. (Signalling a whole process
group, as Procfile runners do, kills the pool processes under Celery and it
reports them as errors.) A stop asked for by Ctrl-C ends with status 0.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

import click

STOP_WAIT = 20  # seconds a process gets to stop before it is killed


@dataclass
class Child:
    name: str
    argv: list[str]
    process: subprocess.Popen | None = None
    pump: threading.Thread | None = field(default=None, repr=False)

    def start(self, width: int) -> None:
        self.process = subprocess.Popen(  # noqa: S603 (our own argv)
            self.argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        prefix = f"{self.name:<{width}} | "
        self.pump = threading.Thread(target=self._copy, args=(prefix,), daemon=True)
        self.pump.start()

    def _copy(self, prefix: str) -> None:
        for line in iter(self.process.stdout.readline, b""):
            sys.stdout.write(prefix + line.decode("utf-8", "replace"))
            sys.stdout.flush()

    def signal(self, signum: int) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signum)

    def kill_group(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)


def supervise(children: list[Child]) -> int:
    """Run ``children`` until Ctrl-C (or SIGTERM), or until one of them stops;
    returns the exit status for the shell."""
    requests: list[int] = []
    previous = {
        signum: signal.signal(signum, lambda signum, frame: requests.append(signum))
        for signum in (signal.SIGINT, signal.SIGTERM)
    }
    width = max(len(child.name) for child in children)
    try:
        for child in children:
            child.start(width)
        crashed = None
        while not requests and crashed is None:
            crashed = next((c for c in children if c.process.poll() is not None), None)
            time.sleep(0.2)
        if crashed is not None:
            click.echo(
                f"{crashed.name} stopped (exit status {crashed.process.returncode}); "
                "stopping the rest.",
                err=True,
            )
        else:
            click.echo("Stopping (Ctrl-C again to stop at once)…")
        stopped = _stop(children, requests)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if crashed is not None:
        return crashed.process.returncode or 1
    return 0 if stopped else 1


def _stop(children: list[Child], requests: list[int]) -> bool:
    """SIGTERM each main process, wait; a further Ctrl-C or the deadline kills."""
    asked = len(requests)
    for child in children:
        child.signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_WAIT
    while any(c.process.poll() is None for c in children):
        if len(requests) > asked or time.monotonic() > deadline:
            for child in children:
                child.kill_group()
            for child in children:
                child.process.wait()
            return False
        time.sleep(0.2)
    for child in children:
        child.pump.join(timeout=5)
    return True


def dev_children(port: int) -> list[Child]:
    python = sys.executable
    return [
        Child(
            "web",
            [python, "-m", "flask", "--app", "frontend", "run"]
            + ["--host", "127.0.0.1", "--port", str(port)],
        ),
        Child(
            "worker",
            [python, "-m", "celery", "-A", "frontend.make_celery", "worker", "--beat"]
            + ["--loglevel", "INFO", "--concurrency", "2"],
        ),
    ]


@click.command("dev")
@click.option("--port", default=5055, show_default=True, help="Port of the web app.")
def dev_command(port: int) -> None:
    """Run the web app and a worker together (make run); Ctrl-C stops both."""
    sys.exit(supervise(dev_children(port)))
