"""Telling the user when their data cannot be kept as it is: GDAL's warnings, and what a shapefile changes.

GDAL reports a truncated value or a renamed field as a warning that pyogrio turns into a ``RuntimeWarning``, which
the CLI (like most programs) does not show. :func:`relayed` turns those into :class:`DataLossWarning` lines that
name the file. For shapefiles, which change data the most, :class:`ShapefileCheck` goes further: it reads every
written batch back and compares it with what was meant to be written, so the warning says which field lost what,
how often, with an example; GDAL's own (less precise, and one-per-layer) warnings about the same are then dropped.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyogrio

from ..errors import DataLossWarning
from ..hooks import warn

_PYOGRIO = os.path.dirname(pyogrio.__file__)
#: GDAL's shapefile warnings that :class:`ShapefileCheck` reports more precisely.
SHAPEFILE_COVERED = (
    "Normalized/laundered field name",
    "has been truncated to",
    "not successfully written",
    "created as String field",
)
DBF_TEXT_BYTES = 254
FLOAT_TOLERANCE = 1e-9  # relative: the DBF's decimal text keeps about 15 significant digits


@contextmanager
def relayed(where: str, covered: tuple[str, ...] = (), caller: str | None = None) -> Iterator[None]:
    """GDAL's warnings inside the block (raised from pyogrio, or from ``caller``, the module whose loop pulls a
    pyogrio stream) become :class:`DataLossWarning` ``"{where}: {message}"``; ``covered`` ones are dropped and any
    other warning goes on as it was."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for item in caught:
        origin = os.path.abspath(item.filename)
        if issubclass(item.category, RuntimeWarning) and (origin.startswith(_PYOGRIO) or origin == caller):
            text = str(item.message)
            if not any(phrase in text for phrase in covered):
                warn(DataLossWarning(f"{where}: {_short(text, 300)}"))
        else:
            warnings.warn_explicit(item.message, item.category, item.filename, item.lineno, source=item.source)


@dataclass
class _Loss:
    as_text: bool = False  # a date-time column stored as text: every value
    count: int = 0
    longest: int = 0
    example: tuple[object, object] = (None, None)


