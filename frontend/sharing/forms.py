from flask_wtf import FlaskForm
from wtforms import (
    RadioField,
    SelectField,
    StringField,
    SubmitField,
    TextAreaField,
)
from wtforms.validators import DataRequired, Length, Optional

ACCESS_CHOICES = [
    ("read", "Read-only: see files, analyses and results, and download them"),
    ("write", "Read-write: also upload, change files and run analyses"),
]
LINK_DAYS = [
    ("7", "7 days"),
    ("30", "30 days"),
    ("90", "90 days"),
    ("", "until revoked"),
]


class GroupForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(), Length(max=120)])
    description = TextAreaField("Description", validators=[Length(max=2000)])
    submit = SubmitField("Create the group")


class InviteForm(FlaskForm):
    email = StringField("Email address", validators=[DataRequired(), Length(max=255)])
    submit = SubmitField("Invite")


class ShareForm(FlaskForm):
    """Share a project with one of the user's groups, or with an address."""

    group = SelectField("With a group", choices=[], validators=[Optional()])
    email = StringField(
        "Or with a person (email address)", validators=[Optional(), Length(max=255)]
    )
    access = RadioField("Access", choices=ACCESS_CHOICES, default="read")
    submit = SubmitField("Share")


class LinkForm(FlaskForm):
    days = SelectField("The link works for", choices=LINK_DAYS, default="30")
    submit = SubmitField("Make a link")
