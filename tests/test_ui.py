"""The web console (/ui), /docs and /redoc in a real browser: Debian's Chromium driven by Playwright.

One keyed server with the shipped models and one browser for the module. Every page runs against the
real photos of ../shared/data/faces; any request that leaves the service's origin fails the test (the
console and the docs must work offline). With STRA_UI_SCREENSHOTS=<folder> each page is also saved at
1280 and 390 px wide (docs/figures/ui_*.png come from `STRA_UI_SCREENSHOTS=docs/figures`)."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

from stra_face.gallery.sqlite import SQLiteGallery
from tests.conftest import FACES, SHARED_DATA, need
from tests.live_server import ROOT, start_server, stop_server

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')")
expect = sync_api.expect

pytestmark = pytest.mark.slow  # one server with the shipped models and one browser: ~30 s for the module
ASSETS = ROOT / "stra_face" / "assets" / "models"
KEY = "ui-test-key"
EXPRESSIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
]
OBAMA = FACES / "examples" / "knn_examples" / "train" / "obama" / "obama.jpg"
OBAMA2 = FACES / "examples" / "knn_examples" / "train" / "obama" / "obama2.jpg"
BIDEN = FACES / "examples" / "knn_examples" / "train" / "biden" / "biden2.jpg"
OBAMA_AND_BIDEN = FACES / "examples" / "knn_examples" / "test" / "obama_and_biden.jpg"
CLIP = SHARED_DATA / "video" / "short_hamilton_clip.mp4"
SCREENSHOTS = os.environ.get("STRA_UI_SCREENSHOTS")


def write_y4m(video: Path, target: Path, first: int, frames: int) -> Path:
    """Chromium's fake camera plays a Y4M file: `frames` frames of the clip from `first` on, as raw I420."""
    capture = cv2.VideoCapture(str(video))
    capture.set(cv2.CAP_PROP_POS_FRAMES, first)
    with target.open("wb") as out:
        for index in range(frames):
            ok, frame = capture.read()
            assert ok, f"{video} has fewer than {first + frames} frames"
            if index == 0:
                height, width = frame.shape[:2]
                out.write(f"YUV4MPEG2 W{width} H{height} F30:1 Ip A1:1 C420jpeg\n".encode())
            out.write(b"FRAME\n" + cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420).tobytes())
    capture.release()
    return target


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    need(FACES)
    folder = tmp_path_factory.mktemp("ui")
    models = {"embedding": ASSETS / "dlib_resnet_v1.onnx", "expression": ASSETS / "expression.onnx"}
    # max_faces=2: the three-face photo shows the console's "truncated" line on a real answer.
    live = start_server(
        models, folder, json.loads((ASSETS / "thresholds.json").read_text()), api_keys=json.dumps([KEY]), max_faces=2
    )
    yield live
    stop_server(live)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium; .ci/run does it)")
    camera = write_y4m(need(CLIP), tmp_path_factory.mktemp("camera") / "clip.y4m", first=150, frames=30)
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=chromium, args=[*CHROMIUM_ARGS, f"--use-file-for-fake-video-capture={camera}"]
        )
        yield launched
        launched.close()


@pytest.fixture
def open_page(browser, server):
    """open_page(path, keyed=True) -> a page of a fresh browser context (its own session storage)."""
    contexts, outside, errors = [], [], []

    def keep_offline(route):
        if route.request.url.startswith(server.url + "/") or route.request.url.startswith(("data:", "blob:")):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    def factory(path: str, keyed: bool = True):
        context = browser.new_context(base_url=server.url, viewport={"width": 1280, "height": 900})
        contexts.append(context)
        if keyed:
            context.add_init_script(f"sessionStorage.setItem('stra.apiKey', {json.dumps(KEY)})")
        context.route("**/*", keep_offline)
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(path)
        return page

    yield factory
    for context in contexts:
        context.close()
    assert not outside, f"requests left the service (the page must work offline): {outside}"
    assert not errors, f"JavaScript errors: {errors}"


