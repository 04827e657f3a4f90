"""The curriculum generators: seeded, split-separated, sizes in their declared ranges."""

from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image

from training.generators import FAMILY_TASKS, MIXES, parse_mix, sample
from training.generators.common import COLOUR_NAMES, SHAPES
from training.generators.screenshots import BUTTONS, TITLES, VALUES
from training.generators.videos import stamp


def _media(s):
    part = s.messages[0]["content"][0]
    return part.get("image") if part["type"] == "image" else part["video"]


def _pixels(media) -> bytes:
    frames = media if isinstance(media, list) else [media]
    return b"".join(np.asarray(f).tobytes() for f in frames)


@pytest.mark.parametrize("family", ["image", "screenshot", "video", "chat", "basics"])
def test_same_seed_same_sample(family):
    a, b = sample("train", 7, family=family), sample("train", 7, family=family)
    assert (a.task, a.answer, a.trace, a.messages[1:]) == (b.task, b.answer, b.trace, b.messages[1:])
    assert _pixels(_media(a)) == _pixels(_media(b))


def test_splits_and_indices_differ():
    texts = {
        (split, i): _pixels(_media(sample(split, i, family="image")))
        for split in ("train", "heldout")
        for i in range(5)
    }
    assert len(set(texts.values())) == len(texts)


@pytest.mark.parametrize(
    "family, task",
    [(f, t) for f, tasks in FAMILY_TASKS.items() for t in tasks],
)
def test_every_task_answers_from_its_vocabulary(family, task):
    vocab = {
        "count_all": {str(i) for i in range(1, 7)},
        "count_colour": {str(i) for i in range(0, 7)},
        "colour_of": set(COLOUR_NAMES),
        "shape_of": set(SHAPES),
        "position": {"left", "right", "above", "below"},
        "title": set(TITLES),
        "highlighted": set(BUTTONS),
        "button_colour": set(COLOUR_NAMES),
        "checked": {"0", "1", "2", "3"},
        "field": set(VALUES),
        "direction": {"left", "right", "up", "down"},
        "flashes": {"1", "2", "3"},
        "first_appear": set(SHAPES),
        "at_time": set(COLOUR_NAMES),
        "colour_single": set(COLOUR_NAMES),
        "shape_single": set(SHAPES),
    }
    for i in range(3):
        s = sample("train", i, family=family, task=task)
        assert s.task == task and s.family == family
        answer = s.meta["options"]["ABCD".index(s.answer)] if "options" in s.meta else s.answer
        answer = s.meta.get("canonical_answer", answer)  # "the ball moves left" is "left"
        if task == "describe":
            names = re.split(r", | and ", answer)
            assert len(names) == len(s.meta["objects"])
            for name in names:
                article, colour, shape = name.split(" ")
                assert article == ("an" if colour == "orange" else "a")
                assert colour in COLOUR_NAMES and shape in SHAPES
        elif task == "colour_order":
            parts = answer.split(", ")
            assert 2 <= len(parts) <= 3 and set(parts) <= set(COLOUR_NAMES)
        else:
            assert answer in vocab[task], (task, answer)


def test_seen_and_unseen_resolutions_do_not_overlap():
    seen = {sample("heldout", i, family="image").meta["size"] for i in range(30)}
    unseen = {sample("unseen", i, family="image").meta["size"] for i in range(30)}
    assert all(84 <= w <= 168 and 84 <= h <= 168 for w, h in seen)
    # unseen: a side beyond 168 or an aspect ratio beyond 2
    assert all(max(w, h) > 168 or max(w, h) > 2 * min(w, h) for w, h in unseen)


def test_video_lengths_and_chunk_alignment():
    for i in range(10):
        s = sample("train", i, family="video")
        frames = _media(s)
        assert 4 <= len(frames) <= 24 and all(isinstance(f, Image.Image) for f in frames)
        long = sample("long", i, family="video")
        assert len(_media(long)) >= 32
    assert stamp(0) == "00:00:00.000" and stamp(3) == "00:00:06.000" and stamp(40) == "00:01:20.000"


def test_thinking_traces_only_where_defined_and_longer_for_harder():
    s = [sample("train", i, family="image", task="count_all") for i in range(40)]
    assert any(x.thinking for x in s) and not all(x.thinking for x in s)
    by_n = {int(x.answer): len(x.trace) for x in s}
    assert by_n[max(by_n)] > by_n[min(by_n)]
    assert all(not sample("heldout", i, family="image", task="count_all").thinking for i in range(10))
    t = next(x for x in s if x.thinking)
    assert t.target_text() == f"{t.trace}</think>{t.answer}<|im_end|>"


def test_multi_turn_chat_has_history():
    s = sample("train", 3, family="chat")
    roles = [m["role"] for m in s.messages]
    assert roles == ["user", "assistant", "user"]
    assert s.messages[0]["content"][0]["type"] == "image"


def test_ground_mix_draws_basics_and_default_mix_does_not():
    from training.generators import GROUND_MIX

    default = {sample("train", i).family for i in range(60)}
    ground = {sample("train", i, mix=GROUND_MIX).family for i in range(60)}
    assert "basics" not in default and "basics" in ground and "video" not in ground


