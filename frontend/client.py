"""`labqueue`: Labqueue from the command line, through its REST API.

    labqueue login                      # asks for the site's URL and a token
    labqueue projects
    labqueue project create NAME        # also: rename, delete
    labqueue storage                    # what your projects hold, of what quota
    labqueue upload PROJECT PATH...     # resumable: run it again to go on
    labqueue pipelines                  # and: labqueue pipeline NAME (its parameters)
    labqueue run PROJECT PIPELINE --param k=v ... [--wait]
    labqueue download ANALYSIS [--out DIR]
    labqueue add-outputs ANALYSIS PROJECT [--to FOLDER] [--path P ...]
    labqueue batch PROJECT PIPELINE --files 'raw/*.fq.gz' [--param k=v ...]
    labqueue batch-status BATCH         # and: batch-cancel BATCH
    labqueue share PROJECT ADDRESS|group:NAME [--write]   # and: shares, unshare
    labqueue link ANALYSIS [--days N]   # a read-only link, shown once

It talks HTTP only (requests, and tuspy for resumable uploads): it needs no
database, broker or Flask. The URL and token are kept in
``$XDG_CONFIG_HOME/labqueue/config.json`` (``~/.config``), readable by the user
only; ``LABQUEUE_URL`` and ``LABQUEUE_TOKEN`` override them, and are enough
without a login (CI jobs, cluster scripts). Every refusal is one line and a
non-zero exit; a command that did part of its work says what, and exits 1.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from pathlib import Path
from urllib.parse import unquote

import click
import requests

from .client_params import ParamError, describe, parameters
from .core.formatting import human_size

TIMEOUT = 60  # seconds for any one request (pieces of uploads included)
PIECE = 32 * 1024 * 1024  # bytes sent per upload request


def config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "labqueue"


class Site:
    """The server and the token, and calls to its API."""

    def __init__(self, url: str, token: str):
        self.url = url.rstrip("/")
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"
        self.session.headers["User-Agent"] = "labqueue-cli"

    @classmethod
    def from_config(cls) -> Site:
        saved = {}
        path = config_dir() / "config.json"
        if path.exists():
            saved = json.loads(path.read_text())
        url = os.environ.get("LABQUEUE_URL") or saved.get("url")
        token = os.environ.get("LABQUEUE_TOKEN") or saved.get("token")
        if not url or not token:
            raise click.ClickException(
                "Not logged in: run `labqueue login`, or set LABQUEUE_URL and "
                "LABQUEUE_TOKEN."
            )
        return cls(url, token)

    def call(self, method: str, path: str, **kwargs) -> requests.Response:
        kwargs.setdefault("timeout", TIMEOUT)
        try:
            response = self.session.request(method, self.url + path, **kwargs)
        except requests.RequestException as exc:
            raise click.ClickException(unreachable(self.url, exc)) from exc
        if response.status_code >= 400:
            raise click.ClickException(_complaint(response))
        return response

    def json(self, method: str, path: str, **kwargs):
        return self.call(method, path, **kwargs).json()


def unreachable(url: str, exc: Exception) -> str:
    """One line for a request that got no answer (requests' own text is a
    paragraph about connection pools)."""
    if isinstance(exc, requests.Timeout):
        why = f"no answer within {TIMEOUT} s"
    elif isinstance(exc, requests.exceptions.SSLError):
        why = "its TLS certificate is not trusted"
    elif isinstance(exc, requests.ConnectionError):
        why = "nothing answers there (is the address right, and the site up?)"
    else:
        why = str(exc).splitlines()[0][:200]
    return f"Cannot reach {url}: {why}."


def _complaint(response: requests.Response) -> str:
    """The server's message for a refused call, with its field errors."""
    try:
        body = response.json()
    except ValueError:
        return f"{response.status_code} {response.reason}"
    message = body.get("message") or response.reason
    errors = body.get("errors") or {}
    lines = [f"{message} ({response.status_code})"]
    for group in errors.values():
        if isinstance(group, dict):
            for field, problem in group.items():
                text = "; ".join(problem) if isinstance(problem, list) else problem
                lines.append(f"  {field or 'parameters'}: {text}")
    return "\n".join(lines)


