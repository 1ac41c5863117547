"""Esri Python inference functions (the PRF API) hosted by ``backends.prf``.

The functions in tests/prf_functions are written the way Esri's users write them (numpy only, no arcpy), shipped
in .dlpk files and run through the CLI; expected labels come from ``reference_chips``, an independent chip cutter.
Smaller in-process tests drive :class:`PythonFunctionBackend` directly for the edge cases.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import textwrap
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import shapely

from geoclassify.errors import InferenceError, ModelPackageError, UnsupportedModelError, UntrustedCodeError
from geoclassify.model.arguments import ArgumentSpec, resolve_arguments
from geoclassify.model.backends.prf import PythonFunctionBackend
from geoclassify.model.packages import open_package

from tests.support import TWO_CLASSES, emd_for, leftovers, run_classify, run_cli, write_dlpk, write_raster
from tests.support.reference import reference_chips

FUNCTIONS = Path(__file__).parent / "prf_functions"
X, Y = 500000.0, 4650000.0
BRIGHTNESS_CLASSES = [
    {"Value": 1, "Name": "Bright", "Color": [250, 250, 200]},
    {"Value": 2, "Name": "Dark", "Color": [40, 40, 40]},
    {"Value": 3, "Name": "Glowing", "Color": [255, 200, 0]},
]
BUNDLED = "[Functions]System\\DeepLearning\\ArcGISLearn\\ArcGISObjectClassifier.py"


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """Roofs over three brightness zones of band 0 (dark west, middling centre, bright east); band 1 is 3 and band 2
    is 7 everywhere; no pixel is 0. One roof sits on the east edge, so part of its chip lies outside the raster."""
    folder = tmp_path_factory.mktemp("prf")
    rng = np.random.default_rng(11)
    data = np.empty((3, 200, 200), np.uint8)
    data[0, :, :67] = rng.integers(1, 60, (200, 67))
    data[0, :, 67:134] = rng.integers(60, 140, (200, 67))
    data[0, :, 134:] = rng.integers(150, 250, (200, 66))
    data[1], data[2] = 3, 7
    raster = write_raster(folder / "scene.tif", data)
    ones = write_raster(folder / "ones.tif", np.ones((1, 200, 200), np.uint8))
    corners = [*rng.uniform(8, 88, size=(24, 2)), (96.5, 50.0)]
    boxes = [shapely.box(X + x, Y - y - 3, X + x + 3, Y - y) for x, y in corners]
    gpd.GeoDataFrame({"id": range(len(boxes))}, geometry=boxes, crs="EPSG:32633").to_file(folder / "roofs.gpkg")
    return raster, ones, folder / "roofs.gpkg", boxes


def function_package(path: Path, function: str, helpers: tuple[str, ...] = (), **emd) -> Path:
    """A .dlpk holding the EMD, a function from tests/prf_functions and its helper modules, all at the root."""
    emd.setdefault("Classes", BRIGHTNESS_CLASSES)
    definition = emd_for(model_file=None, Framework="PyTorch", InferenceFunction=function, **emd)
    files = {name: (FUNCTIONS / name).read_bytes() for name in (function, *helpers)}
    return write_dlpk(path, definition, None, extra=files)


def source_package(path: Path, sources: dict[str, str], function: str | None = None, **emd) -> Path:
    """A .dlpk whose function and helpers are given as source text (for the in-process edge cases)."""
    emd.setdefault("Classes", TWO_CLASSES)
    function = function or next(iter(sources))
    definition = emd_for(model_file=None, Framework="PyTorch", InferenceFunction=function, **emd)
    files = {name: textwrap.dedent(text).encode() for name, text in sources.items()}
    return write_dlpk(path, definition, None, extra=files)


def valid_means(raster, ones, boxes, size: int, band: int) -> np.ndarray:
    """Mean of one band over each chip's pixels that lie inside the raster, cut independently."""
    chips = reference_chips(raster, boxes, size, [band], blacken=False)[:, 0]
    inside = reference_chips(ones, boxes, size, [0], blacken=False)[:, 0] > 0
    return np.array([chip[valid].astype(np.float64).mean() for chip, valid in zip(chips, inside, strict=True)])


