"""classify's options beyond the label: --top-k, --probabilities, --min-coverage, --where, --dry-run, and the count
per class in the summary line, checked against probabilities computed by hand."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import shapely

from geoclassify import classify_objects
from geoclassify.dry_run import DryRunReport
from geoclassify.errors import FeatureSourceError, OutputError, SettingError
from geoclassify.io.journal import journal_folder

from tests.support import emd_for, mean_package, run_classify, write_dlpk, write_raster

CLASSES = [
    {"Value": 1, "Name": "Low", "Color": [0, 0, 255]},
    {"Value": 2, "Name": "Mid", "Color": [0, 255, 0]},
    {"Value": 3, "Name": "High", "Color": [255, 0, 0]},
]
#: Chips are normalised to their raw values, so a chip whose first band is v everywhere scores W @ (v, 0, 0) + B.
IDENTITY = {
    "band_min_values": [0, 0, 0],
    "band_max_values": [1, 1, 1],
    "scaled_mean_values": [0, 0, 0],
    "scaled_std_values": [1, 1, 1],
}
WEIGHTS = np.array([[0.0, 0, 0], [1.0, 0, 0], [2.0, 0, 0]])
BIAS = np.array([0.0, -0.5, -2.1])  # no two classes tie on any region
X0, Y0 = 500000.0, 4650000.0  # the raster's top-left corner; cells of 0.5 m


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


#: Probabilities of the features on the regions whose first band is 0, 1 and 2.
EXPECTED = softmax(np.array([WEIGHTS @ [v, 0, 0] + BIAS for v in (0, 1, 2)]))


@pytest.fixture
def scene(tmp_path):
    """Three 64 x 64 px regions (first band 0, 1, 2), a feature in the middle of each, and one on the raster's
    corner whose 16 px chip is a quarter on the raster."""
    data = np.zeros((3, 64, 192), dtype=np.uint8)
    for v in range(3):
        data[0, :, 64 * v : 64 * (v + 1)] = v
    image = write_raster(tmp_path / "scene.tif", data)
    centres = [(X0 + 16 + 32 * v, Y0 - 16) for v in range(3)] + [(X0, Y0)]
    features = gpd.GeoDataFrame(
        {"name": ["a", "b", "c", "corner"], "kind": ["roof", "roof", "shed", "roof"]},
        geometry=[shapely.box(x - 2, y - 2, x + 2, y + 2) for x, y in centres],
        crs="EPSG:32633",
    )
    features.to_file(tmp_path / "houses.gpkg")
    model = mean_package(tmp_path, WEIGHTS, BIAS, Classes=CLASSES, NormalizationStats=IDENTITY)
    return image, model, tmp_path / "houses.gpkg", tmp_path


def read(path) -> gpd.GeoDataFrame:
    return gpd.read_file(path).set_index("name")


def test_top_k_writes_the_runners_up_with_their_probabilities(scene):
    image, model, features, folder = scene
    out = folder / "top.gpkg"
    done = run_classify(image, model, features, out, "--top-k", "3")
    assert done.returncode == 0, done.stderr
    rows = read(out)
    names = np.array([c["Name"] for c in CLASSES])
    for row, probabilities in zip("abc", EXPECTED, strict=True):
        order = np.argsort(-probabilities)
        for rank, suffix in enumerate(["", "_2", "_3"]):
            assert rows.loc[row, f"ClassLabel{suffix}"] == names[order[rank]]
            assert rows.loc[row, f"Confidence{suffix}"] == pytest.approx(probabilities[order[rank]], rel=1e-5)
    assert "ClassLabel_4" not in rows.columns and "Prob_Low" not in rows.columns
    # The summary line counts each class: a is Low, b Mid, c High, the corner's quarter chip (zeros) Low.
    assert "4 classified, " in done.stderr and "; per class Low: 2, Mid: 1, High: 1; " in done.stderr


def test_probabilities_write_one_field_per_class_and_the_default_keeps_one_confidence(scene):
    image, model, features, folder = scene
    done = run_classify(image, model, features, folder / "p.gpkg", "--probabilities")
    assert done.returncode == 0, done.stderr
    rows = read(folder / "p.gpkg")
    for row, probabilities in zip("abc", EXPECTED, strict=True):
        got = [rows.loc[row, f"Prob_{c['Name']}"] for c in CLASSES]
        np.testing.assert_allclose(got, probabilities, rtol=1e-5)
        assert rows.loc[row, "Confidence"] == pytest.approx(probabilities.max(), rel=1e-5)
    plain = classify_objects(image, model, features)
    assert list(plain.columns) == ["name", "kind", "ClassLabel", "ClassValue", "Confidence", "Coverage", "geometry"]
    np.testing.assert_allclose(plain["Confidence"].iloc[:3], EXPECTED.max(axis=1), rtol=1e-5)


def test_min_coverage_leaves_a_mostly_empty_chip_unclassified_and_says_why(scene):
    image, model, features, folder = scene
    out = folder / "cov.gpkg"
    done = run_classify(image, model, features, out, "--min-coverage", "0.5", "--field-prefix", "m_")
    assert done.returncode == 0, done.stderr
    rows = read(out)
    assert rows.loc["corner", "m_Coverage"] == pytest.approx(0.25)
    assert rows["m_ClassLabel"].isna()["corner"] and rows["m_Confidence"].isna()["corner"]
    assert rows.loc["corner", "m_Unclassified"] == "coverage 25.0% is below «min_coverage» 50.0%"
    assert rows.loc["a", "m_ClassLabel"] == "Low" and rows["m_Unclassified"].isna()["a"]
    assert "3 classified" in done.stderr and "1 with less valid raster than «min_coverage»" in done.stderr
    # Below the chip's coverage, the same feature keeps its label.
    kept = classify_objects(image, model, features, min_coverage=0.2)
    assert kept.set_index("name").loc["corner", "ClassLabel"] == "Low"


def test_where_filters_the_features_as_ogr_does(scene):
    image, model, features, folder = scene
    out = folder / "roofs.gpkg"
    done = run_classify(image, model, features, out, "--where", "kind = 'roof' AND name <> 'corner'")
    assert done.returncode == 0, done.stderr
    assert sorted(read(out).index) == ["a", "b"]
    assert done.stderr.strip().splitlines()[-1].startswith("geoclassify: 2 features read")
    bad = run_classify(image, model, features, folder / "bad.gpkg", "--where", "colour = 'red'")
    assert bad.returncode != 0 and "--where \"colour = 'red'\" cannot filter feature layer" in bad.stderr
    assert "Traceback" not in bad.stderr
    frame = gpd.read_file(features)
    with pytest.raises(SettingError, match="select the GeoDataFrame's rows"):
        classify_objects(image, model, frame, where="kind = 'roof'")
    frame.to_parquet(folder / "houses.parquet")
    with pytest.raises(FeatureSourceError, match="GeoParquet"):
        classify_objects(image, model, folder / "houses.parquet", where="kind = 'roof'")


def test_where_is_part_of_what_a_resumed_run_must_match(scene):
    from geoclassify import RunRequest

    base = RunRequest.build("a.tif", "m.dlpk", "f.gpkg", "o.gpkg")
    filtered = RunRequest.build("a.tif", "m.dlpk", "f.gpkg", "o.gpkg", where="kind = 'roof'")
    ranked = RunRequest.build("a.tif", "m.dlpk", "f.gpkg", "o.gpkg", top_k=2)
    assert base.fingerprint() != filtered.fingerprint() != ranked.fingerprint()
    covered = RunRequest.build("a.tif", "m.dlpk", "f.gpkg", "o.gpkg", min_coverage=0.5)
    assert covered.fingerprint() == base.fingerprint()  # applied to the saved results, not saved


def test_dry_run_reports_and_classifies_nothing(scene):
    image, model, features, folder = scene
    out = folder / "dry.gpkg"
    done = run_classify(image, model, features, out, "--dry-run", "--where", "kind = 'roof'", "--extent",
                        str(X0 + 8), str(Y0 - 32), str(X0 + 64), str(Y0))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert not out.exists()
    assert "features: 3, 2 of them in the extent" in done.stderr
    assert "images: 1 (" in done.stderr and "scene.tif)" in done.stderr
    assert "chips: 16 x 16 px = 8 x 8 m on the ground (cell size 0.5 m)" in done.stderr
    # The EMD gives the chip size, so the model file is never opened: a broken one does not stop a dry run.
    broken = folder / "broken.onnx"
    broken.write_bytes(b"not a model")
    emd = emd_for(model_file="broken.onnx", Classes=CLASSES, NormalizationStats=IDENTITY)
    model = write_dlpk(folder / "broken.dlpk", emd, broken)
    report = classify_objects(image, model, features, folder / "o.gpkg", dry_run=True, extent=(0, 0, 1, 1))
    assert isinstance(report, DryRunReport) and report.features == 4 and report.selected == 0
    assert any("misses every feature" in w for w in report.warnings)
    whole = classify_objects(image, model, dry_run=True, top_k=2)  # each image one object: the image is the chip
    assert whole.features is None and whole.first_image == (64, 192)
    assert "chips: each whole image resized to 16 x 16 px (the first is 192 x 64 px = 96 x 32 m" in whole.line()


def test_options_a_user_gets_wrong_are_refused_in_one_line(scene):
    image, model, features, folder = scene
    with pytest.raises(SettingError, match="top_k is 4 but .* has 3 classes; give at most 3"):
        classify_objects(image, model, features, top_k=4)
    with pytest.raises(SettingError, match="min_coverage is the share"):
        classify_objects(image, model, features, min_coverage=50)
    done = run_classify(image, model, features, folder / "x.gpkg", "--top-k", "0")
    assert done.returncode != 0 and "Traceback" not in done.stderr
    done = run_classify(image, model, features, folder / "x.shp", "--top-k", "2")
    assert done.returncode == 1
    assert "fields 'ClassLabel_2', 'Confidence_2' are longer than the 10 characters" in done.stderr
    assert not (folder / "x.shp").exists()
    with pytest.raises(OutputError, match="already has a field 'Prob_Low'"):
        classify_objects(image, model, gpd.read_file(features).assign(Prob_Low=1), probabilities=True)


def test_probabilities_come_back_from_worker_processes_and_for_whole_images(scene):
    image, model, features, folder = scene
    out = folder / "workers.gpkg"
    classify_objects(image, model, features, out, top_k=2, probabilities=True, parallel_factor=2)
    rows = read(out)
    for row, probabilities in zip("abc", EXPECTED, strict=True):
        np.testing.assert_allclose([rows.loc[row, f"Prob_{c['Name']}"] for c in CLASSES], probabilities, rtol=1e-5)
        assert rows.loc[row, "Confidence_2"] == pytest.approx(np.sort(probabilities)[-2], rel=1e-5)
    whole = classify_objects(image, model, probabilities=True)
    got = whole[[f"Prob_{c['Name']}" for c in CLASSES]].to_numpy()
    assert got.shape == (1, 3) and got.sum() == pytest.approx(1.0, rel=1e-5)
    assert whole["Confidence"].iloc[0] == pytest.approx(got.max(), rel=1e-5)
    assert whole["ClassLabel"].iloc[0] == CLASSES[int(got.argmax())]["Name"]


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")  # a chip is pixels, no place
def test_export_chips_writes_what_the_model_receives(scene, tmp_path):
    import rasterio

    image, model, features, folder = scene
    chips = tmp_path / "chips"
    done = run_classify(image, model, features, folder / "e.gpkg", "--export-chips", chips, "--parallel-factor", "2")
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in chips.iterdir()) == [f"feature_{k}.png" for k in range(4)]
    for k in range(3):  # the first band of region k is k everywhere, the others 0
        with rasterio.open(chips / f"feature_{k}.png") as src:
            pixels = src.read()
        assert pixels.shape == (3, 16, 16) and (pixels[0] == k).all() and not pixels[1:].any()
    # Blackened: the model sees only the feature's polygon (4 x 4 m = 8 x 8 px), the rest 0.
    blacken = mean_package(folder, WEIGHTS, BIAS, name="black", Classes=CLASSES, NormalizationStats=IDENTITY,
                           BlackenAroundFeature=1)  # fmt: skip
    classify_objects(image, blacken, features, export_chips=tmp_path / "black")
    with rasterio.open(tmp_path / "black" / "feature_2.png") as src:
        band = src.read(1)
    assert (band == 2).sum() == 64 and band[4:12, 4:12].min() == 2


def test_where_filters_a_streamed_layer_in_both_passes(scene, monkeypatch):
    image, model, features, folder = scene
    monkeypatch.setenv("GEOCLASSIFY_STREAM_FEATURES", "1")  # read in batches, never whole
    monkeypatch.setenv("GEOCLASSIFY_STREAM_BATCH", "1")
    out = folder / "streamed.gpkg"
    summary = classify_objects(image, model, features, out, where="name IN ('b', 'corner')", top_k=2)
    rows = read(out)
    assert sorted(rows.index) == ["b", "corner"] and summary.read == 2
    assert rows.loc["b", "ClassLabel"] == "Mid" and rows.loc["b", "ClassLabel_2"] == "Low"
    assert rows.loc["b", "Confidence_2"] == pytest.approx(np.sort(EXPECTED[1])[-2], rel=1e-5)


def _output_fails(*args, **kwargs):
    raise OutputError("cannot write GPKG output: the test says no")


def test_top_k_resumes_from_the_probabilities_its_journal_saved(scene, monkeypatch):
    image, model, features, folder = scene
    out = folder / "resumed.gpkg"
    one = {"batch_size": 1}  # one feature per batch, so the journal has a part per feature
    with monkeypatch.context() as patch:
        patch.setenv("GEOCLASSIFY_JOURNAL_FEATURES", "1")
        patch.setattr("geoclassify.runs.write_batches", _output_fails)
        with pytest.raises(OutputError, match="the test says no"):
            classify_objects(image, model, features, out, top_k=3, arguments=one)
    parts = sorted(journal_folder(out).glob("part-*.npz"))
    assert len(parts) > 1
    for part in parts[1:]:  # what a run killed after its first part leaves
        part.unlink()
    with pytest.raises(OutputError, match=r"cannot resume .*every class's probability .* was True, now False"):
        classify_objects(image, model, features, out, resume=True, arguments=one)
    classify_objects(image, model, features, out, top_k=3, resume=True, arguments=one)
    rows = read(out)
    for row, probabilities in zip("abc", EXPECTED, strict=True):
        np.testing.assert_allclose(
            [rows.loc[row, name] for name in ("Confidence", "Confidence_2", "Confidence_3")],
            np.sort(probabilities)[::-1],
            rtol=1e-5,
        )
