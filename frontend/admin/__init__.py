"""The admin panel at /admin (Flask-Admin), for users with the ``admin`` role."""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask, abort, flash, g, redirect, request, url_for
from flask_admin import Admin, AdminIndexView, expose
from flask_admin.actions import action
from flask_admin.contrib.sqla import ModelView
from flask_admin.theme import Bootstrap4Theme
from flask_security import current_user
from wtforms import StringField
from wtforms.validators import Email as EmailSyntax
from wtforms.validators import ValidationError

from backend.runners.slurm import account_problem
from backend.tes import normal_image

from ..accounts.services import email_domain
from ..analyses.services import AnalysisError, cancel, requeue
from ..analyses.services import delete as delete_analysis
from ..api.tokens import revoke as revoke_token
from ..core import audit
from ..core.extensions import db
from ..core.formatting import human_size, parse_size
from ..core.limits import unlock
from ..core.models import (
    Analysis,
    ApiToken,
    AuditEvent,
    DomainRule,
    OutgoingMail,
    PipelineImage,
    PipelineSetting,
    Project,
    Role,
    TesImage,
    User,
    utcnow,
)
from ..core.pipelines import all_pipelines
from ..core.runners import site_runner
from ..core.security import security
from ..core.settings import RUNNERS
from ..projects.services import delete_project, project_totals
from . import charts, dashboard


class AdminOnlyMixin:
    """Only the ``admin`` role gets in; others get 403, anonymous users the login."""

    def is_accessible(self) -> bool:
        return (
            current_user.is_authenticated
            and current_user.has_role("admin")
            and not _needs_two_factor()
        )

    def inaccessible_callback(self, name, **kwargs):
        if not current_user.is_authenticated:
            return redirect(
                url_for("security.login", next=request.full_path.rstrip("?"))
            )
        if current_user.has_role("admin") and _needs_two_factor():
            flash("This site requires two-factor login for admins: set it up first.")
            return redirect(url_for("security.two_factor_setup"))
        abort(403)


def _needs_two_factor() -> bool:
    """Someone signed in before the site required them a second factor (the
    User's own rule), who has not set one up yet (a new login would ask)."""
    return current_user.check_tf_required_setup() and not current_user.tf_primary_method


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


def _quota_words(quota: int | None) -> str:
    return "site default" if quota is None else human_size(quota)


class SecureModelView(AdminOnlyMixin, ModelView):
    page_size = 50


