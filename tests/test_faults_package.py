"""Faults a user can meet with a model package, or while building one (issue 10), each driven where a user meets it.

A package is input from strangers: nothing it names may lie outside it, NaN scores never become labels, and every
fault is one line that names the file, key, option or setting at fault. Each test builds its own broken input.
"""

from __future__ import annotations

import builtins
import errno
import json
import os
import re
import sys
import textwrap
import zipfile
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import shapely
from onnx import helper

from geoclassify import cli
from geoclassify.errors import (
    DuplicateClassValueWarning,
    InferenceError,
    ModelDefinitionError,
    ModelPackageError,
)
from geoclassify.model.emd import parse_emd
from geoclassify.model.preprocess import Preprocessor
from geoclassify.model.runtime import load_model

from tests.support import TWO_CLASSES, emd_for, run_cli, write_dlpk, write_raster
from tests.support.onnx_models import mean_linear_model, save_graph

X, Y = 500000.0, 4650000.0


def geoclassify(capsys, *args: object) -> tuple[int, str]:
    """The ``geoclassify`` command run in this process (its ``main``, as the console script runs it): exit code and
    what it printed on stderr."""
    capsys.readouterr()
    code = cli.main([os.fspath(a) if isinstance(a, Path) else str(a) for a in args])
    return code, capsys.readouterr().err


