"""The bundled default model (`mm_model.load()`): fixed held-out questions through `Model.chat`.

The questions are held-out curriculum samples (seeds never used in training: `training.generators`,
split "heldout") that the bundled weights answer correctly, one per media kind: a shape image,
an app screenshot and a video (an H.264 mp4 written here, decoded by the video package). They
guard the bundled files and the end-to-end path (load, template, packing, decoding).

Caveat (eval_results.json, README): the current weights (ten stages) answer the curriculum's own
wordings (held out: images 95.3% on the earlier kinds, screenshots 96.0%, video 92.0%) and held-out
wordings in part (images 71.1%, screenshots 92.7%, video 62.0%). The pinned questions are answered
correctly by these weights and guard the end-to-end path. Re-pick them from a fresh
`python -m training.evaluate` after retraining.
"""

from __future__ import annotations

import json

import pytest
import torch

import mm_model
from benchmarks.common import same_answer
from training.generators import sample
from training.generators.common import COLOURS
from training.generators.videos import write_mp4

# (family, task, held-out index): chosen among the eval's correct answers (eval_results.json).
FIXED = [
    ("basics", "colour_single", 0),
    ("image", "count_all", 1),
    ("image", "position", 0),
    ("screenshot", "title", 0),
    ("screenshot", "button_colour", 0),
    ("video", "colour_order", 0),
    ("video", "flashes", 0),
]

# (family, task, index) of split "phrasing": held-out wordings, chosen among the eval's correct answers
PHRASED = [
    ("image", "colour_of", 0),
    ("image", "count_all", 1),
    ("image", "shape_of", 0),
    ("image", "position", 0),
    ("screenshot", "title", 0),
    ("screenshot", "checked", 0),
    ("screenshot", "field", 0),
    ("video", "direction", 0),
    ("video", "flashes", 0),
    ("video", "at_time", 0),
]


@pytest.fixture(scope="module")
def model():
    return mm_model.load("tiny", dtype=torch.float32, device="cpu")


def _messages(family, task, index, tmp_path, split="heldout"):
    s = sample(split, index, family=family, task=task)
    messages = s.messages
    if family == "video":
        content = list(messages[0]["content"])
        content[0] = {"type": "video", "video": str(write_mp4(content[0]["video"], tmp_path / "clip.mp4"))}
        messages = [{"role": "user", "content": content}]
    return s, messages


def test_bundled_files_are_small_and_complete(model):
    files = {p.name: p.stat().st_size for p in model.path.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "preprocessor_config.json"} <= set(files)
    assert files["model.safetensors"] <= 60 * 1024**2
    assert mm_model.load().path == model.path == mm_model.load(None).path  # the default


def test_auto_budgets_come_from_the_bundled_weights_thinking_runs(model):
    """budget="auto" must describe the weights it ships with: the calibration is the one that
    `python -m training.evaluate --calibration` builds from the thinking runs in eval_results.json
    (a retrained model once shipped with the previous stage's budgets)."""
    from mm_model.toggle import CALIBRATION_FILE, Calibration, build_calibration

    runs = json.loads((model.path / "eval_results.json").read_text())["thinking_runs"]
    assert runs and Calibration.load(model.path / CALIBRATION_FILE) == build_calibration(
        runs, rho=90, model_id="tiny"
    )


@pytest.mark.parametrize("family, task, index", FIXED, ids=[f"{f[0]}-{f[1]}" for f in FIXED])
def test_fixed_heldout_questions(model, family, task, index, tmp_path):
    s, messages = _messages(family, task, index, tmp_path)
    r = model.chat(messages, max_new_tokens=12)
    assert r.text.strip() == s.answer, (r.text, s.answer)
    assert r.usage["vision_tokens"] > 0


@pytest.mark.parametrize("family, task, index", PHRASED, ids=[f"{f[0]}-{f[1]}" for f in PHRASED])
def test_held_out_wordings(model, family, task, index, tmp_path):
    """People's own words: wordings held out of training (split "phrasing"), the whole answer compared."""
    s, messages = _messages(family, task, index, tmp_path, split="phrasing")
    r = model.chat(messages, max_new_tokens=32)
    assert same_answer(r.text, s.answer), (messages[0]["content"][-1]["text"], r.text, s.answer)


