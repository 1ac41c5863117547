"""Faults around resuming (issue 10): an input replaced at the same path, a setting changed, a full disk, a damaged
or misplaced journal, two runs started at one instant, a run that failed before it saved anything. Each case was
seen failing before; each test makes its own interrupted run and its own changed input."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest

from geoclassify import classify_objects
from geoclassify.errors import GeoclassifyError, OutputError
from geoclassify.io.journal import Journal, journal_folder

from tests.support import flat_package, random_houses, run_classify, write_raster

X, Y = 500000.0, 4650000.0


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """400 houses on a 300 x 300 raster, and what the model says about each (the uninterrupted answer)."""
    folder = tmp_path_factory.mktemp("resume")
    raster, _ = random_houses(folder, seed=12, pixels=300, count=400, low=2, high=140)
    package, _, _ = flat_package(folder)
    reference = classify_objects(str(raster), str(package), str(folder / "houses.gpkg"))
    return folder, reference


@pytest.fixture
def inputs(scene, tmp_path):
    """This test's own copies of the raster, layer and model (tests replace them), and its output path."""
    folder, _ = scene
    for name in ("scene.tif", "houses.gpkg", "flat.dlpk"):
        shutil.copy2(folder / name, tmp_path / name)
    return tmp_path / "scene.tif", tmp_path / "houses.gpkg", tmp_path / "flat.dlpk", tmp_path / "out.gpkg"


def _output_fails(*args, **kwargs):
    raise OutputError("cannot write GPKG output: the test says no")


def interrupt(raster, houses, package, out, keep: int = 3, features=None, **options) -> list[Path]:
    """Leave what a run killed midway leaves: a journal holding its first ``keep`` parts and no output. (The run
    saves every part and fails writing the output; parts are numbered in order and each is whole, so dropping the
    last ones is what a SIGKILL after ``keep`` of them leaves.)"""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GEOCLASSIFY_JOURNAL_FEATURES", "40")
        patch.setattr("geoclassify.runs.write_batches", _output_fails)
        with pytest.raises(OutputError, match="the test says no"):
            classify_objects(str(raster), str(package), features if features is not None else str(houses), str(out),
                             **options)  # fmt: skip
    parts = sorted(journal_folder(out).glob("part-*.npz"))
    assert len(parts) > keep
    for part in parts[keep:]:
        part.unlink()
    return parts[:keep]


def refused(result: subprocess.CompletedProcess, out: Path, parts: list[Path], *words: str) -> None:
    """The resume was refused in one line naming what changed, and the saved results are still there."""
    assert result.returncode == 1, result.stderr
    line = result.stderr.strip()
    assert line.startswith("geoclassify: error: cannot resume") and "\n" not in line, line
    assert "--overwrite" in line and "Traceback" not in line
    for word in words:
        assert word in line, line
    assert not out.exists() and sorted(journal_folder(out).glob("part-*.npz")) == parts


def same_as(out: Path, reference) -> None:
    got = gpd.read_file(out)
    assert list(got["id"]) == list(reference["id"])
    assert list(got["ClassLabel"].fillna("")) == list(reference["ClassLabel"].fillna(""))
    np.testing.assert_allclose(got["Confidence"], reference["Confidence"], atol=1e-5)


def test_a_model_replaced_at_the_same_path_is_not_mixed_in(scene, inputs, tmp_path):
    """Seen: another model copied over the .dlpk of a killed run, then --resume: 31% of the features had the old
    model's answer and 69% the new one's, exit 0, no warning."""
    raster, houses, package, out = inputs
    parts = interrupt(raster, houses, package, out)
    (tmp_path / "other").mkdir()
    other, _, _ = flat_package(tmp_path / "other", seed=1)
    shutil.copyfile(other, package)
    result = run_classify(raster, package, houses, out, "-q", "--resume")
    refused(result, out, parts, "the model package", "flat.dlpk", "changed since the interrupted run")
    summary = classify_objects(str(raster), str(package), str(houses), str(out), overwrite=True)
    assert summary.read == 400 and not journal_folder(out).exists()
    same_as(out, classify_objects(str(raster), str(other), str(houses)))


