"""Resumable uploads over tus 1.0 (creation, termination, checksum): at
/api/v1/uploads for tokens (the `labqueue` command and other tus clients), and at
/uploads for the site's own upload page (its session, CSRF token in a header).

Create with ``POST`` (``Upload-Length``, and ``Upload-Metadata`` with ``project``
and ``path``, optionally ``on_clash`` and ``extract``), then ``PATCH`` the bytes
from the offset ``HEAD`` gives. The file is stored, with the web upload's checks,
when its last byte arrives.
"""

from __future__ import annotations

import base64
import binascii
from urllib.parse import quote

from flask import Blueprint, Response, current_app, jsonify, request, url_for
from flask_login import current_user
from flask_security import auth_required
from flask_smorest import Blueprint as ApiBlueprint

from backend.files import UnsafeName

from ..core.access import Access, get_project_or_404
from ..core.http import streams_upload
from ..core.storage import StorageError
from ..projects import resumable
from .auth import token_required

TUS_VERSION = "1.0.0"
EXTENSIONS = "creation,termination,checksum"

blp = ApiBlueprint(
    "tus",
    __name__,
    url_prefix="/api/v1/uploads",
    description="Resumable uploads (tus 1.0: creation, termination, checksum).",
)
# The same uploads for the project page, signed in: CSRF applies, as on every
# form (tus-js-client sends the token as X-CSRFToken).
web_bp = Blueprint("web_tus", __name__, url_prefix="/uploads")


def _answer(status: int, **headers: str) -> Response:
    response = Response(status=status)
    response.headers["Tus-Resumable"] = TUS_VERSION
    response.headers["Cache-Control"] = "no-store"
    for name, value in headers.items():
        response.headers[name.replace("_", "-")] = value
    return response


def _refusal(status: int, message: str) -> Response:
    response = jsonify(error=status, message=message)
    response.status_code = status
    response.headers["Tus-Resumable"] = TUS_VERSION
    return response


def _speaks_tus():
    if request.method == "OPTIONS":
        return None
    if request.headers.get("Tus-Resumable") != TUS_VERSION:
        response = _refusal(412, f"Send 'Tus-Resumable: {TUS_VERSION}'.")
        response.headers["Tus-Version"] = TUS_VERSION
        return response
    return None


def _metadata(header: str) -> dict[str, str]:
    """``Upload-Metadata``: comma-separated "key base64value" pairs."""
    found = {}
    for pair in filter(None, (p.strip() for p in header.split(","))):
        key, _, encoded = pair.partition(" ")
        try:
            found[key] = base64.b64decode(encoded, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise ValueError(f"Upload-Metadata's {key!r} is not base64 text") from exc
    return found


def options():
    """What this server speaks of tus."""
    return _answer(
        204,
        Tus_Version=TUS_VERSION,
        Tus_Extension=EXTENSIONS,
        Tus_Max_Size=str(current_app.config["MAX_UPLOAD_BYTES"]),
        Tus_Checksum_Algorithm=",".join(resumable.CHECKSUMS),
    )


def create():
    """Start an upload: ``Upload-Length`` bytes, to ``path`` in ``project``."""
    if request.headers.get("Upload-Defer-Length"):
        return _refusal(400, "Give Upload-Length: this server needs it at creation.")
    length = request.headers.get("Upload-Length", "")
    if not length.isdigit():
        return _refusal(400, "Give Upload-Length: the file's size in bytes.")
    try:
        meta = _metadata(request.headers.get("Upload-Metadata", ""))
    except ValueError as exc:
        return _refusal(400, str(exc))
    if not meta.get("project", "").isdigit():
        return _refusal(400, "Upload-Metadata needs 'project': the project's id.")
    project = get_project_or_404(int(meta["project"]), Access.WRITE)
    path = meta.get("path") or meta.get("filename") or ""
    try:
        upload = resumable.create(
            current_user,
            project,
            path,
            int(length),
            on_clash=meta.get("on_clash", "ask"),
            extract=meta.get("extract", "") in ("1", "true"),
        )
    except UnsafeName as exc:
        return _refusal(400, f"“{path}” cannot be stored: {exc}")
    except StorageError as exc:
        return _refusal(exc.status, str(exc))
    location = url_for(f"{request.blueprint}.piece", upload_id=upload.id)
    return _answer(201, Location=location, Upload_Offset="0")


def offset(upload_id: str):
    """How many bytes the server has."""
    upload = resumable.get_own_or_404(current_user, upload_id)
    return _answer(
        200,
        Upload_Offset=str(resumable.current_offset(upload)),
        Upload_Length=str(upload.length),
    )


@streams_upload
def piece(upload_id: str):
    """The next bytes, from ``Upload-Offset``; the file is stored after the last."""
    upload = resumable.get_own_or_404(current_user, upload_id)
    if request.mimetype != "application/offset+octet-stream":
        return _refusal(415, "Send pieces as application/offset+octet-stream.")
    sent_from = request.headers.get("Upload-Offset", "")
    if not sent_from.isdigit():
        return _refusal(400, "Give Upload-Offset: where this piece starts.")
    length = upload.length  # the row is gone once the file is stored
    try:
        checksum = resumable.parse_checksum(request.headers.get("Upload-Checksum"))
        result = resumable.append(
            upload, request.stream, int(sent_from), request.content_length, checksum
        )
    except UnsafeName as exc:
        return _refusal(400, f"The file cannot be stored: {exc}")
    except StorageError as exc:
        return _refusal(exc.status, str(exc))
    if result is None:
        return _answer(204, Upload_Offset=str(upload.offset))
    return _answer(
        204,
        Upload_Offset=str(length),
        Labqueue_Upload_Status=result.status,
        Labqueue_Upload_Path=quote(result.path),
        Labqueue_Upload_Message=quote(result.message),
    )


def terminate(upload_id: str):
    """Give up an upload: what it received is removed."""
    resumable.terminate(resumable.get_own_or_404(current_user, upload_id))
    return _answer(204)


def _add_routes(bp, reads, writes, pieces) -> None:
    """The tus routes on ``bp``, each behind the guard its kind of call needs."""
    bp.before_request(_speaks_tus)
    bp.route("", methods=["OPTIONS"])(options)
    bp.route("", methods=["POST"])(writes(create))
    bp.route("/<upload_id>", methods=["HEAD"])(reads(offset))
    bp.route("/<upload_id>", methods=["PATCH"])(pieces(piece))
    bp.route("/<upload_id>", methods=["DELETE"])(writes(terminate))


_add_routes(
    blp,
    reads=token_required(),
    writes=token_required(write=True),
    pieces=token_required(write=True, counted=False),  # a piece is not a change
)
_signed_in = auth_required()
_add_routes(web_bp, reads=_signed_in, writes=_signed_in, pieces=_signed_in)
