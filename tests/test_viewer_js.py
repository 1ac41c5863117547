"""The map viewer's pure ES modules (style expressions, legend counts, parameter forms from ParameterInfo, the job
client, upload kinds) under node's built-in test runner; skipped where node is absent."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

TESTS = sorted((Path(__file__).parent / "js").glob("*.test.js"))


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_viewer_modules_pass_their_node_tests():
    assert TESTS, "no tests/js/*.test.js"
    done = subprocess.run(["node", "--test", *map(str, TESTS)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    lines = [line[2:] for line in done.stdout.splitlines() if line.startswith("# ")]
    summary = dict(line.split(" ", 1) for line in lines if " " in line)
    assert int(summary["pass"]) >= 20 and int(summary["fail"]) == 0, done.stdout[-2000:]