class _Commands(click.Group):
    """Commands whose unforeseen failures (a file that cannot be read, a
    connection lost mid-upload) end in one line, not a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except requests.RequestException as exc:
            url = getattr(exc.request, "url", None) or "the site"
            raise click.ClickException(unreachable(url, exc)) from exc
        except OSError as exc:
            where = f"{exc.filename}: " if exc.filename else ""
            raise click.ClickException(f"{where}{exc.strerror or exc}") from exc


@click.group(cls=_Commands)
def main() -> None:
    """Labqueue from the command line."""


@main.command()
@click.option(
    "--url", prompt="Labqueue address", help="e.g. https://labqueue.example.ac.uk"
)
@click.option(
    "--token",
    prompt="API token (from your profile page)",
    hide_input=True,
    help="A personal token.",
)
def login(url: str, token: str) -> None:
    """Check the address and token, and keep them for the next commands."""
    site = Site(url, token)
    projects = site.json("GET", "/api/v1/projects")
    folder = config_dir()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / "config.json"
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text(json.dumps({"url": site.url, "token": token}))
    click.echo(f"Logged in to {site.url} ({len(projects)} projects).")


@main.command()
def projects() -> None:
    """Your projects and those shared with you, with your role in each."""
    site = Site.from_config()
    for project in site.json("GET", "/api/v1/projects"):
        role = (
            "" if project["role"] == "owner" else f", shared with you {project['role']}"
        )
        click.echo(
            f"{project['id']:>6}  {project['name']}  ({project['file_count']} files, "
            f"{project['analyses']} analyses{role})"
        )


@main.group()
def project() -> None:
    """Create, rename or delete a project."""


@project.command("create")
@click.argument("name")
@click.option("--description", default="", help="What it holds.")
def create_project(name: str, description: str) -> None:
    """Create a project."""
    site = Site.from_config()
    made = site.json(
        "POST", "/api/v1/projects", json={"name": name, "description": description}
    )
    click.echo(f"Project {made['id']} “{made['name']}” created.")


@project.command("rename")
@click.argument("project")
@click.argument("new_name")
def rename_project(project: str, new_name: str) -> None:
    """Give PROJECT (an id or a name) a new name."""
    site = Site.from_config()
    project_id = _project_id(site, project)
    site.json("PATCH", f"/api/v1/projects/{project_id}", json={"name": new_name})
    click.echo(f"Project {project_id} is now “{new_name}”.")


@project.command("delete")
@click.argument("project")
@click.option("--yes", is_flag=True, help="Do not ask first.")
def delete_project(project: str, yes: bool) -> None:
    """Delete PROJECT with its files and analyses."""
    site = Site.from_config()
    project_id = _project_id(site, project)
    if not yes:
        click.confirm(
            f"Delete project {project_id} with its files and analyses?", abort=True
        )
    site.call("DELETE", f"/api/v1/projects/{project_id}")
    click.echo(f"Project {project_id} deleted.")


@main.command()
def storage() -> None:
    """Your storage: what your projects hold, of what quota."""
    site = Site.from_config()
    found = site.json("GET", "/api/v1/storage")
    click.echo(
        f"{human_size(found['used_bytes'])} of {human_size(found['quota_bytes'])} "
        f"used, {human_size(found['free_bytes'])} free: files "
        f"{human_size(found['files_bytes'])}, analyses "
        f"{human_size(found['outputs_bytes'])}, uploads in progress "
        f"{human_size(found['uploading_bytes'])}."
    )


def _project_id(site: Site, project: str) -> int:
    """A project by id or by name (yours first, then those shared with you)."""
    if project.isdigit():
        return int(project)
    named = [p for p in site.json("GET", "/api/v1/projects") if p["name"] == project]
    own = [p for p in named if p["role"] == "owner"]
    if len(own) == 1 or len(named) == 1:
        return (own or named)[0]["id"]
    if named:
        ids = ", ".join(str(p["id"]) for p in named)
        raise click.ClickException(
            f"{len(named)} projects shared with you are named {project!r} (ids "
            f"{ids}): give the id."
        )
    raise click.ClickException(f"You have no project named {project!r}.")


@main.command()
@click.argument("project")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.option(
    "--to", "folder", default="", help="Folder in the project to put them in."
)
@click.option(
    "--on-clash",
    type=click.Choice(["skip", "replace", "keep", "ask"]),
    default="skip",
    show_default=True,
    help="If the name is there already: leave it, replace it, keep both, or refuse.",
)
def upload(project: str, paths: tuple[str, ...], folder: str, on_clash: str) -> None:
    """Upload files (folders with what they hold), resumably: run the same
    command again after an interruption or after adding files, and each file goes
    on from where the server has it. A file already there with the same bytes
    (size and SHA-256) is not sent again; one there with other bytes is left as
    it is unless --on-clash says otherwise. One file that fails does not stop
    the others."""
    site = Site.from_config()
    project_id = _project_id(site, project)
    there = {
        entry["path"]: entry
        for entry in site.json("GET", f"/api/v1/projects/{project_id}/files")
        if not entry["is_dir"]
    }
    todo = [
        (local, remote, local.stat().st_size) for local, remote in _files(paths, folder)
    ]
    total, done = sum(size for _, _, size in todo), 0
    sent, same, differ, failed = 0, 0, [], []
    for number, (local, remote, size) in enumerate(todo, start=1):
        # Each file's bar says where the whole upload stands.
        place = f"[{number}/{len(todo)}, {human_size(done)} of {human_size(total)}]"
        done += size
        try:
            if remote in there:
                if _same_bytes(site, project_id, there[remote], local):
                    same += 1
                    continue
                if on_clash == "skip":
                    differ.append(remote)
                    continue
            _upload_one(site, project_id, local, remote, on_clash, place)
            sent += 1
        except (click.ClickException, OSError) as exc:
            reason = exc.message if isinstance(exc, click.ClickException) else exc
            click.echo(f"{local}: not sent: {reason}", err=True)
            failed.append(str(local))
    summary = [f"{sent} sent"]
    if same:
        summary.append(f"{same} already there (same contents)")
    if differ:
        summary.append(
            f"{len(differ)} there already but different, left as they are "
            f"({', '.join(differ[:3])}{', …' if len(differ) > 3 else ''}; "
            "--on-clash replace sends them)"
        )
    if failed:
        summary.append(f"{len(failed)} failed")
    click.echo(", ".join(summary) + ".")
    if failed:
        sys.exit(1)


def _same_bytes(site: Site, project_id: int, entry: dict, local: Path) -> bool:
    """Whether the project's file holds what ``local`` holds: sizes first, then
    SHA-256 on both sides (only for files of equal size, as rsync does)."""
    size = local.stat().st_size
    if entry["size"] != size:
        return False
    with open(local, "rb") as stream:
        mine = hashlib.file_digest(stream, "sha256").hexdigest()
    theirs = site.json(
        "GET",
        f"/api/v1/projects/{project_id}/files/{entry['id']}/checksum",
        timeout=TIMEOUT + size // (50 * 1024 * 1024),  # the server reads it all
    )
    return theirs["sha256"] == mine


def _files(paths, folder: str):
    prefix = folder.strip("/") + "/" if folder.strip("/") else ""
    for given in map(Path, paths):
        if given.is_dir():
            for local in sorted(p for p in given.rglob("*") if p.is_file()):
                relative = local.relative_to(given.parent).as_posix()
                yield local, prefix + relative
        else:
            yield given, prefix + given.name


def _upload_one(
    site: Site,
    project_id: int,
    local: Path,
    remote: str,
    on_clash: str,
    place: str,
):
    from tusclient.client import TusClient
    from tusclient.exceptions import TusCommunicationError
    from tusclient.storage.filestorage import FileStorage

    client = TusClient(
        site.url + "/api/v1/uploads",
        headers={"Authorization": site.session.headers["Authorization"]},
    )
    # Where each file's upload lives on the server, to resume it next time.
    config_dir().mkdir(parents=True, exist_ok=True, mode=0o700)
    storage = FileStorage(str(config_dir() / "uploads.json"))
    fingerprint = _Fingerprint(site.url, project_id, remote)
    options = {
        "chunk_size": PIECE,
        "metadata": {"project": str(project_id), "path": remote, "on_clash": on_clash},
        "store_url": True,
        "url_storage": storage,
        "fingerprinter": fingerprint,
        "upload_checksum": True,
        "retries": 3,
        "retry_delay": 2,
    }
    size = local.stat().st_size
    try:
        try:
            uploader = client.uploader(str(local), **options)
        except TusCommunicationError:
            # The server no longer has the upload begun earlier (it expired, or
            # was stored): start again.
            with open(local, "rb") as stream:
                storage.remove_item(fingerprint.get_fingerprint(stream))
            uploader = client.uploader(str(local), **options)
        label = f"{place} {remote}"
        with click.progressbar(length=size, label=label, show_pos=True) as bar:
            bar.update(uploader.offset)
            while True:
                before = uploader.offset
                uploader.upload_chunk()
                bar.update(uploader.offset - before)
                if uploader.offset >= size:
                    break
        with open(local, "rb") as stream:  # done: nothing left to resume
            storage.remove_item(fingerprint.get_fingerprint(stream))
    except TusCommunicationError as exc:
        raise click.ClickException(f"{remote}: {_tus_complaint(exc)}") from exc
    finally:
        storage.close()
    headers = uploader.request.response_headers if uploader.request else {}
    stored = unquote(headers.get("labqueue-upload-path", remote))
    click.echo(f"{local} → {stored}")


def _tus_complaint(exc) -> str:
    content = exc.response_content or b""
    try:
        return json.loads(content).get("message") or str(exc)
    except ValueError:
        return content.decode(errors="replace") or str(exc)


class _Fingerprint:
    """One upload per site, project, path and file contents' size and mtime."""

    def __init__(self, url: str, project_id: int, remote: str):
        self.key = f"{url}|{project_id}|{remote}"

    def get_fingerprint(self, stream) -> str:
        stream.seek(0, 2)
        size = stream.tell()
        stream.seek(0)
        head = stream.read(1024 * 1024)
        stream.seek(0)
        return hashlib.sha256(f"{self.key}|{size}".encode() + head).hexdigest()


