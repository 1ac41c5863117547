"""Reading model packages as Esri's tools do: layouts, path forms, keys and defaults, the extraction cache."""

from __future__ import annotations

import json
import os
import zipfile

import numpy as np
import pytest

from geoclassify.errors import ModelDefinitionError, ModelPackageError
from geoclassify.model.emd import parse_emd
from geoclassify.model.packages import open_package
from geoclassify.model.runtime import load_model

from tests.support import emd_for, write_dlpk
from tests.support.onnx_models import mean_linear_model


@pytest.fixture
def onnx_file(tmp_path):
    return mean_linear_model(tmp_path / "model.onnx", np.eye(2, 3), np.zeros(2), 3, 16, 16)


def test_defaults_follow_esri(tmp_path):
    emd = parse_emd({"Classes": [{"ClassValue": 5, "ClassName": "Tree"}, {"ClassValue": 9, "ClassName": "Shrub"}]})
    assert [(c.value, c.name) for c in emd.classes] == [(5, "Tree"), (9, "Shrub")]
    assert emd.crop_size_fixed is True and emd.blacken_around_feature is False
    assert emd.image_space_used == "MAP_SPACE" and emd.batch_size is None and emd.extract_bands is None
    assert emd.normalization is None and emd.model_output is None and emd.test_time_augmentation is False


def test_every_key_is_read(tmp_path):
    emd = parse_emd(
        {
            "Framework": "onnx",
            "ModelConfiguration": {"Name": "FeatureClassifier"},
            "ModelFile": "m.onnx",
            "ModelType": "ObjectClassification",
            "ImageWidth": "64",
            "ImageHeight": 48,
            "ExtractBands": [2, "1", "nir"],
            "CropSizeFixed": "0",
            "BlackenAroundFeature": True,
            "ImageSpaceUsed": "pixel_space",
            "BatchSize": 8,
            "DataRange": [0, 4095],
            "ModelName": "X",
            "ModelOutput": "Probabilities",
            "test_time_augmentation": "True",
            "MinCellSize": {"x": 0.3, "y": 0.3, "spatialReference": {"wkid": 32633}},
            "MaxCellSize": 0.6,
            "NormalizationStats": {
                "band_min_values": [0, 0, 0],
                "band_max_values": [10, 20, 30],
                "scaled_mean_values": [0.5, 0.5, 0.5],
                "scaled_std_values": [0.1, 0.2, 0.3],
            },
            "Classes": [{"Value": 1, "Name": "A", "Color": [1, 2, 3]}],
        }
    )
    assert emd.model_configuration == "FeatureClassifier"
    assert (emd.image_width, emd.image_height) == (64, 48)
    assert emd.extract_bands == (2, 1, "nir")
    assert emd.crop_size_fixed is False and emd.blacken_around_feature is True
    assert emd.image_space_used == "PIXEL_SPACE" and emd.batch_size == 8 and emd.data_range == (0.0, 4095.0)
    assert emd.model_output == "probabilities" and emd.test_time_augmentation is True
    assert emd.min_cell_size.x == 0.3 and emd.min_cell_size.wkid == 32633 and emd.max_cell_size.y == 0.6
    assert emd.normalization.band_max == (10.0, 20.0, 30.0)
    assert emd.classes[0].color == (1, 2, 3)


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("ImageWidth", "wide", "'ImageWidth' is 'wide'"),
        ("CropSizeFixed", 3, "'CropSizeFixed' is 3"),
        ("ExtractBands", [], "'ExtractBands' is []"),
        ("ImageSpaceUsed", "GLOBE", "'MAP_SPACE', 'PIXEL_SPACE'"),
        ("Classes", [], "'Classes' is []"),
        ("DataRange", [5, 1], "min < max"),
        ("NormalizationStats", {"band_min_values": [0]}, "band_max_values"),
    ],
)
def test_bad_keys_are_named(key, value, fragment):
    emd = {"Classes": [{"Value": 1, "Name": "A"}], key: value}
    with pytest.raises(ModelDefinitionError, match="model.emd") as err:
        parse_emd(emd, "model.emd")
    assert fragment in str(err.value)


