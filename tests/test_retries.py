"""--retries: a batch that fails once is run again; one that always fails stops the run naming its features."""

from __future__ import annotations

import geopandas as gpd
import pytest

from tests.support import MARKED, emd_for, leftovers, marked_scene, run_classify, write_dlpk
from tests.support.onnx_models import failing_onnx

X, Y = 500000.0, 4650000.0


@pytest.fixture(scope="module")
def marked(tmp_path_factory):
    folder = tmp_path_factory.mktemp("retries")
    raster, houses = marked_scene(folder)
    return folder, raster, houses


@pytest.mark.parametrize("workers", [None, "2"])
def test_a_batch_that_always_fails_stops_the_run_naming_its_features(marked, tmp_path, workers):
    folder, raster, houses = marked
    package = write_dlpk(tmp_path / "fails.dlpk", emd_for(), failing_onnx(tmp_path / "model.onnx"))
    extra = ["--retries", "2", "--argument", "batch_size=4"] + (["--parallel-factor", workers] if workers else [])
    result = run_classify(raster, package, houses, tmp_path / "out.gpkg", *extra)
    assert result.returncode == 1, result.stderr
    assert "a batch failed 3 times (--retries 2)" in result.stderr
    assert f"feature {MARKED}" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out.gpkg").exists()
    # The batches that worked are saved, so the run can go on once the cause is fixed.
    assert "features classified before the failure are saved" in result.stderr or not leftovers(tmp_path, "out")


def test_a_batch_that_fails_once_is_run_again(marked, tmp_path):
    torch = pytest.importorskip("torch")
    folder, raster, houses = marked

    class FailOnce(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.failures = 0
            self.linear = torch.nn.Linear(3, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if bool((x[:, 0, 0, 0] > 2.0).any()) and self.failures < 1:
                self.failures += 1
                raise RuntimeError("simulated failure on a marked chip")
            return self.linear(x.mean(dim=(2, 3)))

    torch.jit.save(torch.jit.script(FailOnce()), str(tmp_path / "once.pt"))
    package = write_dlpk(
        tmp_path / "once.dlpk", emd_for(model_file="once.pt", Framework="PyTorch"), tmp_path / "once.pt"
    )
    failed = run_classify(raster, package, houses, tmp_path / "no_retry.gpkg", "--argument", "batch_size=4")
    assert failed.returncode == 1 and f"feature {MARKED}" in failed.stderr
    assert "simulated failure on a marked chip" in failed.stderr
    retried = run_classify(
        raster, package, houses, tmp_path / "retried.gpkg", "--retries", "1", "--argument", "batch_size=4"
    )
    assert retried.returncode == 0, retried.stderr
    got = gpd.read_file(tmp_path / "retried.gpkg")
    assert len(got) == 40 and got["ClassLabel"].notna().all()