class UserView(SecureModelView):
    # The password hash and the login token are never listed, shown or edited.
    column_exclude_list = ("password", "fs_uniquifier")
    column_details_exclude_list = ("password", "fs_uniquifier")
    form_columns = (
        "email",
        "first_name",
        "last_name",
        "institution",
        "roles",
        "active",
        "quota",
        "cluster_account",
    )
    # The quota is typed with its unit (500 MiB, 20 GiB), not in bytes.
    form_extra_fields = {
        "quota": StringField(
            "Storage quota",
            description="What this user may store, e.g. 500 MiB or 20 GiB (binary "
            "units: GB is read as GiB); empty: the site's default "
            "(STORAGE_QUOTA_BYTES).",
        )
    }
    column_descriptions = {
        "storage_quota": "What this user may store (empty: the site's default).",
        "cluster_account": "Their account on the lab's cluster: with "
        'SLURM_SUBMIT_AS = "user" their Slurm jobs are submitted as it (check it '
        "is theirs: their jobs run with its rights).",
    }
    column_list = (
        "email",
        "first_name",
        "last_name",
        "institution",
        "roles",
        "active",
        "storage_quota",
        "locked_at",
        "confirmed_at",
        "last_login_at",
        "login_count",
        "created_at",
    )
    column_searchable_list = ("email", "first_name", "last_name", "institution")
    column_filters = (
        "active",
        "locked_at",
        "confirmed_at",
        "institution",
        "roles.name",
        "created_at",
    )
    column_default_sort = ("created_at", True)
    column_labels = {
        "confirmed_at": "Confirmed",
        "locked_at": "Locked",
        "roles.name": "Role",
        "storage_quota": "Quota",
    }
    column_formatters = {
        # A researcher has no role: said, not left blank.
        "roles": lambda view, context, model, name: (
            ", ".join(sorted(role.name for role in model.roles)) or "none (researcher)"
        ),
        "storage_quota": lambda view, context, model, name: (
            "site default"
            if model.storage_quota is None
            else human_size(model.storage_quota)
        ),
    }
    form_args = {"email": {"validators": [EmailSyntax()]}}

    def on_form_prefill(self, form, id) -> None:
        user = db.session.get(User, id)
        if user is not None and user.storage_quota is not None:
            form.quota.data = human_size(user.storage_quota)

    can_view_details = True
    # People register themselves; accounts are deactivated, not deleted, so that
    # nothing they own is lost.
    can_create = False
    can_delete = False

    def on_model_change(self, form, model: User, is_created: bool) -> None:
        if model.id == current_user.id and not (
            model.active and model.has_role("admin")
        ):
            raise ValidationError(
                "You cannot remove your own admin role or deactivate yourself."
            )
        before = {role.name for role in form.roles.object_data or ()}
        after = {role.name for role in model.roles}
        changes = [f"added {name}" for name in sorted(after - before)] + [
            f"removed {name}" for name in sorted(before - after)
        ]
        if changes:
            audit.record(
                "user.roles_changed", audit.user_label(model), "; ".join(changes)
            )
        if form.active.object_data != model.active:
            action = "user.activated" if model.active else "user.deactivated"
            audit.record(action, audit.user_label(model))
        typed = (form.quota.data or "").strip()
        try:
            quota = parse_size(typed) if typed else None
        except ValueError as exc:
            raise ValidationError(f"Storage quota: {exc}.") from None
        if quota != model.storage_quota:
            audit.record(
                "user.quota_changed",
                audit.user_label(model),
                f"{_quota_words(model.storage_quota)} -> {_quota_words(quota)}",
            )
            model.storage_quota = quota
        model.cluster_account = (model.cluster_account or "").strip() or None
        if model.cluster_account:
            problem = account_problem(model.cluster_account)
            if problem:
                raise ValidationError(f"Cluster account: {problem}.")
        if (form.cluster_account.object_data or None) != model.cluster_account:
            audit.record(
                "user.cluster_account_changed",
                audit.user_label(model),
                f"{form.cluster_account.object_data or 'none'} -> "
                f"{model.cluster_account or 'none'}",
            )

    @action("confirm", "Confirm email", "Mark the selected accounts as confirmed?")
    def action_confirm(self, ids: list[str]) -> None:
        """Confirm the selected users' email addresses, as if they had followed
        the link."""
        users = db.session.scalars(db.select(User).where(User.id.in_(ids)))
        count = 0
        for user in users:
            if user.confirmed_at is None:
                user.confirmed_at = utcnow()
                audit.record("user.confirmed", audit.user_label(user))
                count += 1
        db.session.commit()
        flash(f"{count} account(s) confirmed.", "success")

    @action("unlock", "Unlock", "Unlock the selected accounts?")
    def action_unlock(self, ids: list[str]) -> None:
        """Clear the lock that repeated failed logins put on these accounts."""
        stmt = db.select(User).where(User.id.in_(ids), User.locked_at.is_not(None))
        count = 0
        for user in db.session.scalars(stmt):
            unlock(user, "by an admin")
            count += 1
        flash(f"{count} account(s) unlocked.", "success")

    @action(
        "reset_two_factor",
        "Turn two-factor login off",
        "Turn two-factor login off for the selected accounts (for a lost phone)?",
    )
    def action_reset_two_factor(self, ids: list[str]) -> None:
        """For someone who lost their authenticator: they log in with their
        password alone again (and set up a new app if they must)."""
        stmt = db.select(User).where(
            User.id.in_(ids), User.tf_primary_method.is_not(None)
        )
        count = 0
        for user in db.session.scalars(stmt):
            security.datastore.tf_reset(user)
            audit.record("two_factor.removed", audit.user_label(user), "by an admin")
            count += 1
        db.session.commit()
        flash(f"Two-factor login turned off for {count} account(s).", "success")

    @action("deactivate", "Deactivate", "Deactivate the selected accounts?")
    def action_deactivate(self, ids: list[str]) -> None:
        """Deactivate the selected users: they can no longer log in."""
        stmt = db.select(User).where(User.id.in_(ids), User.id != current_user.id)
        count = 0
        for user in db.session.scalars(stmt):
            if user.active:
                user.active = False
                audit.record("user.deactivated", audit.user_label(user))
                count += 1
        db.session.commit()
        flash(f"{count} account(s) deactivated.", "success")


