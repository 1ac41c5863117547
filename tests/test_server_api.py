"""The server's routes in process (FastAPI's TestClient, workers run in this process when a test needs one): tokens
and who sees what, Esri's service and task JSON, submission checks, inputs and their security rules, My Content,
the two status views of one state machine, the OGC API documents, and schemathesis against the OpenAPI document."""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import pytest

pytest.importorskip("fastapi")

from fastapi.testclient import TestClient

from geoclassify.server.app import create_app
from geoclassify.server.config import ServerConfig
from geoclassify.server.jobs import ACCEPTED, CANCELLING, DISMISSED, FAILED, RUNNING, SUCCESSFUL
from geoclassify.server.status import esri_status, ogc_status
from geoclassify.server.users import Users
from geoclassify.server.worker import Worker

from tests.support.server import CLASSIFY, GP, sample_root

MODEL_INFO = "QueryDeepLearningModelInfo"


@pytest.fixture
def server(tmp_path):
    """An app over a fresh state with the sample under a data root, users alice, bob and admin."""
    root = sample_root(tmp_path)
    config = ServerConfig(state=tmp_path / "state", data_roots=(root,), max_upload=5_000_000)
    app = create_app(config, start_workers=False)
    users = Users(app.state.services.db)
    tokens = {name: users.add(name, admin=name == "admin") for name in ("alice", "bob", "admin")}
    client = TestClient(app)
    client.tokens = tokens
    client.config = config
    client.services = app.state.services
    client.root = root
    return client


def auth(client, user="alice"):
    return {"Authorization": f"Bearer {client.tokens[user]}"}


def submit(client, user="alice", name="out1", **params):
    form = {
        "f": "json",
        "inputRaster": json.dumps({"uri": "orthophoto.tif"}),
        "inputFeatures": json.dumps({"uri": "houses.gpkg"}),
        "model": json.dumps({"uri": "roof-damage.dlpk"}),
        "outputFeatureClass": name,
        **params,
    }
    return client.post(f"{GP}/{CLASSIFY}/submitJob", data=form, headers=auth(client, user))


def work(client, worker_id="w1"):
    """Run every queued job in this process, as a worker would."""
    worker = Worker(client.config, worker_id)
    while (job := worker.jobs.claim(worker_id, 30, 1)) is not None:
        worker.execute(job)


# -- tokens and who sees what ---------------------------------------------------------------------------------------


def test_no_token_is_401_in_each_api_s_own_shape(server):
    esri = server.get(f"{GP}?f=json")
    assert esri.status_code == 401 and esri.json()["error"]["code"] == 401
    assert "token required" in esri.json()["error"]["message"]
    ogc = server.get("/ogcapi/jobs")
    assert ogc.status_code == 401 and ogc.json()["status"] == 401 and "token required" in ogc.json()["detail"]
    items = server.get("/api/items", headers={"Authorization": "Bearer nope"})
    assert items.status_code == 401 and "invalid token" in items.json()["detail"]
    assert "Traceback" not in esri.text + ogc.text + items.text


