"""Manifests, parameter checking and argv building (backend, no app)."""

import json
import shutil
from pathlib import Path

import pytest

from backend.manifest import PIPELINES_DIR, ManifestError, discover, load_pipeline
from backend.params import ParamsInvalid, build_argv, validate_params

TEMPLATE = PIPELINES_DIR / "_template"


@pytest.fixture
def pipeline():
    return load_pipeline(TEMPLATE)


def copy_template(tmp_path: Path) -> Path:
    folder = tmp_path / "pipes" / "copy"
    shutil.copytree(TEMPLATE, folder)
    return folder


def test_every_shipped_pipeline_loads():
    pipelines, errors = discover()
    assert errors == []
    template = load_pipeline(TEMPLATE)
    assert template.name == "template"
    assert template.resources.memory_mb == 256
    assert list(template.file_fields()) == ["source"]


@pytest.mark.parametrize(
    ("edit", "where"),
    [
        (lambda t: t.replace('name = "template"', 'name = "Bad Name"'), "name"),
        (lambda t: t.replace('"{times}", ', '"{nope}", '), "command"),
        (lambda t: t.replace("cpus = 0.5", "cpu = 0.5"), "resources"),
        (lambda t: t.replace('version = "0.1.0"\n', ""), "version"),
        (lambda t: t + "\n[broken", "(syntax)"),
    ],
)
def test_manifest_errors_name_the_file_and_field(tmp_path, edit, where):
    folder = copy_template(tmp_path)
    manifest = folder / "manifest.toml"
    manifest.write_text(edit(manifest.read_text()))
    with pytest.raises(ManifestError) as caught:
        load_pipeline(folder)
    assert caught.value.field == where
    assert caught.value.path == manifest


def test_invalid_schema_is_reported(tmp_path):
    folder = copy_template(tmp_path)
    schema = json.loads((folder / "parameters.schema.json").read_text())
    schema["properties"]["times"]["minimum"] = "one"
    (folder / "parameters.schema.json").write_text(json.dumps(schema))
    with pytest.raises(ManifestError, match="parameters.schema.json"):
        load_pipeline(folder)


def test_discover_skips_templates_and_collects_errors(tmp_path):
    root = tmp_path / "pipes"
    copy_template(tmp_path)
    shutil.copytree(TEMPLATE, root / "_draft")
    (root / "broken").mkdir()
    pipelines, errors = discover(root)
    assert list(pipelines) == ["template"]
    assert len(errors) == 1 and "broken/manifest.toml" in errors[0]


FILES = {"notes/a.txt", "b.txt", "table.csv"}


def test_defaults_are_filled_in(pipeline):
    assert validate_params(pipeline, {"source": "b.txt"}, FILES) == {
        "source": "b.txt",
        "times": 1,
    }


@pytest.mark.parametrize(
    ("values", "field", "message"),
    [
        ({"source": "b.txt", "times": 9}, "times", "must be at most 5"),
        ({"source": "b.txt", "times": 0}, "times", "must be at least 1"),
        ({"source": "b.txt", "times": "2"}, "times", "must be a whole number"),
        ({}, "source", "is required"),
        ({"source": "missing.txt"}, "source", "not a file of this project"),
        ({"source": "table.csv"}, "source", "is not a *.txt file"),
        ({"source": "; rm -rf /"}, "source", "not a file of this project"),
        ({"source": "../other-user/1/secret.txt"}, "source", "not a file of this"),
        ({"source": "b.txt", "extra": 1}, "", "unknown parameters"),
    ],
)
def test_bad_values_are_refused_per_field(pipeline, values, field, message):
    with pytest.raises(ParamsInvalid) as caught:
        validate_params(pipeline, values, FILES)
    assert message in caught.value.errors[field]


def test_argv_is_a_list_with_paths_inside_the_container(pipeline):
    params = validate_params(pipeline, {"source": "notes/a.txt", "times": 2}, FILES)
    assert build_argv(pipeline, params) == [
        "python3",
        "/app/run.py",
        "--out",
        "/data/output",
        "--times",
        "2",
        "/data/input/notes/a.txt",
    ]


def test_argv_for_the_local_runner_uses_real_folders(pipeline):
    params = {"source": "b.txt", "times": 1}
    argv = build_argv(pipeline, params, "/srv/in", "/srv/out", "/code")
    assert argv[1] == "/code/run.py" and argv[3] == "/srv/out"
    assert argv[-1] == "/srv/in/b.txt"


def test_shell_text_stays_one_inert_argument(tmp_path):
    folder = copy_template(tmp_path)
    schema = json.loads((folder / "parameters.schema.json").read_text())
    schema["properties"]["label"] = {"type": "string", "default": "x", "maxLength": 40}
    (folder / "parameters.schema.json").write_text(json.dumps(schema))
    manifest = folder / "manifest.toml"
    manifest.write_text(
        manifest.read_text().replace('"{source}"]', '"{source}", "{label}"]')
    )
    pipeline = load_pipeline(folder)
    params = validate_params(
        pipeline, {"source": "b.txt", "label": "; rm -rf /"}, FILES
    )
    assert build_argv(pipeline, params)[-1] == "; rm -rf /"


def test_an_edited_manifest_or_schema_is_read_again(tmp_path):
    folder = copy_template(tmp_path)
    first = load_pipeline(folder)
    assert load_pipeline(folder) is first  # unchanged: not read again
    manifest = folder / "manifest.toml"
    manifest.write_text(manifest.read_text().replace("cpus = 0.5", "cpus = 0.75"))
    assert load_pipeline(folder).resources.cpus == 0.75
    schema_path = folder / "parameters.schema.json"
    schema = json.loads(schema_path.read_text())
    schema["properties"]["times"]["maximum"] = 3
    schema_path.write_text(json.dumps(schema))
    assert load_pipeline(folder).schema["properties"]["times"]["maximum"] == 3
    schema_path.write_text("{ broken")
    with pytest.raises(ManifestError):
        load_pipeline(folder)


def test_site_caps_refuse_long_values_and_long_commands(pipeline):
    long = {"source": "b" * 20_000 + ".txt"}
    with pytest.raises(ParamsInvalid) as caught:
        validate_params(pipeline, long, FILES | {long["source"]}, max_chars=10_000)
    assert caught.value.errors == {
        "source": "is too long: 20,004 characters, and at most 10,000 are allowed"
    }
    assert caught.value.too_long == ("source",)
    # Each value within the cap, the whole command over its own.
    values = {"source": "notes/a.txt", "times": 2}
    assert validate_params(pipeline, values, FILES, 10_000, 4096)["times"] == 2
    with pytest.raises(ParamsInvalid) as caught:
        validate_params(pipeline, values, FILES, max_argv_bytes=40)
    assert caught.value.errors[""].startswith("the parameters are too long together")
