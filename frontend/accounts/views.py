import math

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_security import (
    auth_required,
    current_user,
    login_user,
    logout_user,
    url_for_security,
)
from flask_security.registerable import register_existing, register_user
from flask_wtf import FlaskForm
from werkzeug.exceptions import TooManyRequests

from .. import retention
from ..api import tokens
from ..core.limits import count_in_window, user_to_unlock
from ..core.limits import unlock as unlock_account
from ..core.storage import quota_for, storage_by_kind
from . import guests
from .forms import AcademicRegisterForm, ProfileForm, TokenForm
from .services import note_seen, update_profile

bp = Blueprint("accounts", __name__, url_prefix="/account")


@bp.before_app_request
def seen_today() -> None:
    """Whoever is signed in uses the site today (for the retention policy); a
    guest is refused what needs an account."""
    if current_user.is_authenticated and request.endpoint != "static":
        if current_user.is_guest and guests.blocked(request.endpoint):
            abort(403, description=guests.REFUSED)
        note_seen(current_user)


@bp.route("/guest", methods=["POST"])
def guest_start():
    """Start as a guest (ALLOW_GUESTS): a temporary account for this browser."""
    if not current_app.config["ALLOW_GUESTS"]:
        abort(404)
    if current_user.is_authenticated:
        return redirect(url_for("projects.index"))
    if not FlaskForm().validate_on_submit():
        abort(400)
    made, wait = count_in_window(f"guest-ip:{request.remote_addr}", 3600)
    if made > current_app.config["GUEST_PER_IP_PER_HOUR"]:
        raise TooManyRequests(
            "Too many guest accounts were made from your address this hour: try "
            f"again in {math.ceil(wait / 60)} minutes, or register.",
            retry_after=math.ceil(wait),
        )
    guest = guests.start(request.remote_addr)
    login_user(guest, remember=True, authn_via=["guest"])
    flash(
        f"Welcome! You are a guest until {guest.guest_until:%d %b, %H:%M} UTC: what "
        "you upload and run is deleted then, unless you register.",
        "success",
    )
    return redirect(url_for("projects.index"))


def _registered(email: str):
    flash(
        f"We sent a mail to {email}. Follow its link, then sign in: a new account "
        "holds your projects.",
        "success",
    )
    return redirect(url_for_security("login"))


@bp.route("/register", methods=["GET", "POST"])
@auth_required()
def guest_register():
    """A guest registers: a new account with their projects and runs."""
    if not current_user.is_guest:
        return redirect(url_for("accounts.profile"))
    form = AcademicRegisterForm()
    problem = None
    if request.method == "POST":
        try:
            guests.check_can_register(current_user)
        except guests.GuestRefused as exc:
            problem = str(exc)
    if problem is None and form.validate_on_submit():
        guest = current_user._get_current_object()
        user = register_user(form)
        logout_user()  # while the guest's row is there: logging out changes it
        guests.move_to(guest, user)
        return _registered(user.email)
    if (
        problem is None
        and request.method == "POST"
        and current_app.config["SECURITY_RETURN_GENERIC_RESPONSES"]
        and register_existing(form)
    ):
        # An address with an account already: it got a mail saying so. The answer
        # is the same as a registration's, so nobody learns which addresses exist.
        logout_user()
        return _registered(form.email.data)
    return render_template(
        "accounts/guest_register.html", form=form, problem=problem
    ), (409 if problem else 200)


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
