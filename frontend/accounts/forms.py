"""Account forms. Flask-Security-Too owns the flows; we add names and the email rule."""

from typing import Any

from flask_security import RegisterFormV2
from flask_wtf import FlaskForm
from wtforms import BooleanField, StringField, SubmitField, ValidationError
from wtforms.validators import DataRequired, Length

from .services import check_registration_email


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