def test_token_by_header_esri_header_query_and_form(server):
    token = server.tokens["alice"]
    assert server.get(f"{GP}?f=json", headers={"X-Esri-Authorization": f"Bearer {token}"}).status_code == 200
    assert server.get(f"{GP}?f=json&token={token}").status_code == 200
    assert server.post(GP, data={"f": "json", "token": token}).status_code == 200
    assert server.get("/ogcapi/processes", headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_users_see_only_their_own_jobs_and_items_and_an_admin_sees_all(server):
    job_id = submit(server).json()["jobId"]
    assert server.get(f"{GP}/{CLASSIFY}/jobs/{job_id}?f=json", headers=auth(server, "bob")).status_code == 404
    assert server.get(f"/ogcapi/jobs/{job_id}", headers=auth(server, "bob")).json()["type"].endswith("no-such-job")
    assert server.get(f"{GP}/{CLASSIFY}/jobs/{job_id}/cancel?f=json", headers=auth(server, "bob")).status_code == 404
    assert server.get("/ogcapi/jobs", headers=auth(server, "bob")).json()["jobs"] == []
    assert [j["jobID"] for j in server.get("/ogcapi/jobs", headers=auth(server, "admin")).json()["jobs"]] == [job_id]
    item = upload(server, "roof-damage.dlpk", "model").json()
    assert server.get(f"/api/items/{item['id']}", headers=auth(server, "bob")).status_code == 404
    assert server.get(f"/api/items/{item['id']}/data", headers=auth(server, "bob")).status_code == 404
    assert server.delete(f"/api/items/{item['id']}", headers=auth(server, "bob")).status_code == 404
    assert server.get("/api/items", headers=auth(server, "bob")).json()["items"] == []
    assert server.get(f"/api/items/{item['id']}", headers=auth(server, "admin")).status_code == 200
    # bob cannot run a job on alice's item either
    refused = submit(server, "bob", model=json.dumps({"itemId": item["id"]}))
    assert refused.status_code == 404 and item["id"] in refused.json()["error"]["message"]


# -- Esri's service and tasks ---------------------------------------------------------------------------------------


def test_service_and_task_json_as_esri_s_clients_read_them(server):
    service = server.get(f"{GP}?f=pjson", headers=auth(server)).json()
    assert service["tasks"] == [CLASSIFY, MODEL_INFO]
    assert service["executionType"] == "esriExecutionTypeAsynchronous"
    assert service["resultMapServerName"] == "" and service["currentVersion"] >= 10.8
    task = server.get(f"{GP}/{CLASSIFY}", params={"f": "json"}, headers=auth(server)).json()
    names = [p["name"] for p in task["parameters"]]
    assert names == [
        "inputRaster",
        "inputFeatures",
        "outputFeatureClass",
        "model",
        "modelArguments",
        "classLabelField",
        "processAllRasterItems",
        "context",
        "outObjects",
    ]
    for parameter in task["parameters"]:
        assert {"name", "dataType", "direction", "defaultValue", "parameterType", "displayName"} <= set(parameter)
    out = task["parameters"][-1]
    assert out["direction"] == "esriGPParameterDirectionOutput" and out["dataType"] == "GPFeatureRecordSetLayer"
    info = server.get(f"{GP}/{MODEL_INFO}?f=json", headers=auth(server)).json()
    assert [p["name"] for p in info["parameters"]] == ["model", "outModelInfo"]
    assert server.get(f"{GP}/Nope?f=json", headers=auth(server)).status_code == 404


def test_submission_checks_name_the_parameter(server):
    missing = submit(server, name="")
    assert missing.status_code == 400 and "outputFeatureClass is required" in missing.json()["error"]["message"]
    unknown = submit(server, bogus="1")
    assert unknown.status_code == 400 and "no parameter bogus" in unknown.json()["error"]["message"]
    context = submit(server, context=json.dumps({"snapRaster": "x"}))
    assert context.status_code == 400 and "context has no key snapRaster" in context.json()["error"]["message"]
    flag = submit(server, processAllRasterItems="maybe")
    assert flag.status_code == 400 and "processAllRasterItems" in flag.json()["error"]["message"]
    bad_json = submit(server, inputRaster="{nope")
    assert bad_json.status_code == 400 and "inputRaster: not valid JSON" in bad_json.json()["error"]["message"]


def test_an_output_name_that_exists_is_refused_at_submission(server):
    assert submit(server, name="houses").status_code == 200
    queued = submit(server, name="houses")  # a queued job holds the name
    assert queued.status_code == 409 and "will write an item named 'houses'" in queued.json()["error"]["message"]
    work(server)
    taken = submit(server, name="houses")
    assert taken.status_code == 409 and "an item named 'houses' exists" in taken.json()["error"]["message"]
    assert submit(server, "bob", name="houses").status_code == 200  # names are per user
    upload(server, "houses.gpkg", "features", name="layer")
    assert submit(server, name="layer").status_code == 409


def test_context_keys_become_the_run_s_settings(server):
    context = {
        "extent": {"xmin": 1, "ymin": 2, "xmax": 3, "ymax": 4, "spatialReference": {"wkid": 32633}},
        "cellSize": 0.5,
        "outSR": {"wkid": 4326},
        "resamplingMethod": "BILINEAR",
        "processorType": "CPU",
        "parallelProcessingFactor": "50%",
        "retryOnFailures": 2,
        "recycleInterval": 5,
    }
    job_id = submit(server, context=json.dumps(context), modelArguments=json.dumps({"batch_size": 4})).json()["jobId"]
    from geoclassify import RunRequest

    request = RunRequest.from_json(server.services.jobs.get(job_id).request)
    assert request.extent == (1, 2, 3, 4) and request.extent_crs == "EPSG:32633"
    assert (request.cell_size, request.output_crs, request.resampling) == (0.5, "EPSG:4326", "bilinear")
    assert (request.parallel_factor, request.retries, request.recycle_interval) == ("50%", 2, 5)
    assert request.model_arguments == {"batch_size": "4"}
    assert server.services.jobs.get(job_id).max_attempts == 3


# -- inputs and the security rules --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raster", "why"),
    [
        ({"uri": "../state/jobs.sqlite"}, "outside the server's data roots"),
        ({"uri": "/etc/hostname"}, "outside the server's data roots"),
        ({"uri": "/vsicurl/http://127.0.0.1/x.tif"}, "not a plain path"),
        ({"uri": "missing.tif"}, "does not exist"),
        ({"url": "https://example.invalid/x.tif"}, "--allow-remote"),
        ({"nothing": 1}, "give {"),
    ],
)
def test_inputs_outside_what_the_server_allows_are_refused(server, raster, why):
    reply = submit(server, inputRaster=json.dumps(raster))
    assert reply.status_code in (400, 403) and why in reply.json()["error"]["message"]