def one_clear_line(err: str) -> None:
    assert "internal error" not in err and "Traceback" not in err, err
    assert err.startswith("geoclassify: error: ") or "Error: " in err, err


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """This test's own package cache, so paths relative to an extracted package are known."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("GEOCLASSIFY_CACHE_DIR", str(folder))
    return folder


@pytest.fixture
def model(tmp_path) -> Path:
    return mean_linear_model(tmp_path / "model.onnx", np.eye(2, 3), np.zeros(2), 3, 16, 16)


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> tuple[Path, Path]:
    """A 64 x 64 three-band raster with five small houses."""
    folder = tmp_path_factory.mktemp("faults-package")
    data = np.random.default_rng(3).integers(1, 250, (3, 64, 64), dtype=np.uint8)
    raster = write_raster(folder / "scene.tif", data)
    boxes = [shapely.box(X + x, Y - x - 3, X + x + 3, Y - x) for x in (4.0, 9.0, 14.0, 19.0, 24.0)]
    gpd.GeoDataFrame({"id": range(5)}, geometry=boxes, crs="EPSG:32633").to_file(folder / "houses.gpkg")
    return raster, folder / "houses.gpkg"


def deny(monkeypatch, path: Path) -> None:
    """Take away the right to read ``path`` (a file) or to write in it (a folder), as chmod does for a user. Root
    ignores modes, so as root the same refusal is made where Python opens files and makes folders."""
    is_file = path.is_file()
    path.chmod(0o000 if is_file else 0o555)
    if os.geteuid() != 0:
        return
    real_open, real_os_open, real_mkdir = builtins.open, os.open, os.mkdir
    target = path.resolve()

    def under(name: object) -> bool:
        if isinstance(name, int):
            return False
        return Path(os.fspath(name)).resolve().is_relative_to(target)  # type: ignore[arg-type]

    def refuse(name: object) -> PermissionError:
        return PermissionError(errno.EACCES, "Permission denied", os.fspath(name))  # type: ignore[arg-type]

    def guarded_open(file, mode="r", *args, **kwargs):
        writes = any(c in mode for c in "wax+")
        if under(file) and (is_file or writes):
            raise refuse(file)
        return real_open(file, mode, *args, **kwargs)

    def guarded_os_open(file, flags, *args, **kwargs):
        writes = flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
        if under(file) and (is_file or writes):
            raise refuse(file)
        return real_os_open(file, flags, *args, **kwargs)

    def guarded_mkdir(name, *args, **kwargs):
        if under(name) and not is_file and Path(os.fspath(name)).resolve() != target:
            raise refuse(name)
        return real_mkdir(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded_open)
    monkeypatch.setattr(os, "open", guarded_os_open)
    monkeypatch.setattr(os, "mkdir", guarded_mkdir)


@pytest.fixture
def restore_modes(tmp_path):
    yield
    for path in [tmp_path, *tmp_path.rglob("*")]:
        if not path.is_symlink():
            path.chmod(0o755)


# -- 1. every file an EMD names lies inside the package -------------------------------------------------------------


@pytest.mark.parametrize("form", ["relative", "absolute"])
def test_a_model_file_outside_the_dlpk_is_refused(capsys, tmp_path, cache, form):
    (tmp_path / "srv").mkdir()
    outside = mean_linear_model(tmp_path / "srv" / "x.onnx", np.eye(2, 3), np.zeros(2), 3, 16, 16)
    # An extracted package lives in cache/packages/<digest>/, three levels below tmp_path.
    name = "../../../srv/x.onnx" if form == "relative" else str(outside)
    package = write_dlpk(tmp_path / "escape.dlpk", emd_for(model_file=name), None)
    code, err = geoclassify(capsys, "inspect", package)
    assert code == 1
    one_clear_line(err)
    assert f"ModelFile {name!r} leads outside the package" in err and "put x.onnx in the package" in err


def test_a_model_file_reaching_for_etc_passwd_is_never_opened(capsys, tmp_path, cache, monkeypatch):
    import onnxruntime

    opened = []
    real = onnxruntime.InferenceSession

    def recording(path, *args, **kwargs):
        opened.append(str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(onnxruntime, "InferenceSession", recording)
    package = write_dlpk(tmp_path / "passwd.dlpk", emd_for(model_file="../" * 40 + "etc/passwd"), None)
    code, err = geoclassify(capsys, "inspect", package)
    assert code == 1 and "leads outside the package" in err and "ModelFile" in err
    assert opened == []


def test_a_bare_emd_may_only_name_files_in_its_own_folder(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    mean_linear_model(tmp_path / "x.onnx", np.eye(2, 3), np.zeros(2), 3, 16, 16)
    (folder / "up.emd").write_text(json.dumps(emd_for(model_file="../x.onnx")))
    with pytest.raises(ModelPackageError, match=r"up.emd: ModelFile '../x.onnx' leads outside the package"):
        load_model(folder / "up.emd")
    # A link inside the folder that points out of it is followed before the check, and refused as well.
    (folder / "model.onnx").symlink_to(tmp_path / "x.onnx")
    (folder / "link.emd").write_text(json.dumps(emd_for(model_file="model.onnx")))
    with pytest.raises(ModelPackageError, match="link.emd: ModelFile 'model.onnx' leads outside the package"):
        load_model(folder / "link.emd")


def test_an_inference_function_outside_the_package_is_never_imported(capsys, tmp_path, cache):
    cache.mkdir()
    marker = tmp_path / "evil-ran"
    (cache / "evil.py").write_text(f"open({str(marker)!r}, 'w').close()\nclass evil: pass\n")
    emd = emd_for(model_file=None, Framework="PyTorch", InferenceFunction="../../evil.py")
    package = write_dlpk(tmp_path / "evil.dlpk", emd, None)
    code, err = geoclassify(capsys, "inspect", package, "--trust-code")
    assert code == 1
    one_clear_line(err)
    assert "InferenceFunction '../../evil.py' leads outside the package" in err
    assert not marker.exists()


CHILD = """
import {helper}


class ChildObjectDetector:
    def initialize(self, model, model_as_file):
        self.where = getattr({helper}, "WHERE", None)

    def getParameterInfo(self, required_parameters):
        return required_parameters

    def getConfiguration(self, **scalars):
        return {{}}

    def vectorize(self, **pixel_blocks):
        n = len(pixel_blocks["rasters_pixels"])
        return [None] * n, [{score}] * n, ["Intact"] * n
