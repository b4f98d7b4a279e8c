"""Analyses: run forms generated from manifests, the queue, and each run's page."""

from .views import bp  # the blueprint, with its routes

__all__ = ["bp"]