# -- end to end, through the CLI -------------------------------------------------------------------------------


def test_wrapper_function_labels_arguments_and_chip_configuration(scene, tmp_path):
    raster, ones, roofs, boxes = scene
    package = function_package(tmp_path / "brightness.dlpk", "RoofBrightness.py")
    # The EMD says 16 x 16 chips of bands [0, 1, 2]; getConfiguration answers 24 x 24 of (0, 2), and vectorize
    # raises unless that is what it gets (and band 2 where it expects it).
    means = valid_means(raster, ones, boxes, 24, 0)
    assert (reference_chips(ones, boxes, 24, [0], blacken=False)[-1] == 0).any()  # the edge roof's chip
    out = tmp_path / "default.gpkg"
    result = run_classify(raster, package, roofs, out, "--trust-code")
    assert result.returncode == 0, result.stderr
    got = gpd.read_file(out)
    expected = np.where(means > 0.5 * 255, "Bright", "Dark")
    assert list(got["ClassLabel"]) == list(expected) and set(expected) == {"Bright", "Dark"}
    assert list(got["ClassValue"]) == [1 if label == "Bright" else 2 for label in expected]
    np.testing.assert_allclose(got["Confidence"], np.round(means / 255, 6), atol=1e-6)

    lowered = tmp_path / "lowered.gpkg"
    arguments = ["--argument", "threshold=0.2", "--argument", "bright_label=Glowing", "--argument", "batch_size=3"]
    result = run_classify(raster, package, roofs, lowered, "--trust-code", *arguments)
    assert result.returncode == 0, result.stderr
    relabelled = np.where(means > 0.2 * 255, "Glowing", "Dark")
    assert list(gpd.read_file(lowered)["ClassLabel"]) == list(relabelled)
    assert ((means > 0.2 * 255) & (means <= 0.5 * 255)).sum() >= 3  # the lower threshold really changed labels

    info = json.loads(run_cli("inspect", package, "--trust-code", "--json").stdout)
    arguments = {a["name"]: (a["type"], a["default"]) for a in info["arguments"]}
    assert arguments == {"threshold": ("float", 0.5), "bright_label": ("str", "Bright"), "batch_size": ("int", 4)}
    assert info["chip_size"] == {"height": 24, "width": 24} and info["extract_bands"] == [0, 2]
    assert info["runtime"] == {
        "runtime": "Esri Python inference function",
        "file": info["runtime"]["file"],
        "class": "RoofBrightness",
        "form": "wrapper",
    }
    assert info["runtime"]["file"].endswith("RoofBrightness.py")
    text = run_cli("inspect", package, "--trust-code").stdout
    assert "threshold (float, default 0.5): share of 255 above which a roof is bright" in text
    assert "bright_label (str, default 'Bright'): Label for bright roofs" in text


def test_child_function_imports_the_helper_shipped_beside_it(scene, tmp_path):
    raster, ones, roofs, boxes = scene
    package = function_package(
        tmp_path / "child.dlpk",
        "RoofChild.py",
        ("_roof_helpers.py",),
        Classes=TWO_CLASSES,
        BlackenAroundFeature=1,
    )
    chips = reference_chips(raster, boxes, 16, [0, 1, 2], blacken=True)[:, 0]
    inside = reference_chips(ones, boxes, 16, [0], blacken=False)[:, 0] > 0
    footprint = [chip[(chip > 0) & valid].astype(np.float64).mean() for chip, valid in zip(chips, inside, strict=True)]
    means = np.array(footprint)
    for cutoff, extra in ((100, ()), (150, ("--argument", "cutoff=150"))):
        out = tmp_path / f"child-{cutoff}.gpkg"
        result = run_classify(raster, package, roofs, out, "--trust-code", *extra)
        assert result.returncode == 0, result.stderr
        got = gpd.read_file(out)
        expected = np.where(means > cutoff, "Damaged", "Intact")
        assert list(got["ClassLabel"]) == list(expected) and set(expected) == {"Damaged", "Intact"}
        np.testing.assert_allclose(got["Confidence"], means / 255, rtol=1e-6)
    info = json.loads(run_cli("inspect", package, "--trust-code", "--json").stdout)
    arguments = {a["name"]: (a["type"], a["default"]) for a in info["arguments"]}
    assert arguments == {"batch_size": ("int", 4), "cutoff": ("int", 100)}  # batch_size: the EMD has no BatchSize
    assert info["runtime"]["form"] == "child" and info["runtime"]["class"] == "ChildObjectDetector"


