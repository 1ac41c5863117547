"""Issue 10, outputs: nothing a user gave is lost.

A GeoPackage output gains its layer and keeps every other one, a replaced layer survives a SIGKILL at any point
of the write, the input layer is never an output, a shapefile claims its whole set of files, leftovers of killed
runs are tidied, and every change a format makes to the user's data is said, naming the field.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pytest
import shapely

from geoclassify.cli import main

from tests.support import flat_package, write_raster

X, Y = 500000.0, 4650000.0


@pytest.fixture
def scene(tmp_path):
    """A raster, a model, and proj.gpkg holding `houses` (the features) and `roads` (someone else's layer)."""
    raster = write_raster(tmp_path / "scene.tif", np.random.default_rng(0).integers(0, 255, (3, 64, 64), np.uint8))
    package, _, _ = flat_package(tmp_path)
    houses = gpd.GeoDataFrame(
        {"n": [1, 2, 3]},
        geometry=[shapely.box(X + 3, Y - 6, X + 6, Y - 3), shapely.box(X + 20, Y - 26, X + 24, Y - 22), None],
        crs="EPSG:32633",
    )
    project = tmp_path / "proj.gpkg"
    houses.to_file(project, layer="houses")
    roads = gpd.GeoDataFrame({"road": ["A1"]}, geometry=[shapely.LineString([(X, Y), (X + 9, Y - 9)])], crs=houses.crs)
    roads.to_file(project, layer="roads")
    return raster, package, project


def classify(scene, *extra, features=None, out=None):
    """`geoclassify classify` in this process, as the console script runs it: (exit code, stderr)."""
    raster, package, project = scene
    argv = ["classify", "--image", raster, "--model", package, "--features", features or project]
    argv += ["--out", out or project, *extra]
    return main([os.fspath(a) for a in argv])


#: Classify `houses` again into the layer `classified`, told apart from the first run by its label field.
REPLACE = ("--features-layer", "houses", "--out-layer", "classified", "--label-field", "Cond", "--overwrite")


def layers(path):
    return [name for name, _ in pyogrio.list_layers(path)]


def content(path, layer):
    """A layer feature for feature: attributes and geometry, as a reader gets them."""
    return pyogrio.read_dataframe(path, layer=layer).to_wkt().to_json()


def integrity(path):
    with sqlite3.connect(path) as db:
        return db.execute("PRAGMA integrity_check").fetchall()


def test_a_new_layer_joins_a_geopackage_and_its_other_layers_stay_as_they_were(scene, capsys):
    _, _, project = scene
    before = {name: content(project, name) for name in ("houses", "roads")}
    assert classify(scene, "--features-layer", "houses", "--out-layer", "classified") == 0, capsys.readouterr().err
    assert layers(project) == ["houses", "roads", "classified"]
    assert {name: content(project, name) for name in ("houses", "roads")} == before
    classified = pyogrio.read_dataframe(project, layer="classified")
    assert list(classified["n"]) == [1, 2, 3] and list(classified["ClassLabel"].notna()) == [True, True, False]
    # The new layer's spatial index answers a box query (only the first house lies in it).
    near = pyogrio.read_dataframe(project, layer="classified", bbox=(X, Y - 10, X + 10, Y))
    assert list(near["n"]) == [1]
    assert integrity(project) == [("ok",)]


def test_an_existing_layer_is_replaced_only_with_overwrite_and_alone(scene, capsys):
    _, _, project = scene
    assert classify(scene, "--features-layer", "houses", "--out-layer", "classified") == 0
    before = {name: content(project, name) for name in ("houses", "roads", "classified")}
    capsys.readouterr()
    assert classify(scene, "--features-layer", "houses", "--out-layer", "Classified") == 1
    err = capsys.readouterr().err
    assert "exists with a layer 'classified'; pass --overwrite to replace that layer" in err, err
    assert {name: content(project, name) for name in ("houses", "roads", "classified")} == before
    assert classify(scene, *REPLACE) == 0
    assert layers(project) == ["houses", "roads", "classified"]
    assert {name: content(project, name) for name in ("houses", "roads")} == {k: before[k] for k in ("houses", "roads")}
    replaced = pyogrio.read_dataframe(project, layer="classified")
    assert "Cond" in replaced.columns and "ClassLabel" not in replaced.columns
    assert pyogrio.read_info(project, layer="classified")["features"] == 3
    # A replaced layer keeps its place among the others (a default of "the first layer" still means the same one).
    assert classify(scene, "--features-layer", "houses", "--out-layer", "roads", "--overwrite") == 0
    assert layers(project) == ["houses", "roads", "classified"]
    assert "ClassLabel" in pyogrio.read_dataframe(project, layer="roads").columns
    assert integrity(project) == [("ok",)]


def test_the_input_layer_is_never_the_output_whatever_the_flags(scene, tmp_path, capsys):
    _, _, project = scene
    before = content(project, "houses")
    link = tmp_path / "link.gpkg"
    link.symlink_to(project)
    for out, extra in (
        (project, ["--out-layer", "houses"]),
        (project, ["--out-layer", "HOUSES", "--resume"]),
        (link, ["--out-layer", "houses"]),
        (tmp_path / "proj.gpkg", []),  # no --features-layer, no --out-layer: the first layer is read, and 'proj'...
    ):
        code = classify(scene, "--overwrite", *extra, out=out)
        err = capsys.readouterr().err
        if not extra:  # ...written: another layer, so that one is allowed
            assert code == 0, err
            continue
        assert code == 1, err
        assert "is the feature layer this run reads" in err and "never overwrites its own input" in err, err
    assert content(project, "houses") == before
    single = tmp_path / "houses.fgb"
    gpd.read_file(project, layer="houses").iloc[:2].to_file(single)
    kept = single.read_bytes()
    assert classify(scene, "--overwrite", features=single, out=single) == 1
    assert "is the feature layer this run reads" in capsys.readouterr().err
    assert single.read_bytes() == kept


KILLER = textwrap.dedent(
    """
    import os, signal, sys
    from geoclassify.io import geopackage
    from geoclassify.cli import main

    def die(*args, **kwargs):
        if sys.argv[1] == "in-transaction":  # the old layer is dropped, the new one not yet named
            original(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGKILL)

    name = "_rename" if sys.argv[1] == "in-transaction" else "replace_layer"
    original = getattr(geopackage, name)
    setattr(geopackage, name, die)
    sys.exit(main(sys.argv[2:]))
    """
)


@pytest.mark.parametrize("moment", ["before-transaction", "in-transaction"])
def test_a_kill_while_a_layer_is_replaced_keeps_every_layer_and_the_next_run_tidies(scene, capsys, moment):
    raster, package, project = scene
    assert classify(scene, "--features-layer", "houses", "--out-layer", "classified") == 0
    before = {name: content(project, name) for name in ("houses", "roads", "classified")}
    argv = ["--image", raster, "--model", package, "--features", project, "--out", project, *REPLACE]
    killed = subprocess.run(
        [sys.executable, "-c", KILLER, moment, "classify", *map(str, argv)], capture_output=True, text=True, timeout=300
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    left = layers(project)
    assert left[:3] == ["houses", "roads", "classified"]
    assert {name: content(project, name) for name in ("houses", "roads", "classified")} == before
    if moment == "before-transaction":  # the new layer was written in full under its temporary name
        assert len(left) == 4 and left[3].startswith("geoclassify_partial_")
    assert integrity(project) == [("ok",)]
    assert classify(scene, *REPLACE) == 0
    assert layers(project) == ["houses", "roads", "classified"]
    assert "Cond" in pyogrio.read_dataframe(project, layer="classified").columns
    assert integrity(project) == [("ok",)]


def test_a_streamed_layer_read_and_written_in_one_geopackage(scene, monkeypatch, capsys):
    """A big layer is read again, batch by batch, while its results are written into the same file."""
    _, _, project = scene
    monkeypatch.setenv("GEOCLASSIFY_STREAM_FEATURES", "1")
    monkeypatch.setenv("GEOCLASSIFY_STREAM_BATCH", "1")
    assert classify(scene, "--features-layer", "houses", "--out-layer", "classified") == 0, capsys.readouterr().err
    assert layers(project) == ["houses", "roads", "classified"]
    assert list(pyogrio.read_dataframe(project, layer="classified")["n"]) == [1, 2, 3]


def write_shapefile(path, frame):
    frame.to_file(path)
    return {p.name: p.read_bytes() for p in path.parent.iterdir() if p.name.startswith(path.stem + ".")}


def test_a_shapefile_claims_its_whole_set_of_files(scene, tmp_path, capsys):
    _, _, project = scene
    out = tmp_path / "out.shp"
    table = tmp_path / "out.dbf"  # another program's dBase table of that name
    write_shapefile(tmp_path / "other.shp", gpd.read_file(project, layer="roads"))
    (tmp_path / "other.dbf").rename(table)
    kept = table.read_bytes()
    assert classify(scene, "--features-layer", "houses", out=out) == 1
    err = capsys.readouterr().err
    assert "'out.dbf'" in err and "pass --overwrite" in err, err
    assert table.read_bytes() == kept and not out.exists()
    # With --overwrite the set is replaced as a set: no index of the old file is left describing the new one.
    (tmp_path / "out.qix").write_bytes(b"old spatial index")
    (tmp_path / "out.CPG").write_bytes(b"LATIN1")
    assert classify(scene, "--features-layer", "houses", "--overwrite", out=out) == 0, capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("out.")) == [
        "out.cpg",
        "out.dbf",
        "out.prj",
        "out.shp",
        "out.shx",
    ]
    assert list(gpd.read_file(out)["n"]) == [1, 2, 3]


PUBLISH_KILLER = textwrap.dedent(
    """
    import os, signal, sys
    from geoclassify.io import shapefile

    class KilledAfterTwoMoves:  # the marker, then one part, are moved; then the process dies
        moves = 0
        def __getattr__(self, name):
            return getattr(os, name)
        def replace(self, source, target):
            os.replace(source, target)
            KilledAfterTwoMoves.moves += 1
            if KilledAfterTwoMoves.moves == 2:
                os.kill(os.getpid(), signal.SIGKILL)

    shapefile.os = KilledAfterTwoMoves()
    from geoclassify.cli import main
    sys.exit(main(sys.argv[1:]))
    """
)


def test_a_shapefile_replace_killed_midway_is_finished_by_the_next_run(scene, tmp_path, capsys):
    raster, package, project = scene
    out = tmp_path / "out.shp"
    assert classify(scene, "--features-layer", "houses", out=out) == 0
    argv = ["--image", raster, "--model", package, "--features", project, "--features-layer", "houses"]
    argv += ["--out", out, "--label-field", "Cond", "--overwrite"]
    killed = subprocess.run(
        [sys.executable, "-c", PUBLISH_KILLER, "classify", *map(str, argv)], capture_output=True, text=True, timeout=300
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not out.exists()  # the old .shp went first, so no reader saw new attributes with old shapes
    capsys.readouterr()
    assert classify(scene, "--features-layer", "houses", out=out) == 1  # no --overwrite: the set now exists...
    err = capsys.readouterr().err
    assert "their move into place is now finished" in err and "pass --overwrite" in err, err
    finished = gpd.read_file(out)  # ...and is the killed run's complete new one
    assert "Cond" in finished.columns and list(finished["n"]) == [1, 2, 3]
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".partial")]


