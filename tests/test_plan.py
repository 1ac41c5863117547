"""The run's plan: built batch by batch, the same as built at once; big layers' polygons wait on disk."""

import numpy as np
import shapely

from geoclassify.core.chips import ChipSpec
from geoclassify.core.plan import PlanBuilder, SpilledGeometries


def _geometries(rng, n):
    out = []
    for i in range(n):
        x, y = rng.uniform(-20, 220, 2)
        kind = i % 5
        if kind == 0:
            out.append(shapely.Point(x, y))
        elif kind == 1:
            out.append(None)
        elif kind == 2:
            out.append(shapely.LineString([(x, y), (x + 5, y + 3)]))
        elif kind == 3:
            out.append(shapely.MultiPolygon([shapely.box(x, y, x + 3, y + 2), shapely.box(x + 5, y, x + 7, y + 4)]))
        else:
            out.append(shapely.Polygon([(x, y), (x + 6, y), (x + 3, y + 7)]))
    return np.array(out, dtype=object)


def test_spilled_geometries_read_back_equal_by_position():
    rng = np.random.default_rng(1)
    first, second = _geometries(rng, 40), _geometries(rng, 25)
    store = SpilledGeometries()
    store.append(first)
    store.append(np.zeros(0, dtype=object))
    store.append(second)
    store.seal()
    everything = np.concatenate([first, second])
    picks = np.array([64, 0, 3, 1, 41, 40, 17, 17])
    back = store.take(picks)
    for got, expected in zip(back, everything[picks], strict=True):
        assert (got is None) == (expected is None)
        if expected is not None:
            assert shapely.equals_exact(got, expected, tolerance=0)
    store.close()


def test_plan_built_in_batches_equals_plan_built_at_once():
    rng = np.random.default_rng(2)
    geometries = _geometries(rng, 300)
    spec = ChipSpec(16, 16, fixed=False, blacken=True)
    whole = PlanBuilder(spec, 200, 200)
    whole.add(geometries)
    batched = PlanBuilder(spec, 200, 200, spill=True)
    for start in range(0, 300, 37):
        batched.add(geometries[start : start + 37])
    with whole.finish() as a, batched.finish() as b:
        assert a.count == b.count == 300
        for name in ("empty", "outside", "todo", "windows"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
        assert a.outside.any() and a.empty.any() and a.not_polygonal == b.not_polygonal > 0
        entries = np.arange(len(a.todo))
        for p, q in zip(a.polygons_at(entries), b.polygons_at(entries), strict=True):
            assert (p is None) == (q is None)
            if p is not None:
                assert shapely.equals_exact(p, q, tolerance=0)
        assert sum(p is not None for p in b.polygons_at(entries)) > 50
