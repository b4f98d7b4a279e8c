"""Projects: a user's data, uploaded, browsed, previewed and downloaded."""

from .views import bp  # the blueprint, with its routes

__all__ = ["bp"]