def test_an_error_inside_vectorize_shows_the_functions_traceback_and_the_batch(tmp_path):
    data = np.full((1, 120, 120), 40, np.uint8)
    centres = [(10, 10), (30, 10), (50, 10), (10, 40), (30, 40), (50, 40)]
    data[0, 80, 20] = 255  # in the chip of feature 3 only: centre (10, 40) m is pixel (row 80, col 20)
    raster = write_raster(tmp_path / "hot.tif", data)
    boxes = [shapely.box(X + x - 1, Y - y - 1, X + x + 1, Y - y + 1) for x, y in centres]
    gpd.GeoDataFrame({"id": range(6)}, geometry=boxes, crs="EPSG:32633").to_file(tmp_path / "six.gpkg")
    package = function_package(tmp_path / "raising.dlpk", "Raising.py", Classes=TWO_CLASSES)
    out = tmp_path / "out.gpkg"
    result = run_classify(raster, package, tmp_path / "six.gpkg", out, "--trust-code")
    assert result.returncode == 1
    assert result.stderr.count("geoclassify: error:") == 1
    assert 'File "Raising.py", line 14, in check_pixels' in result.stderr
    assert 'raise ValueError(f"saturated pixel ({brightest:.0f}) in the chip")' in result.stderr
    assert 'File "Raising.py", line 35, in vectorize' in result.stderr
    assert "ValueError: saturated pixel (255) in the chip" in result.stderr
    assert "Raising.vectorize()" in result.stderr
    held = result.stderr.split("The batch held ")[1].split("\n")[0]
    assert "feature 3" in held and len(held.split(", ")) <= 2  # batch_size 2, from getParameterInfo
    assert "Traceback (most recent call last)" not in result.stderr and "returned nothing" not in result.stderr
    assert f"{os.sep}geoclassify{os.sep}" not in result.stderr  # none of geoclassify's own frames
    # No output; at most the hidden journal of the features done before the failure, kept for --resume.
    assert not out.exists() and set(leftovers(tmp_path, "out")) <= {".out.gpkg.geoclassify-run"}


def test_untrusted_code_is_refused_before_any_of_it_runs(scene, tmp_path, monkeypatch):
    raster, ones, roofs, boxes = scene
    cache = tmp_path / "cache"
    monkeypatch.setenv("GEOCLASSIFY_CACHE_DIR", str(cache))  # the package is extracted here and nowhere else
    package = function_package(tmp_path / "raising.dlpk", "Raising.py", Classes=TWO_CLASSES)
    out = tmp_path / "out.gpkg"
    result = run_classify(raster, package, roofs, out)
    assert result.returncode == 1
    assert "InferenceFunction Raising.py is Python code from the package" in result.stderr
    assert str(package) in result.stderr and "pass --trust-code." in result.stderr
    assert not out.exists() and not leftovers(tmp_path, "out")
    shown = run_cli("inspect", package)
    assert shown.returncode == 1 and "--trust-code" in shown.stderr
    assert list(cache.rglob("Raising.py"))  # extracted...
    assert not list(cache.rglob("*.imported"))  # ...but never imported
    assert run_cli("inspect", package, "--trust-code").returncode == 0
    assert list(cache.rglob("Raising.py.imported"))  # the marker does work


