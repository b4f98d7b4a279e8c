from flask import current_app, flash, redirect, render_template, request, url_for
from flask_security import auth_required, current_user
from flask_wtf import FlaskForm

from .. import retention
from ..api import tokens
from ..limits import unlock as unlock_account
from ..limits import user_to_unlock
from ..projects.services import quota_for, storage_by_kind
from . import bp
from .forms import ProfileForm, TokenForm
from .services import note_seen, update_profile


@bp.before_app_request
def seen_today() -> None:
    """Whoever is signed in uses the site today (for the retention policy)."""
    if current_user.is_authenticated and request.endpoint != "static":
        note_seen(current_user)


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
    return _profile_page(form, _token_form())


def _token_form() -> TokenForm:
    return TokenForm(tokens.expiry_choices(), current_app.config["API_TOKEN_DAYS"])


def _profile_page(form: ProfileForm, token_form: TokenForm, status: int = 200):
    storage = storage_by_kind(current_user)
    return render_template(
        "accounts/profile.html",
        form=form,
        token_form=token_form,
        tokens=tokens.live_tokens(current_user),
        token_state=tokens.state_of,
        revoke_form=FlaskForm(),
        storage=storage,
        used=sum(storage.values()),
        quota=quota_for(current_user),
        policy=retention.policy_lines(),
        notices=retention.notices_for(current_user),
    ), status


@bp.route("/tokens", methods=["POST"])
@auth_required()
def create_token():
    """Make a personal API token; its secret is shown on this page only."""
    form = _token_form()
    if form.validate_on_submit():
        try:
            token, secret = tokens.create(
                current_user, form.name.data, form.days.data, form.read_only.data
            )
        except tokens.TokenRefused as exc:
            form.name.errors.append(str(exc))
        else:
            # Rendered, not flashed: the secret never goes into the session cookie.
            page = render_template(
                "accounts/token_created.html", token=token, secret=secret
            )
            return page, 201, {"Cache-Control": "no-store"}
    return _profile_page(ProfileForm(obj=current_user, formdata=None), form, 400)


@bp.route("/tokens/<int:token_id>/revoke", methods=["POST"])
@auth_required()
def revoke_token(token_id: int):
    """Revoke one of the user's tokens."""
    token = tokens.get_own_or_404(current_user, token_id)
    if FlaskForm().validate_on_submit():
        tokens.revoke(token, "by its owner")
        flash(f"The token “{token.name}” was revoked.", "success")
    return redirect(url_for("accounts.profile", _anchor="api-tokens"))


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
