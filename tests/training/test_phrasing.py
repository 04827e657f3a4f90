import random
import re

import pytest

from training.generators import FAMILY_TASKS, sample
from training.generators.phrasing import HELD_OUT_WORDS, TEMPLATES, check_templates, word


def _question(s) -> str:
    content = s.messages[-1]["content"]
    return content if isinstance(content, str) else content[-1]["text"]


def _pattern(text: str) -> re.Pattern:
    """A template as a regex over a worded question (slots: any words), before `surface` noise."""
    parts = re.split(r"\{\w+\}", text)
    body = r"(?:\w|[ ,'.:])+?".join(re.escape(p.lower()) for p in parts)
    return re.compile(re.sub(r"(\\[?.])+$", "", body))


def _fold(question: str) -> str:
    return " ".join(question.lower().split()).rstrip("?.! ")


def _matches(question: str, templates) -> bool:
    q = _fold(question)
    return any(_pattern(text).search(q) for text, _ in templates)


KINDS = [(f, t) for f, tasks in FAMILY_TASKS.items() for t in tasks]


def test_templates_name_only_known_slots():
    check_templates()


@pytest.mark.parametrize("family,task", KINDS)
def test_canonical_template_is_the_question_the_eval_splits_ask(family, task):
    for i in range(6):
        s = sample("heldout", i, family=family, task=task)
        if s.meta.get("options"):
            continue
        assert "canonical_answer" not in s.meta
        key = f"{family}/{task}" if task != "position" else None
        templates = [TEMPLATES[k][0] for k in TEMPLATES if k == key or (key is None and "position" in k)]
        assert _matches(_question(s), templates), _question(s)


@pytest.mark.parametrize("family,task", KINDS)
def test_phrasing_split_asks_only_held_out_wordings(family, task):
    held = [t for k, v in TEMPLATES.items() if k.startswith(f"{family}/{task}") for t in v[2]]
    for i in range(12):
        q = _question(sample("phrasing", i, family=family, task=task))
        assert _matches(q, held), q


def test_training_never_asks_a_held_out_wording_or_word():
    held_texts = [t for v in TEMPLATES.values() for t in v[2]]
    held_words = {w for words in HELD_OUT_WORDS.values() for w in words}
    seen_templates = set()
    for i in range(600):
        s = sample("train", i)
        q = _question(s)
        assert not (set(re.findall(r"[a-z]+", q.lower())) & held_words), q
        for family_task in TEMPLATES:
            if family_task.startswith(f"{s.family}/{s.task}"):
                for text, _ in TEMPLATES[family_task][1]:
                    if _pattern(text).search(_fold(q)):
                        seen_templates.add(text)
        # a held-out template never matches unless a trained one does too (shared prefixes)
        if _matches(q, held_texts):
            assert any(_matches(q, (*v[1], v[0])) for v in TEMPLATES.values()), q
    assert len(seen_templates) > 40  # the training stream really is worded many ways


def test_answer_forms_follow_the_wording():
    rng = random.Random(0)
    s = sample("heldout", 3, family="video", task="direction")
    from training.generators.common import QA

    qa = QA("direction", "Which way does the red circle move?", "left",
            slots={"kind": "video/direction", "colour": "red", "shape": "circle"})  # fmt: skip
    forms = {word(qa, rng, "train")[1] for _ in range(300)}
    assert "left" in forms
    assert {"the circle moves left", "the ball moves left", "the red circle moves left"} & forms
    assert all(f == "left" or f.endswith("moves left") for f in forms)
    assert s.answer in ("left", "right", "up", "down")


def test_first_appear_is_answered_with_the_word_the_question_used():
    rng = random.Random(1)
    from training.generators.common import QA

    qa = QA("first_appear", "Which appears first, the circle or the square?", "circle",
            slots={"kind": "video/first_appear", "a_shape": "circle", "b_shape": "square"})  # fmt: skip
    for _ in range(200):
        q, a = word(qa, rng, "train")
        assert a in ("circle", "ball")
        assert a in q.lower()


def test_describe_names_every_shape_left_to_right_with_its_article():
    from training.generators.images import describe

    objects = [dict(shape="circle", colour="orange", x=50, y=0, r=1), dict(shape="square", colour="red", x=10, y=0, r=1),
               dict(shape="diamond", colour="blue", x=90, y=0, r=1)]  # fmt: skip
    assert describe(objects).answer == "a red square, an orange circle and a blue diamond"
    assert describe(objects[:1]).answer == "an orange circle"
    s = sample("heldout", 0, family="image", task="describe")
    assert s.answer.count(" a ") + s.answer.startswith("a ") + s.answer.count("an ") == len(s.meta["objects"])


def test_trained_wordings_sometimes_put_a_made_up_word_in_a_synonym_slot():
    from training.generators.common import QA
    from training.generators.phrasing import WORDS, novel_word

    qa = QA(
        "colour_of", "What colour is the circle?", "red", slots={"kind": "image/colour_of", "shape": "circle"}
    )
    known = {w for pair in WORDS.values() for words in pair for w in words}
    rng = random.Random(1)
    slot_words = set()
    for _ in range(400):
        q, answer = word(qa, rng, "train")
        assert answer == "red"
        slot_words |= set(re.findall(r"[a-z]+", q.lower()))
    made_up = slot_words - known - {"what", "is", "the", "circle", "ball", "which", "of", "tell", "me", "in"}
    made_up -= {"a", "please", "quick", "question", "hey", "thanks", "answer", "briefly"}
    assert len(made_up) > 10  # P_NOVEL of the cw slots
    assert not made_up & {w for words in HELD_OUT_WORDS.values() for w in words}
    rng = random.Random(2)
    assert all(novel_word(rng) not in known for _ in range(2000))
    from training.generators.phrasing import PREFIXES, SUFFIXES

    written = " ".join(t for v in TEMPLATES.values() for t, _ in (v[0], *v[1], *v[2]))
    written += " ".join(x for pair in (*PREFIXES, *SUFFIXES) for x in pair) + " circle ball"
    vocabulary = set(re.findall(r"[a-z]+", written.lower())) | known
    held = [word(qa, random.Random(i), "heldout")[0].lower() for i in range(200)]
    assert not any(set(re.findall(r"[a-z]+", q)) - vocabulary for q in held)  # no made-up word held out
