"""The Resampling Method environment (--resampling): warps equal GDAL's own for each method, nearest (Esri's
default) gives a mosaic whose images were stored in another CRS back as the native scene, and the method reaches
mosaics, items mode and --cell-size."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from onnx import helper
from rasterio.enums import Resampling
from rasterio.transform import from_origin
from rasterio.warp import aligned_target, calculate_default_transform, reproject, transform_bounds
from rasterio.windows import Window

from geoclassify.api import classify_objects, sample_paths
from geoclassify.errors import SettingError
from geoclassify.io.mosaics import GridSource, mosaic_grid
from geoclassify.io.rasters import RasterSource

from tests.support import emd_for, flat_package, run_classify, write_dlpk, write_raster
from tests.support.onnx_models import save_graph
from tests.support.reference import imagenet, reference_chips, softmax

X0, Y0 = 500000.0, 4650000.0
SIZE = 128  # scene pixels (1 m) each way
METHODS = {"nearest": Resampling.nearest, "bilinear": Resampling.bilinear, "cubic": Resampling.cubic}


def split_into_tiles(image, folder, right_crs: str = "EPSG:3857") -> list[str]:
    """The image as a 2 x 2 tile mosaic (top-left first, so the mosaic takes the native grid), the right column
    stored in ``right_crs``: warped by GDAL with nearest at the cell size it picks, which keeps every pixel, with
    NoData 0 in the margin the warp adds (a native 0 reads as NoData there too, which a chip shows as 0 anyway)."""
    paths = []
    with rasterio.open(image) as src:
        height, width = src.height // 2, src.width // 2
        for row in range(2):
            for col in range(2):
                window = Window(col * width, row * height, width, height)
                data, transform, crs = src.read(window=window), src.window_transform(window), src.crs
                if col == 1:
                    bounds = rasterio.windows.bounds(window, src.transform)
                    transform, w, h = calculate_default_transform(crs, right_crs, width, height, *bounds)
                    # Snapped to whole cells of that CRS (gdalwarp -tap), as stored tiles are: their pixel centres
                    # then fall between the native ones, as they would in real data.
                    transform, w, h = aligned_target(transform, w, h, transform.a)
                    warped = np.zeros((src.count, h, w), dtype=data.dtype)
                    reproject(
                        data,
                        warped,
                        src_transform=src.window_transform(window),
                        src_crs=crs,
                        dst_transform=transform,
                        dst_crs=right_crs,
                        resampling=Resampling.nearest,
                        dst_nodata=0,
                    )
                    data, crs = warped, right_crs
                path = write_raster(
                    folder / f"tile_{row}{col}.tif", data, crs=crs, transform=transform, nodata=0 if col else None
                )
                paths.append(str(path))
    return paths


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """A noise scene (so every warp shows) in UTM 33N, its tiles with the right column in Web Mercator, and 60
    houses kept 10 m from the scene's edges (their chips never reach beyond it)."""
    folder = tmp_path_factory.mktemp("resampling")
    rng = np.random.default_rng(5)
    pixels = rng.uniform(0, 255, (3, SIZE, SIZE)).astype("float32")
    native = write_raster(folder / "scene.tif", pixels, transform=from_origin(X0, Y0, 1.0, 1.0))
    tiles = split_into_tiles(native, folder)
    centres = rng.uniform(10, SIZE - 10, size=(60, 2))
    houses = gpd.GeoDataFrame(
        {"id": range(60)},
        geometry=[shapely.box(X0 + x - 3, Y0 - y - 3, X0 + x + 3, Y0 - y + 3) for x, y in centres],
        crs="EPSG:32633",
    )
    houses.to_file(folder / "houses.gpkg")
    package, weights, bias = flat_package(folder, size=16, seed=3)
    return folder, native, tiles, pixels, package