def screenshot(page, name: str, console: bool = True) -> None:
    """A console page must fit a 390 px wide phone without sideways scrolling. With STRA_UI_SCREENSHOTS,
    docs/figures/ui_<name>_{1280,390}.png (the whole console page; the API docs' first screen)."""
    folder = Path(SCREENSHOTS) if SCREENSHOTS else None
    if folder:
        folder.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=folder / f"ui_{name}_1280.png", full_page=console)
    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_timeout(300)  # re-layout
    if console:
        assert page.evaluate("document.documentElement.scrollWidth") <= 390, f"{name} scrolls sideways at 390 px"
    if folder:
        page.screenshot(path=folder / f"ui_{name}_390.png", full_page=console)
    page.set_viewport_size({"width": 1280, "height": 900})


def api(server, method: str, path: str, **kwargs) -> httpx.Response:
    return httpx.request(method, server.url + path, headers={"x-api-key": KEY}, timeout=60, **kwargs)


def drop_file(page, target: str, path: Path) -> None:
    """Drags a file from the desktop onto `target`, as a user would."""
    transfer = page.evaluate_handle(
        """([b64, name]) => {
            const transfer = new DataTransfer();
            transfer.items.add(
                new File([Uint8Array.from(atob(b64), (c) => c.charCodeAt(0))], name, { type: "image/jpeg" })
            );
            return transfer;
        }""",
        [base64.b64encode(path.read_bytes()).decode(), path.name],
    )
    page.dispatch_event(target, "drop", {"dataTransfer": transfer})


def raw_faces(page) -> list[dict]:
    return json.loads(page.locator("#analyze-json").text_content())["faces"]


def test_analyze_shows_every_face_with_expressions_and_mode_maps(open_page, server):
    found = api(server, "POST", "/v1/detect", files={"image": need(OBAMA_AND_BIDEN).read_bytes()}).json()["faces_found"]
    assert found > 2  # Obama, Biden and a child behind them
    page = open_page("/ui#analyze")
    drop_file(page, "#page-analyze .drop", OBAMA_AND_BIDEN)
    expect(page.locator("#analyze-summary")).to_have_text(
        f"{found} faces found; the largest 2 are shown (the server's STRA_MAX_FACES cut the list)", timeout=30_000
    )
    cards = page.locator("#analyze-faces .card")
    expect(cards).to_have_count(2)
    for label in cards.locator(".dominant-label").all_inner_texts():
        assert label.lower() in EXPRESSIONS
    expect(cards.first.locator(".bars li")).to_have_count(7)
    size = page.locator("#analyze-canvas").evaluate("c => [c.width, c.height]")
    image = cv2.imread(str(OBAMA_AND_BIDEN))
    assert size == [image.shape[1], image.shape[0]]

    mode_maps = cards.first.locator(".modes")
    expect(mode_maps).to_be_hidden()
    cards.first.get_by_role("button", name="Show mode maps").click()
    expect(mode_maps).to_be_visible()
    groups = raw_faces(page)[0]["modes"]["groups"]
    expect(mode_maps.locator("canvas")).to_have_count(1 + groups)  # the crop, then one tile per mode

    page.get_by_text("Raw JSON").click()
    raw = json.loads(page.locator("#analyze-json").inner_text())
    assert raw["faces_found"] == found and len(raw["faces"]) == 2 and raw["truncated"] is True
    assert [face["expression"]["dominant"] for face in raw["faces"]] == [
        label.lower() for label in cards.locator(".dominant-label").all_inner_texts()
    ]
    screenshot(page, "analyze")

    not_an_image = {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"not a photo"}
    refused = api(
        server, "POST", "/v1/analyze", files={"image": ("notes.txt", not_an_image["buffer"], "text/plain")}
    ).json()["error"]
    page.set_input_files("#analyze-file", files=[not_an_image])
    expect(page.locator("#analyze-error")).to_contain_text(f"{refused['code']}: {refused['message']}")
    expect(page.locator("#analyze-result")).to_be_hidden()


