"""Rasters of any type and band count, NoData, band names, VRTs, and real imagery from ../shared/data."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from rasterio.windows import Window

from geoclassify.errors import RasterError
from geoclassify.io.rasters import RasterSource

from tests.support import SHARED_DATA, emd_for, flat_package, run_classify, write_dlpk, write_raster
from tests.support.onnx_models import flat_linear_model
from tests.support.reference import imagenet, reference_chips, softmax

X, Y = 500000.0, 4650000.0


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16", "float32", "int32", "float64"])
def test_windows_match_boundless_reads(tmp_path, dtype):
    """Windows read clamped and padded equal GDAL's boundless reads, in the raster's own type when chips keep it
    (small integers, float32: a quarter of the bytes to cut for uint8) and as float32 otherwise."""
    rng = np.random.default_rng(0)
    data = (rng.uniform(0, 200, size=(4, 90, 70))).astype(dtype)
    path = write_raster(tmp_path / "r.tif", data, nodata=0 if dtype != "float32" else -9999.0, photometric="MINISBLACK")
    with RasterSource(path) as source, rasterio.open(path) as src:
        source.select_bands([3, 0])
        for row, col in [(-5, -7), (80, 60), (10, 10), (-100, 0), (85, -3)]:
            pixels, valid = source.read_window(row, col, 16, 16)
            ref = src.read([4, 1], window=Window(col, row, 16, 16), boundless=True, masked=True)
            np.testing.assert_array_equal(pixels, np.ma.filled(ref.astype("float32"), 0))
            np.testing.assert_array_equal(valid, ~np.ma.getmaskarray(ref).any(axis=0))
            assert pixels.dtype == (np.dtype(dtype) if dtype not in ("int32", "float64") else np.float32)


def test_nodata_pixels_are_zero_and_lower_coverage(tmp_path):
    data = np.full((3, 64, 64), 120, dtype=np.uint8)
    data[:, :, :32] = 7  # the left half is NoData
    raster = write_raster(tmp_path / "half.tif", data, nodata=7)
    package, weights, bias = flat_package(tmp_path)
    houses = gpd.GeoDataFrame(geometry=[shapely.box(X + 14, Y - 18, X + 18, Y - 14)], crs="EPSG:32633")
    houses.to_file(tmp_path / "h.gpkg")
    result = run_classify(raster, package, tmp_path / "h.gpkg", tmp_path / "o.gpkg")
    assert result.returncode == 0, result.stderr
    got = gpd.read_file(tmp_path / "o.gpkg")
    assert got["Coverage"].iloc[0] == pytest.approx(0.5)  # centre at column 32: 16 px window, 8 on NoData
    chip = reference_chips(raster, houses.geometry, 16, [0, 1, 2], False)
    assert (chip[0, :, :, :8] == 0).all() and (chip[0, :, :, 8:] == 120).all()
    probs = softmax(imagenet(chip).reshape(1, -1) @ weights.T + bias)
    assert got["Confidence"].iloc[0] == pytest.approx(probs.max(), abs=1e-5)


def test_band_names_in_extract_bands(tmp_path):
    data = np.stack([np.full((32, 32), v, np.uint8) for v in (10, 20, 30, 40)])
    path = write_raster(tmp_path / "named.tif", data)
    with rasterio.open(path, "r+") as dst:
        dst.descriptions = ("blue", "green", "red", "nir")
    with RasterSource(path) as source:
        assert source.select_bands(["NIR", "red", 1]) == (3, 2, 1)
        with pytest.raises(RasterError, match="no band named 'swir'.*'blue', 'green', 'red', 'nir'"):
            source.select_bands(["swir"])


def vrt_xml(source) -> str:
    """A plain GDAL VRT over ``source``, band for band."""
    with rasterio.open(source) as src:
        bands = "".join(
            f'<VRTRasterBand dataType="Byte" band="{i}"><SimpleSource>'
            f'<SourceFilename relativeToVRT="1">{source.name}</SourceFilename><SourceBand>{i}</SourceBand>'
            f"</SimpleSource></VRTRasterBand>"
            for i in range(1, src.count + 1)
        )
        geo = ", ".join(str(v) for v in src.transform.to_gdal())
        return (
            f'<VRTDataset rasterXSize="{src.width}" rasterYSize="{src.height}"><SRS>{src.crs.to_wkt()}</SRS>'
            f"<GeoTransform>{geo}</GeoTransform>{bands}</VRTDataset>"
        )


def test_vrt_and_cog_inputs(tmp_path):
    rng = np.random.default_rng(1)
    base = write_raster(tmp_path / "base.tif", rng.integers(0, 255, (3, 300, 300), dtype=np.uint8))
    cog = tmp_path / "cog.tif"
    with rasterio.open(base) as src:
        profile = {**src.profile, "driver": "COG"}
        profile.pop("blockxsize"), profile.pop("blockysize"), profile.pop("tiled")
        with rasterio.open(cog, "w", **profile) as dst:
            dst.write(src.read())
    vrt = tmp_path / "mosaic.vrt"
    vrt.write_text(vrt_xml(base))
    package, weights, bias = flat_package(tmp_path)
    houses = gpd.GeoDataFrame(geometry=[shapely.box(X + 30, Y - 40, X + 33, Y - 37)], crs="EPSG:32633")
    houses.to_file(tmp_path / "h.gpkg")
    confidences = []
    for image in (base, cog, vrt):
        out = tmp_path / f"{image.stem}.gpkg"
        result = run_classify(image, package, tmp_path / "h.gpkg", out)
        assert result.returncode == 0, result.stderr
        confidences.append(gpd.read_file(out)["Confidence"].iloc[0])
    assert confidences[0] == pytest.approx(confidences[1], abs=1e-6) == pytest.approx(confidences[2], abs=1e-6)


def test_real_spacenet_uint16_buildings(tmp_path):
    """The real 0.5 m panchromatic SpaceNet tile and its 43 building footprints, single band, uint16."""
    raster = SHARED_DATA / "spacenet" / "pan_sample.tif"
    buildings = SHARED_DATA / "spacenet" / "buildings.geojson"
    if not raster.exists():
        pytest.skip("../shared/data is not beside the repository")
    with rasterio.open(raster) as src:
        band = src.read(1)
        assert src.dtypes[0] == "uint16"
    lo, hi = float(band.min()), float(band.max())
    size = 32
    rng = np.random.default_rng(9)
    weights = rng.normal(size=(2, size * size)).astype("float32") / size
    model = flat_linear_model(tmp_path / "pan.onnx", weights, np.zeros(2), 1, size, size)
    stats = {"band_min_values": [lo], "band_max_values": [hi], "scaled_mean_values": [0.3], "scaled_std_values": [0.2]}
    emd = emd_for(
        model_file="pan.onnx",
        ImageWidth=size,
        ImageHeight=size,
        ExtractBands=[0],
        BlackenAroundFeature=1,
        NormalizationStats=stats,
        Classes=[{"Value": 0, "Name": "Roof A"}, {"Value": 1, "Name": "Roof B"}],
    )
    package = write_dlpk(tmp_path / "pan.dlpk", emd, model)
    out = tmp_path / "buildings.gpkg"
    result = run_classify(raster, package, buildings, out)
    assert result.returncode == 0, result.stderr
    got = gpd.read_file(out)
    frame = gpd.read_file(buildings)
    assert len(got) == len(frame) == 43
    with rasterio.open(raster) as src:
        geometries = frame.to_crs(src.crs).geometry
    chips = reference_chips(raster, geometries, size, [0], True)
    normalised = ((chips - lo) / (hi - lo) - 0.3) / 0.2
    probs = softmax(normalised.reshape(len(chips), -1) @ weights.T)
    assert list(got["ClassLabel"]) == list(np.array(["Roof A", "Roof B"])[probs.argmax(axis=1)])
    np.testing.assert_allclose(got["Confidence"], probs.max(axis=1), atol=1e-5)
    assert set(got["ClassLabel"]) == {"Roof A", "Roof B"}
    assert (got["Coverage"] > 0).all()
