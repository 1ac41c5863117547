"""A result's evaluation through My Content: the JSON is :func:`geoclassify.evaluate`'s on the downloaded result
(classes in the model's order), the PNG is a drawn matrix, a wrong field is a 400 that names the parameter and
lists the fields, and another user's result is a 404 (an admin's is not)."""

from __future__ import annotations

import io
import json
import sys

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("matplotlib")
pytest.importorskip("PIL")

from fastapi.testclient import TestClient
from PIL import Image

import geoclassify
from geoclassify.api import sample_paths
from geoclassify.evaluation import model_classes
from geoclassify.server.app import create_app
from geoclassify.server.config import ServerConfig
from geoclassify.server.users import Users
from geoclassify.server.worker import Worker

from tests.support.server import CLASSIFY, GP, sample_root


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The sample run once by alice, in process; bob and an admin look at it too."""
    folder = tmp_path_factory.mktemp("evaluation")
    root = sample_root(folder)
    config = ServerConfig(state=folder / "state", data_roots=(root,))
    app = create_app(config, start_workers=False)
    users = Users(app.state.services.db)
    tokens = {name: users.add(name, admin=name == "admin") for name in ("alice", "bob", "admin")}
    client = TestClient(app)
    form = {
        "f": "json",
        "inputRaster": json.dumps({"uri": "orthophoto.tif"}),
        "inputFeatures": json.dumps({"uri": "houses.gpkg"}),
        "model": json.dumps({"uri": "roof-damage.dlpk"}),
        "outputFeatureClass": "roofs",
    }
    headers = {"Authorization": f"Bearer {tokens['alice']}"}
    job_id = client.post(f"{GP}/{CLASSIFY}/submitJob", data=form, headers=headers).json()["jobId"]
    worker = Worker(config, "w1")
    while (job := worker.jobs.claim("w1", 30, 1)) is not None:
        worker.execute(job)
    items = client.get("/api/items?kind=result", headers=headers).json()["items"]
    (item,) = [i for i in items if i["jobId"] == job_id]
    return client, tokens, item, folder


def get(served, path, user="alice", **params):
    client, tokens, item, _ = served
    return client.get(path.format(id=item["id"]), params=params, headers={"Authorization": f"Bearer {tokens[user]}"})


def test_the_json_is_evaluate_s_on_the_downloaded_result_in_the_model_s_class_order(served):
    client, tokens, item, folder = served
    reply = get(served, "/api/items/{id}/evaluation", truthField="Truth")
    assert reply.status_code == 200, reply.text
    data = reply.json()
    downloaded = folder / "roofs.gpkg"
    downloaded.write_bytes(get(served, "/api/items/{id}/data").content)
    classes = model_classes(sample_paths()["model"])
    expected = geoclassify.evaluate(downloaded, "Truth", classes=classes).to_dict()
    assert data["source"] == {"itemId": item["id"], "name": "roofs", "layer": expected["source"]["layer"]}
    assert {k: v for k, v in data.items() if k not in ("source", "modelClasses", "warnings")} == {
        k: v for k, v in expected.items() if k != "source"
    }
    assert data["confusion_matrix"]["labels"] == list(classes) and data["modelClasses"] == list(classes)
    assert data["evaluated"] == data["total"] == 121 and 0.0 < data["accuracy"] <= 1.0
    assert data["truth_field"] == "Truth" and data["label_field"] == "ClassLabel" and data["warnings"] == []
    assert str(folder) not in reply.text  # the server's paths stay on the server
    # the label field given explicitly is the same evaluation
    assert get(served, "/api/items/{id}/evaluation", truthField="Truth", labelField="ClassLabel").json() == data


def test_the_png_is_a_drawn_confusion_matrix(served):
    reply = get(served, "/api/items/{id}/evaluation.png", truthField="Truth")
    assert reply.status_code == 200 and reply.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(reply.content))
    assert image.format == "PNG" and image.width > 200 and image.height > 200
    rgb = image.convert("RGB")
    colours = rgb.getcolors(maxcolors=1 << 20)
    assert colours is None or len(colours) > 50, "the picture is nearly one colour"
    assert all(hi - lo > 100 for lo, hi in rgb.getextrema())


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"truthField": "truth"}, "truthField 'truth'"),
        ({"truthField": "Nope"}, "truthField 'Nope'"),
        ({"truthField": "Truth", "labelField": "Label"}, "labelField 'Label'"),
        ({"truthField": "ClassLabel"}, "truthField and labelField are both 'ClassLabel'"),
        ({}, "truthField"),
    ],
)
@pytest.mark.parametrize("suffix", ["evaluation", "evaluation.png"])
def test_a_wrong_field_is_a_400_naming_the_parameter_and_the_fields_there_are(served, params, named, suffix):
    reply = get(served, "/api/items/{id}/" + suffix, **params)
    assert reply.status_code == 400, reply.text
    detail = reply.json()["detail"]
    assert named in detail
    if named.endswith(("'Nope'", "'Label'")):
        assert "its fields: " in detail and "Truth" in detail and "house_id" in detail
    if named == "truthField 'truth'":
        assert "did you mean 'Truth'?" in detail


def test_only_the_owner_or_an_admin_sees_it(served):
    assert get(served, "/api/items/{id}/evaluation", user="bob", truthField="Truth").status_code == 404
    assert get(served, "/api/items/{id}/evaluation.png", user="bob", truthField="Truth").status_code == 404
    assert get(served, "/api/items/{id}/evaluation", user="admin", truthField="Truth").status_code == 200
    client = served[0]
    assert client.get(f"/api/items/{served[2]['id']}/evaluation?truthField=Truth").status_code == 401
    assert get(served, "/api/items/nothing-here/evaluation", truthField="Truth").status_code == 404


def test_values_that_are_no_class_of_the_model_are_counted_and_told_without_the_server_s_paths(served):
    client, tokens, item, folder = served
    data = get(served, "/api/items/{id}/evaluation", truthField="roof_material").json()
    assert data["confusion_matrix"]["labels"][:2] == data["modelClasses"]
    assert sorted(data["unknown_classes"]["truth"]) == sorted(data["confusion_matrix"]["labels"][2:])
    assert data["accuracy"] == 0.0 and data["evaluated"] == 121
    (warning,) = data["warnings"]
    assert "truth field 'roof_material' of the result" in warning and "no class of the model" in warning
    assert str(folder) not in warning


def test_without_matplotlib_the_picture_is_a_501_that_names_the_extra_and_the_json_still_answers(served, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)  # as if geoclassify[plot] were absent
    reply = get(served, "/api/items/{id}/evaluation.png", truthField="Truth")
    assert reply.status_code == 501, reply.text
    assert "geoclassify[plot]" in reply.json()["detail"] and "evaluation.png" in reply.json()["detail"]
    assert get(served, "/api/items/{id}/evaluation", truthField="Truth").status_code == 200