def test_a_symlink_out_of_a_data_root_is_refused(server, tmp_path):
    (tmp_path / "outside.tif").write_bytes((server.root / "orthophoto.tif").read_bytes())
    os.symlink(tmp_path / "outside.tif", server.root / "link.tif")
    reply = submit(server, inputRaster=json.dumps({"uri": "link.tif"}))
    assert reply.status_code == 403 and "outside the server's data roots" in reply.json()["error"]["message"]


def test_a_list_file_or_a_vrt_reaching_outside_is_refused(server, tmp_path):
    (server.root / "list.txt").write_text("/etc/hostname\n")
    listing = submit(server, inputRaster=json.dumps({"uri": "list.txt"}))
    assert listing.status_code == 400 and "lists other files" in listing.json()["error"]["message"]
    import rasterio

    outside = tmp_path / "outside.tif"
    outside.write_bytes((server.root / "orthophoto.tif").read_bytes())
    with rasterio.open(outside) as src:
        width, height = src.width, src.height
    (server.root / "x.vrt").write_text(
        f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}"><VRTRasterBand dataType="Byte" band="1">'
        f'<SimpleSource><SourceFilename relativeToVRT="0">{outside}</SourceFilename><SourceBand>1</SourceBand>'
        "</SimpleSource></VRTRasterBand></VRTDataset>"
    )
    vrt = submit(server, inputRaster=json.dumps({"uri": "x.vrt"}))
    assert vrt.status_code == 403 and "outside the server's data roots" in vrt.json()["error"]["message"]


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "10.1.2.3", "192.168.0.1", "169.254.169.254", "[::1]"])
def test_urls_to_loopback_or_private_addresses_are_refused_before_any_contact(tmp_path, host):
    from geoclassify.server.errors import Forbidden
    from geoclassify.server.inputs import Resolver
    from geoclassify.server.users import User

    config = ServerConfig(state=tmp_path, allow_remote=True)
    resolver = Resolver(config, None, User("alice"))  # type: ignore[arg-type]
    with pytest.raises(Forbidden, match="loopback, private or reserved"):
        resolver.rasters({"url": f"http://{host}:8080/x.tif"})
    with pytest.raises(Exception, match="not an http"):
        resolver.rasters({"url": "file:///etc/hostname"})


def test_an_inline_emd_may_not_carry_code_and_its_model_file_must_be_under_a_root(server):
    code = submit(server, model=json.dumps({"Framework": "PyTorch", "InferenceFunction": "x.py", "ModelFile": "m"}))
    assert code.status_code == 400 and "InferenceFunction" in code.json()["error"]["message"]
    escape = submit(server, model=json.dumps({"Framework": "ONNX", "ModelFile": "/etc/hostname"}))
    assert escape.status_code == 403 and "ModelFile" in escape.json()["error"]["message"]


# -- My Content ---------------------------------------------------------------------------------------------------


def upload(client, filename, kind, name=None, content=None, user="alice"):
    data = content if content is not None else (client.root / filename).read_bytes()
    fields = {"kind": kind, **({"name": name} if name else {})}
    return client.post("/api/items", files={"file": (filename, data)}, data=fields, headers=auth(client, user))


