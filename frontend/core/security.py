"""Flask-Security, bound in ``create_app``: its account mail (confirmation, reset,
unlock) goes through the outbox (``mail.LabqueueMailUtil``). Apart from the other
extensions so that ``extensions`` imports nothing that needs the models."""

from flask_security import Security

from .mail import LabqueueMailUtil

security = Security(mail_util_cls=LabqueueMailUtil)
