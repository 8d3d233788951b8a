"""`tevit-hf app` end to end in a real browser: the page served on a loopback port, driven by headless Chromium
(Debian's `chromium` through Playwright), segments the bundled sample; a bad upload shows the error layer's message.

Needs the `[app]` extra (gradio) and playwright with a system Chromium; `.ci/run` installs all three and sets
TEVIT_HF_REQUIRE_BROWSER=1 so that CI fails instead of skipping. The page's screenshot is saved under the test's tmp
path and copied to `artifacts/test_app/` (git-ignored) at the repository root.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import time
from pathlib import Path

import pytest

from tevit_hf.commands.app import KEEP_RESULTS_S, REQUEST_PREFIX, AppInputError, TeViTApp
from tevit_hf.commands.demo import bundled_sample_video
from tevit_hf.commands.predict import summary_rows
from tevit_hf.video_io import iter_video_frames, probe_video


REPO_ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS_DIR = REPO_ROOT / "artifacts" / "test_app"
BROWSER_CANDIDATES = ("chromium", "chromium-browser", "google-chrome")
REQUIRE_BROWSER = os.environ.get("TEVIT_HF_REQUIRE_BROWSER", "") not in ("", "0")
# The clip schedule the browser test types in: 8 frames in clips of 4 every 2 frames -> 3 clips, linked near-online.
CLIP_LENGTH, STRIDE = 4, 2
TIMEOUT_MS = 120_000


# The rows of Gradio's (virtualised) Dataframe as lists of cell texts, by the cells' row and column indices.
_READ_TABLE = """table => {
    const rows = [];
    for (const cell of table.querySelectorAll("[role=gridcell][data-row][data-col]")) {
        const row = Number(cell.dataset.row), col = Number(cell.dataset.col);
        (rows[row] = rows[row] || [])[col] = cell.innerText.trim();
    }
    return rows;
}"""


def _skip_or_fail(reason: str) -> None:
    if REQUIRE_BROWSER:
        pytest.fail(f"{reason} (TEVIT_HF_REQUIRE_BROWSER is set: CI must run the browser test)")
    pytest.skip(reason)


def _chromium() -> str | None:
    override = os.environ.get("TEVIT_HF_CHROMIUM")
    if override:
        return override
    return next((path for name in BROWSER_CANDIDATES if (path := shutil.which(name))), None)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_frame_limit_refuses_long_videos_before_loading_a_model(tmp_path):
    app = TeViTApp(max_frames=5, output_root=tmp_path, default_model="not/loaded")
    with pytest.raises(AppInputError, match=r"video\.mp4 has 8 frames; this app segments at most 5 frames"):
        app.segment(str(bundled_sample_video()))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "model, message",
    [("no-such-folder", "neither a folder nor a Hub repo id"), ("./missing/model", "neither a folder")],
)
def test_unknown_model_is_named(tmp_path, model, message):
    with pytest.raises(AppInputError, match=message):
        TeViTApp(output_root=tmp_path).segment(str(bundled_sample_video()), model=model)


def test_unreachable_hub_model_is_named(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(AppInputError, match="Could not download model 'someone/no-such-tevit' from the Hub"):
        TeViTApp(output_root=tmp_path).segment(str(bundled_sample_video()), model="someone/no-such-tevit")


def test_old_request_folders_are_removed(tmp_path):
    old, recent = tmp_path / f"{REQUEST_PREFIX}old", tmp_path / f"{REQUEST_PREFIX}recent"
    for folder in (old, recent):
        folder.mkdir()
    os.utime(old, (time.time() - KEEP_RESULTS_S - 60,) * 2)
    with pytest.raises(AppInputError):  # any request prunes first; this one is refused by the model check
        TeViTApp(output_root=tmp_path).segment(str(bundled_sample_video()), model="no-such-folder")
    assert not old.exists() and recent.exists()


def test_segment_follows_the_clips_and_keeps_the_model(tmp_path):
    app = TeViTApp(output_root=tmp_path)
    calls = []
    prediction = app.segment(
        str(bundled_sample_video()),
        threshold=0.3,
        clip_length=CLIP_LENGTH,
        stride=STRIDE,
        progress_callback=lambda done, total: calls.append((done, total)),
    )
    assert calls == [(1, 3), (2, 3), (3, 3)]
    loaded = app._pipeline
    again = app.segment(str(bundled_sample_video()), threshold=0.3, clip_length=CLIP_LENGTH, stride=STRIDE)
    assert app._pipeline is loaded  # one load for both requests
    assert again.payload["instances"] == prediction.payload["instances"]
    assert json.loads(prediction.results_path.read_text())["clip_length"] == CLIP_LENGTH
    assert prediction.results_path.parent != again.results_path.parent  # every request gets its own folder


@pytest.fixture(scope="module")
def browser_page():
    if importlib.util.find_spec("gradio") is None:
        _skip_or_fail('gradio is not installed: the app needs the [app] extra (pip install -e ".[app]")')
    if importlib.util.find_spec("playwright") is None:
        _skip_or_fail("playwright is not installed (pip install playwright; it comes with the [dev] extra)")
    chromium = _chromium()
    if chromium is None:
        _skip_or_fail(f"no Chromium browser installed ({', '.join(BROWSER_CANDIDATES)}): apt-get install chromium")
    from playwright import sync_api

    from tevit_hf.commands.app import launch

    port = _free_port()
    demo = launch(TeViTApp(max_frames=50), host="127.0.0.1", port=port, block=False)
    try:
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=chromium, args=["--no-sandbox", "--disable-dev-shm-usage"], headless=True
            )
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.set_default_timeout(TIMEOUT_MS)
            yield page, f"http://127.0.0.1:{port}/"
            browser.close()
    finally:
        demo.close()


def _open(page, url: str) -> None:
    page.goto(url)
    page.wait_for_selector("#segment-button")


def _upload(page, path: Path) -> None:
    page.locator("#video-input input[type=file]").set_input_files(str(path))


def test_browser_segments_the_sample(browser_page, tmp_path):
    page, url = browser_page
    _open(page, url)
    sample = bundled_sample_video()
    _upload(page, sample)
    page.locator("#clip-length input").fill(str(CLIP_LENGTH))
    page.locator("#stride input").fill(str(STRIDE))
    page.locator("#segment-button").click()
    overlay = page.locator("#overlay-video video")
    overlay.wait_for(state="attached")
    page.wait_for_selector("#tracks-table [role=gridcell]")

    # The overlay element plays: metadata loaded, playback advances.
    page.wait_for_function(
        "() => { const v = document.querySelector('#overlay-video video'); return v && v.readyState >= 2; }"
    )
    duration = overlay.evaluate("v => v.duration")
    overlay.evaluate("v => { v.muted = true; return v.play(); }")
    page.wait_for_function("() => document.querySelector('#overlay-video video').currentTime > 0")

    # The file the element plays has one frame per frame of the sample.
    info = probe_video(sample)
    served = tmp_path / "served_overlay.mp4"
    served.write_bytes(page.request.get(overlay.evaluate("v => v.currentSrc")).body())
    assert sum(1 for _ in iter_video_frames(served)) == info.num_frames
    assert duration == pytest.approx(info.num_frames / info.fps, abs=1.5 / info.fps)

    # The table lists the tracks of the results.json the page offers.
    results_link = page.locator("#results-file a").first
    results = json.loads(page.request.get(results_link.get_attribute("href")).body())
    assert results["num_frames"] == info.num_frames and results["clip_length"] == CLIP_LENGTH
    assert results["instances"], "the demo model finds the sample's objects"
    table = page.locator("#tracks-table").evaluate(_READ_TABLE)
    expected = [
        [str(track_id), label, f"{score:.3f}".rstrip("0").rstrip("."), str(frames), str(first), str(last)]
        for track_id, label, score, frames, first, last in summary_rows(results)
    ]
    assert [row[:2] + row[3:] for row in table] == [row[:2] + row[3:] for row in expected]
    assert [float(row[2]) for row in table] == pytest.approx([float(row[2]) for row in expected], abs=1e-3)
    assert "instances in 8 frames" in page.locator("#summary").inner_text()

    screenshot = tmp_path / "app_result.png"
    page.screenshot(path=str(screenshot), full_page=True)
    ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(screenshot, ARTIFACTS_DIR / screenshot.name)
    assert screenshot.stat().st_size > 10_000


def test_browser_shows_the_error_of_a_bad_upload(browser_page, tmp_path):
    page, url = browser_page
    _open(page, url)
    bad = tmp_path / "notes.mp4"
    bad.write_text("these are notes, not a video\n")
    _upload(page, bad)
    page.locator("#segment-button").click()
    toast = page.get_by_text("notes.mp4", exact=False).last
    toast.wait_for(state="visible")
    page.screenshot(path=str(tmp_path / "app_bad_upload.png"), full_page=True)
    ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(tmp_path / "app_bad_upload.png", ARTIFACTS_DIR / "app_bad_upload.png")
    text = page.locator("body").inner_text()
    # The error layer's line, naming the file by its name (not the server's upload path).
    assert "Cannot open 'notes.mp4' as a video (corrupt or unsupported file)" in text
    assert "/tmp/" not in text and "gradio_api" not in text
    assert "Traceback" not in text


def test_browser_example_loads_the_bundled_sample(browser_page):
    page, url = browser_page
    _open(page, url)
    page.locator("#example-videos .gallery-item").first.click()
    page.wait_for_function(
        "() => { const v = document.querySelector('#video-input video'); return v && v.currentSrc.endsWith('.mp4'); }"
    )
    source = page.locator("#video-input video").evaluate("v => v.currentSrc")
    assert page.request.get(source).body() == bundled_sample_video().read_bytes()