@main.command("pipelines")
def list_pipelines() -> None:
    """The pipelines you can run (`labqueue pipeline NAME` shows its parameters)."""
    site = Site.from_config()
    for pipeline in site.json("GET", "/api/v1/pipelines"):
        state = (
            "" if pipeline["ready"] else f"  (cannot run yet: {pipeline['message']})"
        )
        click.echo(f"{pipeline['name']:<20} {pipeline['title']}{state}")


@main.command("pipeline")
@click.argument("name")
def show_pipeline(name: str) -> None:
    """A pipeline and its parameters, as the run form shows them."""
    site = Site.from_config()
    pipeline = site.json("GET", f"/api/v1/pipelines/{name}")
    click.echo(f"{pipeline['name']} {pipeline['version']}: {pipeline['title']}")
    click.echo(pipeline["description"])
    click.echo("Parameters (--param name=value):")
    for line in describe(pipeline["parameters"]):
        click.echo(line)


@main.command()
@click.argument("project")
@click.argument("pipeline")
@click.option(
    "--param",
    "params",
    multiple=True,
    help="name=value; again, or a pattern (raw/*.fq), for a list",
)
@click.option("--wait", is_flag=True, help="Follow it to its end: progress and log.")
def run(project: str, pipeline: str, params: tuple[str, ...], wait: bool) -> None:
    """Submit an analysis of PROJECT with PIPELINE."""
    site = Site.from_config()
    project_id = _project_id(site, project)
    values = _typed(site, project_id, pipeline, params)
    analysis = site.json(
        "POST",
        "/api/v1/analyses",
        json={"project_id": project_id, "pipeline": pipeline, "parameters": values},
    )
    click.echo(f"Analysis #{analysis['id']} is queued.")
    if wait:
        sys.exit(_follow(site, analysis["id"]))


