"""The demo in a real browser: Playwright (Python) drives Debian's Chromium, headless.

Uploads the example screenshot, checks the cost preview, asks a question in thinking mode, waits for
the streamed answer and its stats line, and saves a screenshot of the page that must not be blank.
On the bundled model: clicks each example card and checks the whole streamed answer against the
card's expected one, then uploads a screenshot and a video that are not examples and does the same.
UPDATE_DEMO_SCREENSHOT=1 also writes the pictures after each example answer to docs/demo/ (the
README's picture is the first card's).
Skipped, with the reason printed, only where no Chromium binary can be found or started.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from PIL import Image, ImageStat

pytest.importorskip("gradio")
playwright = pytest.importorskip("playwright.sync_api")

from benchmarks.common import same_answer  # noqa: E402
from demo import app  # noqa: E402
from demo.media import video_plan  # noqa: E402
from vision.preprocess import num_tokens  # noqa: E402

DOCS = Path(__file__).resolve().parents[2] / "docs"
CHROMIUM_ARGS = [
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]


def chromium_path() -> str | None:
    for candidate in (os.environ.get("CHROMIUM"), shutil.which("chromium"), "/usr/bin/chromium"):
        if candidate and os.path.exists(candidate):
            return candidate
    return None


def skip(reason: str) -> None:
    print(f"SKIPPED browser test: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    path = chromium_path()
    if path is None:
        skip("no Chromium found (apt-get install chromium, or set CHROMIUM=/path/to/chromium)")
    with playwright.sync_playwright() as p:
        try:
            b = p.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_ARGS)
        except playwright.Error as exc:
            skip(f"Chromium at {path} did not start: {str(exc).splitlines()[0]}")
        yield b
        b.close()


def blankness(png: Path) -> tuple[float, float]:
    """(grey-level standard deviation, fraction of pixels that are not near-white)."""
    grey = Image.open(png).convert("L")
    hist = grey.histogram()
    return ImageStat.Stat(grey).stddev[0], sum(hist[:240]) / sum(hist)


def test_upload_screenshot_ask_and_capture(browser, url, model, tmp_path):
    expect = playwright.expect
    expect.set_options(timeout=60_000)
    page = browser.new_page(viewport={"width": 1280, "height": 820})
    page.set_default_timeout(60_000)
    page.goto(url)
    expect(page.locator("#chat-input textarea")).to_be_visible()

    # the window drawn like the bundled model's training data (the README's `make example` question)
    page.locator("#chat-input input[type=file]").set_input_files(str(app.ASSETS / "example_window.png"))
    # Before sending: the side panel shows what the attachment will cost.
    expect(page.locator("#media-preview")).to_contain_text("example_window.png")
    expect(page.locator("#media-preview")).to_contain_text("vision tokens")

    page.get_by_label("Thinking", exact=True).check()
    page.get_by_label("number", exact=True).check()
    for box, value in (("#budget-tokens", "16"), ("#max-new-tokens", "40")):
        page.locator(f"{box} input[type=number]").fill(value)
        page.locator(f"{box} input[type=number]").press("Tab")
    page.locator("#chat-input textarea").fill("How many boxes are checked?")  # a kind trained with traces
    page.locator("#chat-input textarea").press("Enter")

    chat = page.locator("#chatbot")
    expect(chat).to_contain_text("How many boxes")
    expect(chat).to_contain_text("Thinking")
    expect(chat).to_contain_text("tok/s", timeout=90_000)  # the stats line: the answer has finished
    expect(chat).to_contain_text("first token")
    expect(chat.locator("img").first).to_be_visible()  # the uploaded screenshot is shown in the chat
    stats = chat.get_by_text("tok/s").first.inner_text()
    assert 1 <= int(re.search(r"thinking (\d+) ", stats).group(1)) <= 16, stats  # the budget held
    expect(chat).not_to_contain_text("⚠️")

    # Next turn, not sent: attach the example video; the panel shows how it will be sampled.
    expect(page.locator("#chat-input textarea")).to_be_editable()  # the app has reset the input box
    page.locator("#chat-input input[type=file]").set_input_files(str(app.ASSETS / "example_video.mp4"))
    page.locator("#chat-input textarea").fill("And what happens to the ball in this video?")
    preview = page.locator("#media-preview")
    plan = video_plan(app.ASSETS / "example_video.mp4", model.config.media)
    expect(preview).to_contain_text(f"{plan.frames_kept} frames kept")
    expect(preview).to_contain_text(f"{plan.chunks} chunks")
    expect(preview).to_contain_text(f"chunk timestamps: {', '.join(plan.timestamps)}")
    expect(preview).to_contain_text(f"{plan.vision_tokens} vision tokens")
    page.mouse.move(5, 5)  # no hover styling (a hovered checked radio is drawn blank) in the picture
    page.wait_for_timeout(500)  # let the last re-render settle before the picture

    shot = tmp_path / "demo.png"
    page.screenshot(path=str(shot))
    stddev, inked = blankness(shot)
    print(f"screenshot {shot}: grey stddev {stddev:.1f}, non-white fraction {inked:.3f}")
    assert stddev > 8 and inked > 0.02, "the page screenshot looks blank"

    # Send it: a second turn through the browser's own history format, the video shown with a player.
    page.locator("#chat-input textarea").press("Enter")
    expect(chat.get_by_text("tok/s")).to_have_count(2, timeout=90_000)
    expect(chat.locator("video").first).to_be_visible()
    expect(chat).not_to_contain_text("⚠️")
    second = chat.get_by_text("tok/s").nth(1).inner_text()
    # This turn's prompt holds the earlier screenshot and the video: both costs, as previewed.
    cfg = model.config.media
    width, height = Image.open(app.ASSETS / "example_window.png").size
    expected = (
        num_tokens(height, width, cfg) + video_plan(app.ASSETS / "example_video.mp4", cfg).vision_tokens
    )
    assert f"vision {expected} " in second, (expected, second)
    page.close()


def test_bundled_example_is_one_click_away(browser, url):
    expect = playwright.expect
    expect.set_options(timeout=60_000)
    page = browser.new_page(viewport={"width": 1280, "height": 820})
    page.goto(url)
    page.get_by_label("Instant", exact=True).check()  # this checkpoint thinks by default
    page.locator("#max-new-tokens input[type=number]").fill("16")
    page.locator("#max-new-tokens input[type=number]").press("Tab")
    page.get_by_text("Which way does the ball move?").click()
    chat = page.locator("#chatbot")
    expect(chat.get_by_text("tok/s")).to_have_count(1, timeout=90_000)
    expect(chat.locator("video").first).to_be_visible()
    expect(chat).not_to_contain_text("⚠️")
    stats = chat.get_by_text("tok/s").first.inner_text()
    assert 1 <= int(re.search(r"answer (\d+) tokens", stats).group(1)) <= 16, stats  # the controls applied
    page.close()


def _answer_of(page, question: str) -> tuple[str, str]:
    """(answer text, stats line) of the chat's one finished answer to `question`."""
    chat = page.locator("#chatbot")
    expect = playwright.expect
    expect(chat).to_contain_text(question.strip())
    expect(chat.get_by_text("tok/s")).to_have_count(1, timeout=90_000)  # the answer has finished
    expect(chat).not_to_contain_text("⚠️")
    answer = chat.locator('[data-testid="bot"]').first.inner_text()  # instant mode: answer, then stats
    return answer, chat.get_by_text("tok/s").first.inner_text()