def test_a_layer_replaced_by_a_shuffled_copy_of_equal_length_is_refused(scene, inputs, tmp_path):
    """Seen: the layer replaced by a shuffled copy with as many features: 7,563 of 40,000 features got another
    feature's confidence. The copy here even keeps the original's modification time."""
    raster, houses, package, out = inputs
    parts = interrupt(raster, houses, package, out)
    before = os.stat(houses)
    shuffled = tmp_path / "shuffled.gpkg"
    gpd.read_file(houses).sample(frac=1, random_state=3).to_file(shuffled)
    shutil.copyfile(shuffled, houses)
    os.utime(houses, ns=(before.st_atime_ns, before.st_mtime_ns))
    result = run_classify(raster, package, houses, out, "-q", "--resume")
    refused(result, out, parts, "the feature layer", "houses.gpkg", "changed since the interrupted run")


def test_an_image_replaced_at_the_same_path_is_refused(scene, inputs):
    raster, houses, package, out = inputs
    parts = interrupt(raster, houses, package, out)
    rng = np.random.default_rng(99)
    write_raster(raster, rng.integers(0, 255, (3, 300, 300), dtype=np.uint8))
    result = run_classify(raster, package, houses, out, "-q", "--resume")
    refused(result, out, parts, "image", "scene.tif", "changed since the interrupted run")


def test_a_changed_model_argument_is_refused_and_named(scene, inputs):
    raster, houses, package, out = inputs
    parts = interrupt(raster, houses, package, out)
    result = run_classify(raster, package, houses, out, "-q", "--resume", "--argument", "test_time_augmentation=true")
    refused(result, out, parts, "test_time_augmentation")


def test_an_unchanged_run_resumes_with_another_batch_size(scene, inputs, tmp_path):
    """The identity check must not refuse what did not change: reading the layer and the image, copying the model
    back with its time, and a batch size (which does not change results) are all fine."""
    _, reference = scene
    raster, houses, package, out = inputs
    interrupt(raster, houses, package, out)
    shutil.copy2(package, tmp_path / "aside.dlpk")
    shutil.copy2(tmp_path / "aside.dlpk", package)
    result = run_classify(raster, package, houses, out, "-q", "--resume", "--argument", "batch_size=5")
    assert result.returncode == 0, result.stderr
    same_as(out, reference)
    assert not journal_folder(out).exists()


def test_a_geodataframe_changed_between_runs_is_refused(scene, inputs):
    """A GeoDataFrame given to the API is identified by its geometries (in row order) and CRS."""
    _, reference = scene
    raster, houses, package, out = inputs
    frame = gpd.read_file(houses)
    interrupt(raster, houses, package, out, features=frame)
    shuffled = frame.sample(frac=1, random_state=4).reset_index(drop=True)
    with pytest.raises(OutputError, match="cannot resume .*the features given as a GeoDataFrame changed"):
        classify_objects(str(raster), str(package), shuffled, str(out), resume=True)
    summary = classify_objects(str(raster), str(package), frame.copy(), str(out), resume=True)
    assert summary.read == 400
    same_as(out, reference)


def test_a_full_disk_while_results_are_saved(scene, inputs, monkeypatch):
    """ENOSPC while a part is written: one error saying the disk is full, naming the journal folder; the parts
    saved before stay valid and the resumed run (once there is space) gives the uninterrupted answer."""
    _, reference = scene
    raster, houses, package, out = inputs
    real_savez = np.savez
    calls = []

    def savez(file, *args, **kwargs):
        calls.append(1)
        if len(calls) > 3:
            file.write(b"half a part")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_savez(file, *args, **kwargs)

    monkeypatch.setenv("GEOCLASSIFY_JOURNAL_FEATURES", "40")
    monkeypatch.setattr(np, "savez", savez)
    with pytest.raises(GeoclassifyError) as failure:
        classify_objects(str(raster), str(package), str(houses), str(out))
    message = str(failure.value)
    folder = journal_folder(out)
    assert "disk is full" in message and str(folder) in message and "resume=True" in message, message
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith("part-")) == [
        f"part-{i:06d}.npz" for i in range(3)
    ]
    monkeypatch.setattr(np, "savez", real_savez)
    classify_objects(str(raster), str(package), str(houses), str(out), resume=True)
    same_as(out, reference)