def test_the_function_bundled_with_arcgis_pro_is_not_run_and_an_unknown_backbone_is_refused_with_what_to_do(
    tmp_path,
):
    # Esri's wrapper is recognised (tests/test_arcgis_learn.py runs such packages); a timm backbone cannot be rebuilt.
    bundled = write_dlpk(
        tmp_path / "bundled.dlpk",
        emd_for(
            model_file="model.pth",
            Framework="arcgis.learn.models._inferencing",
            ModelConfiguration="_FeatureClassifier",
            InferenceFunction=BUNDLED,
            ModelParameters={"backbone": "timm:convnext_tiny"},
            ImageWidth=224,
            ImageHeight=224,
        ),
        None,
    )
    for trust in ((), ("--trust-code",)):  # refused for what it is, trusted or not
        result = run_cli("inspect", bundled, *trust)
        assert result.returncode == 1
        assert result.stderr.count("geoclassify: error:") == 1
        assert "an arcgis.learn FeatureClassifier with the backbone 'timm:convnext_tiny'" in result.stderr
        assert "torch.onnx.export(m.learn.model.eval(), torch.zeros(1, 3, 224, 224), 'model.onnx'" in result.stderr
        assert '"Framework": "ONNX"' in result.stderr

def test_a_label_missing_from_classes_is_named_with_the_valid_ones(scene, tmp_path):
    raster, ones, roofs, boxes = scene
    classes = [{"Value": 1, "Name": "Bright"}, {"Value": 2, "Name": "Dim"}]
    package = function_package(tmp_path / "odd.dlpk", "RoofBrightness.py", Classes=classes)
    out = tmp_path / "out.gpkg"
    result = run_classify(raster, package, roofs, out, "--trust-code")
    assert result.returncode == 1
    assert (
        "RoofBrightness.py: RoofBrightness.vectorize() returned the label 'Dark', which is not among the EMD's "
        "Classes (Bright, Dim); Classes must name every label the function returns"
    ) in result.stderr
    assert not out.exists()


# -- in process: PythonFunctionBackend itself -----------------------------------------------------------------

WRAPPER = """
    import json


    class {name}:
        def initialize(self, **kwargs):
            self.kwargs = kwargs

        def getParameterInfo(self):
            return [{{"name": "rasters", "dataType": "rasters"}}, {{"name": "model", "dataType": "string"}}]

        def getConfiguration(self, **scalars):
            return {{"tx": 4, "ty": 4}}

        def vectorize(self, **pixelBlocks):
            n = len(pixelBlocks["rasters_pixels"])
            {body}
"""


def wrapper(name: str, body: str) -> str:
    return WRAPPER.format(name=name, body=body)


def backend_for(path: Path, sources: dict[str, str], **emd) -> PythonFunctionBackend:
    return PythonFunctionBackend(open_package(source_package(path, sources, **emd)), trust_code=True)


def chips(n: int, bands: int = 1, size: int = 4) -> tuple[np.ndarray, np.ndarray]:
    return np.ones((n, bands, size, size), np.float32), np.ones((n, size, size), bool)


def test_untrusted_refusal_names_the_file_and_imports_nothing(tmp_path):
    package = open_package(source_package(tmp_path / "p.dlpk", {"Sneaky.py": "import sys\nsys.exit(9)\n"}))
    with pytest.raises(UntrustedCodeError, match=r"InferenceFunction Sneaky\.py .* pass trust_code=True"):
        PythonFunctionBackend(package)
    assert not any(name.startswith("geoclassify_prf_") and "Sneaky" in name for name in sys.modules)


