"""The map viewer end to end in a real browser: Debian's chromium (WebGL through SwiftShader) driven by Playwright
against a real ``geoclassify serve`` on a loopback port. A user signs in, uploads a layer, chooses the inputs, sees
the model's arguments arrive from QueryDeepLearningModelInfo, runs the tool from the keyboard, watches the job,
finds the legend's counts equal to the result's, clicks a house and reads its popup, downloads the result, cancels
a second job, evaluates the result against its truth field, renames and deletes in My Content. Screenshots are
checked not to be blank; with GEOCLASSIFY_DOCS_SCREENSHOT=1 the result's is written to docs/viewer.png. No request
leaves the loopback address."""

from __future__ import annotations

import io
import os
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import geopandas as gpd
import pytest

from tests.support.server import CLASSIFY, GP, Server, add_user, call, sample_root, slow_scene

pytest.importorskip("fastapi")
pytest.importorskip("rio_tiler")
playwright = pytest.importorskip("playwright.sync_api")
Image = pytest.importorskip("PIL.Image")

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
DOCS = Path(__file__).parents[1] / "docs" / "viewer.png"

if not os.path.exists(CHROMIUM):
    if os.environ.get("CI"):
        pytest.fail(f"{CHROMIUM} is missing: .ci/run installs Debian's chromium", pytrace=False)
    pytest.skip("Debian's chromium is not installed (apt-get install chromium)", allow_module_level=True)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    folder = tmp_path_factory.mktemp("viewer")
    root = sample_root(folder)
    slow_scene(root / "slow", 4000)
    state = folder / "state"
    token = add_user(state, "alice")
    server = Server(state, root, "--workers", "2", env={"GEOCLASSIFY_JOURNAL_FEATURES": "1"}).start()
    yield server, token, root, folder
    assert server.stop() == 0


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def page(browser, served):
    server, token, root, folder = served
    context = browser.new_context(viewport={"width": 1280, "height": 800}, accept_downloads=True)
    outside: list[str] = []

    def guard(route):
        url = urlsplit(route.request.url)
        if url.scheme in ("http", "https", "ws", "wss") and url.hostname not in ("127.0.0.1", "localhost"):
            outside.append(route.request.url)
            route.abort()
        else:
            route.continue_()

    context.route("**/*", guard)
    tab = context.new_page()
    problems: list[str] = []
    tab.on("pageerror", lambda e: problems.append(str(e)))
    tab.outside, tab.problems = outside, problems
    tab.goto(server.url + "/")
    yield tab
    assert not outside, f"the page asked the internet for {outside}"
    assert not problems, problems
    context.close()


def not_blank(png: bytes, region=None) -> None:
    image = Image.open(io.BytesIO(png)).convert("RGB")
    if region:
        image = image.crop(region)
    colours = image.getcolors(maxcolors=1 << 20)
    assert colours is None or len(colours) > 500, "the screenshot is nearly one colour"
    extrema = image.getextrema()
    assert all(hi - lo > 80 for lo, hi in extrema), extrema


def wait_viewer(page, expression: str, timeout: float = 60_000):
    script = f"() => {{ const v = window.geoclassifyViewer; return v && ({expression}); }}"
    page.wait_for_function(script, timeout=timeout)


def test_sign_in_with_a_token_kept_for_the_session_only(page, served):
    server, token, root, folder = served
    field = page.get_by_label("API token")
    assert field.get_attribute("name") == "token" and field.get_attribute("type") == "password"
    field.fill("gc_not-a-token")
    field.press("Enter")
    page.wait_for_function("document.getElementById('signin-error').textContent.length > 0")
    assert "invalid token" in page.locator("#signin-error").inner_text()
    assert page.locator("#app").is_hidden()
    field.fill(token)
    field.press("Enter")
    page.wait_for_selector("#app:not([hidden])")
    assert page.locator("#user-name").inner_text() == "alice"
    assert page.evaluate("sessionStorage.getItem('geoclassify.token')") == token
    assert page.evaluate("Object.keys(localStorage).length") == 0
    assert page.evaluate("document.cookie") == ""
    page.reload()  # the same tab keeps its session
    page.wait_for_selector("#app:not([hidden])")
    layers = page.locator("#layer-groups li")
    layers.first.wait_for()
    names = layers.all_inner_texts()
    assert any("orthophoto.tif" in n for n in names) and any("roof-damage.dlpk" in n for n in names)


