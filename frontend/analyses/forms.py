"""The run form, generated from a pipeline's JSON Schema.

WTForms renders the fields and turns the text of the request into Python values;
the rules themselves are checked by jsonschema (backend.params), whose messages are
put next to the fields.
"""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    FloatField,
    IntegerField,
    RadioField,
    SelectField,
    SelectMultipleField,
    StringField,
    SubmitField,
)
from wtforms.validators import Optional

from backend.manifest import Pipeline
from backend.params import matches_glob

from .services import outputs_folder


def _field(key: str, prop: dict, files: list[str], required: bool, max_chars: int):
    label = prop.get("title") or key.replace("_", " ").capitalize()
    description = prop.get("description", "")
    kind = prop.get("type")
    item = prop.get("items", {}) if kind == "array" else prop
    render = {"title": description} if description else {}
    common = {
        "label": label,
        "description": description,
        "default": prop.get("default"),
    }
    if item.get("format") == "file-path":
        choices = [(path, path) for path in files if matches_glob(path, prop)]
        if kind == "array":
            render["size"] = min(max(len(choices), 3), 12)
            return SelectMultipleField(choices=choices, render_kw=render, **common)
        if not required:
            choices = [("", "— none —"), *choices]
        return SelectField(choices=choices, render_kw=render, **common)
    if "enum" in item:
        choices = [(str(v), str(v)) for v in item["enum"]]
        if kind == "array":
            return SelectMultipleField(choices=choices, render_kw=render, **common)
        return SelectField(choices=choices, render_kw=render, **common)
    if kind in ("integer", "number"):
        for bound, attr in (("minimum", "min"), ("maximum", "max")):
            if bound in prop:
                render[attr] = prop[bound]
        render["step"] = 1 if kind == "integer" else "any"
        field_class = IntegerField if kind == "integer" else FloatField
        return field_class(validators=[Optional()], render_kw=render, **common)
    if kind == "boolean":
        return BooleanField(render_kw=render, **common)
    # The browser stops at the schema's maxLength or the site's cap, the lower.
    render["maxlength"] = min(prop.get("maxLength", max_chars), max_chars)
    return StringField(render_kw=render, **common)


def run_form(
    pipeline: Pipeline,
    files: list[str],
    prefill: dict | None = None,
    *,
    max_chars: int,
) -> FlaskForm:
    """A form for ``pipeline``'s parameters, file pickers listing ``files``,
    optionally filled with an earlier run's values (files that still exist); text
    fields take at most ``max_chars`` characters (MAX_PARAM_CHARS)."""
    properties = pipeline.schema.get("properties", {})
    required = set(pipeline.schema.get("required", []))

    class RunForm(FlaskForm):
        submit = SubmitField("Start the analysis")

    for key, prop in properties.items():
        field = _field(key, prop, files, key in required, max_chars)
        setattr(RunForm, f"p_{key}", field)
    varied = next(iter(pipeline.file_fields().items()), None)
    if varied is not None:
        key, prop = varied
        many = prop.get("type") == "array"
        label = prop.get("title") or key.replace("_", " ").capitalize()
        RunForm.batch = RadioField(
            "Analyses",
            choices=[
                ("one", "One analysis" + (" of the selected files" if many else "")),
                ("each", f"One analysis per selected file ({label})"),
                ("matching", "One analysis per file matching a pattern"),
            ],
            default="one",
        )
        RunForm.batch_pattern = StringField(
            "Pattern",
            validators=[Optional()],
            render_kw={"placeholder": "*.csv or reads/*_R1.fq.gz", "maxlength": 255},
            description="Shell-style, matched against each file's whole path.",
        )
    form = RunForm()
    form.parameter_names = list(properties)
    if prefill and not form.is_submitted():
        available = set(files)
        for key, value in prefill.items():
            if key not in properties:
                continue
            if key in pipeline.file_fields():
                value = (
                    [v for v in value if v in available]
                    if isinstance(value, list)
                    else (value if value in available else None)
                )
            form[f"p_{key}"].data = value
    return form


def form_values(form, pipeline: Pipeline) -> dict:
    """The parameter values a submitted form carries, as JSON Schema types."""
    values = {}
    for key, prop in pipeline.schema.get("properties", {}).items():
        data = form[f"p_{key}"].data
        if data is None or data == "" or (prop.get("type") == "array" and not data):
            continue
        item = prop.get("items", {}) if prop.get("type") == "array" else prop
        if "enum" in item:  # back from the strings a <select> sends
            original = {str(v): v for v in item["enum"]}
            data = (
                [original.get(v, v) for v in data]
                if isinstance(data, list)
                else (original.get(data, data))
            )
        values[key] = data
    return values


CLASH_CHOICES = [
    ("keep", "keep both (the new one numbered)"),
    ("replace", "replace the project's file"),
    ("skip", "skip it"),
]


class AddOutputsForm(FlaskForm):
    """Put outputs of an analysis into a project, as files runs can use."""

    project = SelectField("Into the project", choices=[], coerce=int)
    folder = StringField("Folder", validators=[Optional()])
    on_clash = SelectField("If a name exists", choices=CLASH_CHOICES, default="keep")
    paths = SelectMultipleField("Outputs", choices=[], validate_choice=False)
    selected = SubmitField("Add the selected outputs")
    everything = SubmitField("Add all outputs")


def add_outputs_form(analysis, projects) -> AddOutputsForm:
    """The form for ``analysis``, offering the ``projects`` the user may write to
    (its own first, when among them) and a folder named after it."""
    form = AddOutputsForm()
    ordered = sorted(projects, key=lambda p: p.id != analysis.project_id)
    form.project.choices = [(p.id, p.name) for p in ordered]
    if not form.folder.data:
        form.folder.data = outputs_folder(analysis)
    return form