class ProjectView(SecureModelView):
    """Every user's projects, with their size; deleting one removes its files."""

    column_list = ("name", "owner", "files", "size", "created_at", "updated_at")
    column_searchable_list = ("name", "owner.email")
    column_filters = ("owner.email", "created_at", "updated_at")
    column_default_sort = ("updated_at", True)
    column_labels = {"owner.email": "Owner"}
    can_create = False
    can_edit = False
    can_view_details = True
    column_formatters = {
        "files": lambda view, context, model, name: f"{view.totals(model)[0]:,}",
        "size": lambda view, context, model, name: human_size(view.totals(model)[1]),
    }

    def totals(self, project: Project) -> tuple[int, int]:
        cache = g.setdefault("project_totals", {})
        if project.id not in cache:
            cache[project.id] = project_totals(project)
        return cache[project.id]

    def delete_model(self, model: Project) -> bool:
        delete_project(model)
        return True


class AnalysisView(SecureModelView):
    """Every analysis: filter, cancel, queue again, delete; failures readable."""

    column_list = (
        "id",
        "pipeline",
        "owner",
        "project",
        "state",
        "submitted_at",
        "finished_at",
        "attempt",
        "runner",
        "worker",
        "job",
        "peak_memory_bytes",
        "cpu_seconds",
        "output_bytes",
        "error_summary",
    )
    column_filters = (
        "state",
        "pipeline",
        "owner.email",
        "submitted_at",
        "runner",
        "worker",
    )
    column_searchable_list = ("pipeline", "owner.email")
    column_default_sort = ("submitted_at", True)
    column_labels = {
        "owner.email": "User",
        "error_summary": "Failure",
        "peak_memory_bytes": "Peak memory",
        "cpu_seconds": "CPU time",
        "output_bytes": "Outputs and log",
        "retry_of": "Queued again from",
        "worker": "Host",
        "job": "Job id",
    }
    column_formatters = {
        "peak_memory_bytes": lambda v, c, model, n: (
            human_size(model.peak_memory_bytes)
            if model.peak_memory_bytes is not None
            else ""
        ),
        "cpu_seconds": lambda v, c, model, n: (
            f"{model.cpu_seconds:,.1f} s" if model.cpu_seconds is not None else ""
        ),
        "output_bytes": lambda v, c, model, n: human_size(model.output_bytes or 0),
        # The container's id, or the cluster's job id.
        "job": lambda v, c, model, n: (model.handle or {}).get("job_id", "")[:12],
    }
    column_details_list = (
        "id",
        "pipeline",
        "pipeline_version",
        "image",
        "image_id",
        "owner",
        "project",
        "state",
        "params",
        "submitted_at",
        "started_at",
        "finished_at",
        "exit_code",
        "attempt",
        "retry_of",
        "worker",
        "runner",
        "handle",
        "limits",
        "peak_memory_bytes",
        "cpu_seconds",
        "output_bytes",
        "progress_percent",
        "progress_message",
        "error_summary",
    )
    can_create = False
    can_edit = False
    can_view_details = True
    action_disallowed_list = ("delete",)  # our own delete also removes the files

    def delete_model(self, model: Analysis) -> bool:
        delete_analysis(model)
        return True

    def _each(self, ids, apply) -> int:
        done = 0
        for analysis in db.session.scalars(
            db.select(Analysis).where(Analysis.id.in_(ids))
        ):
            try:
                apply(analysis)
                done += 1
            except AnalysisError as exc:
                flash(f"#{analysis.id}: {exc}", "error")
        return done

    @action("cancel", "Cancel", "Cancel the selected analyses?")
    def action_cancel(self, ids: list[str]) -> None:
        """Cancel queued analyses and stop running ones."""
        flash(
            f"{self._each(ids, cancel)} analysis(es) cancelled or stopping.", "success"
        )

    @action("requeue", "Queue again", "Run the selected analyses again?")
    def action_requeue(self, ids: list[str]) -> None:
        """Queue finished analyses again, each as a new analysis; the earlier
        ones keep their logs and outcomes."""
        flash(
            f"{self._each(ids, requeue)} analysis(es) queued again as new ones.",
            "success",
        )

    @action("remove", "Delete with outputs", "Delete the analyses and their outputs?")
    def action_remove(self, ids: list[str]) -> None:
        """Delete analyses with their folders."""
        flash(f"{self._each(ids, delete_analysis)} analysis(es) deleted.", "success")


