"""The admin panel at /admin (Flask-Admin), for users with the ``admin`` role:
one module per group of views."""

from __future__ import annotations

from flask import Flask
from flask_admin import Admin
from flask_admin.theme import Bootstrap4Theme

from ..core.extensions import db
from ..core.models import (
    Analysis,
    ApiToken,
    AuditEvent,
    DomainRule,
    OutgoingMail,
    PipelineSetting,
    Project,
    Role,
    TesImage,
    User,
)
from .home import LabqueueIndexView
from .pipelines import PipelineSettingView, TesImageView
from .records import ApiTokenView, AuditEventView, OutgoingMailView
from .runs import AnalysisView, ProjectView
from .users import DomainRuleView, RoleView, UserView


def init_admin(app: Flask) -> Admin:
    """Build the admin panel for ``app``."""
    admin = Admin(
        app,
        name=f"{app.config['APP_NAME']} admin",
        index_view=LabqueueIndexView(url="/admin"),
        theme=Bootstrap4Theme(base_template="admin/labqueue_base.html", fluid=True),
    )
    admin.add_view(UserView(User, db, name="Users", endpoint="admin_users"))
    admin.add_view(ProjectView(Project, db, name="Projects", endpoint="admin_projects"))
    admin.add_view(
        AnalysisView(Analysis, db, name="Analyses", endpoint="admin_analyses")
    )
    admin.add_view(
        PipelineSettingView(
            PipelineSetting, db, name="Pipelines", endpoint="admin_pipelines"
        )
    )
    admin.add_view(
        OutgoingMailView(OutgoingMail, db, name="Mail", endpoint="admin_mail")
    )
    admin.add_view(
        ApiTokenView(ApiToken, db, name="API tokens", endpoint="admin_tokens")
    )
    admin.add_view(
        TesImageView(TesImage, db, name="TES images", endpoint="admin_tes_images")
    )
    admin.add_view(RoleView(Role, db, name="Roles", endpoint="admin_roles"))
    admin.add_view(
        AuditEventView(AuditEvent, db, name="Audit trail", endpoint="admin_audit")
    )
    admin.add_view(
        DomainRuleView(DomainRule, db, name="Email domains", endpoint="admin_domains")
    )
    return admin