def test_normalisation_stats_must_cover_extract_bands():
    with pytest.raises(ModelDefinitionError, match="band index 3"):
        parse_emd(
            {
                "Classes": [{"Value": 1, "Name": "A"}],
                "ExtractBands": [3],
                "NormalizationStats": {
                    k: [1, 2] for k in ("band_min_values", "band_max_values", "scaled_mean_values", "scaled_std_values")
                },
            }
        )


@pytest.mark.parametrize("folder", ["", "RoofModel"])
def test_dlpk_at_root_or_in_one_folder(tmp_path, onnx_file, folder):
    package = open_package(write_dlpk(tmp_path / "roof.dlpk", emd_for(), onnx_file, folder=folder))
    assert package.resolve().name == "model.onnx"
    assert load_model(package).chip_height == 16


@pytest.mark.parametrize(
    "model_file",
    [
        "model.onnx",
        ".\\model.onnx",
        "C:\\models\\trained\\model.onnx",
        "\\\\server\\share\\model.onnx",
        "/no/such/folder/model.onnx",
    ],
)
def test_model_file_forms(tmp_path, onnx_file, model_file):
    emd_path = tmp_path / "model.emd"
    emd_path.write_text(json.dumps(emd_for(model_file=model_file)))
    assert open_package(emd_path).resolve() == onnx_file.resolve()


def test_model_file_in_a_subfolder_with_backslashes(tmp_path, onnx_file):
    (tmp_path / "weights").mkdir()
    os.replace(onnx_file, tmp_path / "weights" / "model.onnx")
    emd_path = tmp_path / "model.emd"
    emd_path.write_text(json.dumps(emd_for(model_file=".\\weights\\model.onnx")))
    assert open_package(emd_path).resolve() == (tmp_path / "weights" / "model.onnx").resolve()


def test_inline_emd_json(tmp_path, onnx_file, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = load_model(json.dumps(emd_for(model_file=str(onnx_file))))
    assert model.package.source == "inline EMD" and model.definition.class_names == ["Intact", "Damaged"]


def test_extracted_once_per_content(tmp_path, onnx_file):
    first = write_dlpk(tmp_path / "a.dlpk", emd_for(), onnx_file)
    copy = tmp_path / "b.dlpk"
    copy.write_bytes(first.read_bytes())
    root_a, root_b = open_package(first).root, open_package(copy).root
    assert root_a == root_b  # same content, same cache folder
    marker = root_a / "model.onnx"
    stamp = marker.stat().st_mtime_ns
    open_package(first)
    assert marker.stat().st_mtime_ns == stamp  # not extracted again
    other = write_dlpk(tmp_path / "c.dlpk", emd_for(ImageWidth=16, ModelName="other"), onnx_file)
    assert open_package(other).root != root_a


def test_size_cap(tmp_path, onnx_file, monkeypatch):
    monkeypatch.setenv("GEOCLASSIFY_MAX_PACKAGE_BYTES", "1000")
    big = tmp_path / "big.dlpk"
    with zipfile.ZipFile(big, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("m.emd", json.dumps(emd_for()))
        archive.writestr("padding.bin", b"\0" * 100_000)
    with pytest.raises(ModelPackageError, match="GEOCLASSIFY_MAX_PACKAGE_BYTES"):
        open_package(big)


def test_no_emd_and_folder_given(tmp_path):
    empty = tmp_path / "empty.dlpk"
    with zipfile.ZipFile(empty, "w") as archive:
        archive.writestr("readme.txt", "nothing")
    with pytest.raises(ModelPackageError, match="no .emd file"):
        open_package(empty)
    with pytest.raises(ModelPackageError, match="is a folder"):
        open_package(tmp_path)
    bad_json = tmp_path / "bad.emd"
    bad_json.write_text("{not json")
    with pytest.raises(ModelDefinitionError, match="bad.emd: not valid JSON"):
        open_package(bad_json)
