"""Account forms. Flask-Security-Too owns the flows; we add names and the email rule."""

from typing import Any

from flask_security import ForgotPasswordForm, RegisterFormV2, SendConfirmationForm
from flask_security.forms import EmailValidation, email_required
from flask_security.forms import Form as SecurityForm
from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    EmailField,
    SelectField,
    StringField,
    SubmitField,
    ValidationError,
)
from wtforms.validators import DataRequired, Length

from .services import check_registration_email, request_account_mail


class AcademicRegisterForm(RegisterFormV2):
    first_name = StringField(
        "First name",
        validators=[DataRequired(), Length(max=100)],
        render_kw={"autocomplete": "given-name"},
    )
    last_name = StringField(
        "Last name",
        validators=[DataRequired(), Length(max=100)],
        render_kw={"autocomplete": "family-name"},
    )

    institution: str | None = None

    def validate_email(self, field: StringField) -> None:
        """Only academic addresses (and admin-allowed domains) may register."""
        if not field.data or "@" not in field.data:
            return  # the syntax error is reported by Flask-Security's validator
        decision = check_registration_email(field.data)
        if not decision.allowed:
            raise ValidationError(decision.reason)
        self.institution = decision.institution

    def to_dict(self, only_user: bool) -> dict[str, Any]:
        data = super().to_dict(only_user)
        data["first_name"] = (data.get("first_name") or "").strip()
        data["last_name"] = (data.get("last_name") or "").strip()
        data["institution"] = self.institution
        return data


class ProfileForm(FlaskForm):
    first_name = StringField("First name", validators=[DataRequired(), Length(max=100)])
    last_name = StringField("Last name", validators=[DataRequired(), Length(max=100)])
    notify_by_email = BooleanField("Email me when an analysis ends")
    submit = SubmitField("Save")


class _HandedToWorker:
    """A mail request handed to a worker as it stands: whether the address has an
    account (and so whether it gets a mail) is decided there, so the request does
    the same work for every address and takes the same time.

    Only the address's form is checked here. Validation then reports failure with
    no error, which makes Flask-Security answer as it does for any address (its
    generic response) without looking the address up.
    """

    mail_kind: str
    email = EmailField(
        "Email Address",
        render_kw={"autocomplete": "email"},
        validators=[email_required, EmailValidation(verify=False)],
    )

    def validate(self, **kwargs: Any) -> bool:
        # The fields' own checks only: Flask-Security's validate looks the user up.
        if SecurityForm.validate(self, **kwargs):
            request_account_mail(self.mail_kind, self.email.data)
        else:
            # A malformed address says nothing about accounts: shown as the
            # form's error, which Flask-Security leaves in place.
            self.form_errors.extend(self.email.errors)
        return False


class QueuedForgotPasswordForm(_HandedToWorker, ForgotPasswordForm):
    mail_kind = "reset"


class QueuedSendConfirmationForm(_HandedToWorker, SendConfirmationForm):
    mail_kind = "confirm"


class TokenForm(FlaskForm):
    """A new personal API token: its name, lifetime and scope."""

    name = StringField(
        "Name",
        validators=[DataRequired(), Length(max=100)],
        description="What it is for, e.g. “laptop scripts” or “Nextflow”.",
    )
    days = SelectField("Expires", coerce=int)
    read_only = BooleanField("Read-only (lists and downloads; no uploads or runs)")
    submit = SubmitField("Make token")

    def __init__(self, choices: list[int], default: int, **kwargs: Any):
        super().__init__(**kwargs)
        self.days.choices = [(d, f"after {d} days" if d else "never") for d in choices]
        if self.days.data is None:
            self.days.data = default if default in choices else choices[0]
