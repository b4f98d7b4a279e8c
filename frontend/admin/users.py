"""Who may use the site: users (locks, quotas, roles, cluster accounts), roles,
and the email domains allowed or blocked at registration."""

from __future__ import annotations

from flask import flash
from flask_admin.actions import action
from flask_security import current_user
from wtforms import StringField
from wtforms.validators import Email as EmailSyntax
from wtforms.validators import ValidationError

from backend.runners.slurm import account_problem

from ..accounts.services import email_domain
from ..core import audit
from ..core.extensions import db
from ..core.formatting import human_size, parse_size
from ..core.limits import unlock
from ..core.models import (
    DomainRule,
    User,
    utcnow,
)
from ..core.security import security
from .base import SecureModelView


def _quota_words(quota: int | None) -> str:
    return "site default" if quota is None else human_size(quota)


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