def test_uploads_are_checked_on_arrival(server):
    model = upload(server, "roof-damage.dlpk", "model")
    assert model.status_code == 201 and model.json()["info"]["classes"] == ["Intact", "Damaged"]
    raster = upload(server, "orthophoto.tif", "raster")
    assert raster.status_code == 201 and raster.json()["info"]["bands"] == 3
    layer = upload(server, "houses.gpkg", "features")
    assert layer.status_code == 201 and layer.json()["info"]["features"] == 121
    broken = upload(server, "broken.dlpk", "model", content=b"not a zip")
    assert broken.status_code == 400 and "broken.dlpk is not a usable model" in broken.json()["detail"]
    fake = upload(server, "fake.tif", "raster", content=b"II*\x00 no tiff")
    assert fake.status_code == 400 and "not a raster GDAL can open" in fake.json()["detail"]
    wrong = upload(server, "orthophoto.tif", "features", name="x")
    assert wrong.status_code == 400
    names = sorted(i["name"] for i in server.get("/api/items", headers=auth(server)).json()["items"])
    assert names == ["houses", "orthophoto", "roof-damage"]
    assert not [p for p in (server.config.state / "content").iterdir() if p.name.startswith(".incoming")]


def test_a_zipped_shapefile_is_unpacked_and_read(server, tmp_path):
    import geopandas as gpd

    gpd.read_file(server.root / "houses.gpkg").to_file(tmp_path / "houses.shp")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for part in tmp_path.glob("houses.*"):
            archive.write(part, f"folder/{part.name}")
    reply = upload(server, "houses.zip", "features", content=buffer.getvalue())
    assert reply.status_code == 201, reply.text
    assert reply.json()["info"]["features"] == 121


def test_uploads_over_the_cap_are_stopped(server):
    reply = upload(server, "big.tif", "raster", content=b"\0" * 6_000_000)
    assert reply.status_code == 413 and "5,000,000" in reply.json()["detail"]
    assert not [p for p in (server.config.state / "content").iterdir()]


def test_rename_delete_and_unique_names(server):
    first = upload(server, "houses.gpkg", "features").json()
    assert upload(server, "houses.gpkg", "features").status_code == 409  # the same name again
    renamed = server.patch(f"/api/items/{first['id']}", json={"name": "homes"}, headers=auth(server))
    assert renamed.json()["name"] == "homes"
    second = upload(server, "houses.gpkg", "features").json()
    assert server.patch(f"/api/items/{second['id']}", json={"name": "homes"}, headers=auth(server)).status_code == 409
    data = server.get(f"/api/items/{first['id']}/data", headers=auth(server))
    assert data.status_code == 200 and data.content == (server.root / "houses.gpkg").read_bytes()
    # an item a queued job reads cannot be deleted from under it
    submit(server, inputFeatures=json.dumps({"itemId": first["id"]}))
    busy = server.delete(f"/api/items/{first['id']}", headers=auth(server))
    assert busy.status_code == 409 and "has not ended" in busy.json()["detail"]
    assert server.delete(f"/api/items/{second['id']}", headers=auth(server)).status_code == 204
    assert server.get(f"/api/items/{second['id']}", headers=auth(server)).status_code == 404


def test_a_result_is_an_item_downloadable_in_each_format(server, tmp_path):
    job_id = submit(server).json()["jobId"]
    work(server)
    job = server.get(f"{GP}/{CLASSIFY}/jobs/{job_id}?f=json", headers=auth(server)).json()
    assert job["jobStatus"] == "esriJobSucceeded"
    assert job["results"] == {"outObjects": {"paramUrl": "results/outObjects"}}
    value = server.get(f"{GP}/{CLASSIFY}/jobs/{job_id}/results/outObjects?f=json", headers=auth(server)).json()
    assert value["paramName"] == "outObjects" and value["dataType"] == "GPFeatureRecordSetLayer"
    out = value["value"]
    assert out["featureCount"] == 121 and len(out["features"]) == 121 and out["geometryType"] == "esriGeometryPolygon"
    assert "url" not in out  # Esri's client would take it for a feature service and contact it
    import geopandas as gpd

    for fmt in ("gpkg", "geojson", "fgb", "parquet", "csv"):
        reply = server.get(f"/api/items/{out['itemId']}/data", params={"format": fmt}, headers=auth(server))
        assert reply.status_code == 200, (fmt, reply.text)
        path = tmp_path / f"result.{fmt}"
        path.write_bytes(reply.content)
        frame = gpd.read_parquet(path) if fmt == "parquet" else gpd.read_file(path)
        assert len(frame) == 121 and "ClassLabel" in frame.columns, fmt
    assert server.get(f"/api/items/{out['itemId']}/data?format=shp", headers=auth(server)).status_code == 400
    assert not list((server.config.state / "tmp").iterdir())  # converted copies are removed once sent
    assert not (server.config.state / "jobs" / job_id).exists()  # nor is anything left in the job's folder