def _picture(page, tmp_path: Path, name: str) -> None:
    page.mouse.move(5, 5)
    page.wait_for_timeout(300)
    shot = tmp_path / name
    page.screenshot(path=str(shot))
    stddev, inked = blankness(shot)
    assert stddev > 8 and inked > 0.02, f"the page screenshot {name} looks blank"
    if os.environ.get("UPDATE_DEMO_SCREENSHOT") == "1":
        (DOCS / "demo").mkdir(parents=True, exist_ok=True)
        Image.open(shot).save(DOCS / "demo" / name, optimize=True)
        print(f"wrote {DOCS / 'demo' / name}")


@pytest.mark.parametrize("card", range(len(app.EXAMPLES)), ids=[e["file"] for e in app.EXAMPLES])
def test_each_example_card_is_answered_right(browser, bundled_url, tmp_path, card):
    """A visitor's first click: the card's question on its file, answered by the bundled model with the
    whole expected answer (not a substring), streamed into the chat."""
    example = app.EXAMPLES[card]
    playwright.expect.set_options(timeout=60_000)
    page = browser.new_page(viewport={"width": 1280, "height": 820})
    page.goto(bundled_url)
    page.get_by_text(example["question"]).first.click()
    answer, stats = _answer_of(page, example["question"])
    assert same_answer(answer, example["answer"]), (example, answer, stats)
    _picture(page, tmp_path, f"example_{card + 1}.png")
    page.close()


