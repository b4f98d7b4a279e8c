"""Pipeline manifests: ``backend/pipelines/<name>/manifest.toml`` and its
``parameters.schema.json``.

The manifest says what the pipeline is, which image runs it, the command as a list
(never a shell line) and the resources it needs. The parameters are a JSON Schema
in the nf-core style; project files are strings with ``"format": "file-path"`` and a
``"glob"`` (one pattern or a list) that the run form's file picker filters on.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

PIPELINES_DIR = Path(__file__).resolve().parent / "pipelines"
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
PLACEHOLDER_RE = re.compile(r"\{([a-z_][a-z0-9_]*)\}")
BUILTINS = {"input_dir", "output_dir", "pipeline_dir"}


class ManifestError(ValueError):
    """A manifest that cannot be used; says which file and which field."""

    def __init__(self, path: Path, field_name: str, problem: str):
        self.path, self.field, self.problem = path, field_name, problem
        super().__init__(f"{path}: {field_name}: {problem}")


@dataclass(frozen=True)
class Resources:
    cpus: float = 1.0
    memory_mb: int = 1024
    timeout_minutes: int = 60
    pids: int = 256


@dataclass(frozen=True)
class Pipeline:
    name: str
    title: str
    description: str
    version: str
    image: str
    command: tuple[str, ...]
    schema: dict
    folder: Path
    dockerfile: str = "Dockerfile"
    outputs: tuple[str, ...] = ()
    resources: Resources = field(default_factory=Resources)

    @property
    def image_tag(self) -> str:
        return f"{self.image}:{self.version}"

    def file_fields(self) -> dict[str, dict]:
        """Parameters that name project files, with their JSON Schema."""
        found = {}
        for key, prop in self.schema.get("properties", {}).items():
            item = prop.get("items", {}) if prop.get("type") == "array" else prop
            if item.get("format") == "file-path":
                found[key] = prop
        return found


def _require(data: dict, key: str, kind: type, path: Path):
    if key not in data:
        raise ManifestError(path, key, "is missing")
    if not isinstance(data[key], kind):
        raise ManifestError(path, key, f"must be a {kind.__name__}")
    return data[key]


def _stamp(folder: Path) -> tuple | None:
    """What says a folder's manifest and schema are unchanged: their inode, size
    and modification time (None when one is missing)."""
    try:
        found = [
            (s.st_ino, s.st_size, s.st_mtime_ns)
            for s in (
                (folder / "manifest.toml").stat(),
                (folder / "parameters.schema.json").stat(),
            )
        ]
    except OSError:
        return None
    return tuple(found)


_loaded: dict[Path, tuple[tuple, Pipeline]] = {}


def load_pipeline(folder: Path) -> Pipeline:
    """Read and check one pipeline folder (again only when its manifest or schema
    changed: every page and every start asks, and checking a schema is not free).
    The returned pipeline is shared: treat its schema as read-only."""
    stamp = _stamp(folder)
    known = _loaded.get(folder)
    if stamp is not None and known is not None and known[0] == stamp:
        if (folder / known[1].dockerfile).is_file():
            return known[1]
    pipeline = _read_pipeline(folder)
    if stamp is not None:
        _loaded[folder] = (stamp, pipeline)
    return pipeline


def _read_pipeline(folder: Path) -> Pipeline:
    manifest_path = folder / "manifest.toml"
    schema_path = folder / "parameters.schema.json"
    try:
        data = tomllib.loads(manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ManifestError(manifest_path, "(file)", "does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ManifestError(manifest_path, "(syntax)", str(exc)) from exc
    name = _require(data, "name", str, manifest_path)
    if not NAME_RE.match(name):
        raise ManifestError(manifest_path, "name", "use lowercase letters, digits, -")
    command = _require(data, "command", list, manifest_path)
    if not command or not all(isinstance(part, str) for part in command):
        raise ManifestError(manifest_path, "command", "must be a list of strings")
    try:
        schema = json.loads(schema_path.read_text(encoding="utf-8"))
        Draft202012Validator.check_schema(schema)
    except FileNotFoundError as exc:
        raise ManifestError(schema_path, "(file)", "does not exist") from exc
    except json.JSONDecodeError as exc:
        raise ManifestError(schema_path, "(syntax)", str(exc)) from exc
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.path) or "(schema)"
        raise ManifestError(schema_path, where, exc.message) from exc
    if schema.get("type") != "object":
        raise ManifestError(schema_path, "type", 'must be "object"')
    known = set(schema.get("properties", {})) | BUILTINS
    for part in command:
        for placeholder in PLACEHOLDER_RE.findall(part):
            if placeholder not in known:
                raise ManifestError(
                    manifest_path, "command", f"{{{placeholder}}} is not a parameter"
                )
    raw = data.get("resources", {})
    try:
        resources = Resources(**raw)
    except TypeError as exc:
        raise ManifestError(manifest_path, "resources", str(exc)) from exc
    dockerfile = data.get("dockerfile", "Dockerfile")
    if not (folder / dockerfile).is_file():
        raise ManifestError(manifest_path, "dockerfile", f"{dockerfile} is missing")
    return Pipeline(
        name=name,
        title=_require(data, "title", str, manifest_path),
        description=data.get("description", ""),
        version=_require(data, "version", str, manifest_path),
        image=_require(data, "image", str, manifest_path),
        command=tuple(command),
        schema=schema,
        folder=folder,
        dockerfile=dockerfile,
        outputs=tuple(data.get("outputs", ())),
        resources=resources,
    )


def discover(root: Path = PIPELINES_DIR) -> tuple[dict[str, Pipeline], list[str]]:
    """Every pipeline under ``root`` (folders starting with _ are templates), and
    the errors of those that could not be loaded."""
    pipelines: dict[str, Pipeline] = {}
    errors: list[str] = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        if folder.name.startswith(("_", ".")):
            continue
        try:
            pipeline = load_pipeline(folder)
        except ManifestError as exc:
            errors.append(str(exc))
            continue
        if pipeline.name in pipelines:
            errors.append(f"{folder}: name: {pipeline.name} is used twice")
            continue
        pipelines[pipeline.name] = pipeline
    return pipelines, errors
