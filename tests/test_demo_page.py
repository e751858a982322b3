"""The demo page in a real headless Chromium: strokes by mouse, pen and touch, answers against predict, the layout.

Needs Debian's ``chromium`` and ``chromium-driver`` (or any Chromium or Chrome with its chromedriver on
PATH) and selenium; without them these tests are skipped with the reason, and under CI they fail."""

from __future__ import annotations

import base64
import io
import os
import shutil
import tempfile
import threading

import numpy as np
import pytest
from PIL import Image

from mnist_lit.config.checks import command_config
from mnist_lit.demo import make_server
from mnist_lit.predict import predict_images, prepare
from tests.conftest import MODELS, train_checkpoint

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


# What works in a container without a display, a GPU or a network: no sandbox, no background traffic.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--force-device-scale-factor=1",
)


INSTALL = "install Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)"
SEVEN = [(80, 60), (200, 60), (170, 130), (120, 230)]  # canvas pixels (280x280): a stroke like a 7


def missing_browser() -> str | None:
    """Why no browser test can run here, or None."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -r requirements.txt)"
    if not any(shutil.which(name) for name in BROWSERS):
        return f"no Chromium on PATH: {INSTALL}"
    if not shutil.which("chromedriver"):
        return f"no chromedriver on PATH: {INSTALL}"
    return None


@pytest.fixture(scope="module")
def browser():
    reason = missing_browser()
    if reason:
        if os.environ.get("CI"):  # .ci/run installs the browser: a CI run must not skip these tests
            pytest.fail(f"the browser tests cannot run under CI: {reason}")
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = next(shutil.which(name) for name in BROWSERS if shutil.which(name))
    profile = tempfile.mkdtemp(prefix="demo-chromium-")
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    # The driver's path is given, so Selenium Manager never looks for (or downloads) one.
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def demo(synthetic, tmp_path_factory):
    base = tmp_path_factory.mktemp("demo_browser")
    ckpt = train_checkpoint(synthetic, base / "cnn.ckpt", MODELS["cnn"])
    cfg = command_config("demo", ckpt_path=str(ckpt), port=0, save=str(base / "drawings"))
    server = make_server(cfg)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield {"server": server, "ckpt": ckpt, "saved": base / "drawings", "base": base}
    server.shutdown()
    server.server_close()


def open_page(driver, demo, width: int = 900, height: int = 760) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    driver.set_window_size(width, height)
    driver.get(demo["server"].url)
    WebDriverWait(driver, 30).until(lambda d: d.execute_script("return document.body.dataset.ready") == "true")


def draw(driver, points: list[tuple[int, int]], kind: str = "mouse") -> None:
    """One stroke through ``points`` (canvas pixels) with real pointer events; waits for the page's answer."""
    from selenium.webdriver.common.actions import interaction
    from selenium.webdriver.common.actions.action_builder import ActionBuilder
    from selenium.webdriver.common.actions.pointer_input import PointerInput
    from selenium.webdriver.support.ui import WebDriverWait

    pad = driver.find_element("id", "pad")
    scale = pad.size["width"] / 280  # CSS pixels per canvas pixel
    answered = driver.execute_script("return document.body.dataset.answered || ''")
    kinds = {"mouse": interaction.POINTER_MOUSE, "pen": interaction.POINTER_PEN, "touch": interaction.POINTER_TOUCH}
    actions = ActionBuilder(driver, mouse=PointerInput(kinds[kind], kind))

    def at(x: float, y: float):  # offsets from the element's centre, as WebDriver counts them
        return actions.pointer_action.move_to(pad, round((x - 140) * scale), round((y - 140) * scale))

    at(*points[0]).pointer_down()
    for (x0, y0), (x1, y1) in zip(points, points[1:], strict=False):
        for t in np.linspace(0, 1, 8)[1:]:  # several moves per segment, as a hand makes
            at(x0 + t * (x1 - x0), y0 + t * (y1 - y0))
    actions.pointer_action.pointer_up()
    actions.perform()
    WebDriverWait(driver, 30).until(
        lambda d: d.execute_script("return document.body.dataset.answered || ''") != answered
    )


def shown(driver) -> dict:
    """What the page shows: the digit, the probabilities (text and exact), the 28x28 image, the drawing as a PNG."""
    bars = driver.find_elements("css selector", "#bars .bar")
    preview = driver.execute_script(
        "const c = document.getElementById('prepared').getContext('2d');"
        "return Array.from(c.getImageData(0, 0, 28, 28).data);"
    )
    url = driver.execute_script("return document.getElementById('pad').toDataURL('image/png')")
    return {
        "digit": driver.find_element("id", "digit").text,
        "texts": [bar.find_element("css selector", ".value").text for bar in bars],
        "exact": [bar.get_attribute("data-probability") for bar in bars],
        "image": np.array(preview[::4], dtype=np.uint8).reshape(28, 28),
        "png": base64.b64decode(url.split(",", 1)[1]),
        "pointer": driver.find_element("id", "pad").get_attribute("data-pointer"),
    }