"""


def child_package(path: Path, helper: str = "numpy", score: str = "0.5", helpers: dict[str, str] | None = None) -> Path:
    """A .dlpk with a child-form inference function that imports ``helper`` and answers Intact with ``score``."""
    files = {"Child.py": CHILD.format(helper=helper, score=score).encode()}
    files.update({name: text.encode() for name, text in (helpers or {}).items()})
    emd = emd_for(model_file=None, Framework="PyTorch", InferenceFunction="Child.py")
    return write_dlpk(path, emd, None, extra=files)


def test_a_helper_module_the_package_lacks_is_not_taken_from_the_working_folder(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    marker = tmp_path / "stray-ran"
    (work / "_stray_helper.py").write_text(f"open({str(marker)!r}, 'w').close()\nWHERE = 'working folder'\n")
    package = child_package(tmp_path / "child.dlpk", helper="_stray_helper")
    # `python -m geoclassify` puts the working folder first on sys.path, as any script's folder is.
    result = run_cli("inspect", package, "--trust-code", cwd=work)
    assert result.returncode == 1, result.stderr
    assert "imports '_stray_helper'" in result.stderr and "outside the package and not used" in result.stderr
    assert "Traceback (most recent call last)" not in result.stderr.split("\n")[0]
    assert not marker.exists()


def test_a_helper_imported_from_elsewhere_earlier_is_not_what_the_package_gets(tmp_path, monkeypatch):
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "_shared_helper.py").write_text("WHERE = 'elsewhere'\n")
    monkeypatch.syspath_prepend(str(other))
    monkeypatch.delitem(sys.modules, "_shared_helper", raising=False)
    import _shared_helper  # noqa: F401  (a script imported a module of that name before)

    package = child_package(
        tmp_path / "shared.dlpk", helper="_shared_helper", helpers={"_shared_helper.py": "WHERE = 'package'\n"}
    )
    model = load_model(package, trust_code=True)
    assert model.backend.instance.where == "package"


def test_a_helper_module_linked_from_outside_is_refused(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (tmp_path / "outside_helper.py").write_text("WHERE = 'outside'\n")
    (folder / "_linked_helper.py").symlink_to(tmp_path / "outside_helper.py")
    (folder / "Child.py").write_text(CHILD.format(helper="_linked_helper", score="0.5"))
    emd = emd_for(model_file=None, Framework="PyTorch", InferenceFunction="Child.py")
    (folder / "child.emd").write_text(json.dumps(emd))
    with pytest.raises(ModelPackageError, match="'_linked_helper'.*leads outside the package"):
        load_model(folder / "child.emd", trust_code=True)


# -- 2. NaN or infinite scores are a model failure, never a label ---------------------------------------------------


def broken_onnx(path: Path, kind: str) -> Path:
    """3 x 16 x 16 chips to two scores that are all NaN (log of a negative) or all +inf (division by zero)."""
    nodes = [
        helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "W", "B"], ["raw"], transB=1),
        helper.make_node("Abs", ["raw"], ["size"]),
        helper.make_node("Add", ["size", "one"], ["positive"]),
    ]
    if kind == "nan":
        nodes += [
            helper.make_node("Neg", ["positive"], ["negative"]),
            helper.make_node("Log", ["negative"], ["logits"]),
        ]
    else:
        nodes.append(helper.make_node("Div", ["positive", "zero"], ["logits"]))
    constants = {"one": np.array(1.0, np.float32), "zero": np.array(0.0, np.float32)}
    return save_graph(path, nodes, kind, ["batch", 3, 16, 16], ["batch", 2], np.eye(2, 3), np.zeros(2), constants)


@pytest.mark.parametrize("kind", ["nan", "inf"])
def test_a_model_that_outputs_nan_stops_the_run_naming_its_features(capsys, scene, tmp_path, kind):
    raster, houses = scene
    package = write_dlpk(tmp_path / "broken.dlpk", emd_for(), broken_onnx(tmp_path / "model.onnx", kind))
    code, err = geoclassify(capsys, "classify", "--image", raster, "--model", package, "--features", houses,
                            "--out", tmp_path / "out.gpkg")  # fmt: skip
    assert code == 1, err
    one_clear_line(err)
    assert "NaN or infinite scores" in err and "for 5 of 5 chips: feature 0, feature 1, feature 2, feature 3" in err
    assert not (tmp_path / "out.gpkg").exists()


def test_nan_scores_are_retried_then_stop_the_run(capsys, scene, tmp_path):
    raster, houses = scene
    package = write_dlpk(tmp_path / "nan.dlpk", emd_for(), broken_onnx(tmp_path / "model.onnx", "nan"))
    code, err = geoclassify(capsys, "classify", "--image", raster, "--model", package, "--features", houses,
                            "--out", tmp_path / "out.gpkg", "--retries", "1")  # fmt: skip
    assert code == 1 and "a batch failed 2 times (--retries 1)" in err and "NaN or infinite" in err


def test_a_torchscript_model_that_outputs_nan_fails_its_batch(tmp_path):
    torch = pytest.importorskip("torch")

    class Nan(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.log(-(x.mean(dim=(2, 3))[:, :2].abs() + 1))

    torch.jit.save(torch.jit.script(Nan()), str(tmp_path / "nan.pt"))
    package = write_dlpk(tmp_path / "nan.dlpk", emd_for(model_file="nan.pt", Framework="PyTorch"), tmp_path / "nan.pt")
    model = load_model(package)
    chips, valid = np.ones((2, 3, 16, 16), np.float32), np.ones((2, 16, 16), bool)
    with pytest.raises(InferenceError, match=r"NaN or infinite scores(.|\n)*for 2 of 2 chips: feature 7, feature 8"):
        model.classify(chips, valid, (0, 1, 2), ids=["feature 7", "feature 8"])


def test_a_python_function_answering_with_nan_confidence_fails_its_batch(tmp_path):
    package = child_package(tmp_path / "nan.dlpk", score="float('nan')")
    model = load_model(package, trust_code=True)
    chips, valid = np.ones((2, 3, 16, 16), np.float32), np.ones((2, 16, 16), bool)
    with pytest.raises(InferenceError, match=r"confidence nan: NaN or infinite(.|\n)*feature 7, feature 8"):
        model.classify(chips, valid, (0, 1, 2), ids=["feature 7", "feature 8"])


# -- 3. one clear line for each fault of a setting, a file or the cache --------------------------------------------


def test_a_chip_size_of_a_billion_is_one_clear_error(capsys, tmp_path):
    mean_linear_model(tmp_path / "open.onnx", np.eye(2, 3), np.zeros(2), 3, "height", "width")
    emd = tmp_path / "huge.emd"
    emd.write_text(json.dumps(emd_for(model_file="open.onnx", ImageWidth=1e9, ImageHeight=1e9)))
    code, err = geoclassify(capsys, "inspect", emd)
    assert code == 1
    one_clear_line(err)
    assert "huge.emd: key 'ImageWidth' is 1000000000.0; expected a whole number from 1 to 16384 pixels" in err
    with pytest.raises(ModelDefinitionError, match="selects 5000 bands; at most 1024"):
        parse_emd({"Classes": TWO_CLASSES, "ExtractBands": list(range(5000))}, "many.emd")


def test_an_unreadable_dlpk_is_one_clear_error(capsys, tmp_path, model, monkeypatch, restore_modes):
    package = write_dlpk(tmp_path / "locked.dlpk", emd_for(), model)
    deny(monkeypatch, package)
    code, err = geoclassify(capsys, "inspect", package)
    assert code == 1
    one_clear_line(err)
    assert f"{package}: cannot read the package (Permission denied)" in err


@pytest.mark.parametrize("fault", ["plain file", "read-only"])
def test_an_unusable_cache_folder_names_geoclassify_cache_dir(
    capsys, tmp_path, model, monkeypatch, restore_modes, fault
):
    cache = tmp_path / "cache"
    if fault == "plain file":
        cache.write_text("not a folder")
    else:
        cache.mkdir()
        deny(monkeypatch, cache)
    monkeypatch.setenv("GEOCLASSIFY_CACHE_DIR", str(cache))
    package = write_dlpk(tmp_path / "roofs.dlpk", emd_for(), model)
    code, err = geoclassify(capsys, "inspect", package)
    assert code == 1
    one_clear_line(err)
    assert f"cannot unpack {package} into the package cache {cache / 'packages'}" in err
    assert "set GEOCLASSIFY_CACHE_DIR to a folder you can write" in err


def test_a_bad_package_size_cap_names_the_variable(capsys, tmp_path, model, cache, monkeypatch):
    monkeypatch.setenv("GEOCLASSIFY_MAX_PACKAGE_BYTES", "abc")
    code, err = geoclassify(capsys, "inspect", write_dlpk(tmp_path / "roofs.dlpk", emd_for(), model))
    assert code == 1
    one_clear_line(err)
    assert "GEOCLASSIFY_MAX_PACKAGE_BYTES='abc': give a whole number" in err


def test_packaging_into_a_folder_that_does_not_exist_is_one_clear_error(capsys, tmp_path, model):
    out = tmp_path / "no" / "such" / "roofs.dlpk"
    code, err = geoclassify(capsys, "package", model, "--out", out, "--classes", "Intact,Damaged")
    assert code == 1
    one_clear_line(err)
    assert f"the folder {str(out.parent)!r} does not exist; create it first" in err


# -- 4. what a new user met while building packages ---------------------------------------------------------------


def test_packaging_errors_name_the_option_not_a_temporary_emd(capsys, tmp_path, model):
    stats = tmp_path / "stats.json"
    stats.write_text(json.dumps({k: [0] for k in ("band_min_values", "scaled_mean_values")} | {
        "band_max_values": [255], "scaled_std_values": [1]}))  # fmt: skip
    out = tmp_path / "roofs.dlpk"
    code, err = geoclassify(capsys, "package", model, "--out", out, "--classes", "A,B", "--normalization-stats", stats)
    assert code == 1 and ".package-" not in err and ".emd" not in err
    assert f"--normalization-stats {stats}: NormalizationStats.band_min_values has 1 values" in err
    code, err = geoclassify(capsys, "package", model, "--out", out, "--classes", "A,B", "--chip-size", "32")
    assert code == 1 and ".emd" not in err
    assert "--chip-size 32: ImageHeight is 32 but the model takes chips of 16x16 pixels" in err
    code, err = geoclassify(capsys, "package", model, "--out", out, "--classes", "A,B,C")
    assert code == 1 and "--classes: the model outputs 2 classes but the EMD lists 3 Classes" in err
    assert not out.exists()


def test_duplicate_class_names_are_refused_and_duplicate_values_warned(capsys, tmp_path, model, cache):
    twice = [{"Value": 1, "Name": "Intact"}, {"Value": 2, "Name": "Intact"}]
    with pytest.raises(ModelDefinitionError, match=r"roofs.emd: Classes\[0\] and Classes\[1\] are both named 'Intact'"):
        parse_emd({"Classes": twice}, "roofs.emd")
    code, err = geoclassify(capsys, "inspect", write_dlpk(tmp_path / "twice.dlpk", emd_for(Classes=twice), model))
    assert code == 1 and "both named 'Intact'" in err
    shared = [{"Value": 1, "Name": "Intact"}, {"Value": 1, "Name": "Damaged"}]
    with pytest.warns(DuplicateClassValueWarning, match="'Intact' and 'Damaged' share the Value 1"):
        parse_emd({"Classes": shared}, "roofs.emd")
    out = tmp_path / "roofs.dlpk"
    code, err = geoclassify(capsys, "package", model, "--out", out, "--classes", "A,A")
    assert code == 1 and "--classes: Classes[0] and Classes[1] are both named 'A'" in err and not out.exists()
    code, err = geoclassify(capsys, "package", model, "--out", out, "--classes", "A,B", "--class-values", "3,3")
    assert code == 0 and "warning:" in err and "'A' and 'B' share the Value 3" in err


def option_help(text: str) -> dict[str, str]:
    """Each option's help text from ``--help`` output (an entry starts on a line indented by two), whitespace joined
    and with click's hyphenation at line ends undone."""
    entries: list[list[str]] = []
    for line in text[text.index("Options:") :].splitlines()[1:]:
        if line.startswith("  -"):
            entries.append([])
        entries[-1].append(line.strip())
    return {e[0].split()[0]: re.sub(r"- (?=[a-z])", "-", " ".join(" ".join(e).split())) for e in entries}