def test_verify_says_same_or_different_and_what_the_far_means(open_page):
    page = open_page("/ui#verify")
    far = page.locator("#verify-far")
    expect(far.locator("option")).to_have_count(3)  # the calibrated FARs in thresholds.json (0.1, 0.01, 0.001)
    assert far.input_value() == "0.001"
    page.set_input_files("#verify-file1", str(need(OBAMA)))
    page.set_input_files("#verify-file2", str(need(OBAMA2)))
    page.get_by_role("button", name="Compare").click()
    expect(page.locator("#verify-decision")).to_have_text("Same person", timeout=30_000)
    expect(page.locator("#verify-meaning")).to_contain_text("1 in 1,000 different-person pairs scores this high")

    page.set_input_files("#verify-file2", str(need(BIDEN)))
    far.select_option("0.01")
    page.get_by_role("button", name="Compare").click()
    expect(page.locator("#verify-decision")).to_have_text("Different people", timeout=30_000)
    expect(page.locator("#verify-meaning")).to_contain_text("1 in 100 different-person pairs")
    similarity = float(re.search(r"Similarity (-?[\d.]+)", page.locator("#verify-numbers").inner_text()).group(1))
    threshold = float(re.search(r"threshold (-?[\d.]+)", page.locator("#verify-numbers").inner_text()).group(1))
    assert similarity < threshold
    screenshot(page, "verify")


def test_gallery_create_enrol_choose_a_face_identify_paginate_delete(open_page, server):
    page = open_page("/ui#gallery")
    expect(page.locator("#gallery-page")).to_have_text("0 subjects", timeout=10_000)
    page.fill("#subject-id", "obama")
    page.fill("#subject-name", "Barack Obama")
    page.get_by_role("button", name="Create").click()
    expect(page.locator('tr[data-subject="obama"]')).to_contain_text("Barack Obama")
    page.set_input_files("#enrol-file", str(need(OBAMA)))
    expect(page.locator("#enrol-status")).to_contain_text("for obama", timeout=30_000)
    expect(page.locator('tr[data-subject="obama"] td').nth(2)).to_have_text("1")

    # Biden from a photo of both: the console asks which face; the largest that identify does not call Obama.
    page.fill("#subject-id", "biden")
    page.fill("#subject-name", "Joe Biden")
    page.get_by_role("button", name="Create").click()
    expect(page.locator('tr[data-subject="biden"]')).to_be_visible()
    page.set_input_files("#identify-file", str(need(OBAMA_AND_BIDEN)))
    names = page.locator("#identify-faces .identity")
    expect(names.first).to_be_visible(timeout=30_000)
    assert sorted(set(names.all_inner_texts())) == ["Barack Obama", "unknown"]
    biden_face = names.all_inner_texts().index("unknown") + 1  # faces come largest first
    page.select_option("#enrol-subject", "biden")
    page.set_input_files("#enrol-file", str(OBAMA_AND_BIDEN))
    expect(page.locator("#enrol-choices button")).to_have_count(names.count(), timeout=30_000)
    page.get_by_role("button", name=f"Face {biden_face}").click()
    expect(page.locator("#enrol-status")).to_contain_text("for biden", timeout=30_000)
    page.set_input_files("#identify-file", str(BIDEN))
    expect(page.locator("#identify-faces .identity")).to_have_text(["Joe Biden"], timeout=30_000)
    expect(page.locator("#gallery-enrolments")).to_contain_text("2 enrolled faces searchable")
    expect(page.locator("#gallery-enrolments")).to_contain_text("none needs re-enrolment")
    screenshot(page, "gallery")

    # A face enrolled before a model switch (another model's sha256), written as that server would have.
    stale = np.zeros(128, np.float32)
    stale[0] = 1
    SQLiteGallery(server.log.parent / "gallery.sqlite3").add_face(
        "obama", "enrolled-before-switch", stale, "0" * 64, None
    )
    page.reload()
    expect(page.locator("#gallery-enrolments")).to_contain_text("1 enrolled with another model needs re-enrolment")
    expect(page.locator('tr[data-subject="obama"] .badge')).to_have_text("1 stale")
    page.get_by_role("button", name="obama").click()
    expect(page.locator("tr.details:visible")).to_contain_text("needs re-enrolment")

    for index in range(10):  # a second page
        assert api(server, "POST", "/v1/subjects", json={"id": f"extra-{index:02d}"}).status_code == 201
    page.reload()
    expect(page.locator("#gallery-page")).to_have_text("1–10 of 12", timeout=10_000)
    page.get_by_role("button", name="Next").click()
    expect(page.locator("#gallery-page")).to_have_text("11–12 of 12")
    expect(page.locator("#gallery-rows tr[data-subject]")).to_have_count(2)
    page.get_by_role("button", name="Previous").click()
    page.fill("#gallery-search", "biden")
    expect(page.locator("#gallery-rows tr[data-subject]")).to_have_count(1)

    row = page.locator('tr[data-subject="biden"]')
    row.get_by_role("button", name="biden").click()  # expands its faces
    page.get_by_role("button", name="Delete face").click()
    page.get_by_role("button", name="Really delete?").click()
    expect(row.locator("td").nth(2)).to_have_text("0")
    row.get_by_role("button", name="Delete").click()
    row.get_by_role("button", name="Really delete?").click()
    expect(page.locator('tr[data-subject="biden"]')).to_have_count(0)
    assert api(server, "GET", "/v1/subjects/biden").status_code == 404