def test_arguments_are_typed_from_parameter_info_and_configuration_maps_to_emd_keys(tmp_path):
    source = """
        class Tuned:
            def initialize(self, **kwargs):
                pass

            def getParameterInfo(self):
                return [
                    {"name": "rasters", "dataType": "rasters"},
                    {"name": "model", "dataType": "string"},
                    {"name": "device", "dataType": "numeric"},
                    {"name": "rounds", "dataType": "numeric", "value": 3, "displayName": "Rounds"},
                    {"name": "score_threshold", "dataType": "numeric", "value": "0.25", "description": "Cut"},
                    {"name": "tiles", "dataType": "numeric", "value": "8"},
                    {"name": "flip", "dataType": "boolean", "value": "True"},
                    {"name": "test_time_augmentation", "dataType": "string", "value": "False"},
                    {"name": "mode", "dataType": "string", "value": "fast", "domain": ["fast", "exact"]},
                    {"name": "mask", "dataType": "raster"},
                ]

            def getConfiguration(self, **scalars):
                self.scalars = scalars
                return {"tx": "32", "ty": 32.0, "extractBands": [2, 1], "CropSizeFixed": True, "padding": 4,
                        "batch_size": scalars["tiles"], "inputMask": True}

            def vectorize(self, **pixelBlocks):
                return None
    """
    backend = backend_for(tmp_path / "tuned.dlpk", {"Tuned.py": source})
    specs = backend.argument_specs()
    assert specs == [
        ArgumentSpec("rounds", "int", 3, "Rounds"),
        ArgumentSpec("score_threshold", "float", 0.25, "Cut"),
        ArgumentSpec("tiles", "int", 8, ""),
        ArgumentSpec("flip", "bool", True, ""),
        ArgumentSpec("test_time_augmentation", "str", "False", ""),
        ArgumentSpec("mode", "str", "fast", "(one of: fast, exact)"),
    ]
    values = resolve_arguments(specs, {"rounds": "5", "flip": "false", "test_time_augmentation": "True"})
    overrides = backend.configure(values)
    assert overrides == {
        "ImageWidth": 32,
        "ImageHeight": 32,
        "ExtractBands": [2, 1],
        "CropSizeFixed": 1,
        "BatchSize": 8,
    }
    assert backend.instance.scalars == {
        "rounds": 5,
        "score_threshold": 0.25,
        "tiles": 8,
        "flip": False,
        "test_time_augmentation": "True",  # a 'string' parameter stays text: Esri's functions parse it themselves
        "mode": "fast",
    }
    assert backend.describe()["form"] == "wrapper" and backend.framework == "Python inference function"


def test_child_form_gets_the_standard_parameters_without_batch_size_when_the_emd_has_one(tmp_path):
    source = """
        import numpy as np


        class ChildObjectDetector:
            def initialize(self, model, model_as_file):
                self.model, self.model_as_file = model, model_as_file

            def getParameterInfo(self, required_parameters):
                self.names = [p["name"] for p in required_parameters]
                return required_parameters

            def getConfiguration(self, **scalars):
                return {}

            def vectorize(self, **pixelBlocks):
                n = len(pixelBlocks["rasters_pixels"])
                return [None] * n, np.full(n, 0.75), np.array(["Damaged"] * n)
    """
    backend = backend_for(tmp_path / "child.dlpk", {"Detector.py": source}, BatchSize=2)
    assert backend.argument_specs() == [] and backend.instance.names == ["rasters", "model", "device"]
    assert backend.instance.model_as_file is True and backend.instance.model.endswith("child.emd")
    assert backend.configure({}) == {}
    classes, confidences = backend.classify_chips(*chips(3), batch_size=2)
    assert classes.dtype == np.int64 and list(classes) == [1, 1, 1]
    assert confidences.dtype == np.float64 and list(confidences) == [0.75, 0.75, 0.75]