def test_package_help_shows_every_default(capsys):
    code = cli.main(["package", "--help"])
    helps = option_help(capsys.readouterr().out)
    assert code == 0
    without = {"--out", "--emd", "--classes", "--classes-file", "--mean", "--std", "--overwrite", "-h,"}
    for option, text in helps.items():
        if option not in without:
            assert "[default: " in text, text
    assert "[default: fixed]" in helps["--crop"] and "centre crop" in helps["--crop"]
    assert "[default: no-blacken]" in helps["--blacken"]


@pytest.mark.parametrize(
    ("options", "bands", "mean", "std", "scale"),
    [
        (["--mean", "127", "--std", "128"], (0, 1, 2), [127.0] * 3, [128.0] * 3, 1.0),
        (
            ["--mean", "0.485,0.456,0.406", "--std", "0.229,0.224,0.225", "--scale", "255"],
            (0, 1, 2),
            [0.485, 0.456, 0.406],
            [0.229, 0.224, 0.225],
            255.0,
        ),
        (["--mean", "10,20,30", "--std", "2,4,8", "--bands", "4,0,2"], (4, 0, 2), [10, 20, 30], [2, 4, 8], 1.0),
    ],
)
def test_mean_and_std_become_normalization_stats_that_give_the_torch_formula(
    capsys, tmp_path, model, options, bands, mean, std, scale
):
    out = tmp_path / "torch.dlpk"
    code, err = geoclassify(capsys, "package", model, "--out", out, "--classes", "A,B", *options)
    assert code == 0, err
    with zipfile.ZipFile(out) as archive:
        definition = parse_emd(json.loads(archive.read("torch.emd")), "torch.emd")
    assert definition.extract_bands == bands
    chips = np.random.default_rng(5).uniform(0, 255, (4, 3, 16, 16)).astype(np.float32)
    got = Preprocessor.for_model(definition, bands)(chips)
    expected = (chips / scale - np.array(mean).reshape(1, 3, 1, 1)) / np.array(std).reshape(1, 3, 1, 1)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_class_names_from_a_file_keep_their_commas(capsys, tmp_path):
    names = ["tench, Tinca tinca", "goldfish, Carassius auratus", "great white shark, white shark"]
    (tmp_path / "names.txt").write_text("\n".join(names) + "\n")
    model = mean_linear_model(tmp_path / "fish.onnx", np.eye(3), np.zeros(3), 3, 16, 16)
    out = tmp_path / "fish.dlpk"
    code, err = geoclassify(capsys, "package", model, "--out", out, "--classes-file", tmp_path / "names.txt")
    assert code == 0, err
    with zipfile.ZipFile(out) as archive:
        emd = json.loads(archive.read("fish.emd"))
    assert [c["Name"] for c in emd["Classes"]] == names and [c["Value"] for c in emd["Classes"]] == [1, 2, 3]


def test_torchscript_packaging_names_every_missing_option_at_once(capsys, tmp_path):
    torch = pytest.importorskip("torch")
    torch.jit.save(torch.jit.trace(torch.nn.Conv2d(3, 2, 16), torch.zeros(1, 3, 16, 16)), str(tmp_path / "net.pt"))
    code, err = geoclassify(capsys, "package", tmp_path / "net.pt", "--out", tmp_path / "net.dlpk")
    assert code == 1
    one_clear_line(err)
    assert "--classes" in err and "--chip-size" in err and "--bands" in err and "TorchScript" in err
    assert textwrap.dedent(err).count("\n") == 1
