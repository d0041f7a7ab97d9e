"""Console actions on a job: a study routed to the no-op pipeline, failing while a flag file
exists, is dead-lettered; an operator replays it from the console (confirmation page, then a
POST with the CSRF token) once the flag is gone, and the job succeeds. A viewer cannot act."""

from __future__ import annotations

import time

from infernode.audit import AuditLog, Category
from tests.integration.infernode.console.console_support import client_for, log_in, page_csrf
from tests.support.peers.dcmtk import ct_series, storescu
from tests.support.waiting import wait_until
from workers import admin as job_admin
from workers.messages import JobState


def test_operator_replays_a_dead_lettered_job_after_confirming(console_node, tmp_path):
    flag = tmp_path / "broken"
    flag.write_text("the pipeline fails while this file exists")
    node = console_node(workers={
        "max_attempts": 1,
        "pipelines": {"noop": {"kind": "noop", "fail_flag": str(flag)}},
        "rules": [{"name": "ct-noop", "pipeline": "noop", "quiet_period_s": 0.5,
                   "when": {"tag": "Modality", "equals": "CT"}}],
    })
    assert storescu(node.server.port, ct_series(tmp_path / "src", slices=2)).returncode == 0
    dead = wait_until(lambda: job_admin.dead_letters(node.engine), timeout=60,
                      what="the job dead-lettered", every=0.2)
    job_id = dead[0].id

    operator = client_for(node)
    assert log_in(operator, "otto").status_code == 303
    listing = operator.get("/jobs", params={"state": "dead_lettered"})
    assert f"/actions/job-replay/{job_id}" in listing.text
    confirm = operator.get(f"/actions/job-replay/{job_id}",
                           headers={"referer": "http://testserver/jobs?state=dead_lettered"})
    assert confirm.status_code == 200 and "Replay dead-lettered job" in confirm.text
    assert 'name="back" value="/jobs?state=dead_lettered"' in confirm.text

    viewer = client_for(node, "10.2.2.2")
    assert log_in(viewer, "vera").status_code == 303
    refused = viewer.post(f"/actions/job-replay/{job_id}",
                          data={"csrf": page_csrf(viewer.get("/").text)})
    assert refused.status_code == 403

    flag.unlink()
    done = operator.post(f"/actions/job-replay/{job_id}",
                         data={"csrf": page_csrf(confirm.text), "back": "https://evil.example/"})
    assert done.status_code == 200 and f"job {job_id} replayed" in done.text
    assert 'href="/"' in done.text  # a "back" link never leaves the console
    wait_until(lambda: job_admin.get_job(node.engine, job_id).state is JobState.SUCCEEDED,
               timeout=60, what="the replayed job succeeded", every=0.2)
    again = operator.post(f"/actions/job-replay/{job_id}",
                          data={"csrf": page_csrf(confirm.text)})
    assert again.status_code == 409 and "not dead-lettered" in again.text
    events = AuditLog(node.engine).query(category=str(Category.CONSOLE), subject=job_id)
    assert [(e.action, e.outcome, e.actor) for e in events] == [
        ("job-replay", "failure", "otto"), ("job-replay", "success", "otto")]


def test_operator_dead_letters_a_queued_job_then_agrees_with_its_result(console_node, tmp_path):
    flag = tmp_path / "broken"
    flag.write_text("the pipeline fails while this file exists")
    node = console_node(workers={
        "max_attempts": 3, "retry_backoff_s": 2.0,
        "pipelines": {"noop": {"kind": "noop", "fail_flag": str(flag)}},
        "rules": [{"name": "ct-noop", "pipeline": "noop", "quiet_period_s": 0.5,
                   "when": {"tag": "Modality", "equals": "CT"}}],
    })
    assert storescu(node.server.port, ct_series(tmp_path / "src", slices=2)).returncode == 0
    waiting = wait_until(
        lambda: [j for j in job_admin.list_jobs(node.engine, states=(JobState.QUEUED,))
                 if j.attempts == 1],
        timeout=60, what="the job back in the queue after a failed attempt", every=0.05)
    job_id = waiting[0].id

    operator = client_for(node)
    assert log_in(operator, "otto").status_code == 303
    confirm = operator.get(f"/actions/job-dead-letter/{job_id}")
    assert confirm.status_code == 200 and 'name="note"' in confirm.text
    without_reason = operator.post(f"/actions/job-dead-letter/{job_id}",
                                   data={"csrf": page_csrf(confirm.text)})
    assert without_reason.status_code == 409 and "a reason is needed" in without_reason.text
    done = operator.post(f"/actions/job-dead-letter/{job_id}",
                         data={"csrf": page_csrf(confirm.text), "note": "wrong patient"})
    assert done.status_code == 200, done.text
    job = job_admin.get_job(node.engine, job_id)
    assert job.state is JobState.DEAD_LETTERED and "wrong patient" in (job.last_error or "")
    time.sleep(3)  # past the backoff: no worker takes a dead-lettered job
    assert job_admin.get_job(node.engine, job_id).state is JobState.DEAD_LETTERED

    flag.unlink()
    replay = operator.post(f"/actions/job-replay/{job_id}", data={"csrf": page_csrf(confirm.text)})
    assert replay.status_code == 200
    job = wait_until(lambda: (j := job_admin.get_job(node.engine, job_id)).state
                     is JobState.SUCCEEDED and j, timeout=60, what="the replayed job", every=0.2)
    study = operator.get(f"/studies/{job.study_instance_uid}")
    assert f"/actions/job-agree/{job_id}" in study.text
    agreed = operator.post(f"/actions/job-disagree/{job_id}",
                           data={"csrf": page_csrf(study.text), "note": "missed a bleed"})
    assert agreed.status_code == 200 and "verdict" in agreed.text
    study = operator.get(f"/studies/{job.study_instance_uid}")
    assert "otto disagrees: missed a bleed" in study.text
    events = AuditLog(node.engine).query(category=str(Category.CONSOLE), subject=job_id)
    assert [e.action for e in reversed(events)] == [
        "job-dead-letter", "job-dead-letter", "job-replay", "job-disagree"]
