"""Central error pages: JSON for API and htmx requests, a page for browsers."""

from flask import Flask, jsonify, make_response, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, InternalServerError

from .core.extensions import db
from .core.formatting import human_size
from .core.http import is_api_path

MESSAGES = {
    400: "The request could not be understood.",
    403: "You do not have permission to see this page.",
    404: "There is nothing here. It may have been deleted, or it belongs to "
    "someone else.",
    405: "This address does not accept that kind of request.",
    413: "What you sent is larger than this site accepts.",
    500: "Something went wrong on our side. The administrators have been told.",
}


FIELD_ERRORS = "Some fields are missing or not valid; nothing was changed."


def wants_json() -> bool:
    if request.headers.get("HX-Request") or is_api_path(request.path):
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json" and not request.accept_mimetypes.accept_html


def render_error(code: int, message: str | None = None, errors: dict | None = None):
    message = message or MESSAGES.get(code, "")
    if wants_json():
        body = {"error": code, "message": message}
        if errors:
            body["errors"] = errors
        return jsonify(body), code
    return render_template("errors/error.html", code=code, message=message), code


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(CSRFError)
    def csrf_error(error: CSRFError):
        return render_error(
            400,
            "The form expired or was sent from another site. Reload the page and "
            "try again.",
        )

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        if error.code is None or error.code < 400:
            return error
        if error.code == 429:  # a limit: say how long to wait, and in the header
            body, code = render_error(429, error.description)
            response = make_response(body, code)
            response.headers["Retry-After"] = str(error.retry_after)
            return response
        if error.code == 401:  # an API call without a usable token
            body, code = render_error(401, error.description)
            response = make_response(body, code)
            response.headers["WWW-Authenticate"] = 'Bearer realm="labqueue"'
            return response
        # The API's aborts carry their own message, and field errors (422).
        data = getattr(error, "data", None) or {}
        if data.get("message") or data.get("errors") or data.get("messages"):
            return render_error(
                error.code,
                data.get("message") or FIELD_ERRORS,
                data.get("errors") or data.get("messages"),
            )
        if error.code == 413:
            limit = request.max_content_length
            message = MESSAGES[413]
            if limit:
                message += f" The limit is {human_size(limit)} per request."
            return render_error(413, message)
        if error.description != type(error).description or (
            is_api_path(request.path) and error.code == 403
        ):  # a view's own sentence (werkzeug's stock ones are not for users)
            return render_error(error.code, error.description)
        return render_error(error.code, MESSAGES.get(error.code, error.description))

    @app.errorhandler(InternalServerError)
    def server_error(error: InternalServerError):
        db.session.rollback()
        return render_error(500)