@pytest.mark.parametrize("colour", ["red", "blue"])
@pytest.mark.parametrize("question", ["What colour is the circle?", "What color is the circle?",
                                      "what's the colour of the ball", "Can you tell me the hue of the circle?"])  # fmt: skip
def test_a_plain_circle_asked_as_people_ask(model, colour, question):
    """The new user's first try (one circle on white): UK and US spelling, an object word, a synonym held
    out of training ("hue"); the answer is the colour word and nothing after it."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (140, 120), "white")
    ImageDraw.Draw(image).ellipse((45, 35, 85, 75), fill=COLOURS[colour])
    r = model.chat([{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": question}]}],
                   max_new_tokens=12)  # fmt: skip
    assert r.text == colour and r.finish_reason == "stop", (question, r.text)


def test_demo_example_cards_are_answered_right(model):
    """The demo's cards (mm_model/assets/examples.json) through Model.chat: the whole expected answer."""
    import json

    from mm_model.cli import example_screenshot

    assets = example_screenshot().parent
    for card in json.loads((assets / "examples.json").read_text()):
        kind = "video" if card["file"].endswith(".mp4") else "image"
        content = [
            {"type": kind, kind: str(assets / card["file"])},
            {"type": "text", "text": card["question"]},
        ]
        r = model.chat([{"role": "user", "content": content}], max_new_tokens=32)
        assert same_answer(r.text, card["answer"]), (card, r.text)


def test_generation_is_deterministic(model, tmp_path):
    _, messages = _messages("image", "count_all", 1, tmp_path)
    a = model.chat(messages, max_new_tokens=12)
    b = model.chat(messages, max_new_tokens=12)
    assert a.text == b.text
    c = model.chat(messages, max_new_tokens=12, temperature=1.0, seed=3)
    d = model.chat(messages, max_new_tokens=12, temperature=1.0, seed=3)
    assert c.text == d.text


def test_readme_example_window_is_the_generators_and_answered(model):
    """`make example` asks the title of `example_window.png`: the curriculum's own drawing (same pixels
    as the script makes now), which the bundled model answers."""
    from PIL import Image

    from mm_model.cli import example_screenshot
    from scripts.make_example_assets import WINDOW, draw_window

    window, info = draw_window()
    assert WINDOW.parent == example_screenshot().parent
    with Image.open(WINDOW) as bundled:
        assert bundled.size == window.size
        assert bundled.convert("RGB").tobytes() == window.tobytes()
    r = model.chat(
        [{"role": "user", "content": [{"type": "image", "image": str(WINDOW)},
                                      {"type": "text", "text": "What is the title of the window?"}]}],
        max_new_tokens=8,
    )  # fmt: skip
    assert r.text.strip() == info["title"]


def test_readme_example_video_is_the_generators_and_answered(model):
    """`make example` asks which way the shape in `example_moving.mp4` moves: a curriculum direction
    video (its frames, through H.264, as the script draws them now), which the bundled model answers."""
    import numpy as np

    from scripts.make_example_assets import MOVING, draw_moving
    from video.decode import load_video

    frames, question, answer = draw_moving()
    decoded = load_video(MOVING).frames  # sampled at the model's 2 fps: every frame
    assert len(decoded) == len(frames)
    for ours, theirs in zip(decoded, frames):
        w, h = theirs.size
        drawn = np.asarray(theirs.convert("RGB"), dtype=np.float32)[: h - h % 2, : w - w % 2]
        assert np.abs(np.asarray(ours, dtype=np.float32) - drawn).mean() < 4  # near-lossless (crf 8)
    r = model.chat(
        [
            {
                "role": "user",
                "content": [{"type": "video", "video": str(MOVING)}, {"type": "text", "text": question}],
            }
        ],
        max_new_tokens=8,
    )
    assert r.text.strip() == answer
