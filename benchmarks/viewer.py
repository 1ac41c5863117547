"""The map viewer with a 100,000-feature result, in Debian's chromium (SwiftShader WebGL) driven by Playwright.

    python benchmarks/viewer.py [--size 10000] [--features 100000]

A user's path through the page on the dense benchmark (a 10,000 x 10,000 GeoTIFF without overviews, 100,000
polygons, the tiny64 model): sign in, choose the imagery, the feature layer and the model, Run, wait until the
result is drawn. Reported: the time to show the input layer (its vector tiles made on first view), Run to the job's
success and to the result on the map, the JS heap (CDP Performance.getMetrics JSHeapUsedSize) with the result shown
and after a walk of zooms and pans, the renderer processes' resident memory, how long the map takes to be idle
(every tile drawn) after each move and the main thread's long tasks (over 50 ms) meanwhile.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import data
from server_process import BenchServer

ARGS = [
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def heap(cdp) -> float:
    metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
    return metrics["JSHeapUsedSize"] / 2**20


def renderer_rss() -> float:
    """Resident memory of chromium's renderer processes (the page's main thread and MapLibre's tile workers)."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes()
            if b"chromium" in command and b"--type=renderer" in command:
                rss = next(line for line in (entry / "status").read_text().splitlines() if line.startswith("VmRSS"))
                total += int(rss.split()[1]) * 1024
        except (OSError, StopIteration):
            continue
    return total / 2**20


def idle_after(page, script: str) -> float:
    """Milliseconds from a camera move until the map is idle again (all tiles in view loaded and drawn)."""
    return page.evaluate(
        """(script) => new Promise((resolve) => {
             const map = window.geoclassifyViewer.map;
             const start = performance.now();
             map.once('idle', () => resolve(performance.now() - start));
             (new Function('map', script))(map);
           })""",
        script,
    )


def main() -> None:
    from playwright.sync_api import sync_playwright

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=10_000)
    parser.add_argument("--features", type=int, default=100_000)
    args = parser.parse_args()
    raster = data.raster(args.size)
    houses = data.polygons(args.features, args.size)
    model = data.tiny_dlpk()
    server = BenchServer(data.CACHE, workers=1)
    rows: list[tuple[str, str]] = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            cdp = page.context.new_cdp_session(page)
            cdp.send("Performance.enable")
            page.goto(server.url + "/")
            page.get_by_label("API token").fill(server.token)
            page.get_by_label("API token").press("Enter")
            page.wait_for_selector("#app:not([hidden])")
            page.wait_for_timeout(2000)
            rows.append(("renderer processes' resident memory, signed in, empty map", f"{renderer_rss():.0f} MiB"))
            page.get_by_label("Input imagery layer").select_option(label=f"{raster.name} (data folder)")
            page.wait_for_function("window.geoclassifyViewer.map.getStyle().layers.some(l => l.type === 'raster')")
            started = time.perf_counter()
            page.get_by_label("Input feature layer").select_option(label=f"{houses.name} (data folder)")
            page.wait_for_function(
                "window.geoclassifyViewer.map.getStyle().layers.some(l => l.type === 'line')", timeout=300_000
            )
            page.evaluate("new Promise(r => window.geoclassifyViewer.map.once('idle', r))")
            rows.append(
                (
                    f"show the {args.features:,}-feature input layer (tiles made on first view)",
                    f"{time.perf_counter() - started:.1f} s",
                )
            )
            page.get_by_label("Model", exact=True).select_option(label=f"{model.name} (data folder)")
            page.locator("input[name='modelArguments.batch_size']").wait_for(timeout=120_000)
            page.get_by_role("button", name="Run").click()
            page.wait_for_function("window.geoclassifyViewer.timings.resultShown", timeout=3_600_000, polling=1000)
            t = page.evaluate("window.geoclassifyViewer.timings")
            legend = page.locator("#legend-rows li .legend-text").all_inner_texts()
            rows.append(
                (
                    "Run to the job's success (submitJob to esriJobSucceeded, as polled)",
                    f"{(t['succeeded'] - t['runClicked']) / 1000:.1f} s",
                )
            )
            rows.append(
                (
                    "job's success to the result drawn on the map (its tiles made, legend counted)",
                    f"{(t['resultShown'] - t['succeeded']) / 1000:.1f} s",
                )
            )
            rows.append(("Run to the result on the map", f"{t['runToResult'] / 1000:.1f} s"))
            rows.append(("legend", ", ".join(legend)))
            rows.append(("JS heap with the result shown", f"{heap(cdp):.1f} MiB"))
            rows.append(("renderer processes' resident memory with the result shown", f"{renderer_rss():.0f} MiB"))
            page.evaluate(
                """() => { window.longTasks = []; new PerformanceObserver((list) => window.longTasks.push(
                     ...list.getEntries().map(e => e.duration))).observe({type: 'longtask'}); }"""
            )
            moves = [
                "map.zoomTo(map.getZoom() + 2, {animate: false})",
                "map.panBy([300, 200], {animate: false})",
                "map.zoomTo(map.getZoom() + 2, {animate: false})",
                "map.panBy([-400, 100], {animate: false})",
                "map.zoomTo(map.getZoom() - 4, {animate: false})",
                "map.zoomTo(map.getZoom() - 2, {animate: false})",
            ]
            waits = [idle_after(page, move) for move in moves]
            long_tasks = page.evaluate("window.longTasks")
            rows.append(("map idle after each zoom or pan", ", ".join(f"{w:.0f}" for w in waits) + " ms"))
            rows.append(
                (
                    "main-thread tasks over 50 ms during the walk",
                    f"{len(long_tasks)}, longest {max(long_tasks, default=0):.0f} ms, {sum(long_tasks):.0f} ms in all",
                )
            )
            rows.append(("JS heap after the walk", f"{heap(cdp):.1f} MiB"))
            rows.append(("renderer processes' resident memory after the walk", f"{renderer_rss():.0f} MiB"))
            for _ in range(2):  # the same walk again, elsewhere: memory stays bounded by MapLibre's tile caches
                for move in [*moves, "map.panBy([600, -300], {animate: false})"]:
                    idle_after(page, move)
            rows.append(("JS heap after the walk twice more", f"{heap(cdp):.1f} MiB"))
            rows.append(("renderer processes' resident memory after the walk twice more", f"{renderer_rss():.0f} MiB"))
            browser.close()
    finally:
        server.stop()
    print("| measure | value |")
    print("|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
