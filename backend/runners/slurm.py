"""The Slurm runner: each run is a batch job of the lab's cluster.

``launch`` writes a job script into the run's work folder and submits it with
``sbatch --parsable`` (job name ``labqueue-<site>-analysis-<id>-<attempt>``, so a
second launch of the same run finds the first job), with the run's CPUs, memory
and time, and the site's partition and account. It returns at once: a job may wait
hours in the cluster's queue, and nothing waits with it. The script runs the
site's container command (a template: ``docker run`` with the sandbox's flags by
default, ``apptainer exec --containall ...`` on a real cluster), writes its exit
code to ``exit.json`` and its output to ``output.log`` on the shared filesystem,
which ``read_log`` follows like the local runner's spool. ``poll`` asks
``scontrol show job``; the ways a cluster ends a job (TIMEOUT, OUT_OF_MEMORY,
NODE_FAIL, CANCELLED by someone else) come back as a reason in a researcher's
words.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shlex
import socket
import subprocess
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .. import safe_open
from .base import (
    CONTAINER_OUTPUT,
    CONTAINER_TMP,
    Handle,
    LaunchFailed,
    LogChunk,
    RunSpec,
    Status,
    Usage,
    binds,
    format_duration,
    owner_of,
    read_spool,
)

READ_LIMIT = 4 * 1024**2
# The default container command: Docker on the nodes, with the Docker runner's
# sandbox. {placeholders} are filled per run; {binds} and {argv} expand to several
# words (``--volume SOURCE:TARGET:MODE`` each; ``{binds=--bind}`` for Apptainer).
DOCKER_TEMPLATE = (
    "docker run --name {name} "
    "--network none --read-only --cap-drop ALL --security-opt no-new-privileges "
    "--user {user} --cpus {cpus} --memory {memory_mb}m --memory-swap {memory_mb}m "
    "--pids-limit {pids} --ulimit fsize={file_cap}:{file_cap} "
    "--tmpfs {tmp}:rw,noexec,nosuid,size={tmpfs_mb}m {binds} "
    "--workdir {output} --env HOME={tmp} --env TMPDIR={tmp} --env MPLBACKEND=Agg "
    "{image} {argv}"
)
# What the cluster's words for an ending mean to the researcher.
ENDINGS = {
    "TIMEOUT": "the cluster stopped it at its time limit of {time}",
    "OUT_OF_MEMORY": "it ran out of its {memory_mb:,} MiB memory limit",
    "NODE_FAIL": "the cluster node running it failed",
    "BOOT_FAIL": "the cluster could not start a node for it",
    "DEADLINE": "the cluster stopped it at its deadline",
    "PREEMPTED": "the cluster preempted it for other work",
    "CANCELLED": "it was cancelled on the cluster, outside Labqueue",
}
# Why the cluster keeps a job pending (squeue's %r), in a researcher's words.
WAITING = {
    "Resources": "the nodes it needs are busy",
    "Priority": "jobs of a higher priority are ahead of it",
    "Dependency": "it waits for another job",
    "BeginTime": "it may not start yet",
    "JobHeldUser": "it is held",
    "JobHeldAdmin": "the cluster's administrators hold it",
    "ReqNodeNotAvail": "the nodes it may use are not available",
    "PartitionDown": "its partition is down",
    "PartitionInactive": "its partition is not in use",
    "NodeDown": "a node it needs is down",
}
# Slurm's words for a job held back by a limit of its account or QOS begin so.
LIMIT_PREFIXES = ("Assoc", "QOS", "MaxJobs", "Partition")
RUNNING_STATES = {
    "PENDING",
    "CONFIGURING",
    "RUNNING",
    "COMPLETING",
    "SUSPENDED",
    "REQUEUED",
    "RESIZING",
    "SIGNALING",
    "STAGE_OUT",
}


# A POSIX account name as useradd takes it (never an option to sudo).
ACCOUNT_RE = re.compile(r"[a-z_][a-z0-9_.-]{0,31}")


def account_problem(account: str) -> str | None:
    """Why ``account`` cannot be a cluster account to submit as, or None."""
    if not ACCOUNT_RE.fullmatch(account):
        return (
            f"{account!r} is not an account name: lower-case letters, digits, "
            "'_', '.' and '-', starting with a letter or '_', at most 32"
        )
    if account == "root":
        return "jobs are never submitted as root"
    return None


def _bytes(size: str) -> int | None:
    """sacct's MaxRSS ("2348K", "1.50G") in bytes."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGT]?)", size.strip())
    if not match:
        return None
    return int(float(match[1]) * 1024 ** " KMGT".index(match[2] or " "))