def test_feature_sets_are_read_as_tolerantly_as_arcgis_does(tmp_path):
    body = """return {"output_vectors": {
                "fields": [{"name": "FID", "type": "esriFieldTypeOID"}],
                "features": [{"attributes": {"FID": i, "classname": "Intact", "confidence": 0.5 + i / 10}}
                             for i in range(n)]}}"""
    backend = backend_for(tmp_path / "tolerant.dlpk", {"Tolerant.py": wrapper("Tolerant", body)})
    classes, confidences = backend.classify_chips(*chips(3), batch_size=8)
    assert list(classes) == [0, 0, 0] and np.allclose(confidences, [0.5, 0.6, 0.7])


def test_the_function_receives_pixels_and_masks_as_arcgis_passes_them(tmp_path):
    body = """self.seen = [(len(pixelBlocks["rasters_pixels"]), type(pixelBlocks["rasters_pixels"]).__name__,
                          pixelBlocks["rasters_pixels"][0].shape, pixelBlocks["rasters_mask"][0].dtype.name,
                          int(pixelBlocks["rasters_mask"][0].sum()))] + getattr(self, "seen", [])
            features = [{"attributes": {"OID": i + 1, "Confidence": "1", "Label": "Intact"}} for i in range(n)]
            return {"output_vectors": json.dumps({"features": features})}"""
    backend = backend_for(tmp_path / "seen.dlpk", {"Seen.py": wrapper("Seen", body)})
    pixels, valid = chips(5, bands=3)
    valid[:, 0, :] = False
    backend.classify_chips(pixels, valid, batch_size=2)
    assert backend.instance.seen[::-1] == [(2, "tuple", (3, 4, 4), "uint8", 36)] * 2 + [
        (1, "tuple", (3, 4, 4), "uint8", 36)
    ]
    assert backend.instance.kwargs["device"] == -1 and backend.instance.kwargs["model"].endswith("seen.emd")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("return {'output_vectors': json.dumps({'features': []})}", "returned 0 results for a batch of 2 chips"),
        ("return None", 'Wrong.vectorize() returned None; it must return {"output_vectors"'),
        ("return ['x'] * n, [1.0] * n, ['Damaged;Intact'] * n", "multi-label answers (MultiLabeled_Tiles)"),
        ("return [None] * n, ['0.1;0.9'] * n, ['Damaged'] * n", "returned the confidence '0.1;0.9', which is not"),
    ],
)
def test_malformed_answers_are_inference_errors_saying_what_is_expected(tmp_path, body, message):
    backend = backend_for(tmp_path / "wrong.dlpk", {"Wrong.py": wrapper("Wrong", body)})
    with pytest.raises(InferenceError) as caught:
        backend.classify_chips(*chips(2), batch_size=2)
    assert message in str(caught.value) and "Wrong.py" in str(caught.value)


def test_an_exception_in_vectorize_carries_only_the_packages_frames(tmp_path):
    helper = """
        def explode(n):
            raise ZeroDivisionError(f"{n} chips")
    """
    body = "from _boom import explode\n            explode(n)"
    backend = backend_for(tmp_path / "boom.dlpk", {"Boom.py": wrapper("Boom", body), "_boom.py": helper})
    with pytest.raises(InferenceError) as caught:
        backend.classify_chips(*chips(2), batch_size=2)
    message = str(caught.value)
    assert message.endswith(
        "the inference function Boom.py failed in Boom.vectorize():\n"
        "  in the package's code (innermost last):\n"
        '  File "Boom.py", line 18, in vectorize\n'
        "    explode(n)\n"
        '  File "_boom.py", line 3, in explode\n'
        '    raise ZeroDivisionError(f"{n} chips")\n'
        "ZeroDivisionError: 2 chips"
    )
    assert isinstance(caught.value.__cause__, ZeroDivisionError)  # kept for API users who want to debug


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("x = 1\ndef broken(:\n    pass\n", ["Broken.py", "line 2", "SyntaxError"]),
        (
            "import json\n\nraise RuntimeError('no GPU here')\n",
            ['File "Broken.py", line 3, in <module>', "no GPU here"],
        ),
        ("import arcpy\n", ["because it imports arcpy, which exists only inside ArcGIS", "ModuleNotFoundError"]),
        ("class Helper: pass\nclass Other: pass\n", ["no class named 'Broken'", "the file defines: Helper, Other"]),
    ],
)
def test_a_function_that_cannot_be_loaded_says_why(tmp_path, source, expected):
    with pytest.raises(ModelPackageError) as caught:
        backend_for(tmp_path / "broken.dlpk", {"Broken.py": source})
    for text in expected:
        assert text in str(caught.value)