def test_a_killed_runs_staging_folder_is_removed_by_the_next_run(scene, tmp_path, capsys):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".out.gpkg.{int(dead.stdout)}.k2j4h5.partial"
    live = tmp_path / f".out.gpkg.{os.getpid()}.a1b2c3.partial"  # a run still writing: not touched
    for folder in (stale, live):
        folder.mkdir()
        (folder / "out.gpkg").write_bytes(b"half a GeoPackage")
    assert classify(scene, "--features-layer", "houses", out=tmp_path / "out.gpkg") == 0, capsys.readouterr().err
    assert not stale.exists() and live.exists()


def test_every_change_a_shapefile_makes_to_the_data_is_said_naming_the_field(scene, tmp_path, capsys):
    _, _, project = scene
    rich = gpd.read_file(project, layer="houses")
    rich["roof_material"] = ["slate " * 2000, "tile", None]
    rich["roof_materials"] = ["a", "b", "c"]
    rich["parcel"] = np.array([2**62 + 1, 7, 8], dtype="int64")
    rich["tiny"] = [1.2345e-20, 0.5, 0.25]
    rich["surveyed"] = pd.to_datetime(["2020-01-01 10:11:12", "2021-05-06 07:08:09", "2022-01-01 00:00:00"])
    rich["kept"] = ["short text", "é" * 100, ""]  # fits: 200 bytes
    features = tmp_path / "rich.gpkg"
    rich.to_file(features)
    assert classify(scene, features=features, out=tmp_path / "rich.shp") == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    said = "\n".join(lines)
    for fragment in (
        "field 'roof_material' is called 'roof_mater'",
        "field 'roof_materials' is called 'roof_mat_1'",
        "1 value(s) of field 'roof_material' were cut to 254 bytes (the longest had 12000)",
        "1 value(s) of field 'parcel' changed when written and read back (e.g. 4611686018427387905 became",
        "1 value(s) of field 'tiny' changed when written and read back (e.g. 1.2345e-20 became 0.0)",
        "field 'surveyed' holds dates with times",
    ):
        assert fragment in said, said
    assert all("output '" in line and "rich.shp'" in line for line in lines), said
    assert len(lines) == 6 and "kept" not in said and "laundered" not in said, said


def test_a_shapefile_input_without_its_dbf_says_its_attributes_are_missing(scene, tmp_path, capsys):
    _, _, project = scene
    write_shapefile(tmp_path / "bare.shp", gpd.read_file(project, layer="houses"))
    (tmp_path / "bare.dbf").unlink()
    assert classify(scene, features=tmp_path / "bare.shp", out=tmp_path / "out.gpkg") == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(lines) == 1 and "bare.shp' has no bare.dbf beside it" in lines[0], lines


def test_text_not_in_the_declared_encoding_is_one_line_not_a_traceback(scene, tmp_path, capsys):
    _, _, project = scene
    houses = gpd.read_file(project, layer="houses").iloc[:2].assign(name=["café", "ok"])
    pyogrio.write_dataframe(houses, tmp_path / "latin.shp", encoding="ISO-8859-1")
    (tmp_path / "latin.cpg").write_text("UTF-8")  # declares UTF-8, holds Latin-1
    assert classify(scene, features=tmp_path / "latin.shp", out=tmp_path / "out.gpkg") == 1
    err = capsys.readouterr().err
    assert "latin.shp' holds text that is not utf-8" in err and "Traceback" not in err, err
