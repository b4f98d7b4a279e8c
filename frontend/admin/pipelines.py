"""The pipelines and images runs may use: every installed pipeline (switched on
or off, its runner), and the images GA4GH TES tasks may run."""

from __future__ import annotations

from dataclasses import dataclass

from flask import abort, flash, redirect, request, url_for
from flask_admin import expose
from wtforms.validators import ValidationError

from backend.tes import normal_image

from ..core import audit
from ..core.extensions import db
from ..core.models import (
    PipelineImage,
    PipelineSetting,
    TesImage,
)
from ..core.pipelines import all_pipelines
from ..core.runners import site_runner
from ..core.settings import RUNNERS
from .base import SecureModelView


class PipelineSettingView(SecureModelView):
    """Switch pipelines off without deleting them (rows appear on first switch)."""

    column_list = ("name", "enabled", "runner", "note")
    form_columns = ("name", "enabled", "runner", "note")
    column_descriptions = {
        "name": "The pipeline's name in its manifest.toml.",
        "enabled": "Untick to stop offering the pipeline; runs already made stay.",
        "runner": "Where its new runs go (empty: the site's RUNNER). Workers serving "
        "that runner (WORKER_RUNNERS) take them; queued runs keep theirs.",
    }
    column_formatters = {
        "runner": lambda view, context, model, name: (
            model.runner or f"{site_runner()} (the site's)"
        )
    }
    form_choices = {"runner": [("", "the site's RUNNER")] + [(r, r) for r in RUNNERS]}

    def on_model_change(self, form, model: PipelineSetting, is_created: bool) -> None:
        if model.name not in all_pipelines():
            raise ValidationError(f"There is no pipeline called {model.name}.")
        model.runner = model.runner or None

    def create_form(self, obj=None):
        """The settings of a pipeline that has none yet, its name filled in."""
        form = super().create_form(obj)
        if request.method == "GET" and request.args.get("name"):
            form.name.data = request.args["name"]
        return form

    @expose("/")
    def index_view(self):
        """Every installed pipeline (not only those with settings): version,
        image and whether workers found it, runner, on or off."""
        return self.render(
            "admin/pipelines.html",
            pipelines=pipeline_rows(),
            site_runner=site_runner(),
        )

    @expose("/switch/", methods=["POST"])
    def switch(self):
        """Turn a pipeline on or off in one click."""
        name = request.form.get("name", "")
        if name not in all_pipelines():
            abort(404)
        setting = db.session.get(PipelineSetting, name) or PipelineSetting(name=name)
        setting.enabled = request.form.get("enabled") == "1"
        db.session.add(setting)
        audit.record(
            "pipeline.enabled" if setting.enabled else "pipeline.disabled", name
        )
        db.session.commit()
        state = "on: users can run it" if setting.enabled else "off: not offered"
        flash(f"{name} is {state}.", "success")
        return redirect(url_for(".index_view"))


@dataclass
class PipelineRow:
    pipeline: object  # backend.manifest.Pipeline
    setting: PipelineSetting | None
    image: PipelineImage | None

    @property
    def enabled(self) -> bool:
        return self.setting is None or self.setting.enabled


def pipeline_rows() -> list[PipelineRow]:
    """Each pipeline found on disk with its settings and last image check."""
    settings = {s.name: s for s in db.session.scalars(db.select(PipelineSetting))}
    images = {i.pipeline: i for i in db.session.scalars(db.select(PipelineImage))}
    return [
        PipelineRow(pipeline, settings.get(name), images.get(name))
        for name, pipeline in sorted(all_pipelines().items())
    ]


class TesImageView(SecureModelView):
    """Images GA4GH TES tasks may run, besides the registered pipelines'."""

    column_list = ("image", "note", "added_at")
    form_columns = ("image", "note")
    column_descriptions = {
        "image": "As Docker names it, e.g. alpine:latest or ubuntu:22.04. It must "
        "be built or loaded on the worker hosts: there is no registry to pull from.",
    }

    def on_model_change(self, form, model: TesImage, is_created: bool) -> None:
        model.image = normal_image(model.image.strip())
        if not model.image or any(char.isspace() for char in model.image):
            raise ValidationError("Give an image name such as alpine:latest.")