class ShapefileCheck:
    """Compare each batch written to a shapefile with what it holds once written (``written``: the file in its
    staging folder; ``out``: the name the user gave, for the messages)."""

    def __init__(self, out: Path, written: Path) -> None:
        self.out, self.written = out, written
        self.offset = 0
        self.fields: dict[str, tuple[str, str]] | None = None  # column -> (field in the file, OGR type)
        self.dropped: list[str] = []
        self.losses: dict[str, _Loss] = {}

    def check(self, frame: pd.DataFrame) -> None:
        geometry = frame.geometry.name if hasattr(frame, "geometry") else None
        columns = [str(c) for c in frame.columns if c != geometry]
        if self.fields is None:
            info = pyogrio.read_info(self.written)
            found = dict(zip(info["fields"], info["ogr_types"], strict=True))
            if len(found) == len(columns):  # OGR writes the fields in order, renamed where it must
                self.fields = dict(zip(columns, found.items(), strict=True))
            else:
                self.fields = {c: (c, found[c]) for c in columns if c in found}
                self.dropped = [c for c in columns if c not in found]
        if not len(frame):
            return
        back = pyogrio.read_dataframe(
            self.written, read_geometry=False, skip_features=self.offset, max_features=len(frame), use_arrow=True
        )
        for column, (field, ogr_type) in self.fields.items():
            original = frame[column]
            if pd.api.types.is_datetime64_any_dtype(original) and ogr_type == "OFTString":
                self.losses[column] = _Loss(as_text=True)
                continue
            changed = _changed(original.reset_index(drop=True), back[field])
            if changed is None or not changed.any():
                continue
            loss = self.losses.setdefault(column, _Loss())
            where = np.flatnonzero(changed)
            if not loss.count:
                loss.example = (original.iloc[where[0]], back[field].iloc[where[0]])
            loss.count += len(where)
            if _is_text(original):
                sizes = original.iloc[where].astype("string").str.encode("utf-8").str.len()
                loss.longest = max(loss.longest, int(sizes.max()))
        self.offset += len(frame)

    def warn(self) -> None:
        """One warning per renamed field and per field whose values changed."""
        name = os.fspath(self.out)
        for column in self.dropped:
            warn(
                DataLossWarning(
                    f"output {name!r}: field {column!r} was not written (a shapefile cannot hold it); write .gpkg to "
                    "keep it"
                )
            )
        for column, (field, _) in (self.fields or {}).items():
            if field != column:
                warn(
                    DataLossWarning(
                        f"output {name!r}: field {column!r} is called {field!r} there (a shapefile field name has at "
                        "most 10 characters, and must differ from the others); write .gpkg to keep the name"
                    )
                )
            loss = self.losses.get(column)
            if loss is None:
                continue
            if loss.as_text:
                warn(
                    DataLossWarning(
                        f"output {name!r}: field {column!r} holds dates with times, which a shapefile can store only "
                        "as text; write .gpkg to keep them as dates"
                    )
                )
            elif loss.longest > DBF_TEXT_BYTES:
                warn(
                    DataLossWarning(
                        f"output {name!r}: {loss.count} value(s) of field {column!r} were cut to {DBF_TEXT_BYTES} "
                        "bytes "
                        f"(the longest had {loss.longest}), the most a shapefile text field holds; write .gpkg to keep "
                        "them whole"
                    )
                )
            else:
                was, now = (_short(repr(v.item() if isinstance(v, np.generic) else v), 60) for v in loss.example)
                warn(
                    DataLossWarning(
                        f"output {name!r}: {loss.count} value(s) of field {column!r} changed when written and read "
                        "back "
                        f"(e.g. {was} became {now}): a shapefile keeps values as text of limited width, and wide whole "
                        "numbers are read back as floating point; write .gpkg to keep them exact"
                    )
                )


def _is_text(values: pd.Series) -> bool:
    if pd.api.types.is_string_dtype(values.dtype) and not pd.api.types.is_object_dtype(values.dtype):
        return True
    return pd.api.types.is_object_dtype(values.dtype) and all(isinstance(v, str) for v in values.dropna().head(100))


def _changed(original: pd.Series, back: pd.Series) -> np.ndarray | None:
    """Which values did not survive (None: a kind of value this check does not compare)."""
    if pd.api.types.is_bool_dtype(original.dtype) or pd.api.types.is_integer_dtype(original.dtype):
        ints = original.astype("Int64")
        was = ints.astype("float64").to_numpy(na_value=np.nan)
        now = pd.to_numeric(back, errors="coerce").astype("float64").to_numpy(na_value=np.nan)
        same = (was == now) | (np.isnan(was) & np.isnan(now))
        # Beyond 2**53 a float is not exact: compare those (few) as whole numbers.
        for i in np.flatnonzero(np.abs(np.nan_to_num(was)) > 2**53):
            same[i] = bool(np.isfinite(now[i])) and int(back.iloc[i]) == int(ints.iloc[i])
        return ~same
    if pd.api.types.is_float_dtype(original.dtype):
        was = original.astype("float64").to_numpy(na_value=np.nan)
        now = pd.to_numeric(back, errors="coerce").astype("float64").to_numpy(na_value=np.nan)
        with np.errstate(invalid="ignore"):
            return ~np.isclose(was, now, rtol=FLOAT_TOLERANCE, atol=0.0, equal_nan=True)
    if _is_text(original):
        # A DBF cannot tell an empty text from a missing one: that is no loss worth a warning.
        was = original.astype("string").fillna("")
        now = back.astype("string").fillna("")
        return (was != now).to_numpy(dtype=bool)
    return None


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