def gdal_warp(path, grid, method: Resampling) -> np.ndarray:
    """rasterio.warp.reproject of the whole image onto ``grid`` (NaN outside), with the kernel scale fixed to the
    image's overall scale as geoclassify fixes it."""
    with rasterio.open(path) as src:
        bounds = transform_bounds(src.crs, grid.crs, *src.bounds, densify_pts=21)
        out = np.full((src.count, grid.height, grid.width), np.nan, dtype="float32")
        reproject(
            src.read(),
            out,
            src_transform=src.transform,
            src_crs=src.crs,
            src_nodata=src.nodata,
            dst_transform=grid.transform,
            dst_crs=grid.crs,
            resampling=method,
            dst_nodata=np.nan,
            XSCALE=repr((bounds[2] - bounds[0]) / grid.transform.a / src.width),
            YSCALE=repr((bounds[3] - bounds[1]) / -grid.transform.e / src.height),
        )
    return out


@pytest.mark.parametrize("name", METHODS)
def test_the_mosaic_equals_gdals_own_warp(scene, name):
    folder, native, tiles, pixels, _ = scene
    method = METHODS[name]
    sources = [RasterSource(path) for path in tiles]
    grid = mosaic_grid(sources)
    with GridSource(sources, grid, resampling=method) as mosaic:
        mosaic.select_bands(None)
        got = np.zeros((3, grid.height, grid.width), dtype="float32")
        valid = np.zeros((grid.height, grid.width), dtype=bool)
        for row in range(0, grid.height, 40):  # window by window, as chips ask, across the seams
            for col in range(0, grid.width, 40):
                part, ok = mosaic.read_window(row, col, min(40, grid.height - row), min(40, grid.width - col))
                got[:, row : row + part.shape[1], col : col + part.shape[2]] = part
                valid[row : row + part.shape[1], col : col + part.shape[2]] = ok
    expected = np.full_like(got, np.nan)
    for path in tiles:  # the first valid pixel wins
        expected = np.where(np.isnan(expected), gdal_warp(path, grid, method), expected)
    np.testing.assert_array_equal(valid, ~np.isnan(expected).any(axis=0))  # the margins around warped tiles too
    # Interpolations differ by up to 0.07 (of 255): GDAL's approximate coordinate transformer (0.125 pixels, as in
    # gdalwarp) is set up differently for a WarpedVRT and for reproject.
    tolerance = 0 if method == Resampling.nearest else 0.25
    np.testing.assert_allclose(got[:, valid], expected[:, valid], rtol=0, atol=tolerance)
    # The scene's own pixels: the grid is the first tile's, so they sit at an offset of whole pixels.
    col0, row0 = (round(v) for v in ~grid.transform @ (X0, Y0))
    right = (slice(None), slice(row0, row0 + SIZE), slice(col0 + SIZE // 2, col0 + SIZE))
    equal = (got[right] == pixels[:, :, SIZE // 2 :]).all(axis=0)
    same = equal.mean()
    if method == Resampling.nearest:
        assert same == 1.0, "nearest warps the Web Mercator tiles back to the very pixels they were made of"
    else:
        assert same < 0.01, f"{name} interpolates new values"


def texture_package(folder, noise: tuple[float, float], size: int = 16):
    """A .dlpk telling "Smooth" from "Rough" roofs by the energy of horizontal pixel differences, with the threshold
    halfway (in log) between uniform noise of the two amplitudes: what it sees is exact pixel values, which an
    interpolating warp blends."""
    kernel = np.zeros((1, 3, 1, 2), dtype=np.float32)
    kernel[0, :, 0] = [1.0, -1.0]
    nodes = [
        helper.make_node("Conv", ["input", "K"], ["difference"]),
        helper.make_node("Mul", ["difference", "difference"], ["square"]),
        helper.make_node("GlobalAveragePool", ["square"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["energy"], axis=1),
        helper.make_node("Gemm", ["energy", "W", "B"], ["logits"], transB=1),
    ]
    # The difference of two ImageNet-normalised bands' noise, summed over bands: variance 2 * A^2 / 3 / (255 std)^2.
    per_amplitude = 2 / 3 * np.sum(1 / (255 * np.array([0.229, 0.224, 0.225])) ** 2)
    threshold = per_amplitude * noise[0] * noise[1]
    model = save_graph(
        folder / "texture.onnx",
        nodes,
        "texture",
        ["batch", 3, size, size],
        ["batch", 2],
        np.array([[0.0], [1.0]]),
        np.array([threshold, 0.0]),
        {"K": kernel},
    )
    classes = [
        {"Value": 1, "Name": "Smooth", "Color": [0, 200, 0]},
        {"Value": 2, "Name": "Rough", "Color": [200, 0, 0]},
    ]
    emd = emd_for(model_file="texture.onnx", ImageWidth=size, ImageHeight=size, Classes=classes)
    return write_dlpk(folder / "texture.dlpk", emd, model)


def test_nearest_keeps_a_mixed_crs_mosaics_labels_and_bilinear_does_not(tmp_path):
    """Roofs of 16 x 16 m, each smooth or rough (uniform noise of amplitude 30 or 60 around grey), tiled with the
    right column in Web Mercator: nearest gives the native scene's labels, bilinear and cubic blur the texture."""
    cells, noise = 16, (30.0, 60.0)
    rng = np.random.default_rng(7)
    rough = rng.random((cells, cells)) < 0.5
    amplitude = np.kron(np.where(rough, noise[1], noise[0]), np.ones((16, 16)))
    pixels = (128 + amplitude * rng.uniform(-1, 1, (3, cells * 16, cells * 16))).astype("float32")
    native = write_raster(tmp_path / "roofs.tif", pixels, transform=from_origin(X0, Y0, 1.0, 1.0))
    tiles = split_into_tiles(native, tmp_path)
    rows, cols = np.divmod(np.arange(cells * cells), cells)
    roofs = gpd.GeoDataFrame(
        {"Truth": np.where(rough.ravel(), "Rough", "Smooth")},
        geometry=shapely.box(X0 + 16 * cols, Y0 - 16 * rows - 16, X0 + 16 * cols + 16, Y0 - 16 * rows),
        crs="EPSG:32633",
    )
    roofs.to_file(tmp_path / "roofs.gpkg")
    package = texture_package(tmp_path, noise)
    truth = roofs["Truth"].to_numpy()
    right = cols >= cells // 2
    native_labels = classify_objects(native, package, tmp_path / "roofs.gpkg")["ClassLabel"].to_numpy()
    accuracy = {"native": (native_labels[right] == truth[right]).mean()}
    for name in METHODS:
        labels = classify_objects(tiles, package, tmp_path / "roofs.gpkg", resampling=name)["ClassLabel"].to_numpy()
        accuracy[name] = (labels[right] == truth[right]).mean()
        if name == "nearest":
            assert (labels == native_labels).all()
        assert (labels[~right] == native_labels[~right]).all(), "the native tiles are read as they are"
    assert accuracy["native"] == accuracy["nearest"] == 1.0, accuracy
    assert accuracy["bilinear"] < 0.7 and accuracy["cubic"] < 0.75, accuracy  # 0.57 and 0.61 (half is chance)
    # The default is nearest, and Esri's spellings are accepted.
    default = classify_objects(tiles, package, tmp_path / "roofs.gpkg")["ClassLabel"]
    esri = classify_objects(tiles, package, tmp_path / "roofs.gpkg", resampling="BILINEAR")["ClassLabel"]
    assert (default.to_numpy() == native_labels).all()
    assert (esri.to_numpy()[right] == truth[right]).mean() == accuracy["bilinear"]


def test_the_samples_accuracy_on_a_mixed_crs_mosaic(tmp_path):
    """The bundled roof-damage model and its Truth: nearest scores as on the native orthophoto."""
    paths = sample_paths()
    tiles = split_into_tiles(paths["image"], tmp_path)
    truth = gpd.read_file(paths["features"])["Truth"].to_numpy()
    native = classify_objects(paths["image"], paths["model"], paths["features"])["ClassLabel"].to_numpy()
    accuracy = {"native": (native == truth).mean()}
    for name in METHODS:
        labels = classify_objects(tiles, paths["model"], paths["features"], resampling=name)["ClassLabel"]
        accuracy[name] = (labels.to_numpy() == truth).mean()
        if name == "nearest":
            assert (labels.to_numpy() == native).all()
    assert accuracy["native"] > 0.95
    assert accuracy["nearest"] == accuracy["native"] >= accuracy["bilinear"], accuracy
    assert accuracy["cubic"] <= accuracy["nearest"], accuracy


@pytest.mark.parametrize("name", METHODS)
def test_cell_size_and_items_mode_warp_with_the_method(scene, tmp_path, name):
    folder, native, _, pixels, package = scene
    houses = gpd.read_file(folder / "houses.gpkg")
    # The reference: GDAL's warp of the scene onto 2 m cells, written out, and chips cut from it independently.
    grid = rasterio.transform.from_origin(X0, Y0, 2.0, 2.0)
    with rasterio.open(native) as src:
        coarse = np.zeros((3, SIZE // 2, SIZE // 2), dtype="float32")
        reproject(
            src.read(),
            coarse,
            src_transform=src.transform,
            src_crs=src.crs,
            dst_transform=grid,
            dst_crs=src.crs,
            resampling=METHODS[name],
            XSCALE="0.5",
            YSCALE="0.5",
        )
    warped = write_raster(tmp_path / "coarse.tif", coarse, transform=grid)
    _, weights, bias = flat_package(tmp_path, size=16, seed=3)
    chips = imagenet(reference_chips(warped, houses.geometry, 16, [0, 1, 2], False))
    expected = softmax(chips.reshape(len(chips), -1) @ weights.T + bias).max(axis=1)
    for mode in ("mosaic", "items"):
        got = classify_objects(
            native, package, folder / "houses.gpkg", cell_size=2.0, resampling=name.upper(), processing_mode=mode
        )
        np.testing.assert_allclose(got["Confidence"], expected, atol=1e-5, err_msg=mode)


def test_whole_images_at_a_cell_size_follow_the_method(scene):
    """Without features the warp to --cell-size follows the method too (the resize to the chip stays bilinear)."""
    _, native, _, _, package = scene
    confidence = {
        name: classify_objects(native, package, cell_size=3.0, resampling=name)["Confidence"].iloc[0]
        for name in ("nearest", "bilinear")
    }
    assert confidence["nearest"] != pytest.approx(confidence["bilinear"], abs=1e-6)
    assert classify_objects(native, package)["Confidence"].iloc[0] == pytest.approx(
        classify_objects(native, package, cell_size=1.0, resampling="cubic")["Confidence"].iloc[0], abs=1e-6
    ), "at the native cell size nothing is resampled"


def test_the_option_on_the_command_line(scene, tmp_path):
    folder, _, tiles, _, package = scene
    out = tmp_path / "out.gpkg"
    extra = [arg for tile in tiles[1:] for arg in ("--image", tile)]
    result = run_classify(tiles[0], package, folder / "houses.gpkg", out, *extra, "--resampling", "Cubic")
    assert result.returncode == 0, result.stderr
    cubic = classify_objects(tiles, package, folder / "houses.gpkg", resampling="cubic")
    np.testing.assert_allclose(gpd.read_file(out)["Confidence"], cubic["Confidence"], atol=1e-6)
    bad = run_classify(tiles[0], package, folder / "houses.gpkg", tmp_path / "bad.gpkg", "--resampling", "lanczos")
    assert bad.returncode == 1
    assert "--resampling 'lanczos' is not one of: nearest, bilinear, cubic" in bad.stderr
    with pytest.raises(SettingError, match="not one of: nearest, bilinear, cubic"):
        classify_objects(tiles, package, folder / "houses.gpkg", resampling="majority")