def test_a_file_where_the_journal_goes(scene, inputs):
    raster, houses, package, out = inputs
    journal_folder(out).write_text("not a folder")
    result = run_classify(raster, package, houses, out, "-q")
    assert result.returncode == 1, result.stderr
    line = result.stderr.strip()
    assert str(journal_folder(out)) in line and "--overwrite" in line and "\n" not in line, line
    assert "internal error" not in line and journal_folder(out).read_text() == "not a folder"
    classify_objects(str(raster), str(package), str(houses), str(out), overwrite=True)
    assert len(gpd.read_file(out)) == 400 and not journal_folder(out).exists()


@pytest.mark.parametrize("damage", ["run record", "part"])
def test_a_damaged_journal_names_its_file(scene, inputs, damage):
    _, reference = scene
    raster, houses, package, out = inputs
    parts = interrupt(raster, houses, package, out)
    broken = journal_folder(out) / "run.json" if damage == "run record" else parts[1]
    broken.write_bytes(broken.read_bytes()[: len(broken.read_bytes()) // 2])
    result = run_classify(raster, package, houses, out, "-q", "--resume")
    assert result.returncode == 1, result.stderr
    line = result.stderr.strip()
    assert "damaged" in line and str(broken) in line and "--overwrite" in line and "\n" not in line, line
    assert "internal error" not in line
    classify_objects(str(raster), str(package), str(houses), str(out), overwrite=True)
    same_as(out, reference)


def test_a_failure_before_any_result_is_saved_leaves_no_journal(scene, inputs, monkeypatch):
    """Seen: after such a run the next correct one was refused with "a run ... was interrupted; continue it with
    --resume", though nothing was saved."""
    raster, houses, package, out = inputs

    def broken(*args, **kwargs):
        raise RuntimeError("a library failed")

    monkeypatch.setattr("geoclassify.modes.features.classify_mosaic", broken)
    with pytest.raises(RuntimeError, match="a library failed"):
        classify_objects(str(raster), str(package), str(houses), str(out))
    assert not journal_folder(out).exists()


def test_a_journal_with_nothing_saved_does_not_block_the_next_run(scene, inputs):
    """What a run killed before its first part leaves (its record, no results) is nothing to resume."""
    _, reference = scene
    raster, houses, package, out = inputs
    Journal(out, {"mode": "mosaic"}, resume=False, overwrite=False).release()
    assert journal_folder(out).is_dir()
    result = run_classify(raster, package, houses, out, "-q")
    assert result.returncode == 0, result.stderr
    same_as(out, reference)


def test_a_failure_note_keeps_the_error_class_and_its_attributes(scene, inputs, monkeypatch):
    raster, houses, package, out = inputs

    class LockedOutput(OutputError):
        def __init__(self, path: str) -> None:
            super().__init__(f"{path} is locked by another program")
            self.path = path

    def locked(*args, **kwargs):
        raise LockedOutput("out.gpkg")

    monkeypatch.setattr("geoclassify.runs.write_batches", locked)
    with pytest.raises(LockedOutput) as failure:
        classify_objects(str(raster), str(package), str(houses), str(out))
    assert failure.value.path == "out.gpkg"
    assert str(failure.value).startswith("out.gpkg is locked by another program. The 400 features classified")
    assert "resume=True" in str(failure.value)


def test_journal_files_are_durable_before_they_are_named(scene, inputs, monkeypatch):
    """A power cut must not leave a journal file named but empty: each is written under a temporary name and
    fsynced before it is renamed, and the folder holding the new name is fsynced after."""
    raster, houses, package, out = inputs
    events: list[tuple[str, ...]] = []
    real_fsync, real_replace, real_rename = os.fsync, os.replace, os.rename

    def fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src, dst, *args, **kwargs) -> None:
        real_replace(src, dst, *args, **kwargs)
        events.append(("rename", os.path.abspath(src), os.path.abspath(dst)))

    def rename(src, dst, *args, **kwargs) -> None:
        real_rename(src, dst, *args, **kwargs)
        events.append(("rename", os.path.abspath(src), os.path.abspath(dst)))

    monkeypatch.setenv("GEOCLASSIFY_JOURNAL_FEATURES", "100")
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "rename", rename)
    monkeypatch.setattr("geoclassify.runs.write_batches", _output_fails)
    with pytest.raises(OutputError):
        classify_objects(str(raster), str(package), str(houses), str(out))
    folder = str(journal_folder(out))
    renames = [(i, e) for i, e in enumerate(events) if e[0] == "rename" and e[2].startswith(folder)]
    named = {os.path.basename(e[2]) for _, e in renames}
    assert "run.json" in named or folder in {e[2] for _, e in renames}
    assert any(name.startswith("part-") for name in named)
    for i, (_, src, dst) in renames:
        if os.path.isfile(dst):
            assert ("fsync", src) in events[:i], f"{dst} was named before its content was synced"
        assert ("fsync", os.path.dirname(dst)) in events[i:], f"the folder of {dst} was not synced after"
    assert os.path.isfile(os.path.join(folder, "run.json"))
    run_json = [e for e in events if e[0] == "fsync" and os.path.basename(e[1]).startswith("run.json")]
    assert run_json, "run.json was never synced"