def test_model_info_lists_the_model_s_arguments(server):
    reply = server.post(
        f"{GP}/{MODEL_INFO}/submitJob", data={"model": '{"uri": "roof-damage.dlpk"}'}, headers=auth(server)
    )
    job_id = reply.json()["jobId"]
    work(server)
    value = server.get(f"{GP}/{MODEL_INFO}/jobs/{job_id}/results/outModelInfo", headers=auth(server)).json()["value"]
    info = json.loads(value["modelInfo"])
    assert [p["name"] for p in info["ParameterInfo"]] == ["batch_size", "test_time_augmentation"]
    assert info["ParameterInfo"][0]["value"] == "16" and info["ParameterInfo"][0]["dataType"] == "numeric"
    assert "/" not in json.dumps(info).replace("\\/", "")  # no server paths


def test_a_failed_job_says_why_without_a_traceback(server, tmp_path):
    (server.root / "notamodel.dlpk").write_bytes(b"nope")
    job_id = submit(server, model=json.dumps({"uri": "notamodel.dlpk"})).json()["jobId"]
    work(server)
    job = server.get(f"{GP}/{CLASSIFY}/jobs/{job_id}?f=json", headers=auth(server)).json()
    assert job["jobStatus"] == "esriJobFailed"
    error = job["messages"][-1]
    assert error["type"] == "esriJobMessageTypeError" and "notamodel.dlpk" in error["description"]
    assert "Traceback" not in json.dumps(job)
    ogc = server.get(f"/ogcapi/jobs/{job_id}/results", headers=auth(server))
    assert ogc.status_code == 500 and "notamodel.dlpk" in ogc.json()["detail"]


# -- one state machine, two views ---------------------------------------------------------------------------------


def test_esri_and_ogc_views_of_each_state_agree(server):
    job_id = submit(server).json()["jobId"]
    jobs = server.services.jobs
    views = []

    def look():
        esri = server.get(f"{GP}/{CLASSIFY}/jobs/{job_id}?f=json", headers=auth(server)).json()["jobStatus"]
        ogc = server.get(f"/ogcapi/jobs/{job_id}", headers=auth(server)).json()["status"]
        job = jobs.get(job_id)
        assert (esri, ogc) == (esri_status(job), ogc_status(job))
        views.append((job.status, esri, ogc))

    look()
    jobs.claim("w", 30, 1)
    look()
    jobs.cancel(job_id)
    look()
    jobs.finish(job_id, "w", FAILED, "error", "x")
    look()
    assert views == [
        (ACCEPTED, "esriJobSubmitted", "accepted"),
        (RUNNING, "esriJobExecuting", "running"),
        (CANCELLING, "esriJobCancelling", "running"),
        (DISMISSED, "esriJobCancelled", "dismissed"),
    ]
    again = submit(server, name="out2").json()["jobId"]
    jobs.claim("w", -1, 1)  # a lease already run out: the sweeper queues it again
    jobs.sweep()
    assert (esri_status(jobs.get(again)), ogc_status(jobs.get(again))) == ("esriJobWaiting", "accepted")
    work(server)
    assert (esri_status(jobs.get(again)), ogc_status(jobs.get(again))) == ("esriJobSucceeded", "successful")
    assert jobs.get(again).status == SUCCESSFUL


# -- OGC API - Processes ------------------------------------------------------------------------------------------


def test_ogc_landing_conformance_and_process_description(server):
    landing = server.get("/ogcapi").json()
    rels = {link["rel"] for link in landing["links"]}
    assert {"service-desc", "http://www.opengis.net/def/rel/ogc/1.0/conformance"} <= rels
    classes = server.get("/ogcapi/conformance").json()["conformsTo"]
    for name in ("core", "ogc-process-description", "json", "oas30", "job-list", "dismiss"):
        assert f"http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/{name}" in classes
    process = server.get(f"/ogcapi/processes/{CLASSIFY}", headers=auth(server)).json()
    assert process["inputs"]["inputRaster"]["minOccurs"] == 1 and "schema" in process["inputs"]["context"]
    assert process["inputs"]["outputFeatureClass"]["minOccurs"] == 0  # OGC gets Esri's default name
    assert "outObjects" in process["outputs"]
    missing = server.get("/ogcapi/processes/Nope", headers=auth(server))
    assert missing.status_code == 404 and missing.json()["type"].endswith("/no-such-process")
    assert server.get("/ogcapi/api").json()["openapi"].startswith("3.0")