class OutgoingMailView(SecureModelView):
    """Mail the site sends through its outbox: what waits, and why."""

    column_list = (
        "id",
        "recipient",
        "subject",
        "created_at",
        "sent_at",
        "attempts",
        "next_attempt_at",
        "last_error",
    )
    column_filters = ("sent_at", "recipient", "created_at")
    column_searchable_list = ("recipient", "subject")
    column_default_sort = ("created_at", True)
    column_labels = {"sent_at": "Sent", "last_error": "Last error"}
    can_create = False
    can_edit = False
    can_delete = False
    can_view_details = True


class AuditEventView(SecureModelView):
    """The audit trail: read only, newest first, searchable."""

    column_list = ("at", "action", "actor_email", "target", "ip", "detail")
    column_searchable_list = ("action", "actor_email", "target", "ip", "detail")
    column_filters = ("at", "action", "actor_email", "ip")
    column_default_sort = ("at", True)
    column_labels = {"actor_email": "Who", "ip": "From", "at": "When"}
    can_create = False
    can_edit = False
    can_delete = False
    can_view_details = True


class ApiTokenView(SecureModelView):
    """Personal API tokens: who holds which, when each was last used; revoke."""

    column_list = (
        "user",
        "name",
        "prefix",
        "read_only",
        "created_at",
        "expires_at",
        "last_used_at",
        "last_used_ip",
        "revoked_at",
    )
    column_searchable_list = ("name", "prefix", "user.email")
    column_filters = ("read_only", "revoked_at", "expires_at", "last_used_at")
    column_default_sort = ("created_at", True)
    column_labels = {"prefix": "Starts with", "last_used_ip": "Last used from"}
    can_create = False
    can_edit = False
    can_delete = False
    can_view_details = True

    @action("revoke", "Revoke", "Revoke the selected tokens? Scripts using them stop.")
    def action_revoke(self, ids: list[str]) -> None:
        stmt = db.select(ApiToken).where(
            ApiToken.id.in_(ids), ApiToken.revoked_at.is_(None)
        )
        tokens = list(db.session.scalars(stmt))
        for token in tokens:
            revoke_token(token, "by an admin")
        flash(f"{len(tokens)} token(s) revoked.", "success")


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


class RoleView(SecureModelView):
    column_list = ("name", "description")
    form_columns = ("name", "description")
    column_searchable_list = ("name",)


class DomainRuleView(SecureModelView):
    column_list = ("domain", "kind", "institution", "note", "created_at")
    column_searchable_list = ("domain", "institution")
    column_filters = ("kind",)
    form_columns = ("domain", "kind", "institution", "note")
    column_descriptions = {
        "domain": "Applies to this domain and all its subdomains, e.g. "
        "embl.de covers ebi.embl.de.",
        "kind": "allow: may register even if not a known academic domain; "
        "block: may never register.",
        "institution": "Shown on profiles of users from an allowed domain.",
    }

    def on_model_change(self, form, model: DomainRule, is_created: bool) -> None:
        model.domain = email_domain(model.domain).lstrip(".")
        if not model.domain or "." not in model.domain:
            raise ValidationError("Give a domain such as example.ac.uk.")


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
