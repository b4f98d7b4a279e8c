"""Labqueue's pipeline side: manifests, parameter validation, runners.

This package imports nothing from Flask, SQLAlchemy or Celery, so that it can be
tested, and used by the worker, without the web app. Pipelines live in
``backend/pipelines/<name>/``.
"""