def test_a_mouse_stroke_is_read_as_predict_reads_the_same_image(browser, demo, tmp_path):
    open_page(browser, demo)
    draw(browser, SEVEN)
    page = shown(browser)
    drawing = tmp_path / "drawing.png"
    drawing.write_bytes(page["png"])
    (row,) = predict_images(command_config("predict", ckpt_path=str(demo["ckpt"]), images=str(drawing), top_k=10))
    probabilities = {row["digit"]: row["confidence"], **{row[f"top{k}"]: row[f"p{k}"] for k in range(2, 11)}}
    assert page["pointer"] == "mouse" and page["digit"] == str(row["digit"])
    assert page["texts"] == [f"{float(p):.3f}" for p in page["exact"]]  # each bar's figure is its probability
    assert [float(p) for p in page["exact"]] == pytest.approx([probabilities[str(d)] for d in range(10)], abs=1e-6)
    assert np.array_equal(page["image"], prepare(Image.open(drawing)).numpy())  # the image the network received
    assert page["image"].max() == 255 and page["image"][0].sum() == 0  # a white digit on black, like MNIST


@pytest.mark.parametrize("kind", ["pen", "touch"])
def test_pen_and_touch_draw_and_clear_erases(browser, demo, kind):
    open_page(browser, demo)
    draw(browser, SEVEN, kind)
    page = shown(browser)
    assert page["pointer"] == kind and page["digit"].isdigit() and all(page["texts"])
    ink = np.asarray(Image.open(io.BytesIO(page["png"])).convert("L"))
    assert ink[60, 140] < 50 and ink[250, 30] > 200  # on the stroke: black; far from it: white paper
    browser.find_element("id", "clear").click()
    cleared = shown(browser)
    assert cleared["digit"] == "\u2013" and not any(cleared["texts"]) and not cleared["image"].any()
    assert np.asarray(Image.open(io.BytesIO(cleared["png"])).convert("L")).min() == 255


def test_a_drawing_saved_from_the_page_is_read_by_predict(browser, demo):
    open_page(browser, demo)
    draw(browser, SEVEN)
    digit = shown(browser)["digit"]
    before = set(demo["saved"].glob("*.png")) if demo["saved"].exists() else set()
    browser.find_element("css selector", "#labels button:nth-child(8)").click()  # the 7
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, 30).until(lambda d: d.find_element("id", "status").text.startswith("Saved as 7"))
    (new,) = set(demo["saved"].glob("*.png")) - before
    assert new.name.startswith("7-")
    (row,) = predict_images(command_config("predict", ckpt_path=str(demo["ckpt"]), images=str(new)))
    assert str(row["digit"]) == digit
    assert shown(browser)["digit"] == "\u2013"  # saved, then cleared for the next digit


def boxes(driver) -> dict:
    return driver.execute_script(
        "const box = (s) => { const r = document.querySelector(s).getBoundingClientRect();"
        " return {left: r.left, top: r.top, right: r.right, bottom: r.bottom}; };"
        "return {pad: box('#pad'), prepared: box('#prepared'), digit: box('#digit'), bars: box('#bars'),"
        " clear: box('#clear'), top: box('#bars .bar.top .fill'), drawing: box('.panel:first-child'),"
        " answer: box('.panel:last-child'), width: window.innerWidth, height: window.innerHeight,"
        " scroll: document.documentElement.scrollWidth};"
    )


def overlap(a: dict, b: dict) -> bool:
    return a["left"] < b["right"] and b["left"] < a["right"] and a["top"] < b["bottom"] and b["top"] < a["bottom"]


def test_the_layout_in_a_screenshot(browser, demo, tmp_path):
    """Wide: drawing and answer side by side; narrow (a phone): stacked, no sideways scrolling; checked on pixels."""
    for width, height, side_by_side in ((900, 760, True), (390, 1100, False)):
        open_page(browser, demo, width, height)
        draw(browser, SEVEN)
        shot = Image.open(io.BytesIO(browser.get_screenshot_as_png())).convert("RGB")
        shot.save(tmp_path / f"demo_{width}.png")
        at = boxes(browser)
        assert shot.size == (at["width"], at["height"])
        assert at["scroll"] <= at["width"]  # nothing sticks out sideways
        parts = [at[k] for k in ("pad", "prepared", "digit", "bars", "clear")]
        for i, a in enumerate(parts):
            assert a["left"] >= 0 and a["right"] <= at["width"] and a["top"] >= 0
            assert not any(overlap(a, b) for b in parts[i + 1 :])
        if side_by_side:
            assert at["answer"]["left"] >= at["drawing"]["right"] and at["answer"]["top"] == at["drawing"]["top"]
        else:
            assert at["answer"]["top"] >= at["drawing"]["bottom"]
        pixels = np.asarray(shot, dtype=int)
        pad, scale = at["pad"], (at["pad"]["right"] - at["pad"]["left"]) / 280  # the canvas's border is inside
        stroke = pixels[round(pad["top"] + 60 * scale), round(pad["left"] + 140 * scale)]
        paper = pixels[round(pad["top"] + 250 * scale), round(pad["left"] + 30 * scale)]
        assert stroke.max() < 60 and paper.min() > 230  # the stroke, black on white, where it was drawn
        top = at["top"]
        fill = pixels[round((top["top"] + top["bottom"]) / 2), round(top["left"] + 1)]
        assert np.abs(fill - (0x25, 0x63, 0xEB)).max() < 30  # the most likely digit's bar, in the accent colour
        preview = at["prepared"]
        inside = pixels[
            round(preview["top"]) + 2 : round(preview["bottom"]) - 2,
            round(preview["left"]) + 2 : round(preview["right"]) - 2,
        ]
        assert inside.min() == 0 and inside.max() > 200  # the 28x28 image: black with the white digit
