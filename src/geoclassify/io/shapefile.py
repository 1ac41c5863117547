"""A shapefile is a set of files (``.shp``, ``.dbf``, ``.shx``, ``.prj``, ...): claimed, and replaced, as a set.

A set cannot be renamed into place in one step, so the new set is written in full into a staging folder, a marker
listing its files is written there, and only then are the files moved: the old ``.shp`` first (so no reader sees
new attributes with old shapes), then every other part (an old part the new set lacks, such as a ``.qix`` index,
is removed rather than left describing other data), then the new ``.shp``. A run killed while moving leaves the
marker, and the next run writing that output finishes the moves (the new set was complete; the old one was being
replaced at the user's request).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

#: Files that make up one shapefile (the name's stem, then one of these, in any case).
PARTS = (
    ".shp",
    ".shx",
    ".dbf",
    ".prj",
    ".cpg",
    ".qix",
    ".sbn",
    ".sbx",
    ".fbn",
    ".fbx",
    ".ain",
    ".aih",
    ".ixs",
    ".mxs",
    ".qpj",
    ".shp.xml",
)
MARKER = "complete.json"


def stem_of(out: Path) -> str:
    return out.name[: -len(out.suffix)]


def existing_parts(out: Path) -> list[Path]:
    """Files beside ``out`` that belong to a shapefile of its name (``out.dbf`` with no ``out.shp`` too: a dBase
    table of that name would be replaced by the output's)."""
    stem = stem_of(out)
    folder = out.parent if str(out.parent) else Path(".")
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    return sorted(folder / n for n in names if n.startswith(stem) and n[len(stem) :].lower() in PARTS)


def publish(staging: Path, out: Path) -> None:
    """Move the complete set written in ``staging`` to ``out``, replacing the old set (see the module's note)."""
    stem = stem_of(out)
    written = sorted(p.name[len(stem) :].lower() for p in staging.iterdir() if p.name.startswith(stem))
    marker = staging / MARKER
    temp = marker.with_name(MARKER + ".partial")
    temp.write_text(json.dumps(written))
    os.replace(temp, marker)
    _move(staging, out, written)


def finish_interrupted(staging: Path, out: Path) -> bool:
    """Complete the moves of a run killed while publishing (its marker is there); False when it never got so far."""
    marker = staging / MARKER
    if not marker.exists():
        return False
    try:
        written = json.loads(marker.read_text())
    except ValueError:  # cut short while written: the moves had not begun
        return False
    _move(staging, out, written)
    return True


def _move(staging: Path, out: Path, written: list[str]) -> None:
    """Idempotent, so it can be run again after a kill: a part still in ``staging`` is yet to move; one of
    ``written`` that is not there has moved already; any other part beside ``out`` is the old set's."""
    stem = stem_of(out)
    old: dict[str, list[Path]] = {}
    for path in existing_parts(out):
        old.setdefault(path.name[len(stem) :].lower(), []).append(path)

    def retire(part: str) -> None:
        for path in old.pop(part, []):
            path.unlink(missing_ok=True)

    new_shp = staging / (stem + ".shp")
    if new_shp.exists():
        retire(".shp")
    for part in PARTS[1:]:
        new = staging / (stem + part)
        if new.exists():
            retire(part)
            os.replace(new, out.with_name(stem + part))
        elif part not in written:
            retire(part)
    if new_shp.exists():
        os.replace(new_shp, out.with_name(stem + ".shp"))