def test_ogc_execute_status_results_and_the_job_list(server):
    inputs = {
        "inputRaster": {"uri": "orthophoto.tif"},
        "inputFeatures": {"uri": "houses.gpkg"},
        "model": {"value": {"uri": "roof-damage.dlpk"}},
        "outputFeatureClass": "ogc1",
    }
    created = server.post(
        f"/ogcapi/processes/{CLASSIFY}/execution",
        json={"inputs": inputs},
        headers={**auth(server), "Prefer": "wait=5, respond-async;x=1"},
    )
    assert created.status_code == 201 and created.headers["Preference-Applied"] == "respond-async"
    job_id = created.json()["jobID"]
    assert created.headers["Location"].endswith(f"/ogcapi/jobs/{job_id}") and created.json()["status"] == "accepted"
    early = server.get(f"/ogcapi/jobs/{job_id}/results", headers=auth(server))
    assert early.status_code == 404 and early.json()["type"].endswith("/result-not-ready")
    bad = server.post(
        f"/ogcapi/processes/{CLASSIFY}/execution",
        json={"inputs": {"inputRaster": {"uri": "/etc"}}},
        headers=auth(server),
    )
    assert bad.status_code in (400, 403) and "inputRaster" in bad.json()["detail"]
    work(server)
    status = server.get(f"/ogcapi/jobs/{job_id}", headers=auth(server)).json()
    assert status["status"] == "successful" and status["progress"] == 100
    results = server.get(f"/ogcapi/jobs/{job_id}/results", headers=auth(server)).json()
    assert "/api/items/" in results["outObjects"]["href"]
    second = server.post(
        f"/ogcapi/processes/{MODEL_INFO}/execution",
        json={"inputs": {"model": {"uri": "roof-damage.dlpk"}}},
        headers=auth(server),
    ).json()["jobID"]
    listed = server.get("/ogcapi/jobs", params={"status": "successful"}, headers=auth(server)).json()["jobs"]
    assert [j["jobID"] for j in listed] == [job_id]
    by_process = server.get("/ogcapi/jobs", params={"processID": MODEL_INFO}, headers=auth(server)).json()
    assert [j["jobID"] for j in by_process["jobs"]] == [second]
    page = server.get("/ogcapi/jobs", params={"limit": 1}, headers=auth(server)).json()
    assert len(page["jobs"]) == 1 and any(link["rel"] == "next" for link in page["links"])
    assert server.get("/ogcapi/jobs?status=done", headers=auth(server)).status_code == 400
    assert server.get("/ogcapi/jobs?datetime=2000-01-01T00:00:00Z/..", headers=auth(server)).json()["jobs"]
    assert not server.get("/ogcapi/jobs?datetime=../2000-01-01T00:00:00Z", headers=auth(server)).json()["jobs"]


def test_ogc_dismiss_cancels_a_queued_job_which_never_starts(server):
    job_id = submit(server).json()["jobId"]
    dismissed = server.delete(f"/ogcapi/jobs/{job_id}", headers=auth(server))
    assert dismissed.status_code == 200 and dismissed.json()["status"] == "dismissed"
    assert server.get(f"/ogcapi/jobs/{job_id}", headers=auth(server)).status_code == 404
    assert server.services.jobs.claim("w", 30, 1) is None  # nothing to start
    esri_cancel = submit(server, name="out2").json()["jobId"]
    reply = server.get(f"{GP}/{CLASSIFY}/jobs/{esri_cancel}/cancel?f=json", headers=auth(server)).json()
    assert reply["jobStatus"] == "esriJobCancelled"
    assert server.services.jobs.claim("w", 30, 1) is None
    assert server.get(f"/ogcapi/jobs/{esri_cancel}", headers=auth(server)).json()["status"] == "dismissed"


def test_at_most_workers_jobs_run_at_once(server):
    submit(server, name="a")
    submit(server, name="b")
    jobs = server.services.jobs
    assert jobs.claim("w1", 30, 1) is not None
    assert jobs.claim("w2", 30, 1) is None  # one runs already
    assert jobs.claim("w2", 30, 2) is not None