def _typed(site: Site, project_id: int, pipeline: str, params: tuple[str, ...]) -> dict:
    """The --param values as the pipeline's schema types them (patterns matched
    against the project's files); a refusal is one line naming the parameter."""
    schema = site.json("GET", f"/api/v1/pipelines/{pipeline}")["parameters"]
    try:
        return parameters(schema, params, lambda: _file_paths(site, project_id))
    except ParamError as exc:
        raise click.ClickException(f"{pipeline}: {exc}") from exc


def _file_paths(site: Site, project_id: int) -> list[str]:
    """Every file of a project (what a pattern in --param is matched against)."""
    entries = site.json("GET", f"/api/v1/projects/{project_id}/files")
    return [entry["path"] for entry in entries if not entry["is_dir"]]


def _follow(site: Site, analysis_id: int) -> int:
    """Show progress and the log until the analysis ends; its exit status."""
    offset, shown = 0, 0
    with click.progressbar(length=100, label=f"#{analysis_id}") as bar:
        while True:
            found = site.json("GET", f"/api/v1/analyses/{analysis_id}")
            log = site.json(
                "GET", f"/api/v1/analyses/{analysis_id}/log?offset={offset}"
            )
            offset = log["offset"]
            for line in log["text"].splitlines():
                if not line.startswith("##progress"):
                    click.echo(f"\n  {line}", nl=False, err=True)
            percent = int(found["progress_percent"])
            if percent > shown:
                bar.update(percent - shown)
                shown = percent
            if found["state"] in ("succeeded", "failed", "cancelled"):
                if found["state"] == "succeeded" and shown < 100:
                    bar.update(100 - shown)
                break
            time.sleep(1)
    click.echo(f"Analysis #{analysis_id} {found['state']}.")
    if found.get("error_summary"):
        click.echo(found["error_summary"], err=True)
    return 0 if found["state"] == "succeeded" else 1


