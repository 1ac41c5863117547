"""The command line starts without the heavy libraries: ``--help`` and a command's own help import none of them."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("geopandas", "pandas", "pyarrow", "onnxruntime", "onnx", "torch", "dask", "fastapi", "matplotlib")
HEAVY += ("rasterio", "shapely", "pyogrio")  # the geospatial stack, too

# Runs the command line as `python -m geoclassify ARGS` does, then lists which heavy libraries got imported.
PROBE = """
import json, runpy, sys
heavy = set(json.loads(sys.argv[2]))
sys.argv = ["geoclassify", *json.loads(sys.argv[1])]
try:
    runpy.run_module("geoclassify", run_name="__main__", alter_sys=True)
except SystemExit:
    pass
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules} & heavy)))
"""


def _imported(*args: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(list(args)), json.dumps(HEAVY)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("args", [("--help",), ("classify", "--help"), ("evaluate", "--help"), ("--version",)])
def test_help_imports_no_heavy_library(args):
    assert _imported(*args) == []


def test_a_command_that_needs_them_imports_them():
    """The probe sees imports: ``layers`` reads a file through the evaluation (pandas), so it must load it."""
    assert "pandas" in _imported("layers", "/nonexistent/file.gpkg")


def test_the_package_names_load_on_first_use():
    import geoclassify

    assert callable(geoclassify.classify_objects) and geoclassify.RunRequest.__name__ == "RunRequest"
    assert {"classify_objects", "load_model", "run"} <= set(dir(geoclassify))
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        _ = geoclassify.nothing
