"""The wall clock of a run a scheduler holds back, and the words for why it waits
(units: no cluster; the real one is in test_slurm)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from backend.runners import Handle, LogChunk, Status, Usage, now
from backend.runners.slurm import _going
from backend.supervision import RunWatch
from tests.test_runners import spec_for


class StillRunner:
    """A runner whose run prints nothing and uses nothing."""

    def read_log(self, handle, offset):
        return LogChunk(b"", offset, complete=True)

    def usage(self, handle):
        return Usage()

    def unlinked_output_bytes(self, handle):
        return 0


@pytest.fixture
def watch_of(tmp_path):
    """A watch of a run launched ``launched_ago`` seconds ago, with 60 s to run."""
    made = []

    def make(launched_ago: float) -> RunWatch:
        spec = spec_for(tmp_path, ["true"], timeout_s=60)
        launched = now() - timedelta(seconds=launched_ago)
        made.append(RunWatch(StillRunner(), Handle("slurm", "7"), spec, launched))
        return made[-1]

    yield make
    for watch in made:
        watch.log.close()


def test_time_in_the_clusters_queue_does_not_count(watch_of):
    watch = watch_of(launched_ago=3600)  # an hour in the queue
    watch.note(Status("running", waiting="waiting in the cluster's queue: ..."))
    assert watch.reason_to_stop(False) is None
    began = now() - timedelta(seconds=10)  # the scheduler says when it began
    watch.note(Status("running", started_at=began))
    assert watch.reason_to_stop(False) is None
    watch.note(Status("running", started_at=now() - timedelta(seconds=61)))
    assert watch.reason_to_stop(False) == "timed out after 1 min"


def test_a_run_no_scheduler_holds_counts_from_its_launch(watch_of):
    watch = watch_of(launched_ago=61)
    watch.note(Status("running"))
    assert watch.reason_to_stop(False) == "timed out after 1 min"


def test_slurms_reasons_for_waiting_are_told_in_words():
    said = "waiting in the cluster's queue: "
    assert _going("PENDING", "Resources", "N/A").waiting == (
        said + "the nodes it needs are busy"
    )
    assert _going("PENDING", "QOSMaxJobsPerUserLimit", "N/A").waiting == (
        said + "a limit of the cluster's account or partition is reached "
        "(QOSMaxJobsPerUserLimit)"
    )
    assert _going("PENDING", "None", "Unknown").waiting == (
        said + "it has not started yet"
    )
    running = _going("RUNNING", "None", "2026-12-03T05:40:10")
    assert running.waiting is None and running.started_at is not None


def test_the_first_ending_seen_is_the_one_recorded(watch_of):
    """A run seen exited with 137 (killed) and then, while its log drains, seen
    missing (its container removed from outside) ended as first seen."""
    watch = watch_of(launched_ago=5)
    killed = Status("exited", 137)
    assert watch.ended(killed) is killed
    assert watch.ended(Status("missing")) is killed
    assert watch.finish(killed).reason == "it was stopped from outside (killed)"