@main.command("add-outputs")
@click.argument("analysis", type=int)
@click.argument("project")
@click.option("--to", "folder", default="", help="Folder (default: from-analysis-N-…).")
@click.option("--path", "paths", multiple=True, help="One output (again for more).")
@click.option(
    "--on-clash",
    type=click.Choice(["keep", "replace", "skip"]),
    default="keep",
    show_default=True,
    help="If a name exists: keep both, replace it, or skip.",
)
def add_outputs(
    analysis: int, project: str, folder: str, paths: tuple[str, ...], on_clash: str
) -> None:
    """Put the outputs of ANALYSIS (all, or each --path) into PROJECT, as files
    that keep where they came from, for new runs to use."""
    site = Site.from_config()
    body = {
        "project_id": _project_id(site, project),
        "folder": folder,
        "paths": list(paths) or None,
        "on_clash": on_clash,
    }
    done = site.json("POST", f"/api/v1/analyses/{analysis}/add-to-project", json=body)
    for result in done["results"]:
        click.echo(f"{result['status']:>9}  {result['path']}  {result['message']}")
    refused = [r for r in done["results"] if r["status"] == "refused"]
    if refused:
        raise click.ClickException(f"{len(refused)} output(s) were left out.")


@main.command()
@click.argument("project")
@click.argument("pipeline")
@click.option(
    "--files",
    "chosen",
    multiple=True,
    required=True,
    help="A file of the project (again for more), or one pattern: 'reads/*.fq.gz'.",
)
@click.option(
    "--param", "params", multiple=True, help="name=value, the same for every run."
)
def batch(
    project: str, pipeline: str, chosen: tuple[str, ...], params: tuple[str, ...]
) -> None:
    """Submit one analysis of PIPELINE per file of PROJECT: the files given, or
    those one pattern matches (and the pipeline takes)."""
    site = Site.from_config()
    project_id = _project_id(site, project)
    values = _typed(site, project_id, pipeline, params)
    body = {"project_id": project_id, "pipeline": pipeline, "parameters": values}
    if len(chosen) == 1 and any(mark in chosen[0] for mark in "*?["):
        body["pattern"] = chosen[0]
    else:
        body["files"] = list(chosen)
    made = site.json("POST", "/api/v1/batches", json=body)
    inputs = [row["input"] for row in made["analyses"]]
    click.echo(
        f"Batch #{made['id']}: {len(inputs)} analyses queued: {', '.join(inputs)}."
    )


@main.command("batch-status")
@click.argument("batch_id", type=int)
def batch_status(batch_id: int) -> None:
    """How far a batch is: counts per state, then each analysis."""
    site = Site.from_config()
    found = site.json("GET", f"/api/v1/batches/{batch_id}")
    counts = ", ".join(f"{state} {n}" for state, n in found["counts"].items() if n)
    click.echo(f"Batch #{found['id']} ({found['pipeline']}): {counts}")
    for row in found["analyses"]:
        problem = f"  {row['error_summary']}" if row["error_summary"] else ""
        click.echo(
            f"{row['id']:>8}  {row['state']:<10} {row['progress_percent']:>5.0f}%  "
            f"{row['input']}{problem}"
        )


