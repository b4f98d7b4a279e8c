from flask import flash, redirect, render_template, url_for
from flask_security import auth_required, current_user

from ..projects.services import quota_for, storage_by_kind
from . import bp
from .forms import ProfileForm
from .services import update_profile


@bp.route("/profile", methods=["GET", "POST"])
@auth_required()
def profile():
    """Show the signed-in user's account and let them correct their name."""
    form = ProfileForm(obj=current_user)
    if form.validate_on_submit():
        update_profile(
            current_user,
            form.first_name.data,
            form.last_name.data,
            form.notify_by_email.data,
        )
        flash("Your profile was saved.", "success")
        return redirect(url_for("accounts.profile"))
    storage = storage_by_kind(current_user)
    return render_template(
        "accounts/profile.html",
        form=form,
        storage=storage,
        used=sum(storage.values()),
        quota=quota_for(current_user),
    )
