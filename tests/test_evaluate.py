"""geoclassify evaluate: figures checked by hand (and against scikit-learn where installed), what is counted apart,
class order, errors, the plot, and the bundled sample end to end."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import warnings
from fractions import Fraction

import numpy as np
import pandas as pd
import pyogrio
import pytest

import geoclassify
from geoclassify.cli import main
from geoclassify.errors import (
    FeatureSourceError,
    FieldNotFoundError,
    MissingExtraError,
    NothingToEvaluateWarning,
    OutputError,
    SettingError,
    UnknownClassWarning,
    UnsupportedModelError,
)
from geoclassify.evaluation import confusion_matrix, evaluate, format_table, model_classes, save_plot, scores

# Three classes, one more that never occurs. Rows truth, columns predicted: A [3 1 0], B [0 2 1], C [0 1 3].
PAIRS = [("A", "A")] * 3 + [("A", "B")] + [("B", "B")] * 2 + [("B", "C")] + [("C", "C")] * 3 + [("C", "B")]
TRUTH = [t for t, _ in PAIRS]
PREDICTED = [p for _, p in PAIRS]


def close(value, fraction: Fraction) -> bool:
    return value is not None and math.isclose(value, float(fraction), rel_tol=1e-12)


def test_figures_match_a_hand_count():
    result = scores(TRUTH, PREDICTED, ["A", "B", "C", "D"])
    assert result.matrix.tolist() == [[3, 1, 0, 0], [0, 2, 1, 0], [0, 1, 3, 0], [0, 0, 0, 0]]
    assert close(result.accuracy, Fraction(8, 11))
    # chance = (4*3 + 3*4 + 4*4) / 11^2 = 40/121; kappa = (88 - 40) / (121 - 40)
    assert close(result.kappa, Fraction(48, 81))
    a, b, c, d = result.per_class
    assert (a.name, a.support, b.support, c.support, d.support) == ("A", 4, 3, 4, 0)
    assert close(a.precision, Fraction(3, 3)) and close(a.recall, Fraction(3, 4)) and close(a.f1, Fraction(6, 7))
    assert close(b.precision, Fraction(2, 4)) and close(b.recall, Fraction(2, 3)) and close(b.f1, Fraction(4, 7))
    assert close(c.precision, Fraction(3, 4)) and close(c.recall, Fraction(3, 4)) and close(c.f1, Fraction(3, 4))
    assert (d.precision, d.recall, d.f1) == (None, None, None)


def test_undefined_figures_are_none_or_nan():
    # Never predicted: precision undefined, F1 still 0 (2tp / (2tp + fp + fn)); never true: recall undefined.
    result = scores(["A", "A", "B"], ["A", "C", "C"], ["A", "B", "C"])
    _, b, c = result.per_class
    assert b.precision is None and b.recall == 0.0 and b.f1 == 0.0
    assert c.recall is None and c.precision == 0.0 and c.f1 == 0.0
    one = scores(["A", "A"], ["A", "A"], ["A", "B"])
    assert one.accuracy == 1.0 and math.isnan(one.kappa)  # chance agreement 1: kappa is 0/0
    empty = scores([], [], ["A", "B"])
    assert empty.matrix.sum() == 0 and math.isnan(empty.accuracy) and math.isnan(empty.kappa)
    with pytest.raises(ValueError, match="no class: X"):
        confusion_matrix(["A"], ["X"], ["A", "B"])


def test_figures_match_scikit_learn():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(7)
    order = ["w", "x", "y", "z"]
    truth = rng.choice(order[:3], size=500).tolist()
    predicted = [t if rng.random() < 0.7 else str(rng.choice(order)) for t in truth]
    ours = scores(truth, predicted, order)
    assert ours.matrix.tolist() == metrics.confusion_matrix(truth, predicted, labels=order).tolist()
    assert math.isclose(ours.accuracy, metrics.accuracy_score(truth, predicted))
    assert math.isclose(ours.kappa, metrics.cohen_kappa_score(truth, predicted, labels=order))
    precision, recall, f1, support = metrics.precision_recall_fscore_support(
        truth, predicted, labels=order, zero_division=0
    )
    for i, score in enumerate(ours.per_class):
        assert math.isclose(score.precision or 0.0, precision[i])
        assert math.isclose(score.recall or 0.0, recall[i])
        assert math.isclose(score.f1 or 0.0, f1[i])
        assert score.support == support[i]


def test_empty_values_are_counted_apart():
    frame = pd.DataFrame(
        {
            "truth": ["1", " 2 ", None, "", 2.0, 1, "10", np.nan, "2"],
            "label": ["1", "2", "1", "2", "2", None, "10", None, " "],
        }
    )
    result = evaluate(frame, "truth", "label")
    # rows 2, 3, 7: no truth (whatever the label); rows 5, 8: a truth but no label (not classified).
    assert (result.total, result.no_truth, result.unclassified, result.evaluated) == (9, 3, 2, 4)
    assert result.classes == ("1", "2", "10")  # numbers by value, not as text
    assert result.matrix.tolist() == [[1, 0, 0], [0, 2, 0], [0, 0, 1]]
    assert result.to_dict()["accuracy"] == 1.0


def test_order_without_a_model_does_not_depend_on_rows():
    frame = pd.DataFrame({"t": ["pine", "oak", "birch", "oak"], "p": ["oak", "oak", "birch", "pine"]})
    first = evaluate(frame, "t", "p")
    second = evaluate(frame.iloc[::-1], "t", "p")
    assert first.classes == second.classes == ("birch", "oak", "pine")
    assert first.matrix.tolist() == second.matrix.tolist()
    names = pd.DataFrame({"t": ["zone 10", "Zone 2", "zone 2", "zone ²"], "p": ["zone 1.5"] * 4})
    assert evaluate(names, "t", "p").classes == ("zone 1.5", "Zone 2", "zone 2", "zone 10", "zone ²")


def test_values_that_are_no_class_of_the_model_warn_and_count():
    frame = pd.DataFrame(
        {"Truth": ["Intact", "Damaged", "Flooded", "Flooded", "Intact"], "ClassLabel": ["Intact"] * 3 + ["Damaged"] * 2}
    )
    with pytest.warns(UnknownClassWarning, match=r"truth field 'Truth'.*'Flooded' \(2\).*cannot predict"):
        result = evaluate(frame, "Truth", classes=["Intact", "Damaged"])
    assert result.classes == ("Intact", "Damaged", "Flooded")
    assert result.unknown_truth == ("Flooded",)
    assert result.matrix.tolist() == [[1, 1, 0], [1, 0, 0], [1, 1, 0]]
    assert math.isclose(result.accuracy, 1 / 5)
    table = format_table(result)
    assert "Flooded" in table and "20.0% (1 of 5)" in table
    labels = pd.DataFrame({"Truth": ["Intact", "Damaged"], "ClassLabel": ["Intact", "Roof"]})
    with pytest.warns(UnknownClassWarning, match="label field 'ClassLabel'.*'Roof'"):
        assert evaluate(labels, "Truth", classes=["Intact", "Damaged"]).unknown_labels == ("Roof",)


def test_nothing_to_compare_warns():
    frame = pd.DataFrame({"t": [None, "a"], "p": ["a", None]})
    with pytest.warns(NothingToEvaluateWarning, match="1 have no truth and 1 were not classified"):
        result = evaluate(frame, "t", "p")
    assert result.to_dict()["accuracy"] is None and result.to_dict()["kappa"] is None


@pytest.fixture(scope="module")
def classified(tmp_path_factory):
    """The bundled sample, classified by the CLI as a user would run it."""
    folder = tmp_path_factory.mktemp("sample")
    command = [sys.executable, "-m", "geoclassify"]
    subprocess.run([*command, "sample", str(folder)], check=True, capture_output=True)
    subprocess.run(
        [
            *command,
            "classify",
            "--image",
            str(folder / "orthophoto.tif"),
            "--features",
            str(folder / "houses.gpkg"),
            "--model",
            str(folder / "roof-damage.dlpk"),
            "--out",
            str(folder / "out.gpkg"),
        ],
        check=True,
        capture_output=True,
    )
    return folder


def test_the_sample_end_to_end(classified, capsys):
    out, model, picture = classified / "out.gpkg", classified / "roof-damage.dlpk", classified / "cm.png"
    code = main(
        ["evaluate", str(out), "--truth-field", "Truth", "--model", str(model), "--plot", str(picture), "--json"]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    report = json.loads(captured.out)
    # A hand count from the output layer itself.
    frame = pyogrio.read_dataframe(out, read_geometry=False)
    pairs = list(zip(frame["Truth"], frame["ClassLabel"], strict=True))
    order = ["Intact", "Damaged"]
    assert report["confusion_matrix"]["labels"] == order
    assert report["confusion_matrix"]["matrix"] == [[pairs.count((t, p)) for p in order] for t in order]
    assert report["total"] == len(frame) == 121 and report["unclassified"] == 0
    correct = sum(t == p for t, p in pairs)
    assert math.isclose(report["accuracy"], correct / len(pairs))
    damaged = report["per_class"][1]
    assert damaged["class"] == "Damaged" and damaged["support"] == sum(t == "Damaged" for t, _ in pairs)
    assert math.isclose(damaged["recall"], pairs.count(("Damaged", "Damaged")) / damaged["support"])
    assert report["accuracy"] > 0.95 and report["kappa"] > 0.9  # the sample's model is good (README: 98.3%)
    assert f"wrote {picture}" in captured.err
    assert_picture(picture, min_side=300)


def test_the_sample_table(classified, capsys):
    assert main(["evaluate", str(classified / "out.gpkg"), "--truth-field", "Truth"]) == 0
    table = capsys.readouterr().out
    assert "Accuracy     98.3% (119 of 121)" in table
    assert "Kappa        0.967" in table
    assert "Confusion matrix (rows: truth, columns: predicted)" in table
    assert table.splitlines()[-2].split() == ["Damaged", "58", "2"]  # sorted: no --model


def assert_picture(path, min_side: int) -> None:
    image = pytest.importorskip("matplotlib.image").imread(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    height, width = image.shape[:2]
    assert min_side <= min(height, width) and max(height, width) <= 2500
    assert image[..., :3].std() > 0.1  # not blank: dark cells, text and a colour bar on white


def test_many_long_classes_plot(tmp_path):
    pytest.importorskip("matplotlib")
    rng = np.random.default_rng(3)
    names = [f"class number {i} with a rather long name" for i in range(20)]
    truth = rng.choice(names, size=2000)
    predicted = np.where(rng.random(2000) < 0.6, truth, rng.choice(names, size=2000))
    result = evaluate(pd.DataFrame({"t": truth, "p": predicted}), "t", "p")
    written = save_plot(result, tmp_path / "many.png")
    assert_picture(written, min_side=800)
    assert [p.name for p in tmp_path.iterdir()] == ["many.png"]  # no partial file left


def test_plot_without_matplotlib(monkeypatch, tmp_path):
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)
    result = evaluate(pd.DataFrame({"t": ["a"], "p": ["a"]}), "t", "p")
    with pytest.raises(MissingExtraError, match=r"pip install 'geoclassify\[plot\]'"):
        save_plot(result, tmp_path / "cm.png")


def test_plot_errors(tmp_path):
    pytest.importorskip("matplotlib")
    result = evaluate(pd.DataFrame({"t": ["a"], "p": ["a"]}), "t", "p")
    with pytest.raises(OutputError, match=r"ending in \.png"):
        save_plot(result, tmp_path / "cm.nope")
    with pytest.raises(OutputError, match="does not exist"):
        save_plot(result, tmp_path / "missing" / "cm.png")


def test_help_does_not_import_matplotlib():
    check = (
        "import sys; from geoclassify.cli import main; main(['evaluate', '--help']); print('matplotlib' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, check=True)
    assert done.stdout.strip().endswith("False")
    assert "--truth-field" in done.stdout


@pytest.fixture()
def two_layers(tmp_path):
    path = tmp_path / "two.gpkg"
    frame = pd.DataFrame({"Truth": ["a", "b"], "ClassLabel": ["a", "a"]})
    pyogrio.write_dataframe(frame, path, layer="first")
    pyogrio.write_dataframe(frame.assign(ClassLabel=["a", "b"]), path, layer="second", append=False)
    return path


def test_layer_choice_and_field_errors(two_layers, tmp_path):
    with pytest.warns(geoclassify.errors.GeoclassifyWarning, match="2 layers.*evaluating 'first'"):
        assert evaluate(two_layers, "Truth").accuracy == 0.5
    assert evaluate(two_layers, "Truth", layer_name="second").accuracy == 1.0
    with pytest.raises(FeatureSourceError, match="no layer 'third'; its layers: first, second"):
        evaluate(two_layers, "Truth", layer_name="third")
    with pytest.raises(
        FieldNotFoundError,
        match=r"no truth field 'truth' \(did you mean 'Truth'\?\); its fields: "
        r"Truth, ClassLabel\. Give one of them as truth_field",
    ):
        evaluate(two_layers, "truth", layer_name="first")
    with pytest.raises(FieldNotFoundError, match="no label field 'Label'"):
        evaluate(two_layers, "Truth", "Label", layer_name="first")
    with pytest.raises(SettingError, match="both 'Truth'"):
        evaluate(two_layers, "Truth", "Truth")
    with pytest.raises(SettingError, match="classes names 'a' more than once"):
        evaluate(two_layers, "Truth", layer_name="first", classes=["a", "b", "a"])
    with pytest.raises(FeatureSourceError, match="not found"):
        evaluate(tmp_path / "nothing.gpkg", "Truth")


def test_cli_errors_are_one_line(two_layers, capsys, tmp_path):
    assert main(["evaluate", str(two_layers), "--layer", "first", "--truth-field", "Thruth"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "its fields: Truth, ClassLabel. Give one of them as --truth-field" in err
    with warnings.catch_warnings():
        assert main(["evaluate", str(two_layers), "--truth-field", "Truth"]) == 0
    assert "Choose one with --layer" in capsys.readouterr().err


def test_model_classes_come_from_the_emd(tmp_path):
    from tests.support import emd_for

    emd = tmp_path / "m.emd"
    emd.write_text(json.dumps(emd_for(Classes=[{"Value": 5, "Name": "Zebra"}, {"Value": 1, "Name": "Ant"}])))
    assert model_classes(emd) == ("Zebra", "Ant")  # the model's order, not sorted; no runtime needed
    emd.write_text(json.dumps(emd_for(MetaDataMode="MultiLabeled_Tiles")))
    with pytest.raises(UnsupportedModelError, match="multi-label"):
        model_classes(emd)


def test_python_api_and_geoparquet(tmp_path):
    geopandas = pytest.importorskip("geopandas")
    from shapely.geometry import Point

    frame = geopandas.GeoDataFrame(
        {"Truth": ["x", "y", "y"], "ClassLabel": ["x", "y", "x"]}, geometry=[Point(0, 0)] * 3, crs="EPSG:4326"
    )
    frame.to_parquet(tmp_path / "layer.parquet")
    result = geoclassify.evaluate(tmp_path / "layer.parquet", "Truth", classes=["y", "x"])
    assert isinstance(result, geoclassify.Evaluation)
    data = result.to_dict()
    assert data["confusion_matrix"] == {"labels": ["y", "x"], "matrix": [[1, 1], [0, 1]]}
    assert [c["class"] for c in data["per_class"]] == ["y", "x"]
    assert json.loads(json.dumps(data)) == data
