"""The server's five promises, each tested: accepted jobs survive SIGTERM and SIGKILL of the server and its
workers, and a running one continues from its saved results with every feature once; a dead worker's job moves on
within lease + one sweep; a job run twice publishes one result; cancel is real and final; at most --workers jobs
run at once (the status views agreeing is in test_server_api)."""

from __future__ import annotations

import json
import time

import pytest

pytest.importorskip("fastapi")

from geoclassify.server.config import ServerConfig
from geoclassify.server.db import Database
from geoclassify.server.inputs import Resolver
from geoclassify.server.items import ItemStore
from geoclassify.server.jobs import ACCEPTED, DISMISSED, FAILED, RUNNING, SUCCESSFUL, JobStore
from geoclassify.server.tool import plan_job
from geoclassify.server.users import User
from geoclassify.server.worker import Worker

from tests.support.server import (
    CLASSIFY,
    GP,
    Server,
    add_user,
    assert_same_features,
    call,
    cli_reference,
    download,
    slow_scene,
    staging,
    stop_servers,  # noqa: F401 (an autouse fixture)
    wait_for,
)

SLOW = {
    "inputRaster": {"uri": "town.tif"},
    "inputFeatures": {"uri": "houses.gpkg"},
    "model": {"uri": "flat.dlpk"},
    "modelArguments": {"batch_size": "1"},
}


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    folder = tmp_path_factory.mktemp("durable")
    root = folder / "data"
    raster, houses, package = slow_scene(root, 2000)
    with pytest.MonkeyPatch.context() as patch:  # the CLI extracts the package in the tests' cache, not the user's
        patch.setenv("GEOCLASSIFY_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))
        reference = cli_reference(raster, houses, package, folder / "cli.gpkg")
    return folder, root, reference


def submit_esri(server, token, name, params=SLOW):
    form = {k: json.dumps(v) for k, v in params.items()} | {"outputFeatureClass": name, "f": "json"}
    status, reply = call("POST", f"{server.url}{GP}/{CLASSIFY}/submitJob", token, form=form)
    assert status == 200, reply
    return reply["jobId"]


def journal_parts(state, job_id, name):
    return list(staging(state, job_id).glob(f".{name}.gpkg*.geoclassify-run/part-*.npz"))


def store(state):
    return JobStore(Database(state))


def test_accepted_jobs_survive_sigterm_and_sigkill_and_resume_with_every_feature_once(scene, tmp_path):
    folder, root, reference = scene
    state = tmp_path / "state"
    token = add_user(state, "alice")
    jobs = store(state)
    slow_env = {"GEOCLASSIFY_JOURNAL_FEATURES": "1"}
    server = Server(state, root, env=slow_env).start()
    first = submit_esri(server, token, "first")
    status, created = call(
        "POST",
        f"{server.url}/ogcapi/processes/{CLASSIFY}/execution",
        token,
        body={"inputs": {**SLOW, "modelArguments": {}, "outputFeatureClass": "second"}},
    )
    assert status == 201
    second = created["jobID"]
    wait_for(lambda: len(journal_parts(state, first, "first")) >= 3, timeout=60, interval=0.02)
    assert jobs.get(second).status == ACCEPTED  # one worker: the second waits (promise 5)
    assert server.stop() == 0  # SIGTERM stops cleanly ...
    assert jobs.get(first).status == ACCEPTED and jobs.get(first).attempts == 0  # ... and the job waits for the next
    assert "server stopped" in jobs.get(first).messages[-1]["text"]
    assert len(journal_parts(state, first, "first")) >= 3

    server = Server(state, root, env=slow_env).start()
    saved = len(journal_parts(state, first, "first"))
    wait_for(lambda: len(journal_parts(state, first, "first")) >= saved + 3, timeout=60, interval=0.02)
    server.kill()  # SIGKILL of the server and its workers: a power cut
    assert jobs.get(first).status == RUNNING  # as the dead left it
    assert not server.workers()

    server = Server(state, root).start()
    try:
        done = wait_for(lambda: all(jobs.get(j).status in (SUCCESSFUL, FAILED) for j in (first, second)), 90)
        assert done and jobs.get(first).status == SUCCESSFUL, jobs.get(first).messages
        assert jobs.get(second).status == SUCCESSFUL, jobs.get(second).messages
        texts = [m["text"] for m in jobs.get(first).messages]
        assert texts.count("Continuing from its saved results.") == 2
        for job_id in (first, second):
            item = jobs.get(job_id).result["itemId"]
            target = tmp_path / f"{job_id}.gpkg"
            assert_same_features(download(f"{server.url}/api/items/{item}/data", token, target), reference, key="id")
        assert not staging(state, first).exists()
    finally:
        server.stop()


def test_a_dead_worker_s_job_moves_on_within_lease_and_one_sweep(scene, tmp_path):
    folder, root, reference = scene
    state = tmp_path / "state"
    token = add_user(state, "alice")
    jobs = store(state)
    with Server(state, root, env={"GEOCLASSIFY_JOURNAL_FEATURES": "1"}) as server:
        job_id = submit_esri(server, token, "lost")
        wait_for(lambda: len(journal_parts(state, job_id, "lost")) >= 3, timeout=60, interval=0.02)
        (worker,) = server.workers()
        held_by = jobs.get(job_id).worker
        import os
        import signal

        os.kill(worker, signal.SIGKILL)
        killed = time.monotonic()
        wait_for(lambda: jobs.get(job_id).worker != held_by, timeout=10, interval=0.05)
        config = ServerConfig(state=state)  # the server's lease (GEOCLASSIFY_SERVER_LEASE=2) and sweep
        assert time.monotonic() - killed <= 2 + config.sweep_interval + 1
        wait_for(lambda: jobs.get(job_id).status == SUCCESSFUL, timeout=60)
        status, reply = call("GET", f"{server.url}/api/items/{jobs.get(job_id).result['itemId']}", token)
        assert reply["info"]["features"] == 2000


def test_a_lease_that_runs_out_is_queued_again_then_failed_worker_lost(tmp_path):
    jobs = store(tmp_path)
    job = jobs.submit("alice", CLASSIFY, "{}", max_attempts=2)
    assert jobs.claim("w1", 0.3, 1).id == job.id  # the worker then dies: no heartbeat
    started = time.monotonic()
    wait_for(lambda: jobs.sweep() and jobs.get(job.id).status == ACCEPTED, timeout=5, interval=0.05)
    assert time.monotonic() - started <= 0.3 + 0.2
    assert jobs.heartbeat(job.id, "w1", 30, 50) is None  # the old worker has lost it
    jobs.claim("w2", 0.3, 1)
    wait_for(lambda: jobs.sweep() and jobs.get(job.id).status == FAILED, timeout=5, interval=0.05)
    assert jobs.get(job.id).messages[-1]["text"] == "worker lost (2 attempts)"


def in_process(tmp_path, root):
    config = ServerConfig(state=tmp_path / "state", data_roots=(root,))
    db = Database(config.state)
    jobs, items = JobStore(db), ItemStore(db)
    return config, jobs, items


def queue(config, jobs, items, name, params=SLOW):
    from geoclassify.server.jobs import new_id

    job_id = new_id()
    plan = plan_job(
        CLASSIFY,
        {**params, "outputFeatureClass": name},
        Resolver(config, items, User("alice")),
        config,
        job_id,
        default_name=False,
    )
    return jobs.submit(
        "alice", plan.process, plan.request, output_name=plan.output_name, job_id=job_id, max_attempts=plan.max_attempts
    )


def test_a_job_run_twice_publishes_one_result(scene, tmp_path):
    folder, root, reference = scene
    config, jobs, items = in_process(tmp_path, root)
    params = {**SLOW, "modelArguments": {}}
    job = queue(config, jobs, items, "twice", params)
    first = jobs.claim("w1", -1, 1)  # taken, then its lease runs out while it still runs
    jobs.sweep()
    second = jobs.claim("w2", 30, 1)
    Worker(config, "w2").execute(second)
    Worker(config, "w1").execute(first)  # the first one finishes too, late
    assert jobs.get(job.id).status == SUCCESSFUL
    results = [i for i in items.list(User("alice")) if i.name == "twice"]
    assert len(results) == 1 and results[0].job_id == job.id
    assert not staging(config.state, job.id).exists()


def test_a_late_worker_cannot_turn_a_cancelled_job_into_a_success(scene, tmp_path):
    folder, root, reference = scene
    config, jobs, items = in_process(tmp_path, root)
    job = queue(config, jobs, items, "late", {**SLOW, "modelArguments": {}})
    claimed = jobs.claim("w1", 30, 1)
    worker = Worker(config, "w1")
    original = jobs.publish

    def cancel_first(*args, **kwargs):  # the user cancels just as the run ends
        jobs.cancel(job.id)
        return original(*args, **kwargs)

    worker.jobs.publish = cancel_first  # type: ignore[method-assign]
    worker.execute(claimed)
    assert jobs.get(job.id).status == DISMISSED
    assert items.list(User("alice")) == [] and not staging(config.state, job.id).exists()


def test_cancel_stops_a_running_job_within_5_s_and_leaves_no_partial_result(scene, tmp_path):
    folder, root, reference = scene
    state = tmp_path / "state"
    token = add_user(state, "alice")
    jobs = store(state)
    with Server(state, root, env={"GEOCLASSIFY_JOURNAL_FEATURES": "1"}) as server:
        job_id = submit_esri(server, token, "cancelled")
        wait_for(lambda: len(journal_parts(state, job_id, "cancelled")) >= 2, timeout=60, interval=0.02)
        asked = time.monotonic()
        status, reply = call("DELETE", f"{server.url}/ogcapi/jobs/{job_id}", token)
        assert status == 200 and reply["status"] == "dismissed"
        wait_for(lambda: jobs.get(job_id).status == DISMISSED, timeout=5, interval=0.05)
        assert time.monotonic() - asked < 5
        wait_for(lambda: not staging(state, job_id).exists(), timeout=5)
        assert ItemStore(Database(state)).list(User("alice")) == []
        assert call("GET", f"{server.url}/ogcapi/jobs/{job_id}", token)[0] == 404


def test_workers_end_with_their_server_and_one_state_has_one_server(tmp_path):
    import os
    import signal
    import subprocess
    import sys

    state = tmp_path / "state"
    server = Server(state, None, "--workers", "2").start()
    try:
        workers = wait_for(lambda: len(server.workers()) == 2 and server.workers())
        second = subprocess.run(
            [sys.executable, "-m", "geoclassify", "serve", "--state", str(state), "--port", "0"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode == 1 and "another geoclassify server uses --state" in second.stderr
        os.kill(server.process.pid, signal.SIGKILL)  # the server alone: nobody tells its workers

        def gone(pid):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] == "Z"

        wait_for(lambda: all(gone(pid) for pid in workers), timeout=5)
    finally:
        server.stop()
