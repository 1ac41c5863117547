"""The map viewer's server side in process (FastAPI's TestClient; a job run by a worker in this process): the page
and its files, tokens, what a source key may reach, raster tiles and their stretch, vector tiles read back with
GDAL's own MVT driver, a result's class counts and colours, a feature's attributes, the tile cache."""

from __future__ import annotations

import gzip
import json
import os
import sqlite3
import time
import warnings
from fnmatch import fnmatch
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyogrio
import pytest
import shapely

pytest.importorskip("fastapi")
pytest.importorskip("rio_tiler")

from fastapi.testclient import TestClient
from rasterio.errors import NotGeoreferencedWarning
from rasterio.io import MemoryFile
from rasterio.transform import from_origin

from geoclassify.server.app import create_app
from geoclassify.server.config import ServerConfig
from geoclassify.server.users import Users
from geoclassify.server.worker import Worker
from geoclassify.viewer import routes
from geoclassify.viewer.vectors import tile_levels

from tests.support import write_raster
from tests.support.server import CLASSIFY, GP, sample_root


@pytest.fixture
def viewer(tmp_path):
    root = sample_root(tmp_path)
    config = ServerConfig(state=tmp_path / "state", data_roots=(root,))
    app = create_app(config, start_workers=False)
    users = Users(app.state.services.db)
    client = TestClient(app)
    client.tokens = {name: users.add(name) for name in ("alice", "bob")}
    client.config, client.root = config, root
    return client


def auth(client, user="alice"):
    return {"Authorization": f"Bearer {client.tokens[user]}"}


def get(client, path, user="alice", **params):
    return client.get(path, params=params, headers=auth(client, user))


def tile_of(lon, lat, z):
    """The XYZ tile holding a point (Web Mercator)."""
    n = 2**z
    x = int((lon + 180) / 360 * n)
    y = int((1 - np.arcsinh(np.tan(np.radians(lat))) / np.pi) / 2 * n)
    return x, y