def _seconds(total: str) -> float | None:
    """sacct's TotalCPU ("[D-][HH:]MM:SS[.mmm]") in seconds."""
    match = re.fullmatch(r"(?:(\d+)-)?(?:(\d+):)?(\d+):(\d+(?:\.\d+)?)", total.strip())
    if not match:
        return None
    days, hours, minutes, seconds = (float(part or 0) for part in match.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


def _waiting(state: str | None, reason: str | None) -> str | None:
    """Why a pending job waits, or None for one that runs."""
    if state not in ("PENDING", "REQUEUED"):
        return None
    word = (reason or "").split(",")[0].strip("()")
    if word in WAITING:
        why = WAITING[word]
    elif word.startswith(LIMIT_PREFIXES):
        why = f"a limit of the cluster's account or partition is reached ({word})"
    elif word and word != "None":
        why = f"Slurm's reason: {word}"
    else:
        why = "it has not started yet"
    return f"waiting in the cluster's queue: {why}"


def _started(state: str | None, stamp: str | None) -> datetime | None:
    """When a running job began (Slurm prints its host's local time), in UTC."""
    if state in (None, "PENDING", "REQUEUED") or not stamp:
        return None
    try:
        began = datetime.fromisoformat(stamp)
    except ValueError:  # "Unknown", "N/A"
        return None
    return began.astimezone(UTC).replace(tzinfo=None)


def _going(state: str | None, reason: str | None, stamp: str | None) -> Status:
    return Status(
        "running", waiting=_waiting(state, reason), started_at=_started(state, stamp)
    )


def _field(text: str, name: str) -> str | None:
    match = re.search(rf"(?:^|\s){name}=(\S*)", text)
    return match[1] if match else None


class SlurmRunner:
    """Hands each run to Slurm as a batch job running the site's container
    command."""

    name = "slurm"
    sandboxed = True  # as sandboxed as the container command the site gives
    containers = True
    cluster_accounts = True
    host_bound = False  # the cluster's queue is seen from every login node
    on_output_end = None  # its watcher finds ends by polling

    @classmethod
    def from_settings(
        cls, settings: Mapping[str, Any], site: str, host: str
    ) -> SlurmRunner:
        """With SLURM_SUBMIT_AS = "user", runs are submitted as their owners'
        cluster accounts through SLURM_SUDO_COMMAND."""
        return cls(
            site=site,
            host=host,
            partition=settings["SLURM_PARTITION"],
            account=settings["SLURM_ACCOUNT"],
            template=settings["SLURM_CONTAINER_COMMAND"] or DOCKER_TEMPLATE,
            sudo=settings["SLURM_SUDO_COMMAND"]
            if settings["SLURM_SUBMIT_AS"] == "user"
            else (),
        )

    def __init__(
        self,
        site: str,
        host: str = "",
        partition: str | None = None,
        account: str | None = None,
        template: str = DOCKER_TEMPLATE,
        sudo: tuple[str, ...] = (),
    ):
        self.site = site
        self.host = host or socket.gethostname()
        self.partition, self.account = partition, account
        self.template = template
        # How to run a command as a run's cluster account, "{account}" in it,
        # e.g. ("sudo", "-n", "-u", "{account}", "--"); empty: never.
        self.sudo = tuple(sudo)
        self.me = pwd.getpwuid(os.geteuid()).pw_name
        self._ended: set[str] = set()  # job ids a poll saw end
        self._usage: dict[str, Usage] = {}  # the accounting's, once they ended
        self._image_ids: dict[str, str] = {}

    def close(self) -> None:
        pass

    # --- the cluster's commands -------------------------------------------------

    def _run(self, *argv: str, timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run(  # noqa: S603 (Slurm's own commands, argv lists)
            list(argv), capture_output=True, text=True, timeout=timeout, check=False
        )

    def _as(self, account: str | None) -> list[str]:
        """The words that run a command as ``account`` (none for the worker's)."""
        if not account or account == self.me:
            return []
        problem = account_problem(account)
        if problem:
            raise LaunchFailed(problem)
        if not self.sudo:
            raise LaunchFailed(
                f"the run is for the cluster account {account}, and no command to "
                "submit as another account is configured (SLURM_SUDO_COMMAND)"
            )
        return [word.format(account=account) for word in self.sudo]

    def _cluster_user(self, account: str) -> str:
        """``uid:gid`` of a cluster account on this host (the nodes share its
        accounts); never root."""
        try:
            entry = pwd.getpwnam(account)
        except KeyError:
            raise LaunchFailed(
                f"the cluster account {account} does not exist on the worker host "
                f"{self.host}"
            ) from None
        if entry.pw_uid == 0:
            raise LaunchFailed(f"the cluster account {account} is root")
        return f"{entry.pw_uid}:{entry.pw_gid}"

    def _grant(self, account: str, *folders: Path) -> None:
        """Let ``account`` write the run's folders, and keep what it writes there
        readable and removable by the worker (POSIX ACLs, inherited by what the
        job creates)."""
        entries = f"u:{account}:rwX,d:u:{account}:rwX,d:u:{self.me}:rwX"
        try:
            done = self._run("setfacl", "-R", "-m", entries, *map(str, folders))
        except (OSError, subprocess.SubprocessError) as exc:
            raise LaunchFailed(f"setfacl could not be run: {exc}") from exc
        if done.returncode != 0:
            raise LaunchFailed(
                f"the run's folders could not be opened to the cluster account "
                f"{account} (the filesystem needs POSIX ACLs): {done.stderr.strip()}"
            )

    def job_name(self, analysis_id: int, attempt: int = 1) -> str:
        return f"labqueue-{self.site}-analysis-{analysis_id}-{attempt}"

    # --- images ---------------------------------------------------------------

    def image_problem(self, image: str, max_age: float = 0) -> str | None:
        """With Docker on the nodes, the image must be on this host's engine too
        (the nodes share it here); other templates find their image when the job
        starts."""
        if not self.template.startswith("docker "):
            return None
        try:
            found = self._run(
                "docker", "image", "inspect", "--format", "{{.Id}}", image
            )
        except (OSError, subprocess.SubprocessError) as exc:
            return f"docker could not be asked about {image}: {exc}"
        if found.returncode != 0:
            return f"the image {image} is not on this host"
        self._image_ids[image] = found.stdout.strip()
        return None

    def image_id(self, image: str) -> str | None:
        """The id ``image_problem`` found (a start asks both, one after the
        other: one ``docker image inspect`` serves them)."""
        if image not in self._image_ids and self.image_problem(image) is not None:
            return None
        return self._image_ids.get(image) or None

    # --- launch ---------------------------------------------------------------

    def container_command(self, spec: RunSpec) -> str:
        """The site's template filled for this run, as one shell line."""
        values = {
            "name": self.job_name(spec.analysis_id, spec.attempt),
            "site": self.site,
            "user": (
                self._cluster_user(spec.cluster_account)
                if spec.cluster_account
                else spec.user
            ),
            "cpus": spec.cpus,
            "memory_mb": spec.memory_mb,
            "pids": spec.pids,
            "file_cap": spec.max_output_bytes + 1,
            "tmp": CONTAINER_TMP,
            "tmpfs_mb": spec.tmpfs_mb,
            "output": CONTAINER_OUTPUT,
            "image": spec.image,
        }
        words = []
        for word in shlex.split(self.template):
            if word == "{binds}" or word.startswith("{binds="):
                flag = word[len("{binds=") : -1] if "=" in word else "--volume"
                for bind in binds(spec):
                    words += [flag, bind]
            elif word == "{argv}":
                words += spec.argv
            else:
                words.append(word.format(**values))
        return shlex.join(words)

    def job_script(self, spec: RunSpec) -> str:
        """The batch script: the container command, its exit code (and, with
        Docker, whether the kernel killed it for memory) kept in exit.json; a TERM
        (scancel, the time limit) stops the container too."""
        work = spec.work_dir
        name = shlex.quote(self.job_name(spec.analysis_id, spec.attempt))
        exit_file = shlex.quote(str(work / "exit.json"))
        docker = self.template.startswith("docker ")
        lines = [
            "#!/bin/sh",
            "# Written by Labqueue: one analysis run.",
            "child=",
        ]
        if docker:
            lines += [
                f"trap 'docker rm -f {name} >/dev/null 2>&1; exit 143' TERM INT",
                f"docker rm -f {name} >/dev/null 2>&1",  # a first attempt's
            ]
        else:
            lines.append(
                "trap '[ -n \"$child\" ] && kill -TERM $child; exit 143' TERM INT"
            )
        lines += [
            f"{self.container_command(spec)} &",
            "child=$!",
            "wait $child",
            "code=$?",
        ]
        if docker:
            lines += [
                f"oom=$(docker inspect --format '{{{{.State.OOMKilled}}}}' {name} "
                "2>/dev/null || echo false)",
                f"docker rm -f {name} >/dev/null 2>&1",
            ]
        else:
            lines.append("oom=false")
        lines += [
            'echo "{\\"exit_code\\": $code, \\"oom_killed\\": $oom}" '
            f"> {exit_file}.part",
            f"mv {exit_file}.part {exit_file}",
            "exit $code",
            "",
        ]
        return "\n".join(lines)

    def find(self, spec: RunSpec) -> Handle | None:
        # The work folder is the job's to write too: what it holds is checked.
        try:
            job_id = safe_open.read_text(spec.work_dir, "slurm-job", 64).strip()
        except FileNotFoundError:
            job_id = ""
        if job_id.isdigit():
            return Handle(self.name, job_id, self.host, str(spec.work_dir))
        listed = self._run(
            "squeue",
            "--noheader",
            "--format=%i",
            "--name",
            self.job_name(spec.analysis_id, spec.attempt),
        )
        ids = listed.stdout.split()
        if ids:
            return Handle(self.name, ids[0], self.host, str(spec.work_dir))
        return None

    def launch(self, spec: RunSpec) -> Handle:
        """Submit the run's job (or find the one a first launch submitted)."""
        found = self.find(spec)
        if found is not None:
            return found
        work = spec.work_dir
        safe_open.ensure_folder(work)
        submit_as = self._as(spec.cluster_account)
        safe_open.ensure_folder(
            spec.output_dir, None if submit_as else owner_of(spec.user)
        )
        if submit_as:
            self._grant(spec.cluster_account, work, spec.output_dir)
        # Written by name into a folder the job may write: a link that stands at
        # the name is replaced, never written through.
        for stale in ("exit.json", "output.log"):
            safe_open.remove(work, stale)
        script = work / "job.sh"
        safe_open.write_file(work, "job.sh", self.job_script(spec).encode())
        limits = {"timeout_s": spec.timeout_s, "memory_mb": spec.memory_mb}
        safe_open.write_file(work, "limits.json", json.dumps(limits).encode())
        minutes = max(1, -(-int(spec.timeout_s) // 60))
        argv = [
            *submit_as,
            "sbatch",
            "--parsable",
            f"--job-name={self.job_name(spec.analysis_id, spec.attempt)}",
            f"--output={work / 'output.log'}",
            f"--chdir={work}",
            f"--cpus-per-task={max(1, round(spec.cpus))}",
            f"--mem={spec.memory_mb}M",
            f"--time={minutes}",
            "--no-requeue",
        ]
        if self.partition:
            argv.append(f"--partition={self.partition}")
        if self.account:
            argv.append(f"--account={self.account}")
        try:
            made = self._run(*argv, str(script), timeout=60)
        except (OSError, subprocess.SubprocessError) as exc:
            raise LaunchFailed(f"sbatch could not be run: {exc}") from exc
        job_id = made.stdout.strip().split(";")[0]
        if made.returncode != 0 or not job_id.isdigit():
            raise LaunchFailed(f"sbatch refused the job: {made.stderr.strip()}")
        safe_open.write_file(work, "slurm-job", job_id.encode())
        return Handle(self.name, job_id, self.host, str(work))

    # --- watch ----------------------------------------------------------------

    def _exit(self, work: Path) -> tuple[int | None, bool]:
        """The exit code and OOM flag the job script kept (None: it kept none)."""
        try:
            ended = json.loads(safe_open.read_text(work, "exit.json", 4096))
            return int(ended["exit_code"]), bool(ended.get("oom_killed"))
        except (OSError, ValueError, KeyError, TypeError):
            return None, False

    def poll(self, handle: Handle) -> Status:
        status = self._poll(handle)
        if status.ended:  # its log is whole once read to the end
            self._ended.add(handle.job_id)
        return status

    def _job(self, job_id: str) -> tuple[str | None, str]:
        """The job's state in ``scontrol show job`` (None: Slurm does not know
        it) and the whole line."""
        shown = self._run("scontrol", "--oneliner", "show", "job", job_id)
        if shown.returncode != 0:
            return None, ""
        return _field(shown.stdout, "JobState"), shown.stdout

    def _poll(self, handle: Handle) -> Status:
        work = Path(handle.work_dir)
        state, shown = self._job(handle.job_id)
        if state in RUNNING_STATES:
            return _going(state, _field(shown, "Reason"), _field(shown, "StartTime"))
        code, oom = self._exit(work)
        if state in ENDINGS and (code is None or code >= 128):
            ending = self._ending(state, work, _field(shown, "TimeLimit"))
            return Status("exited", code, state == "OUT_OF_MEMORY", ending)
        if code is not None:
            return Status("exited", code, oom)
        if state in ("FAILED", "COMPLETED"):
            exit_code = (_field(shown, "ExitCode") or "0:0").split(":")[0]
            return Status("exited", int(exit_code) if exit_code.isdigit() else None)
        if state is None:
            # Gone from the controller's memory (MinJobAge): the accounting,
            # when the cluster keeps it, still knows how it ended.
            state, exit_code, limit = self._accounted(handle.job_id)
            if state in ENDINGS:
                return Status("exited", None, False, self._ending(state, work, limit))
            if state in ("FAILED", "COMPLETED"):
                return Status("exited", exit_code)
            return Status("missing")
        return Status("exited", None, False, f"the cluster ended it ({state})")

    def _sacct(self, job_id: str, fields: str) -> list[list[str]]:
        """The job's lines in the cluster's accounting (none when it is off)."""
        try:
            shown = self._run(
                "sacct",
                f"--jobs={job_id}",
                "--noheader",
                "--parsable2",
                f"--format={fields}",
            )
        except (OSError, subprocess.SubprocessError):
            return []
        if shown.returncode != 0:
            return []
        return [line.split("|") for line in shown.stdout.splitlines() if line]

    def _accounted(self, job_id: str) -> tuple[str | None, int | None, str | None]:
        """The job's final state, exit code and time limit in the accounting, if
        kept."""
        fields = "JobID,State,ExitCode,Timelimit"
        for job, state, exit_code, limit in self._sacct(job_id, fields):
            if job == job_id:  # the allocation's line, not its steps'
                code = exit_code.split(":")[0]
                # "CANCELLED by 1001" names who cancelled it.
                words = state.split()
                return (
                    words[0] if words else None,
                    int(code) if code.isdigit() else None,
                    limit,
                )
        return None, None, None

    def _ending(self, state: str, work: Path, time_limit: str | None = None) -> str:
        """The cluster's ending in words, with the limits the job had: its time
        limit as the cluster last held it (an admin may have lowered it), else
        the run's own."""
        spec = {}
        try:
            spec = json.loads(safe_open.read_text(work, "limits.json", 4096))
        except (OSError, ValueError):
            pass
        if not isinstance(spec, dict):
            spec = {}
        seconds = _seconds(time_limit or "")
        if seconds is None:
            seconds = spec.get("timeout_s", 0)
        return ENDINGS[state].format(
            time=format_duration(seconds), memory_mb=spec.get("memory_mb", 0)
        )

    def poll_many(self, handles: list[Handle]) -> dict[str, Status]:
        """Every handle's status, with one ``squeue`` for the jobs still queued or
        running (and one look each at those that have ended)."""
        if not handles:
            return {}
        # All the cluster's queued and running jobs: asking for given ids fails
        # as a whole when one of them has left the cluster's memory.
        listed = self._run("squeue", "--noheader", "--format=%i|%T|%S|%r")
        jobs = {}
        for line in listed.stdout.splitlines():
            words = line.split("|", 3)
            if len(words) == 4:
                jobs[words[0]] = words[1:]
        found = {}
        for handle in handles:
            state, stamp, reason = jobs.get(handle.job_id, (None, None, None))
            if listed.returncode == 0 and state in RUNNING_STATES:
                found[handle.job_id] = _going(state, reason, stamp)
            else:
                found[handle.job_id] = self.poll(handle)
        return found

    def read_log(self, handle: Handle, offset: int) -> LogChunk:
        work = Path(handle.work_dir)
        # A job stopped by the cluster leaves no exit.json: a poll has seen it end.
        ended = safe_open.exists(work, "exit.json") or handle.job_id in self._ended
        return read_spool(work, "output.log", offset, ended, READ_LIMIT)

    def cancel(self, handle: Handle) -> None:
        """``scancel`` as the account that submitted the job (a user's job may
        only be cancelled by that user)."""
        owner = self._run(
            "squeue", "--noheader", "--format=%u", f"--jobs={handle.job_id}"
        ).stdout.strip()
        prefix = self._as(owner) if self.sudo and account_problem(owner) is None else []
        self._run(*prefix, "scancel", handle.job_id)

    def usage(self, handle: Handle) -> Usage:
        """Peak memory and CPU time from the cluster's accounting once the job
        has ended (asked once; nothing when accounting is off). Measured for the
        job's processes: with the Docker template these are the client's, not the
        container's, so it is taken only with other templates (Apptainer)."""
        if handle.job_id not in self._ended or self.template.startswith("docker "):
            return Usage()
        if handle.job_id not in self._usage:
            lines = self._sacct(handle.job_id, "JobID,MaxRSS,TotalCPU")
            peaks = [_bytes(rss) for _, rss, _ in lines if _bytes(rss) is not None]
            cpu = [_seconds(total) for job, _, total in lines if job == handle.job_id]
            self._usage[handle.job_id] = Usage(
                max(peaks) if peaks else None, cpu[0] if cpu else None
            )
        return self._usage[handle.job_id]

    def unlinked_output_bytes(self, handle: Handle) -> int:
        return 0  # the processes are on a node: the folder's size is what is seen

    def release(self, handle: Handle) -> None:
        pass

    def cleanup(self, handle: Handle) -> None:
        """End the job if it still runs, and drop what the runner kept."""
        state, shown = self._job(handle.job_id)
        if state in RUNNING_STATES:
            self.cancel(handle)
        self._ended.discard(handle.job_id)
        self._usage.pop(handle.job_id, None)
        if not handle.work_dir:  # an orphan found on the cluster: only its job
            return
        container = self._container_of(handle.job_id, shown)
        if container:
            # A scancel that came while `docker run` was creating the container
            # leaves it created after the job script's trap removed nothing.
            self._run("docker", "rm", "-f", container)
        for name in ("output.log", "exit.json", "job.sh", "slurm-job", "limits.json"):
            safe_open.remove(handle.work_dir, name)

    def _container_of(self, job_id: str, shown: str) -> str | None:
        """The name of the job's container (with the Docker template): the job's
        own name, as the cluster knows it (``shown`` is its scontrol line; the
        accounting when the controller forgot it). Never read from the work
        folder, which the job may write: a name there could be another run's."""
        if not self.template.startswith("docker "):
            return None
        name = _field(shown, "JobName") if shown else None
        if not name:
            found = self._sacct(job_id, "JobName")
            name = found[0][0] if found and found[0] else None
        if not name or not name.startswith(f"labqueue-{self.site}-analysis-"):
            return None
        return name

    def jobs(self) -> list[tuple[int, str]]:
        """This site's jobs on the cluster: (analysis id, job id)."""
        listed = self._run("squeue", "--noheader", "--format=%i %j")
        prefix = f"labqueue-{self.site}-analysis-"
        found = []
        for line in listed.stdout.splitlines():
            job_id, _, name = line.strip().partition(" ")
            if name.startswith(prefix):
                analysis = name.removeprefix(prefix).split("-")[0]
                if analysis.isdigit():
                    found.append((int(analysis), job_id))
        return found
