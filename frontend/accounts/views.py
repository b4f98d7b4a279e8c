from flask import flash, redirect, render_template, request, url_for
from flask_security import auth_required, current_user

from ..limits import unlock as unlock_account
from ..limits import user_to_unlock
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


@bp.route("/unlock/<token>", methods=["GET", "POST"])
def unlock(token: str):
    """The unlock mail's link: a page with a button (so that a mail scanner
    following the link changes nothing), which unlocks the account."""
    user = user_to_unlock(token)
    if user is not None and request.method == "POST":
        unlock_account(user, "by the link in the unlock mail")
        flash("Your account is unlocked. Log in with your password.", "success")
        return redirect(url_for("security.login"))
    return render_template("accounts/unlock.html", user=user), (200 if user else 400)