def test_live_analyzes_the_webcam_at_a_bounded_rate(open_page):
    page = open_page("/ui#live")
    page.select_option("#live-rate", "2")
    page.check("#live-names")
    page.get_by_role("button", name="Start camera").click()
    fps = page.locator("#live-fps")
    expect(fps).to_have_attribute("data-frames", re.compile(r"^([4-9]|\d\d+)$"), timeout=30_000)
    rate = float(fps.inner_text().split()[0])
    assert 0 < rate <= 2.05, rate  # at most the chosen rate (the badge rounds to 0.1)
    labels = page.wait_for_function(  # a frame's labels, read with its face count (the next frame may have none)
        "() => { const c = document.querySelector('#live-canvas'); "
        "return Number(c.dataset.faces) > 0 && c.dataset.labels; }",
        timeout=15_000,
    ).json_value()
    for label in labels.split("|"):  # "<name or unknown> · <expression>"
        name, expression = label.split(" · ")
        assert name and expression in EXPRESSIONS, label
    screenshot(page, "live")
    page.get_by_role("button", name="Stop camera").click()


def test_api_key_missing_then_wrong_then_right(open_page):
    page = open_page("/ui#analyze", keyed=False)
    for _ in range(3):  # keyboard: the brand link, Analyze, Verify
        page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    expect(page.locator("#page-verify")).to_be_visible()
    expect(page.get_by_role("link", name="Verify")).to_have_attribute("aria-current", "page")
    page.get_by_role("link", name="Analyze").click()
    expect(page.locator("#banner")).to_contain_text("401 missing_api_key")
    expect(page.locator("#banner")).to_contain_text("this server requires an API key")
    page.set_input_files("#analyze-file", str(need(OBAMA)))
    expect(page.locator("#analyze-error")).to_contain_text("401 missing_api_key")
    page.get_by_role("link", name="Settings").first.click()
    page.fill("#api-key", "wrong")
    page.get_by_role("button", name="Save key").click()
    expect(page.locator("#settings-error")).to_contain_text("403 invalid_api_key: the API key is not valid")
    page.fill("#api-key", KEY)
    page.get_by_role("button", name="Save key").click()
    expect(page.locator("#service-info")).to_contain_text("dlib_resnet_v1.onnx")
    expect(page.locator("#service-info")).to_contain_text("FAR 0.001 (1 in 1,000)")
    expect(page.locator("#banner")).to_be_hidden()
    assert page.evaluate("sessionStorage.getItem('stra.apiKey')") == KEY
    assert page.evaluate("localStorage.length") == 0
    screenshot(page, "settings")


@pytest.mark.parametrize(
    "path, operation", [("/docs", ".opblock-summary-path"), ("/redoc", "[data-section-id^='operation/']")]
)
def test_docs_render_the_openapi_document(open_page, path, operation):
    page = open_page(path, keyed=False)
    operations = page.locator(operation)
    expect(operations.first).to_be_visible(timeout=20_000)
    assert operations.count() >= 10
    expect(page.get_by_text("/v1/verify").first).to_be_attached()
    assert "Unable to render" not in page.content()
    screenshot(page, path.strip("/"), console=False)
