"""Public pages: home and help."""

from .views import bp  # the blueprint, with its routes

__all__ = ["bp"]