def test_an_upload_shows_progress_and_lands_on_the_map(page, served):
    server, token, root, folder = served
    page.get_by_label("Upload a model, raster or layer").set_input_files(str(root / "houses.gpkg"))
    assert page.get_by_label("Kind").input_value() == "features"
    page.get_by_label("Item name").fill("my houses")
    page.evaluate(
        """() => { window.uploadSeen = []; new MutationObserver(() => window.uploadSeen.push(
             document.getElementById('upload-percent').textContent)).observe(
             document.getElementById('upload-percent'), {childList: true, characterData: true, subtree: true}); }"""
    )
    page.get_by_role("button", name="Upload", exact=True).click()
    page.wait_for_function("document.getElementById('upload-percent').textContent.startsWith('Uploaded')")
    assert "100%" in page.evaluate("window.uploadSeen")
    item = page.locator("#layer-groups li", has_text="my houses")
    item.wait_for()
    page.wait_for_function(
        "[...document.querySelectorAll('#layer-groups li')].some(li => li.textContent.includes('my houses') "
        "&& li.querySelector('input').checked)"
    )
    status, listing = call("GET", server.url + "/api/items", token)
    assert [i["name"] for i in listing["items"]] == ["my houses"] and listing["items"][0]["kind"] == "features"
    # its outlines are on the map: the layer's vector tiles were asked for and drawn
    wait_viewer(page, "v.map && v.map.areTilesLoaded() && v.map.getStyle().layers.some(l => l.type === 'line')")


