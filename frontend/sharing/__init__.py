"""Groups and sharing: a lab's groups, projects shared with groups or people,
and read-only links to one analysis."""

from .views import bp  # the blueprint, with its routes

__all__ = ["bp"]