def test_schemathesis_against_the_ogc_openapi_document(server):
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, given, settings

    schema = schemathesis.openapi.from_asgi("/ogcapi/api", server.app)
    token = server.tokens["alice"]
    failures, operations = [], 0
    for operation in schema.get_all_operations():
        operations += 1
        operation = operation.ok()

        @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(case=operation.as_strategy())
        def check(case):
            case.call_and_validate(headers={"Authorization": f"Bearer {token}"})

        try:
            check()
        except Exception as exc:  # collect every operation's failure, then fail once
            failures.append(f"{operation.label}: {exc}")
    assert operations == 9 and not failures, "\n\n".join(failures)


def code_package(path):
    from tests.support import TWO_CLASSES, emd_for, write_dlpk

    definition = emd_for(model_file=None, Framework="PyTorch", InferenceFunction="Raising.py", Classes=TWO_CLASSES)
    source = (Path(__file__).parent / "prf_functions" / "Raising.py").read_bytes()
    return write_dlpk(path, definition, None, extra={"Raising.py": source})


def test_packages_with_code_run_only_on_a_server_started_with_trust_code(server, tmp_path):
    package = code_package(server.root / "code.dlpk")
    cache = Path(os.environ["GEOCLASSIFY_CACHE_DIR"])
    # Other tests of the session run the same function with trust and leave its marker in the shared cache.
    imported_before = set(cache.rglob("Raising.py.imported"))
    refused = upload(server, "code.dlpk", "model")
    assert refused.status_code == 400 and "Python code" in refused.json()["detail"]
    job_id = submit(server, model=json.dumps({"uri": "code.dlpk"})).json()["jobId"]
    work(server)
    job = server.services.jobs.get(job_id)
    assert job.status == FAILED and "Python code" in job.messages[-1]["text"]
    assert set(cache.rglob("Raising.py.imported")) == imported_before  # never imported here

    trusting = ServerConfig(state=tmp_path / "trusting", data_roots=(server.root,), trust_code=True)
    app = create_app(trusting, start_workers=False)
    token = Users(app.state.services.db).add("carol")
    with open(package, "rb") as handle:
        accepted = TestClient(app).post(
            "/api/items",
            files={"file": ("code.dlpk", handle)},
            data={"kind": "model"},
            headers={"Authorization": f"Bearer {token}"},
        )
    assert accepted.status_code == 201 and accepted.json()["info"]["inferenceFunction"] is True


def test_an_inline_emd_with_its_model_file_under_a_data_root_runs(server):
    with zipfile.ZipFile(server.root / "roof-damage.dlpk") as archive:
        names = archive.namelist()
        emd = json.loads(archive.read(next(n for n in names if n.endswith(".emd"))))
        onnx = next(n for n in names if n.endswith(".onnx"))
        (server.root / "roof.onnx").write_bytes(archive.read(onnx))
    emd["ModelFile"] = str(server.root / "roof.onnx")
    job_id = submit(server, model=json.dumps(emd)).json()["jobId"]
    work(server)
    job = server.services.jobs.get(job_id)
    assert job.status == SUCCESSFUL, job.messages
    assert server.services.items.get(job.result["itemId"]).info["features"] == 121


def test_users_commands_add_list_remove(tmp_path, capsys):
    from geoclassify.cli import main

    state = str(tmp_path / "state")
    assert main(["users", "add", "dana", "--admin", "--state", state]) == 0
    token = capsys.readouterr().out.strip()
    assert token.startswith("gc_") and len(token) > 40
    stored = (tmp_path / "state" / "jobs.sqlite").read_bytes()
    assert token.encode() not in stored  # only its hash is kept
    assert main(["users", "add", "dana", "--state", state]) == 1
    assert "user 'dana' exists" in capsys.readouterr().err
    assert main(["users", "list", "--state", state]) == 0
    assert capsys.readouterr().out.strip() == "dana (admin)"
    assert main(["users", "remove", "dana", "--state", state]) == 0
    assert main(["users", "remove", "dana", "--state", state]) == 1
    assert "there is no user 'dana'" in capsys.readouterr().err


def test_the_command_line_does_not_import_the_server_s_web_stack():
    import subprocess
    import sys

    code = (
        "import sys, geoclassify.cli; print(sorted(m for m in ('fastapi', 'uvicorn', 'starlette') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