def test_an_emd_that_names_no_existing_function_is_a_package_error(tmp_path):
    package = open_package(source_package(tmp_path / "p.dlpk", {"Other.py": ""}, function="Missing.py"))
    with pytest.raises(ModelPackageError, match=r"InferenceFunction 'Missing.py' not found"):
        PythonFunctionBackend(package, trust_code=True)
    bundled = open_package(source_package(tmp_path / "b.dlpk", {"Other.py": ""}, function=BUNDLED))
    with pytest.raises(UnsupportedModelError, match="bundled inside ArcGIS Pro"):
        PythonFunctionBackend(bundled, trust_code=True)


def test_two_packages_each_import_their_own_helper_of_the_same_name(tmp_path):
    body = "return [None] * n, [1.0] * n, [LABEL] * n"
    sources = {"Uses.py": "from _labels import LABEL\n" + textwrap.dedent(wrapper("Uses", body))}
    first = backend_for(tmp_path / "a.dlpk", {**sources, "_labels.py": "LABEL = 'Intact'\n"})
    second = backend_for(tmp_path / "b.dlpk", {**sources, "_labels.py": "LABEL = 'Damaged'\n"})
    assert list(first.classify_chips(*chips(1), 1)[0]) == [0]
    assert list(second.classify_chips(*chips(1), 1)[0]) == [1]


def test_the_functions_modules_live_in_a_namespace_of_their_own_while_the_backend_lives(tmp_path):
    body = "return [None] * n, [1.0] * n, [LABEL] * n"
    source = "from _life import LABEL\n" + textwrap.dedent(wrapper("Life", body))
    path_before = list(sys.path)
    backend = backend_for(tmp_path / "life.dlpk", {"Life.py": source, "_life.py": "LABEL = 'Intact'\n"})
    namespace = backend._scope.namespace
    assert sys.path == path_before  # the function's folder is never put on sys.path
    assert type(backend.instance).__module__ == f"{namespace}.Life" and f"{namespace}._life" in sys.modules
    assert "_life" not in sys.modules  # the helper is the package's alone
    del backend
    gc.collect()
    # Cleaning up inside the garbage collector could disturb an import in progress, so the next load does it.
    backend_for(tmp_path / "later.dlpk", {"Later.py": wrapper("Later", body)})
    assert not [name for name in sys.modules if name == namespace or name.startswith(namespace + ".")]
    assert sys.path == path_before


def test_an_inline_emd_is_handed_over_as_a_temporary_file(tmp_path, monkeypatch):
    function = tmp_path / "Inline.py"
    function.write_text(textwrap.dedent(wrapper("Inline", "return None")))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "unrelated.emd").write_text("{}")  # the working folder's .emd is not the model's
    definition = emd_for(model_file=None, Framework="PyTorch", InferenceFunction=str(function))
    backend = PythonFunctionBackend(open_package(json.dumps(definition)), trust_code=True)
    handed = Path(backend.instance.kwargs["model"])
    assert handed.suffix == ".emd" and json.loads(handed.read_text()) == definition
    del backend
    gc.collect()
    assert not handed.exists()


def test_prints_from_the_function_go_to_stderr(tmp_path, capsys):
    source = wrapper("Chatty", "return None").replace("self.kwargs = kwargs", "print('loading weights')")
    backend_for(tmp_path / "chatty.dlpk", {"Chatty.py": source})
    captured = capsys.readouterr()
    assert captured.out == "" and "loading weights" in captured.err