def test_choose_inputs_run_and_see_the_result_coloured_by_class(page, served):
    server, token, root, folder = served
    form = page.locator("#tool")
    for name in ("inputRaster", "inputFeatures", "model", "modelArguments", "classLabelField",
                 "processAllRasterItems", "outputName", "cellSize", "resamplingMethod", "processorType",
                 "parallelProcessingFactor", "retryOnFailures"):
        assert form.locator(f"[name={name}]").count() == 1, name
    modes = page.get_by_label("Processing mode").locator("option").all_inner_texts()
    assert modes == ["Process as mosaicked image", "Process all raster items separately"]
    assert page.get_by_label("Class label field").input_value() == "ClassLabel"
    page.get_by_label("Input imagery layer").select_option(label="orthophoto.tif (data folder)")
    page.get_by_label("Input feature layer").select_option(label="houses.gpkg (data folder)")
    assert page.get_by_label("Result layer name").input_value() == "houses_classifiedObjects"
    page.get_by_label("Model", exact=True).select_option(label="roof-damage.dlpk (data folder)")
    # the model's arguments arrive from QueryDeepLearningModelInfo, with their defaults and descriptions
    batch = page.locator("input[name='modelArguments.batch_size']")
    batch.wait_for(timeout=60_000)
    assert page.get_by_label("Batch Size").input_value() == "16"
    assert "chips classified per model call" in page.locator("#arg-batch_size-help").inner_text()
    assert page.get_by_label("Test Time Augmentation").get_attribute("type") == "checkbox"
    assert not page.get_by_label("Test Time Augmentation").is_checked()

    # invalid input is explained next to its field, and nothing is submitted
    page.locator("#environments summary").click()
    page.get_by_label("Cell size (imagery units)").fill("-1")
    batch.fill("many")
    page.get_by_role("button", name="Run").click()
    assert "above 0" in page.locator("#e-cellSize").inner_text()
    assert "must be a number" in page.locator("[id='e-modelArguments.batch_size']").inner_text()
    assert page.locator("#job").is_hidden()
    page.get_by_label("Cell size (imagery units)").fill("")
    batch.fill("16")
    page.get_by_role("button", name="Use current map extent").click()
    west = float(page.get_by_label("West").input_value())
    assert 14.9 < west < 15.01
    page.get_by_role("button", name="Clear extent").click()
    page.locator("#environments summary").click()

    # a map of imagery and outlines before the run
    wait_viewer(page, "v.map.areTilesLoaded() && v.map.getStyle().layers.some(l => l.type === 'raster')")
    not_blank(page.screenshot(), region=(400, 60, 1270, 790))

    # Run from the keyboard; progress and messages while it runs
    page.evaluate(
        """() => { window.progressSeen = new Set(); new MutationObserver(() => window.progressSeen.add(
             document.getElementById('job-percent').textContent)).observe(document.getElementById('job-percent'),
             {childList: true, subtree: true, characterData: true}); }"""
    )
    page.get_by_role("button", name="Run").focus()
    page.keyboard.press("Enter")
    wait_viewer(page, "v.timings.resultShown", timeout=120_000)
    assert page.locator("#job-progress").get_attribute("value") == "100"
    assert "100%" in page.evaluate("[...window.progressSeen]")
    messages = page.locator("#job-messages li").all_inner_texts()
    assert messages[0] == "Submitted." and any("121 classified" in m for m in messages), messages
    assert "Succeeded" in page.locator("#job-status").inner_text()
    timings = page.evaluate("window.geoclassifyViewer.timings")
    print(f"\nsample: Run to result on the map {timings['runToResult']:.0f} ms")

    # the legend's counts are the result's (read through the REST API, as another client would)
    status, jobs = call("GET", f"{server.url}/api/items?kind=result", token)
    item = next(i for i in jobs["items"] if i["name"] == "houses_classifiedObjects")
    status, value = call("GET", f"{server.url}{GP}/{CLASSIFY}/jobs/{item['jobId']}/results/outObjects?f=json", token)
    labels = Counter(f["attributes"]["ClassLabel"] for f in value["value"]["features"])
    legend = page.locator("#legend-rows li .legend-text").all_inner_texts()
    assert sorted(legend) == sorted(f"{name} ({count})" for name, count in labels.items())
    assert page.locator("#legend-title").inner_text() == "houses_classifiedObjects"
    swatches = page.locator("#legend-rows .swatch").evaluate_all("s => s.map(e => e.style.background)")
    assert swatches == ["rgb(56, 168, 0)", "rgb(230, 0, 0)"]  # the EMD's Color, Intact then Damaged
    fill = page.evaluate(
        "window.geoclassifyViewer.map.getStyle().layers.filter(l => l.type === 'fill' && l.paint['fill-color']"
        " && Array.isArray(l.paint['fill-color']))[0].paint['fill-color']"
    )
    assert fill[0] == "match" and fill[2:6] == ["Intact", "#38a800", "Damaged", "#e60000"]
    shot = page.screenshot()
    not_blank(shot, region=(400, 60, 1270, 790))
    if os.environ.get("GEOCLASSIFY_DOCS_SCREENSHOT"):
        small = Image.open(io.BytesIO(shot)).convert("RGB").resize((1024, 640), Image.Resampling.LANCZOS)
        small = small.quantize(colors=48, dither=Image.Dither.NONE)
        DOCS.parent.mkdir(exist_ok=True)
        small.save(DOCS, optimize=True)
        assert DOCS.stat().st_size < 150_000, DOCS.stat().st_size

    # click a house: its popup shows label, confidence, coverage and the layer's attributes
    result = gpd.read_file(download_result(page, folder))
    assert len(result) == 121 and Counter(result["ClassLabel"]) == labels
    house = result.iloc[7]
    point = house.geometry.representative_point()
    lon, lat = gpd.GeoSeries([point], crs=result.crs).to_crs(4326).iloc[0].coords[0]
    box = page.locator("#map canvas").bounding_box()
    project = "([lon, lat]) => { const p = window.geoclassifyViewer.map.project([lon, lat]); return [p.x, p.y] }"
    xy = page.evaluate(project, [lon, lat])
    page.mouse.click(box["x"] + xy[0], box["y"] + xy[1])
    popup = page.locator(".maplibregl-popup .popup")
    popup.wait_for()
    assert popup.locator("h3").inner_text() == house["ClassLabel"]
    assert popup.locator("dd[data-field=Confidence]").inner_text() == f"{house['Confidence']:.4f}"
    coverage = popup.locator("dd[data-field=Coverage]").inner_text()
    assert coverage in (f"{house['Coverage']:.4f}", str(int(house["Coverage"])))
    assert popup.locator("dd[data-field=house_id]").inner_text() == str(house["house_id"])
    cdp = page.context.new_cdp_session(page)
    cdp.send("Performance.enable")
    memory = cdp.send("Performance.getMetrics")
    heap = {m["name"]: m["value"] for m in memory["metrics"]}["JSHeapUsedSize"]
    print(f"sample: JS heap {heap / 2**20:.1f} MiB")


