"""What a start decides once it holds the claim, in order: room in the owner's
quota, the kind's plan, the image, then the launch itself (``begin``). It
records nothing: the start records the launch (``queue.record_launch``) or
ends the run as the returned ``Stop`` says (``endings.end_unstarted``)."""

from __future__ import annotations

import logging

from backend.runners import (
    COULD_NOT_START,
    Handle,
    ImageMissing,
    LaunchFailed,
    Runner,
    RunSpec,
)

from .formatting import human_size
from .kinds import CannotRun, Stop, build_spec, kind_of
from .models import Analysis
from .runners import NoClusterAccount
from .storage import output_room, quota_for, storage_used

log = logging.getLogger(__name__)


# What a researcher reads when the run broke down on our side; the technical
# detail goes to the failure snapshot and to the admins.
SYSTEM_FAILURE = (
    "the run could not be carried out because of a problem on the server; the "
    "administrators have been told"
)

# A start trusts an image its runner found this many seconds ago, rather than
# asking the engine before every run.
IMAGE_FOUND_SECONDS = 10


def begin(analysis: Analysis, runner: Runner, config) -> tuple[Handle, RunSpec] | Stop:
    """Launch the claimed ``analysis`` on ``runner``: its handle and spec, or
    the Stop that keeps it from running."""
    owner = analysis.project.owner
    room = output_room(analysis)
    if room <= 0:
        whose = "your" if owner.id == analysis.owner_id else "the project owner's"
        return Stop(
            f"{whose} storage is full ({human_size(storage_used(owner))} of "
            f"{human_size(quota_for(owner))}), so the run could not start; "
            "delete files or old analyses, then run it again"
        )
    kind = kind_of(analysis)
    try:
        plan = kind.plan(analysis, runner, config)
    except CannotRun as exc:
        return Stop(log_line=str(exc))
    except Exception as exc:  # a system failure, not the pipeline's: tell admins
        return _system_failure(analysis, exc)
    # An image found a moment ago is taken as there; a launch that misses it
    # after all says so (ImageMissing).
    problem = runner.image_problem(analysis.image, max_age=IMAGE_FOUND_SECONDS)
    if problem:
        return kind.missing_image(analysis, problem)
    try:
        spec = build_spec(analysis, runner, plan, room)
        return runner.launch(spec), spec
    except NoClusterAccount as exc:  # removed since it was submitted
        return Stop(str(exc))
    except ImageMissing as exc:
        return kind.missing_image(analysis, str(exc))
    except LaunchFailed as exc:
        log.error("Analysis %s did not start: %s", analysis.id, exc)
        return Stop(COULD_NOT_START, detail=str(exc))
    except Exception as exc:  # a system failure, not the pipeline's: tell admins
        return _system_failure(analysis, exc)


def _system_failure(analysis: Analysis, exc: Exception) -> Stop:
    log.exception("Analysis %s could not be launched", analysis.id)
    return Stop(SYSTEM_FAILURE, detail=repr(exc), failure=exc)