def test_a_mix_can_name_single_tasks_and_is_normalised():
    assert parse_mix("ground") == MIXES["ground"]
    mix = parse_mix("screenshot/title=3,video")
    assert mix == (("screenshot/title", 0.75), ("video", 0.25))
    drawn = [sample("train", i, mix=mix) for i in range(60)]
    assert {(s.family, s.task) for s in drawn if s.family == "screenshot"} == {("screenshot", "title")}
    assert len({s.task for s in drawn if s.family == "video"}) > 1  # a family entry draws its tasks
    assert 30 < sum(s.family == "screenshot" for s in drawn) < 55
    for bad in ("screenshot/nope", "pictures", "video/title"):
        with pytest.raises(ValueError, match="unknown mix entry"):
            parse_mix(bad)


def test_training_videos_include_lettered_questions_worded_as_the_benchmarks_ask():
    """Some training video questions are multiple choice, in the synthetic suite's own prompt
    wording, answered with the letter of the right option; held-out questions stay open."""
    from benchmarks.video_suites.prompts import build_prompt
    from benchmarks.video_suites.schema import Sample as SuiteSample

    lettered = [s for s in (sample("train", i, family="video") for i in range(60)) if "options" in s.meta]
    assert 5 <= len(lettered) <= 40
    for s in lettered:
        options, text = s.meta["options"], s.messages[-1]["content"][-1]["text"]
        assert s.answer in "ABCD"[: len(options)] and len(options) == len(set(options))
        question = text.split("\n")[0].removeprefix("Question: ")
        item = SuiteSample(
            id="", suite="generic", video="", question=question, options=tuple(options), answer="A"
        )
        assert text == build_prompt(item)
    assert not any("options" in sample("heldout", i, family="video").meta for i in range(30))
    for i in range(20):  # the evaluation's lettered split: every question, answered with a letter
        s = sample("letters", i, family="video")
        assert "options" in s.meta and s.answer in "ABCD"[: len(s.meta["options"])]
        assert s.messages[-1]["content"][-1]["text"].startswith("Question: ")


def test_some_training_screenshots_are_shrunk_with_their_word_boxes_and_no_other_split_is():
    from training.generators.screenshots import P_SHRINK, SEEN_HEIGHT, SEEN_WIDTH, SHRINK

    def picture(s):
        return next(p["image"] for p in s.messages[-1]["content"] if p["type"] == "image")

    shrunk = 0
    for i in range(80):
        s = sample("train", i, family="screenshot")
        w, h = picture(s).size
        assert s.meta["size"] == (w, h)
        if w < SEEN_WIDTH[0] or h < SEEN_HEIGHT[0]:
            shrunk += 1
            assert w >= SEEN_WIDTH[0] * SHRINK[0] - 1 and h >= SEEN_HEIGHT[0] * SHRINK[0] - 1
        for t in s.meta["texts"]:
            x0, y0, x1, y1 = t["box"]
            assert 0 <= x0 < x1 <= w + 1 and 0 <= y0 < y1 <= h + 1
    assert 0.1 < shrunk / 80 < P_SHRINK + 0.15
    for split in ("heldout", "phrasing", "unseen"):
        for i in range(20):
            w, h = picture(sample(split, i, family="screenshot")).size
            assert w >= SEEN_WIDTH[0] and h >= SEEN_HEIGHT[0]


@pytest.mark.parametrize("family, task", [("image", "count_all"), ("image", "count_colour"),
                                          ("screenshot", "checked"), ("video", "flashes")])  # fmt: skip
def test_counting_traces_are_numbered_and_end_on_the_count(family, task):
    for i in range(15):
        s = sample("heldout", i, family=family, task=task)
        if s.answer == "0":
            assert s.trace == "none."
            continue
        items = s.trace.rstrip(".").split(", ")
        assert [it.split(" ", 1)[0] for it in items] == [str(k) for k in range(1, len(items) + 1)]
        assert items[-1].split(" ", 1)[0] == s.answer


def test_colour_traces_give_each_chunk_its_time_and_colour():
    from training.generators.videos import stamp

    for i in range(15):
        s = sample("heldout", i, family="video", task="colour_order")
        pairs = [p.split(" ") for p in s.trace.rstrip(".").split(", ")]
        # each time is the seconds token of the chunk's prompt stamp ('00:00:04.000' -> '04s')
        assert [t for t, _ in pairs] == [stamp(c)[6:8] + "s" for c in range(len(pairs))]
        colours = [c for _, c in pairs]
        assert ", ".join(c for k, c in enumerate(colours) if k == 0 or c != colours[k - 1]) == s.answer
        s = sample("heldout", i, family="video", task="at_time")
        question = s.messages[0]["content"][-1]["text"]
        last_time, last_colour = s.trace.rstrip(".").split(", ")[-1].split(" ")
        assert question.endswith("?") and question[-13:-1][6:8] + "s" == last_time and last_colour == s.answer


def test_about_half_the_training_traces_are_checked_again():
    from training.generators import RECHECK

    thinking = [s for s in (sample("train", i) for i in range(500)) if s.thinking]
    doubled = [s for s in thinking if " check: " in s.trace]
    assert all(s.trace == " check: ".join([s.trace.split(" check: ")[0]] * 2) for s in doubled)
    assert abs(len(doubled) / len(thinking) - RECHECK) < 0.15
    assert all(not sample(split, i, family="image", task="count_all").thinking for split in ("heldout", "phrasing")
               for i in range(5))  # fmt: skip