RACER = r"""
import sys, time
from pathlib import Path
from geoclassify.errors import GeoclassifyError
from geoclassify.io.journal import Journal

folder, me, other, rounds = Path(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
(folder / f"ready-{me}").touch()
for i in range(rounds):
    while not (folder / f"go-{i}").exists():
        pass
    try:
        journal = Journal(folder / f"out-{i}.gpkg", {"round": i}, resume=False, overwrite=i % 2 == 1)
    except GeoclassifyError as exc:
        journal, result = None, f"refused: {exc}"
    except Exception as exc:
        journal, result = None, f"crashed: {type(exc).__name__}: {exc}"
    else:
        result = "won"
    (folder / f"{me}-{i}.partial").write_text(result)
    (folder / f"{me}-{i}.partial").rename(folder / f"{me}-{i}")
    if journal is not None:  # hold the journal until the other one has tried
        deadline = time.monotonic() + 10
        while not (folder / f"{other}-{i}").exists() and time.monotonic() < deadline:
            time.sleep(0.001)
        journal.finish()
"""


def test_two_runs_started_at_the_same_instant_on_one_output(tmp_path):
    """Both processes wait on a barrier file, then create the journal of the same output at once: one wins, the
    other is told another run is writing, every time (seen: a FileExistsError traceback, or one deleting the
    other's journal)."""
    rounds = 20
    racers = [
        subprocess.Popen([sys.executable, "-c", RACER, str(tmp_path), me, other, str(rounds)], stderr=subprocess.PIPE)
        for me, other in (("a", "b"), ("b", "a"))
    ]
    deadline = time.monotonic() + 60
    while not all((tmp_path / f"ready-{me}").exists() for me in "ab") and time.monotonic() < deadline:
        time.sleep(0.01)
    outcomes = []
    for i in range(rounds):
        (tmp_path / f"go-{i}").touch()
        while not all((tmp_path / f"{me}-{i}").exists() for me in "ab") and time.monotonic() < deadline:
            time.sleep(0.001)
        outcomes.append(sorted((tmp_path / f"{me}-{i}").read_text() for me in "ab"))
    for racer in racers:
        assert racer.wait(timeout=30) == 0, racer.stderr.read()
    for i, (first, second) in enumerate(outcomes):
        assert second == "won", (i, first, second)
        assert first.startswith("refused: another geoclassify run is writing"), (i, first)
        assert not journal_folder(tmp_path / f"out-{i}.gpkg").exists()


def test_a_journal_made_after_the_look_is_not_taken_over(tmp_path, monkeypatch):
    """The race made deterministic: another run puts its journal in place just after this one looked and found
    none, before this one's is in place."""
    out = tmp_path / "out.gpkg"
    folder = journal_folder(out)
    real_rename = os.rename
    others: list[Journal] = []
    looked = []

    def rename(src, dst, *args, **kwargs):
        if os.path.abspath(dst) == str(folder) and not looked:
            looked.append(src)  # the other run's own rename goes through unhindered
            others.append(Journal(out, {"run": "first"}, resume=False, overwrite=True))
        return real_rename(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(OutputError, match="another geoclassify run is writing"):
        Journal(out, {"run": "second"}, resume=False, overwrite=True)
    assert others, "this run did not put its journal in place by renaming it"
    assert '"first"' in (folder / "run.json").read_text()
    assert [p.name for p in tmp_path.iterdir()] == [folder.name]  # the loser's unfinished journal is gone
    others[0].finish()