@main.command("batch-cancel")
@click.argument("batch_id", type=int)
def batch_cancel(batch_id: int) -> None:
    """Cancel every analysis of a batch that has not ended."""
    site = Site.from_config()
    click.echo(site.json("POST", f"/api/v1/batches/{batch_id}/cancel")["message"])


@main.command()
@click.argument("project")
@click.argument("whom")
@click.option("--write", is_flag=True, help="Read-write (default: read-only).")
def share(project: str, whom: str, write: bool) -> None:
    """Share PROJECT with WHOM: an address, or `group:NAME` for a group of yours.
    Sharing again changes the access."""
    site = Site.from_config()
    project_id = _project_id(site, project)
    body = {"access": "read-write" if write else "read-only"}
    if whom.startswith("group:"):
        body["group_id"] = _group_id(site, whom.removeprefix("group:"))
    else:
        body["email"] = whom
    made = site.json("POST", f"/api/v1/projects/{project_id}/shares", json=body)
    click.echo(
        f"“{project}” is shared with {made['email'] or 'the group ' + made['group']} "
        f"({made['access']})."
    )


@main.command()
@click.argument("project")
def shares(project: str) -> None:
    """Who PROJECT is shared with."""
    site = Site.from_config()
    project_id = _project_id(site, project)
    for found in site.json("GET", f"/api/v1/projects/{project_id}/shares"):
        whom = found["email"] or f"group:{found['group']}"
        click.echo(f"{whom}  {found['access']}")


@main.command()
@click.argument("project")
@click.argument("whom")
def unshare(project: str, whom: str) -> None:
    """Stop sharing PROJECT with WHOM (an address, or `group:NAME`)."""
    site = Site.from_config()
    project_id = _project_id(site, project)
    listed = site.json("GET", f"/api/v1/projects/{project_id}/shares")
    found = next(
        (
            s
            for s in listed
            if whom.lower() == (s["email"] or f"group:{s['group']}").lower()
        ),
        None,
    )
    if found is None:
        raise click.ClickException(f"“{project}” is not shared with {whom}.")
    site.call("DELETE", f"/api/v1/projects/{project_id}/shares/{found['id']}")
    click.echo(f"“{project}” is no longer shared with {whom}.")


def _group_id(site: Site, name: str) -> int:
    named = [g for g in site.json("GET", "/api/v1/groups") if g["name"] == name]
    if len(named) != 1:
        raise click.ClickException(
            f"You are in {len(named) or 'no'} groups named {name!r}."
        )
    return named[0]["id"]


@main.command()
@click.argument("analysis", type=int)
@click.option("--days", type=int, default=None, help="How long it works.")
def link(analysis: int, days: int | None) -> None:
    """A read-only link to ANALYSIS' page and outputs, for anyone who has it, for
    --days or until revoked. It is shown once: keep it."""
    site = Site.from_config()
    made = site.json("POST", f"/api/v1/analyses/{analysis}/links", json={"days": days})
    click.echo(f"{made['url']}  (link {made['id']}, works {made['works']})")


@main.command()
@click.argument("analysis", type=int)
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default=None,
    help="Folder (default: analysis-N).",
)
def download(analysis: int, out: str | None) -> None:
    """Download an analysis' outputs into a folder."""
    site = Site.from_config()
    target = Path(out or f"analysis-{analysis}")
    outputs = site.json("GET", f"/api/v1/analyses/{analysis}/outputs")
    total = sum(item["size"] for item in outputs)
    with click.progressbar(length=total, label=f"#{analysis} outputs") as bar:
        for item in outputs:
            # Names come from the server: kept inside the folder whatever they say.
            destination = (target / item["path"]).resolve()
            if not destination.is_relative_to(target.resolve()):
                raise click.ClickException(
                    f"Refusing the output name {item['path']!r}."
                )
            destination.parent.mkdir(parents=True, exist_ok=True)
            response = site.call(
                "GET",
                f"/api/v1/analyses/{analysis}/outputs/{item['path']}",
                stream=True,
            )
            with open(destination, "wb") as handle:
                for chunk in response.iter_content(1024 * 1024):
                    handle.write(chunk)
                    bar.update(len(chunk))
    click.echo(f"{len(outputs)} files in {target}/")


if __name__ == "__main__":
    main()
