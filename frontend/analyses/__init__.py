"""Analyses: run forms generated from manifests, the queue, and each run's page."""

from flask import Blueprint

bp = Blueprint("analyses", __name__)

from . import views  # noqa: E402,F401
