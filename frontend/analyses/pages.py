"""What an analysis' page shows and serves (its state, log, outputs), whether it
is opened by someone who may read its project or through a share link: the two
differ only in their addresses and in what the visitor may do."""

from __future__ import annotations

from collections.abc import Callable

from flask import abort, jsonify, request, url_for

from ..core.downloads import INLINE_IMAGES, send_user_file, zip_response
from ..core.models import Analysis
from . import services as svc

# Shown inline (for <img> and sandboxed frames) when asked; always with a CSP that
# forbids scripts, so an SVG or HTML report opened directly cannot act either.
INLINE_TYPES = {
    **INLINE_IMAGES,
    ".svg": "image/svg+xml",
    ".html": "text/html",
    ".htm": "text/html",
}
# The log is shown in the browser as text.
LOG_TYPES = {".txt": "text/plain"}


def addresses(analysis: Analysis, secret: str | None = None) -> Callable[..., str]:
    """``aurl(name, **values)``: the address of the page's ``name`` (detail,
    status, output, outputs_zip, log) for a member, or under a share link."""

    def aurl(name: str, **values) -> str:
        if secret is not None:
            return url_for(f"sharing.link_{name}", secret=secret, **values)
        return url_for(f"analyses.{name}", analysis_id=analysis.id, **values)

    return aurl


def detail_context(analysis: Analysis) -> dict:
    """What the analysis page shows of ``analysis``."""
    outputs = svc.output_files(analysis)
    # While it runs, the page fetches the log and outputs live (status endpoint).
    finished = analysis.finished
    return {
        "featured": svc.featured_outputs(analysis, outputs) if finished else [],
        "analysis": analysis,
        "outputs": outputs,
        "log_tail": svc.log_tail(analysis) if finished else "",
        "position": svc.queue_position(analysis),
        "waiting_for": svc.waiting_for_worker(analysis),
        "resources": svc.resources(analysis),
        "started": svc.started_line(analysis),
    }


def status_response(analysis: Analysis):
    """State, progress and new log text as JSON for the live page; ``?offset=N``
    asks for the log from byte N, and the answer says where to go on."""
    offset = request.args.get("offset", default=0, type=int)
    text, next_offset = svc.read_log(analysis, offset)
    return jsonify(
        state=analysis.state.value,
        finished=analysis.finished,
        progress=analysis.progress_percent,
        message=analysis.progress_message,
        position=svc.queue_position(analysis),
        waiting_for=svc.waiting_for_worker(analysis),
        elapsed=svc.elapsed(analysis),
        started=svc.started_line(analysis),
        log=text,
        offset=next_offset,
    )


def output_response(analysis: Analysis, relpath: str):
    """One output file: inline when asked (images, SVG, HTML, all script-free),
    as an attachment otherwise. Only a regular file reached without a link is
    served, and the handle that was checked is the one sent."""
    try:
        handle = svc.open_output(analysis, relpath)
    except FileNotFoundError:
        abort(404)
    return send_user_file(
        handle,
        relpath.rsplit("/", 1)[-1],
        INLINE_TYPES,
        inline=request.args.get("inline") == "1",
    )


def outputs_zip_response(analysis: Analysis):
    return zip_response(svc.outputs_zip(analysis), svc.outputs_zip_name(analysis))


def log_response(analysis: Analysis):
    """The full log as plain text."""
    try:
        handle = svc.open_log(analysis)
    except FileNotFoundError:
        abort(404)
    return send_user_file(
        handle, f"analysis-{analysis.id}-log.txt", LOG_TYPES, inline=True
    )
