"""Esri's and OGC's own clients against a real ``geoclassify serve`` on a loopback port: the ArcGIS API for Python
runs both tasks end to end (waits, reads messages, cancels, gets the result), OWSLib executes and
ogc-api-processes-client follows the job (status, results, job list, dismiss); inputs by ``uri`` and as uploaded
items; each downloaded result equals the CLI's output for the same inputs."""

from __future__ import annotations

import json
import time

import pytest

pytest.importorskip("fastapi")
arcgis = pytest.importorskip("arcgis")
requests = pytest.importorskip("requests")

from tests.support.server import (  # noqa: E402
    GP,
    Server,
    add_user,
    assert_same_features,
    cli_reference,
    download,
    sample_root,
    slow_scene,
    wait_for,
)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clients")
    patch = pytest.MonkeyPatch()  # this module's server and CLI runs extract packages here, never the user's
    patch.setenv("GEOCLASSIFY_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))
    root = sample_root(folder)
    slow_scene(root / "slow", 4000)
    state = folder / "state"
    token = add_user(state, "alice")
    reference = cli_reference(
        root / "orthophoto.tif", root / "houses.gpkg", root / "roof-damage.dlpk", folder / "cli.gpkg"
    )
    server = Server(state, root, "--workers", "2", env={"GEOCLASSIFY_JOURNAL_FEATURES": "1"}).start()
    yield server, token, root, reference, folder
    assert server.stop() == 0  # SIGTERM: a clean stop
    patch.undo()


def session(token):
    from arcgis.auth import EsriSession
    from arcgis.auth._auth._provided_token import EsriUserTokenAuth

    return EsriSession(auth=EsriUserTokenAuth(token))


def test_arcgis_api_for_python_runs_both_tasks_with_uri_inputs(served):
    from arcgis.geoprocessing import import_toolbox

    server, token, root, reference, folder = served
    gis = session(token)
    tools = import_toolbox(server.url + GP, gis=gis)
    info = tools.query_deep_learning_model_info(model={"uri": "roof-damage.dlpk"}, gis=gis)
    arguments = {p["name"]: p for p in json.loads(info["modelInfo"])["ParameterInfo"]}
    assert arguments["batch_size"]["value"] == "16"
    job = tools.classify_objects_using_deep_learning(
        input_raster={"uri": "orthophoto.tif"},
        input_features={"uri": "houses.gpkg"},
        model={"uri": "roof-damage.dlpk"},
        model_arguments={"batch_size": arguments["batch_size"]["value"]},
        output_feature_class="arcgis-uri",
        gis=gis,
        future=True,
    )
    features = job.result()  # waits, polling jobs/<id>
    assert len(features.features) == 121
    labels = [f.attributes["ClassLabel"] for f in features.features]
    assert labels == list(reference["ClassLabel"])
    messages = job.messages
    assert messages[-1]["type"] == "esriJobMessageTypeInformative" and "121 classified" in messages[-1]["description"]
    raw = gis.get(
        f"{server.url}{GP}/ClassifyObjectsUsingDeepLearning/jobs/{job._jobid}/results/outObjects", params={"f": "json"}
    ).json()
    result = download(raw["value"]["dataUrl"] + "?format=gpkg", token, folder / "arcgis.gpkg")
    assert_same_features(result, reference)


def upload(server, token, path, kind, prefix):
    with open(path, "rb") as handle:
        fields = {"kind": kind, "name": f"{prefix}-{path.stem}"}
        reply = requests.post(
            server.url + "/api/items",
            files={"file": (path.name, handle)},
            data=fields,
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,
        )
    assert reply.status_code == 201, reply.text
    return reply.json()["id"]


def test_arcgis_api_for_python_with_uploaded_items_and_a_cancel(served):
    from arcgis.geoprocessing import import_toolbox

    server, token, root, reference, folder = served
    gis = session(token)
    items = {
        kind: upload(server, token, root / name, kind, "arcgis")
        for kind, name in (("raster", "orthophoto.tif"), ("features", "houses.gpkg"), ("model", "roof-damage.dlpk"))
    }
    tools = import_toolbox(server.url + GP, gis=gis)
    features = tools.classify_objects_using_deep_learning(
        input_raster={"itemId": items["raster"]},
        input_features={"itemId": items["features"]},
        model={"itemId": items["model"]},
        output_feature_class={"serviceProperties": {"name": "arcgis-items"}},
        gis=gis,
    )
    assert [f.attributes["ClassLabel"] for f in features.features] == list(reference["ClassLabel"])
    slow = tools.classify_objects_using_deep_learning(
        input_raster={"uri": "slow/town.tif"},
        input_features={"uri": "slow/houses.gpkg"},
        model={"uri": "slow/flat.dlpk"},
        model_arguments={"batch_size": "1"},
        output_feature_class="slow-cancelled",
        gis=gis,
        future=True,
    )
    wait_for(lambda: slow.status == "esriJobExecuting", timeout=30)
    asked = time.monotonic()
    assert slow.cancel() is True
    wait_for(lambda: slow.status == "esriJobCancelled", timeout=10)
    assert time.monotonic() - asked < 5
    listed = requests.get(server.url + "/api/items", headers={"Authorization": f"Bearer {token}"}, timeout=10).json()
    assert "slow-cancelled" not in [i["name"] for i in listed["items"]]


def test_owslib_executes_and_the_ogc_client_follows_the_job(served):
    from ogc_api_processes_client.api_client_wrapper import ApiClientWrapper
    from ogc_api_processes_client.configuration import Configuration
    from ogc_api_processes_client.exceptions import NotFoundException
    from owslib.ogcapi.processes import Processes

    server, token, root, reference, folder = served
    items = {
        kind: upload(server, token, root / name, kind, "ogc")
        for kind, name in (("raster", "orthophoto.tif"), ("features", "houses.gpkg"), ("model", "roof-damage.dlpk"))
    }
    ows = Processes(server.url + "/ogcapi", headers={"Authorization": f"Bearer {token}"})
    assert "ClassifyObjectsUsingDeepLearning" in [p["id"] for p in ows.processes()]
    status = ows.execute(
        "ClassifyObjectsUsingDeepLearning",
        inputs={
            "inputRaster": {"itemId": items["raster"]},
            "inputFeatures": {"itemId": items["features"]},
            "model": {"itemId": items["model"]},
            "outputFeatureClass": "owslib",
        },
        async_=True,
    )
    job_id = status["jobID"]
    assert ows.response_headers["Location"].endswith(f"/ogcapi/jobs/{job_id}")
    client = ApiClientWrapper(
        Configuration(host=server.url + "/ogcapi"), header_name="Authorization", header_value=f"Bearer {token}"
    )
    final = wait_for(lambda: (s := client.get_status(job_id)).status.value in ("successful", "failed") and s)
    assert final.status.value == "successful" and final.progress == 100
    results = client.get_result(job_id)
    href = results["outObjects"].actual_instance.href
    assert_same_features(download(href, token, folder / "owslib.gpkg"), reference)
    assert job_id in [j.job_id for j in client.get_jobs().jobs]
    by_uri = ows.execute(
        "ClassifyObjectsUsingDeepLearning",
        inputs={
            "inputRaster": {"uri": "orthophoto.tif"},
            "inputFeatures": {"uri": "houses.gpkg"},
            "model": {"uri": "roof-damage.dlpk"},
            "outputFeatureClass": "owslib-uri",
        },
        async_=True,
    )["jobID"]
    wait_for(lambda: client.get_status(by_uri).status.value == "successful")
    href = client.get_result(by_uri)["outObjects"].actual_instance.href
    assert_same_features(download(href, token, folder / "owslib-uri.gpkg"), reference)
    dismissed = client.dismiss(job_id)
    assert dismissed.status.value == "dismissed"
    with pytest.raises(NotFoundException):
        client.get_status(job_id)