UPLOADS = {  # held-out curriculum media that are not example cards, asked in held-out wordings
    "screenshot": ("phrasing", "screenshot", "title", 0),
    "video": ("phrasing", "video", "flashes", 0),
}


@pytest.mark.parametrize("kind", list(UPLOADS))
def test_an_uploaded_screenshot_and_video_are_answered_right(browser, bundled_url, tmp_path, kind):
    from training.generators import sample
    from training.generators.videos import write_mp4

    split, family, task, index = UPLOADS[kind]
    s = sample(split, index, family=family, task=task)
    media = s.messages[0]["content"][0]
    question = s.messages[0]["content"][-1]["text"]
    if kind == "video":
        path = write_mp4(media["video"], tmp_path / "upload.mp4")
    else:
        path = tmp_path / "upload.png"
        media["image"].save(path)
    playwright.expect.set_options(timeout=60_000)
    page = browser.new_page(viewport={"width": 1280, "height": 820})
    page.goto(bundled_url)
    page.locator("#chat-input input[type=file]").set_input_files(str(path))
    playwright.expect(page.locator("#media-preview")).to_contain_text(path.name)
    page.locator("#chat-input textarea").fill(question)
    page.locator("#chat-input textarea").press("Enter")
    answer, stats = _answer_of(page, question)
    assert same_answer(answer, s.answer), (question, s.answer, answer, stats)
    _picture(page, tmp_path, f"upload_{kind}.png")
    page.close()


@pytest.mark.parametrize("card", range(len(app.EXAMPLES)), ids=[e["file"] for e in app.EXAMPLES])
def test_the_demo_over_an_endpoint_answers_each_example_card_right(browser, endpoint_demo, tmp_path, card):
    """`mm-model demo URL` with `mm-model serve` (the bundled model) as the endpoint: the page says which
    model it talks to and where, and a card's click gets the answer the bundled model gives locally."""
    demo_url, endpoint = endpoint_demo
    example = app.EXAMPLES[card]
    playwright.expect.set_options(timeout=60_000)
    page = browser.new_page(viewport={"width": 1280, "height": 820})
    page.goto(demo_url)
    playwright.expect(page.locator("#model-info")).to_contain_text(
        f"Answers come from model tiny at {endpoint}"
    )
    page.get_by_text(example["question"]).first.click()
    answer, stats = _answer_of(page, example["question"])
    assert same_answer(answer, example["answer"]), (example, answer, stats)
    assert re.search(r"vision [1-9]\d* · ", stats), stats  # the endpoint's own count of vision tokens
    _picture(page, tmp_path, f"endpoint_example_{card + 1}.png")
    page.close()