def download_result(page, folder: Path) -> Path:
    with page.expect_download() as info:
        page.locator("#downloads button[data-format=gpkg]").click()
    target = folder / "downloaded.gpkg"
    info.value.save_as(target)
    assert info.value.suggested_filename.endswith(".gpkg")
    return target


def test_a_name_that_exists_is_flagged_before_submission(page):
    name = page.get_by_label("Result layer name")
    assert name.input_value() == "houses_classifiedObjects_2"  # the default moved past the taken one
    name.fill("houses_classifiedObjects")
    assert "exists in My Content" in page.locator("#e-outputName").inner_text()
    assert name.get_attribute("aria-invalid") == "true"
    name.fill("houses_classifiedObjects_2")
    assert page.locator("#e-outputName").inner_text() == ""


def test_a_second_job_is_cancelled(page, served):
    server, token, root, folder = served
    page.get_by_label("Input imagery layer").select_option(label="slow/town.tif (data folder)")
    page.get_by_label("Input feature layer").select_option(label="slow/houses.gpkg (data folder)")
    page.get_by_label("Model", exact=True).select_option(label="slow/flat.dlpk (data folder)")
    page.wait_for_function("document.getElementById('model-status').textContent.includes('(ONNX)')", timeout=60_000)
    page.locator("input[name='modelArguments.batch_size']").fill("1")
    page.get_by_label("Result layer name").fill("to-be-cancelled")
    page.get_by_role("button", name="Run").click()
    page.wait_for_function("document.getElementById('job-status').textContent === 'Running'", timeout=60_000)
    page.get_by_role("button", name="Cancel").click()
    page.wait_for_function("document.getElementById('job-status').textContent.startsWith('Cancelled')", timeout=60_000)
    assert page.locator("#job-cancel").is_disabled()
    status, items = call("GET", server.url + "/api/items?kind=result", token)
    assert "to-be-cancelled" not in [i["name"] for i in items["items"]]


