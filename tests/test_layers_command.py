"""geoclassify layers: what a vector file holds, one line per layer, and as JSON."""

from __future__ import annotations

import json

import geopandas as gpd
import pandas as pd
import pyogrio
import pytest
from shapely.geometry import Point, box

from geoclassify.cli import main
from geoclassify.errors import FeatureSourceError
from geoclassify.evaluation import describe_layers


@pytest.fixture()
def two_layers(tmp_path):
    path = tmp_path / "two.gpkg"
    points = gpd.GeoDataFrame(
        {"name": ["a", "b", "c"], "height": [1.5, 2.0, 3.0]}, geometry=[Point(i, i) for i in range(3)], crs="EPSG:4326"
    )
    squares = gpd.GeoDataFrame({"house_id": [1, 2]}, geometry=[box(0, 0, 1, 1), box(2, 2, 3, 3)], crs="EPSG:32633")
    points.to_file(path, layer="trees")
    squares.to_file(path, layer="houses")
    return path


def test_geopackage_with_two_layers(two_layers, capsys):
    assert main(["layers", str(two_layers)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert lines[0].split() == ["trees", "Point", "3", "features", "EPSG:4326", "fields:", "name,", "height"]
    assert lines[1].split() == ["houses", "Polygon", "2", "features", "EPSG:32633", "fields:", "house_id"]
    assert lines[0].index("3 features") == lines[1].index("2 features")  # columns aligned


def test_json(two_layers, capsys):
    assert main(["layers", str(two_layers), "--json"]) == 0
    layers = json.loads(capsys.readouterr().out)
    assert [layer["name"] for layer in layers] == ["trees", "houses"]
    assert layers[0]["fields"] == [{"name": "name", "type": "object"}, {"name": "height", "type": "float64"}]
    assert (layers[1]["geometry_type"], layers[1]["features"], layers[1]["crs"]) == ("Polygon", 2, "EPSG:32633")


def test_table_without_geometry(tmp_path):
    path = tmp_path / "mixed.gpkg"
    gpd.GeoDataFrame({"v": [1]}, geometry=[Point(0, 0)], crs="EPSG:4326").to_file(path, layer="spots")
    pyogrio.write_dataframe(pd.DataFrame({"code": ["x", "y"]}), path, layer="lookup")
    lookup = next(layer for layer in describe_layers(path) if layer["name"] == "lookup")
    assert (lookup["geometry_type"], lookup["features"], lookup["crs"]) == (None, 2, None)


def test_geoparquet(tmp_path, capsys):
    path = tmp_path / "houses.parquet"
    frame = gpd.GeoDataFrame(
        {"house_id": [1, 2, 3, 4], "Truth": ["a", "b", "a", "b"]}, geometry=[box(i, 0, i + 1, 1) for i in range(4)]
    ).set_crs("EPSG:32633")
    frame.to_parquet(path)
    assert main(["layers", str(path)]) == 0
    assert capsys.readouterr().out.split() == [
        "houses",
        "Polygon",
        "4",
        "features",
        "EPSG:32633",
        "fields:",
        "house_id,",
        "Truth",
    ]
    (layer,) = describe_layers(path)
    assert layer["fields"][0] == {"name": "house_id", "type": "int64"}


def test_errors_are_one_line(tmp_path, capsys):
    assert main(["layers", str(tmp_path / "missing.gpkg")]) == 1
    assert capsys.readouterr().err == f"geoclassify: error: vector file '{tmp_path / 'missing.gpkg'}' not found\n"
    (tmp_path / "plain.parquet").write_bytes(b"not parquet")
    with pytest.raises(FeatureSourceError, match="not readable GeoParquet"):
        describe_layers(tmp_path / "plain.parquet")
