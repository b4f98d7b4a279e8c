"""The admin home page: workers, queues, how runs went, storage, mail waiting."""

from __future__ import annotations

from flask_admin import AdminIndexView, expose

from . import charts, dashboard
from .base import AdminOnlyMixin


class LabqueueIndexView(AdminOnlyMixin, AdminIndexView):
    @expose("/")
    def index(self):
        """Admin home: workers, queues, how runs went, storage, mail waiting."""
        found = dashboard.figures()
        return self.render(
            "admin/index.html",
            **found,
            runs_chart=charts.runs_per_day(found["days"], found["per_day"]),
            durations_chart=charts.durations(found["durations"]),
        )
