from flask_wtf import FlaskForm
from wtforms import HiddenField, StringField, SubmitField, TextAreaField
from wtforms.validators import DataRequired, Length


class ProjectForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(), Length(max=120)])
    description = TextAreaField("Description", validators=[Length(max=5000)])
    submit = SubmitField("Save")


class NameForm(FlaskForm):
    """A new name for a file or folder, or the name of a new folder."""

    name = StringField("Name", validators=[DataRequired(), Length(max=255)])
    folder = HiddenField()
    submit = SubmitField("Save")


class ConfirmForm(FlaskForm):
    """A POST with nothing but its CSRF token: delete buttons."""

    submit = SubmitField("Delete")
