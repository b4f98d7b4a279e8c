"""``python -m backend.runners.local_shim WORK_DIR``: runs one pipeline for the local
runner, detached from whoever launched it.

Reads ``WORK_DIR/spec.json`` (argv, cwd, env, file size cap), prints its own pid and
leaves (the launcher goes on at once), while a detached child runs the pipeline with
its output spooled to ``WORK_DIR/output.log``, then writes ``WORK_DIR/exit.json``
(exit code, peak memory, CPU seconds). Any process can follow the run from these
files; the shim's session id is the run's job id.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path


def main(work_dir: str) -> None:
    work = Path(work_dir)
    spec = json.loads((work / "spec.json").read_text())
    if os.fork():  # the launcher's child: say the run's pid, then leave
        os._exit(0)
    os.setsid()
    pid = os.getpid()
    (work / "pid").write_text(str(pid))
    print(pid, flush=True)
    os.dup2(os.open(os.devnull, os.O_RDWR), 0)
    with open(work / "output.log", "ab") as spool:
        os.dup2(spool.fileno(), 1)
        os.dup2(spool.fileno(), 2)
        cap = spec["max_file_bytes"]
        try:
            process = subprocess.Popen(  # noqa: S603 (argv list from a manifest)
                spec["argv"],
                cwd=spec["cwd"],
                env=spec["env"],
                stdout=spool,
                stderr=subprocess.STDOUT,
                # No file may grow more than a byte past the output cap.
                preexec_fn=lambda: resource.setrlimit(
                    resource.RLIMIT_FSIZE, (cap, cap)
                ),
                # Its own group, so that cancelling it leaves the shim to record.
                process_group=0,
            )
            (work / "group").write_text(str(process.pid))
            code = process.wait()
        except OSError as exc:
            spool.write(f"could not start {spec['argv'][0]}: {exc}\n".encode())
            code = 127
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = {
        "exit_code": code,
        "peak_memory_bytes": children.ru_maxrss * 1024,
        "cpu_seconds": children.ru_utime + children.ru_stime,
    }
    partial = work / "exit.json.part"
    partial.write_text(json.dumps(result))
    partial.replace(work / "exit.json")  # appears whole or not at all
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1])