def decode_png(data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with MemoryFile(data) as memory, memory.open() as image:
            return image.read()


def classify(client, name="result1"):
    form = {
        "f": "json",
        "inputRaster": json.dumps({"uri": "orthophoto.tif"}),
        "inputFeatures": json.dumps({"uri": "houses.gpkg"}),
        "model": json.dumps({"uri": "roof-damage.dlpk"}),
        "outputFeatureClass": name,
    }
    job = client.post(f"{GP}/{CLASSIFY}/submitJob", data=form, headers=auth(client)).json()["jobId"]
    worker = Worker(client.config, "w1")
    while (claimed := worker.jobs.claim("w1", 30, 1)) is not None:
        worker.execute(claimed)
    items = get(client, "/api/items", kind="result").json()["items"]
    return next(i for i in items if i["jobId"] == job)


# -- the page -------------------------------------------------------------------------------------------------------


def test_the_page_is_at_the_root_for_browsers_and_api_clients_still_get_json(viewer):
    page = viewer.get("/", headers={"Accept": "text/html,application/xhtml+xml"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'name="token"' in page.text and "/viewer/static/js/main.js" in page.text
    assert "http://" not in page.text and "https://" not in page.text  # nothing from the internet
    landing = viewer.get("/", headers={"Accept": "application/json"})
    assert landing.json()["name"] == "geoclassify server"
    script = viewer.get("/viewer/static/js/main.js")
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    worker = viewer.get("/viewer/static/vendor/maplibre-gl-worker.mjs?v=6.17.0")
    assert worker.status_code == 200 and worker.headers["content-type"].startswith("text/javascript")
    assert viewer.get("/viewer/static/../routes.py").status_code == 404
    assert viewer.get("/viewer/static/vendor/nothing.js").status_code == 404


def test_maplibre_is_vendored_with_its_licence_and_every_static_file_is_package_data():
    vendor = routes.STATIC / "vendor"
    assert "BSD" in (vendor / "LICENSE.txt").read_text() or "Redistribution" in (vendor / "LICENSE.txt").read_text()
    for name in ("maplibre-gl.mjs", "maplibre-gl-worker.mjs", "maplibre-gl.css"):
        assert (vendor / name).stat().st_size > 10_000
    import tomllib

    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    globs = pyproject["tool"]["setuptools"]["package-data"]["geoclassify"]
    package = routes.STATIC.parents[1]
    for path in routes.STATIC.rglob("*"):
        if path.is_file():
            relative = path.relative_to(package).as_posix()
            assert any(fnmatch(relative, g) and relative.count("/") == g.count("/") for g in globs), relative
    for script in (routes.STATIC / "js").glob("*.js"):
        text = script.read_text()
        assert "http://" not in text and "https://" not in text, f"{script.name} names a remote address"


def test_the_api_needs_a_token_and_says_who_it_belongs_to(viewer):
    assert viewer.get("/viewer/api/me").status_code == 401
    assert viewer.get("/viewer/api/me", headers={"Authorization": "Bearer nope"}).status_code == 401
    me = get(viewer, "/viewer/api/me").json()
    assert me["user"] == "alice" and "gpkg" in me["formats"] and me["dataRoots"] == 1
    tile = viewer.get("/viewer/api/tiles/raster/18/0/0.png", params={"src": "file:0:orthophoto.tif"})
    assert tile.status_code == 401


# -- what a source may reach ----------------------------------------------------------------------------------------


def test_the_layers_list_holds_items_and_data_root_files_only(viewer, tmp_path):
    (viewer.root / ".hidden.tif").write_bytes(b"x")
    (viewer.root / "notes.txt").write_text("x")
    outside = tmp_path / "outside.tif"
    outside.write_bytes(b"x")
    os.symlink(outside, viewer.root / "link.tif")
    layers = get(viewer, "/viewer/api/layers").json()["layers"]
    assert sorted((layer["name"], layer["kind"]) for layer in layers) == [
        ("houses.gpkg", "features"),
        ("orthophoto.tif", "raster"),
        ("roof-damage.dlpk", "model"),
    ]
    houses = next(layer for layer in layers if layer["kind"] == "features")
    assert houses["src"] == "file:0:houses.gpkg" and houses["reference"] == {"uri": str(viewer.root / "houses.gpkg")}


@pytest.mark.parametrize(
    "src, status",
    [
        ("file:0:../outside.tif", 403),
        ("file:0:/etc/hostname.tif", 403),
        ("file:0:/vsicurl/http://127.0.0.1/x.tif", 403),
        ("file:1:orthophoto.tif", 400),
        ("file:0:missing.tif", 400),
        ("/etc/passwd", 400),
        ("http://127.0.0.1/x.tif", 400),
        ("item:0123456789abcdef", 404),
    ],
)
def test_a_source_reaches_only_items_and_data_root_files(viewer, tmp_path, src, status):
    write_raster(tmp_path / "outside.tif", np.zeros((1, 8, 8), np.uint8))
    for path in ("/viewer/api/layer", "/viewer/api/tiles/raster/18/0/0.png", "/viewer/api/feature"):
        reply = get(viewer, path, src=src, _fid=1)
        assert reply.status_code == status, (path, reply.text)
        assert "Traceback" not in reply.text


def test_another_user_s_item_is_not_found(viewer):
    with open(viewer.root / "orthophoto.tif", "rb") as handle:
        item = viewer.post(
            "/api/items", files={"file": ("o.tif", handle)}, data={"kind": "raster"}, headers=auth(viewer)
        ).json()
    assert get(viewer, "/viewer/api/layer", src=f"item:{item['id']}").json()["raster"]["dtype"] == "uint8"
    reply = get(viewer, "/viewer/api/layer", user="bob", src=f"item:{item['id']}")
    assert reply.status_code == 404 and item["id"] in reply.json()["detail"]


# -- raster tiles ---------------------------------------------------------------------------------------------------


def test_imagery_tiles_land_where_the_raster_is_and_8_bit_is_shown_as_stored(viewer):
    info = get(viewer, "/viewer/api/layer", src="file:0:orthophoto.tif").json()["raster"]
    west, south, east, north = info["bounds"]
    assert info["crs"] == "EPSG:32633" and info["stretch"] == [[0.0, 255.0]] * 3
    assert 14.99 < west < east < 15.01 and 41.99 < south < north < 42.01
    x, y = tile_of((west + east) / 2, (south + north) / 2, 18)
    reply = get(viewer, f"/viewer/api/tiles/raster/18/{x}/{y}.png", src="file:0:orthophoto.tif")
    assert reply.status_code == 200 and reply.headers["content-type"] == "image/png"
    pixels = decode_png(reply.content)
    assert pixels.shape == (4, 256, 256) and pixels[3].min() == 255  # inside: opaque
    assert pixels[:3].std() > 10  # an image, not a blank
    far = get(viewer, "/viewer/api/tiles/raster/18/0/0.png", src="file:0:orthophoto.tif")
    assert far.status_code == 204


def test_16_bit_imagery_in_another_crs_is_stretched_2_to_98_percent(viewer):
    rng = np.random.default_rng(3)
    data = rng.integers(200, 1800, (3, 300, 300)).astype(np.uint16)
    data[:, :2, :50] = 60000  # a few hot pixels (0.1%) must not flatten the picture
    transform = from_origin(15.0, 42.0, 0.00001, 0.00001)
    write_raster(viewer.root / "u16.tif", data, crs="EPSG:4326", transform=transform)
    info = get(viewer, "/viewer/api/layer", src="file:0:u16.tif").json()["raster"]
    assert info["dtype"] == "uint16"
    for lo, hi in info["stretch"]:
        assert 200 <= lo < 300 and 1700 < hi < 1800
    assert info["bounds"] == pytest.approx([15.0, 41.997, 15.003, 42.0], abs=1e-6)
    x, y = tile_of(15.0015, 41.9985, 19)
    pixels = decode_png(get(viewer, f"/viewer/api/tiles/raster/19/{x}/{y}.png", src="file:0:u16.tif").content)
    rgb = pixels[:3][:, pixels[3] == 255]
    assert rgb.size and 60 < rgb.mean() < 200 and rgb.std() > 40


# -- feature layers and results -------------------------------------------------------------------------------------


def read_tiles(viewer, src, level, tmp_path, layer=None):
    """Every tile of ``level``, decoded with GDAL's MVT driver: (features, their 3857 geometries)."""
    cache = viewer.config.state / "viewer" / "tiles"
    (mbtiles,) = cache.glob(f"*-{level}.mbtiles")
    with sqlite3.connect(mbtiles) as con:
        rows = con.execute("SELECT zoom_level, tile_column, tile_row FROM tiles").fetchall()
    frames = []
    for z, x, row in rows:
        y = 2**z - 1 - row
        params = {"src": src, **({"layer": layer} if layer else {})}
        reply = get(viewer, f"/viewer/api/tiles/vector/{level}/{z}/{x}/{y}.pbf", **params)
        assert reply.status_code == 200 and reply.headers["content-type"] == "application/vnd.mapbox-vector-tile"
        path = tmp_path / "mvt" / str(z) / str(x) / f"{y}.pbf"
        path.parent.mkdir(parents=True, exist_ok=True)
        raw = reply.content
        path.write_bytes(gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw)
        frames.append(pyogrio.read_dataframe(path, layer="features"))
    return frames


def test_a_feature_layer_is_served_as_vector_tiles_holding_every_feature(viewer, tmp_path):
    details = get(viewer, "/viewer/api/layer", src="file:0:houses.gpkg").json()
    vector = details["vector"]
    assert vector["count"] == vector["drawn"] == 121 and vector["geometryTypes"] == ["Polygon"]
    assert vector["levels"] == [14, 18] and {"house_id", "Truth"} <= set(vector["fields"])
    houses = gpd.read_file(viewer.root / "houses.gpkg", fid_as_index=True)
    for level in vector["levels"]:
        frames = read_tiles(viewer, "file:0:houses.gpkg", level, tmp_path / str(level))
        fids = set().union(*(set(f["_fid"].astype(int)) for f in frames))
        assert fids == set(houses.index)
    # at the fine level a tile's shapes are the features' own, to a few centimetres
    frame = frames[0].set_index(frames[0]["_fid"].astype(int))
    fid = frame.index[0]
    original = houses.to_crs(3857).geometry[fid]
    assert frame.geometry[fid].hausdorff_distance(original.intersection(frame.geometry[fid].envelope)) < 0.5
    empty = get(viewer, "/viewer/api/tiles/vector/18/18/0/0.pbf", src="file:0:houses.gpkg")
    assert empty.status_code == 204
    wrong = get(viewer, "/viewer/api/tiles/vector/17/17/0/0.pbf", src="file:0:houses.gpkg")
    assert wrong.status_code == 404


def test_a_result_carries_its_class_counts_colours_and_model(viewer, tmp_path):
    item = classify(viewer)
    details = get(viewer, "/viewer/api/layer", src=f"item:{item['id']}").json()
    result = details["result"]
    stored = next(Path(viewer.config.state, "content", item["id"]).glob("*.gpkg"))
    frame = gpd.read_file(stored)
    want = frame["ClassLabel"].fillna("").value_counts().to_dict()
    assert result["counts"] == want and sum(want.values()) == 121
    assert result["labelField"] == "ClassLabel" and result["model"] == "roof-damage.dlpk"
    assert result["classes"] == [
        {"value": 1, "name": "Intact", "color": [56, 168, 0]},
        {"value": 2, "name": "Damaged", "color": [230, 0, 0]},
    ]
    frames = read_tiles(viewer, f"item:{item['id']}", details["vector"]["levels"][-1], tmp_path)
    tiled = {int(f): label for frame in frames for f, label in zip(frame["_fid"], frame["ClassLabel"], strict=True)}
    assert len(tiled) == 121 and {"Confidence", "Coverage", "ClassValue"} <= set(frames[0].columns)
    fid = next(iter(tiled))
    attributes = get(viewer, "/viewer/api/feature", src=f"item:{item['id']}", _fid=fid).json()["attributes"]
    row = gpd.read_file(stored, fid_as_index=True)
    assert attributes["ClassLabel"] == tiled[fid] == row.loc[fid, "ClassLabel"]
    assert attributes["Confidence"] == pytest.approx(row.loc[fid, "Confidence"])
    assert attributes["house_id"] == row.loc[fid, "house_id"]
    assert get(viewer, "/viewer/api/feature", src=f"item:{item['id']}", _fid=99999).status_code == 404
    listed = get(viewer, "/viewer/api/results").json()["results"]
    assert [(r["name"], r["result"]["counts"], r["result"]["model"]) for r in listed] == [
        ("result1", want, "roof-damage.dlpk")
    ]
    assert get(viewer, "/viewer/api/results", user="bob").json()["results"] == []


def test_tiles_are_made_again_when_the_file_changes_and_stale_ones_go(viewer, tmp_path):
    path = viewer.root / "squares.geojson"
    squares = gpd.GeoDataFrame(
        {"n": [1, 2]}, geometry=[shapely.box(15, 42, 15.001, 42.001), shapely.box(15.002, 42, 15.003, 42.001)],
        crs="EPSG:4326",
    )
    squares.to_file(path)
    first = get(viewer, "/viewer/api/layer", src="file:0:squares.geojson").json()["vector"]
    assert first["count"] == 2
    cache = viewer.config.state / "viewer" / "tiles"

    def keys():
        return {p.stem for p in cache.glob("*.json") if not p.name.endswith("-counts.json")}

    (old,) = keys()
    assert len(list(cache.glob(f"{old}-*.mbtiles"))) == len(first["levels"])
    squares.iloc[:1].to_file(path)
    later = time.time_ns() + 10**9
    os.utime(path, ns=(later, later))
    second = get(viewer, "/viewer/api/layer", src="file:0:squares.geojson").json()["vector"]
    assert second["count"] == 1
    (new,) = keys()
    assert new != old and not list(cache.glob(f"{old}*"))


def test_a_layer_without_a_crs_is_refused_with_a_reason(viewer):
    frame = gpd.GeoDataFrame({"n": [1]}, geometry=[shapely.box(0, 0, 1, 1)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "'crs' was not provided": the point of the test
        frame.to_file(viewer.root / "nocrs.gpkg")
    reply = get(viewer, "/viewer/api/layer", src="file:0:nocrs.gpkg")
    assert reply.status_code == 400 and "no coordinate reference system" in reply.json()["detail"]
    write_raster(viewer.root / "nocrs.tif", np.zeros((1, 8, 8), np.uint8), crs=None)
    reply = get(viewer, "/viewer/api/layer", src="file:0:nocrs.tif")
    assert reply.status_code == 400 and "nocrs.tif has no coordinate reference system" in reply.json()["detail"]


def test_tile_levels_follow_the_layer_s_size():
    assert tile_levels(0) == [16, 18]  # a point: street level
    assert tile_levels(340) == [14, 18]  # the sample's houses
    assert tile_levels(4000) == [11, 15]  # a town
    assert tile_levels(4e7) == [0, 4]  # the world


def test_a_large_raster_without_overviews_gets_the_viewer_s_own_and_stays_untouched(viewer):
    rows, cols = np.indices((2100, 2100))
    gradient = ((rows + cols) * 255 // 4200).astype(np.uint8)
    path = write_raster(viewer.root / "big.tif", np.stack([gradient, 255 - gradient, gradient // 2]))
    before = (path.stat().st_mtime_ns, sorted(p.name for p in viewer.root.iterdir()))
    info = get(viewer, "/viewer/api/layer", src="file:0:big.tif").json()["raster"]
    assert info["overviews"] == [4, 16] and info["minzoom"] == 0 and "display" not in info
    cache = viewer.config.state / "viewer" / "rasters"
    assert len(list(cache.glob("*.vrt"))) == 1 and len(list(cache.glob("*.vrt.ovr"))) == 1
    west, south, east, north = info["bounds"]
    x, y = tile_of((west + east) / 2, (south + north) / 2, 12)
    pixels = decode_png(get(viewer, f"/viewer/api/tiles/raster/12/{x}/{y}.png", src="file:0:big.tif").content)
    assert (pixels[3] == 255).sum() > 0 and pixels[:3][:, pixels[3] == 255].std() > 20
    assert (path.stat().st_mtime_ns, sorted(p.name for p in viewer.root.iterdir())) == before
