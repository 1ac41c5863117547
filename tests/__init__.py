"""geoclassify's tests (a package, so their shared helpers import as ``tests.support``)."""