def test_evaluate_a_result_against_its_truth_field_from_the_keyboard(page, served):
    server, token, root, folder = served
    page.locator("#content-panel summary").click()
    row = page.locator("#content-table tbody tr", has_text="houses_classifiedObjects")
    row.wait_for()
    item_id = row.get_attribute("data-item-id")
    opener = row.get_by_role("button", name="Evaluate houses_classifiedObjects against a truth field")
    opener.focus()
    page.keyboard.press("Enter")
    page.wait_for_function("document.getElementById('evaluation-truth').options.length > 0", timeout=60_000)
    truth = page.get_by_label("Truth field", exact=True)
    options = truth.locator("option").all_inner_texts()
    assert "Truth" in options and "house_id" in options
    assert not {"ClassLabel", "ClassValue", "Confidence", "Coverage"} & set(options)  # what the run wrote
    assert truth.input_value() == "Truth"
    assert page.evaluate("document.activeElement.id") == "evaluation-truth"
    assert page.locator("#evaluation-title").inner_text() == "Evaluate houses_classifiedObjects"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "evaluation-run"
    page.keyboard.press("Enter")
    page.wait_for_function(
        "(() => { const i = document.getElementById('evaluation-matrix'); return i.complete && i.naturalWidth > 0 "
        "&& !document.getElementById('evaluation-open').hidden; })()",
        timeout=60_000,
    )
    status, expected = call("GET", f"{server.url}/api/items/{item_id}/evaluation?truthField=Truth", token)
    assert status == 200 and expected["evaluated"] == 121
    accuracy, kappa = f"{100 * expected['accuracy']:.1f}%", f"{expected['kappa']:.3f}"
    assert page.locator("#evaluation-accuracy").inner_text() == accuracy
    assert page.locator("#evaluation-kappa").inner_text() == kappa
    assert page.locator("#evaluation-counts").inner_text() == "121 of 121 compared"
    image = page.get_by_role("img", name="Confusion matrix of houses_classifiedObjects")
    alt = image.get_attribute("alt")
    assert f"accuracy {accuracy}" in alt and f"Cohen's kappa {kappa}" in alt and "against Truth" in alt
    size = image.evaluate("i => [i.naturalWidth, i.naturalHeight]")
    assert size[0] > 200 and size[1] > 200, size
    assert image.evaluate("i => i.src").startswith("blob:")  # fetched with the token in a header, not in a link
    not_blank(image.screenshot())
    assert page.evaluate("(p => p.scrollWidth <= p.clientWidth)(document.getElementById('pane'))")  # all in view
    # a field whose values are no class of the model: counted, and the server's warning is shown
    truth.select_option("roof_material")
    page.get_by_role("button", name="Evaluate", exact=True).click()
    page.wait_for_function("document.getElementById('evaluation-status').textContent.includes('no class of the model')")
    page.wait_for_function("document.getElementById('evaluation-accuracy').textContent === '0.0%'")
    # Escape closes the panel and gives the focus back to the row's button
    truth.focus()
    page.keyboard.press("Escape")
    assert page.locator("#evaluation").is_hidden()
    assert page.evaluate("document.activeElement.getAttribute('aria-label')") == (
        "Evaluate houses_classifiedObjects against a truth field"
    )
    # the legend of the result on the map opens the same panel
    page.locator("#content-panel summary").click()
    page.get_by_role("button", name="Evaluate against a truth field").click()
    assert page.evaluate("document.getElementById('content-panel').open")
    page.wait_for_function("document.getElementById('evaluation-truth').options.length > 0", timeout=60_000)
    assert page.locator("#evaluation-title").inner_text() == "Evaluate houses_classifiedObjects"
    assert page.evaluate("document.activeElement.id") == "evaluation-truth"
    page.get_by_role("button", name="Close the evaluation").click()
    assert page.locator("#evaluation").is_hidden()
    assert page.evaluate("document.activeElement.id") == "legend-evaluate"
    page.locator("#content-panel summary").click()  # closed again, as the next test expects to find it


def test_my_content_lists_results_and_renames_and_deletes_them(page, served):
    server, token, root, folder = served
    page.locator("#content-panel summary").click()
    row = page.locator("#content-table tbody tr", has_text="houses_classifiedObjects")
    row.wait_for()
    cells = row.locator("td").all_inner_texts()
    assert cells[2] == "roof-damage.dlpk" and "Intact" in cells[3] and "Damaged" in cells[3]
    row.get_by_role("button", name="Rename houses_classifiedObjects").click()
    field = page.get_by_label("New name for houses_classifiedObjects")
    field.fill("roofs after the storm")
    field.press("Enter")
    renamed = page.locator("#content-table tbody tr", has_text="roofs after the storm")
    renamed.wait_for()
    assert page.locator("#legend-title").inner_text() == "roofs after the storm"
    status, items = call("GET", server.url + "/api/items?kind=result", token)
    assert [i["name"] for i in items["items"]] == ["roofs after the storm"]
    page.once("dialog", lambda dialog: dialog.accept())
    renamed.get_by_role("button", name="Delete roofs after the storm").click()
    page.locator("#content-table tbody tr", has_text="No results yet").wait_for()
    assert page.locator("#legend").is_hidden()
    status, items = call("GET", server.url + "/api/items?kind=result", token)
    assert items["items"] == []


def test_every_control_is_labelled_reachable_by_keyboard_and_the_page_fits_1280_by_800(page):
    unlabelled = page.evaluate(
        """() => [...document.querySelectorAll('input, select, button, textarea')]
             .filter(e => e.offsetParent !== null || e.closest('details'))
             .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
                          && !e.getAttribute('aria-labelledby') && !(e.tagName === 'BUTTON' && e.textContent.trim()))
             .map(e => e.outerHTML.slice(0, 80))"""
    )
    assert unlabelled == []
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert page.evaluate("document.documentElement.scrollHeight <= window.innerHeight")
    # Tab walks from the imagery select to Run without a mouse
    page.get_by_label("Input imagery layer").focus()
    for _ in range(60):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "run":
            break
    assert page.evaluate("document.activeElement.id") == "run"

