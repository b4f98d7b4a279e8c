from flask import (
    Blueprint,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_security import auth_required, current_user
from flask_wtf import FlaskForm

from backend.files import UnsafeName
from backend.params import ParamsInvalid

from .. import retention
from ..core.access import Access, access_to, controls, get_project_or_404, projects_for
from ..core.downloads import zip_response
from ..core.models import AnalysisState, utcnow
from ..core.pipelines import all_pipelines, availability, enabled_pipelines, unsandboxed
from ..core.runners import NoClusterAccount
from ..core.storage import StorageError
from ..projects.services import entry_at
from ..sharing import services as sharing
from ..sharing.forms import LinkForm
from . import batches, pages
from . import services as svc
from .forms import add_outputs_form, form_values, run_form
from .readme import render_readme

bp = Blueprint("analyses", __name__)


@bp.app_context_processor
def sandbox_warning() -> dict:
    """Every page can warn that analyses run without a sandbox (local runner)."""
    return {"runs_unsandboxed": unsandboxed}


@bp.route("/projects/<int:project_id>/run")
@auth_required()
def choose(project_id: int):
    """The pipelines that can run on a project."""
    project = get_project_or_404(project_id, Access.WRITE)
    pipelines = enabled_pipelines()
    return render_template(
        "analyses/choose.html",
        project=project,
        pipelines=pipelines.values(),
        availability=availability(pipelines),
    )


@bp.route("/projects/<int:project_id>/run/<name>", methods=["GET", "POST"])
@auth_required()
def run(project_id: int, name: str):
    """The run form generated from the pipeline's manifest; submits an analysis."""
    project = get_project_or_404(project_id, Access.WRITE)
    pipeline = svc.get_pipeline_or_404(name)
    files = svc.project_file_paths(project)
    earlier = request.args.get("again", type=int)
    prefill = svc.get_analysis_or_404(earlier).params if earlier else None
    form = run_form(
        pipeline, files, prefill, max_chars=current_app.config["MAX_PARAM_CHARS"]
    )
    refused, refused_status = None, 503
    if request.method == "GET":  # said before the form is filled in
        refused = svc.missing_cluster_account(current_user, pipeline.name)
    elif form.validate_on_submit():
        mode = form.batch.data if "batch" in form else "one"
        try:
            if mode == "one":
                analysis = svc.submit(
                    current_user, project, pipeline, form_values(form, pipeline), files
                )
                flash(
                    f"Analysis #{analysis.id} is queued. We will email you when it "
                    "ends.",
                    "queued",
                )
                return redirect(url_for("analyses.detail", analysis_id=analysis.id))
            chosen = _batch_files(form, pipeline, files, mode)
            if chosen is not None:
                batch = batches.submit_batch(
                    current_user,
                    project,
                    pipeline,
                    form_values(form, pipeline),
                    chosen,
                    files,
                )
                limit = current_app.config["MAX_RUNNING_PER_USER"]
                flash(
                    f"Batch #{batch.id}: {len(batch.analyses)} analyses are queued; "
                    f"{limit} of yours run at a time.",
                    "queued",
                )
                return redirect(url_for("analyses.batch", batch_id=batch.id))
        except NoClusterAccount as exc:
            refused, refused_status = f"{exc} Nothing was submitted.", 409
        except svc.PipelineUnavailable as exc:
            refused = f"{exc} Nothing was submitted."
        except svc.AnalysisError as exc:
            form.form_errors.append(str(exc))
        except ParamsInvalid as invalid:
            for key, message in invalid.errors.items():
                if key and f"p_{key}" in form:
                    form[f"p_{key}"].errors.append(message)
                    if key in invalid.too_long:  # not sent back to the browser
                        form[f"p_{key}"].data = form[f"p_{key}"].raw_data = None
                else:
                    form.form_errors.append(message)
    return render_template(
        "analyses/run.html",
        project=project,
        pipeline=pipeline,
        form=form,
        has_files=bool(files),
        available=availability({pipeline.name: pipeline})[pipeline.name],
        refused=refused,
        readme=render_readme(pipeline.folder),
    ), (refused_status if refused else 200)


def _batch_files(form, pipeline, files: list[str], mode: str) -> list[str] | None:
    """The files a batch runs on, one analysis each: those selected ("each") or
    those matching the pattern ("matching"); None, with the reason on its field,
    when there are none."""
    key = batches.batch_field(pipeline)
    if mode == "each":
        chosen = form[f"p_{key}"].data or []
        chosen = [chosen] if isinstance(chosen, str) else list(chosen)
        if not chosen:
            form[f"p_{key}"].errors.append("Choose the files: one analysis each.")
            return None
        return chosen
    pattern = (form.batch_pattern.data or "").strip()
    if not pattern:
        form.batch_pattern.errors.append("Give a pattern, e.g. *.csv")
        return None
    chosen = batches.matching_files(pipeline, files, pattern)
    if not chosen:
        form.batch_pattern.errors.append(
            f"No file of the project matches {pattern} (among those this pipeline "
            "takes)."
        )
        return None
    return chosen


@bp.route("/analyses/<int:analysis_id>/run-elsewhere")
@auth_required()
def run_elsewhere(analysis_id: int):
    """Pick another project to run an analysis' pipeline on, with its values."""
    analysis = svc.get_analysis_or_404(analysis_id)
    projects = projects_for(current_user, Access.WRITE)
    return render_template(
        "analyses/elsewhere.html", analysis=analysis, projects=projects
    )


@bp.route("/analyses/")
@auth_required()
def queue():
    """Queued analyses with their place in the queue, running and recent ones."""
    everyone = current_user.has_role("admin") and request.args.get("all") == "1"
    view = svc.queue_for(current_user, everyone=everyone)
    return render_template(
        "analyses/queue.html",
        view=view,
        everyone=everyone,
        cancel_form=FlaskForm(),
        elapsed=svc.elapsed,
        inputs_of=svc.inputs_of,
    )


@bp.route("/analyses/history")
@auth_required()
def history():
    """All of the user's analyses, filtered by state, pipeline and project."""
    state = request.args.get("state") or None
    pipeline = request.args.get("pipeline") or None
    project_id = request.args.get("project", type=int)
    page = svc.history(
        current_user, state, pipeline, project_id, request.args.get("page", 1, type=int)
    )
    return render_template(
        "analyses/history.html",
        page=page,
        state=state,
        pipeline=pipeline,
        project_id=project_id,
        projects=projects_for(current_user, Access.READ),
        pipelines=sorted(all_pipelines()),
        states=[s.value for s in AnalysisState],
        delete_form=FlaskForm(),
        inputs_of=svc.inputs_of,
        elapsed=svc.elapsed,
    )


@bp.route("/analyses/<int:analysis_id>/delete", methods=["POST"])
@auth_required()
def delete(analysis_id: int):
    """Delete a finished analysis and its outputs."""
    analysis = svc.get_analysis_or_404(analysis_id, control=True)
    if FlaskForm().validate_on_submit():
        try:
            svc.delete(analysis)
            flash(f"Analysis #{analysis_id} and its outputs were deleted.", "success")
        except svc.AnalysisError as exc:
            flash(str(exc), "error")
            return redirect(url_for("analyses.detail", analysis_id=analysis_id))
    return redirect(url_for("analyses.history"))


@bp.route("/analyses/<int:analysis_id>")
@auth_required()
def detail(analysis_id: int):
    """One analysis: its state, parameters, progress, log and outputs."""
    analysis = svc.get_analysis_or_404(analysis_id)
    access = access_to(current_user, analysis.project)
    may_control = controls(current_user, analysis)
    writable = []
    if analysis.finished:
        writable = projects_for(current_user, Access.WRITE)
    return render_template(
        "analyses/detail.html",
        **pages.detail_context(analysis),
        aurl=pages.addresses(analysis),
        attempts=svc.attempts(analysis),
        can_run=access >= Access.WRITE,
        can_control=may_control or current_user.has_role("admin"),
        links=sharing.links_of(analysis) if may_control else [],
        link_works=sharing.link_works,
        now=utcnow(),
        cancel_form=FlaskForm(),
        link_form=LinkForm(),
        add_form=add_outputs_form(analysis, writable) if writable else None,
        notice=retention.notice_of("outputs", analysis.id),
    )


@bp.route("/analyses/<int:analysis_id>/add-to-project", methods=["POST"])
@auth_required()
def add_to_project(analysis_id: int):
    """Put some or all outputs of an analysis into a project the user may change,
    as files with their provenance, for new runs to use."""
    analysis = svc.get_analysis_or_404(analysis_id)
    writable = projects_for(current_user, Access.WRITE)
    form = add_outputs_form(analysis, writable)
    back = redirect(url_for("analyses.detail", analysis_id=analysis.id))
    if not form.validate_on_submit():
        flash("Choose a project to add the outputs to.", "error")
        return back
    project = get_project_or_404(form.project.data, Access.WRITE)
    try:
        folder, results = svc.add_outputs_to_project(
            analysis,
            project,
            form.folder.data or "",
            None if form.everything.data else form.paths.data,
            form.on_clash.data,
            current_user,
        )
    except (svc.AnalysisError, StorageError, UnsafeName) as exc:
        flash(f"Nothing was added: {exc}", "error")
        return back
    added = [r for r in results if r.status not in ("skipped", "refused")]
    skipped = sum(r.status == "skipped" for r in results)
    refused = [r for r in results if r.status == "refused"]
    folder = entry_at(project, folder)
    flash(
        f"{len(added)} output(s) of #{analysis.id} added to “{project.name}”"
        + (f"; {skipped} skipped (their names exist)" if skipped else "")
        + "".join(f"; {r.path!r} left out: {r.message}" for r in refused)
        + ". Runs can use them like any file.",
        "success" if added and not refused else "warning",
    )
    return redirect(
        url_for(
            "projects.browse",
            project_id=project.id,
            folder=folder.id if folder else None,
        )
    )


@bp.route("/analyses/<int:analysis_id>/keep", methods=["POST"])
@auth_required()
def keep(analysis_id: int):
    """Pin an analysis so the retention policy leaves it alone, or unpin it."""
    analysis = svc.get_analysis_or_404(analysis_id, control=True)
    if FlaskForm().validate_on_submit():
        flash(svc.set_keep(analysis, request.form.get("keep") == "1"), "success")
    return redirect(url_for("analyses.detail", analysis_id=analysis.id))


@bp.route("/analyses/<int:analysis_id>/status")
@auth_required()
def status(analysis_id: int):
    """State, progress and new log text of an analysis, as JSON for the live page.

    ``?offset=N`` asks for the log from byte N; the answer says where to go on.
    """
    return pages.status_response(svc.get_analysis_or_404(analysis_id))


@bp.route("/analyses/<int:analysis_id>/cancel", methods=["POST"])
@auth_required()
def cancel(analysis_id: int):
    """Cancel a queued analysis, or stop a running one."""
    analysis = svc.get_analysis_or_404(analysis_id, control=True)
    if FlaskForm().validate_on_submit():
        try:
            flash(svc.cancel(analysis), "success")
        except svc.AnalysisError as exc:
            flash(str(exc), "error")
    return redirect(
        request.referrer or url_for("analyses.detail", analysis_id=analysis.id)
    )


@bp.route("/analyses/<int:analysis_id>/outputs/<path:relpath>")
@auth_required()
def output(analysis_id: int, relpath: str):
    """One output file: inline when asked (images, SVG, HTML, all script-free),
    as an attachment otherwise."""
    return pages.output_response(svc.get_analysis_or_404(analysis_id), relpath)


@bp.route("/analyses/<int:analysis_id>/outputs.zip")
@auth_required()
def outputs_zip(analysis_id: int):
    """All outputs of an analysis as a zip, built while it is sent."""
    return pages.outputs_zip_response(svc.get_analysis_or_404(analysis_id))


@bp.route("/analyses/<int:analysis_id>/log")
@auth_required()
def log(analysis_id: int):
    """The full log of an analysis, as plain text."""
    return pages.log_response(svc.get_analysis_or_404(analysis_id))


@bp.route("/batches/<int:batch_id>")
@auth_required()
def batch(batch_id: int):
    """A batch: each analysis with its input, state and progress, live."""
    found = batches.get_batch_or_404(batch_id)
    rows = batches.rows_of(found)
    return render_template(
        "analyses/batch.html",
        batch=found,
        rows=rows,
        counts=batches.counts(rows),
        can_control=controls(current_user, found) or current_user.has_role("admin"),
        cancel_form=FlaskForm(),
    )


@bp.route("/batches/<int:batch_id>/status")
@auth_required()
def batch_status(batch_id: int):
    """Every analysis of a batch, its state and progress, as JSON for its page."""
    rows = batches.rows_of(batches.get_batch_or_404(batch_id))
    return jsonify(
        counts=batches.counts(rows),
        finished=all(row.analysis.finished for row in rows),
        analyses=[row.as_dict() for row in rows],
    )


@bp.route("/batches/<int:batch_id>/cancel", methods=["POST"])
@auth_required()
def batch_cancel(batch_id: int):
    """Cancel every analysis of a batch that has not ended."""
    found = batches.get_batch_or_404(batch_id, control=True)
    if FlaskForm().validate_on_submit():
        try:
            flash(batches.cancel_batch(found), "success")
        except svc.AnalysisError as exc:
            flash(str(exc), "error")
    return redirect(url_for("analyses.batch", batch_id=found.id))


@bp.route("/batches/<int:batch_id>/outputs.zip")
@auth_required()
def batch_outputs_zip(batch_id: int):
    """The outputs of every analysis of a batch, a folder each, as one zip."""
    found = batches.get_batch_or_404(batch_id)
    return zip_response(
        batches.outputs_zip(found), f"batch-{found.id}-{found.pipeline}.zip"
    )
