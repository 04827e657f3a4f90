"""Batches on a tiny model: prompts match inference, labels mask the prompt, the per-token targets."""

from __future__ import annotations

import torch

from training.batches import (
    AUX_KINDS,
    IGNORE,
    attention_targets,
    aux_targets,
    collate,
    encode,
    object_targets,
    token_positions,
)
from training.generators import sample


def test_prompt_is_the_inference_prompt_and_loss_only_on_the_answer(setup):
    tok, _model, proc = setup
    for family in ("image", "video", "chat"):
        s = sample("train", 2, family=family)
        e = encode(s, proc, tok)
        prompt = proc(s.messages, thinking=s.thinking).input_ids
        n = len(prompt)
        assert torch.equal(e.ids[:n], prompt)
        assert (e.labels[:n] == IGNORE).all()
        assert tok.decode(e.labels[n:].tolist()) == s.target_text()


def test_collate_right_pads_and_packs_media_in_order(setup):
    tok, _, proc = setup
    encs = [encode(sample("train", i, family="image"), proc, tok) for i in range(3)]
    b = collate(encs, tok.special_tokens["[PAD]"])
    assert b["input_ids"].shape == (3, max(len(e.ids) for e in encs))
    assert b["grid_thws"].shape == (3, 3)
    assert b["pixel_values"].shape[0] == sum(e.patches.shape[0] for e in encs)
    short = min(range(3), key=lambda i: len(encs[i].ids))
    assert (b["labels"][short, len(encs[short].ids) :] == IGNORE).all()


def test_aux_targets_only_for_media_only_kinds_and_token_counts_match_the_packed_media(setup):
    tok, model, proc = setup
    samples = [sample("train", 0, family="basics", task="shape_single"),
               sample("train", 1, family="image", task="colour_of"),
               sample("train", 2, family="video", task="direction"),
               sample("train", 3, family="chat")]  # fmt: skip
    encs = [encode(s, proc, tok) for s in samples]
    t = aux_targets(samples, encs, proc)
    assert t["kinds"][:3] == ["basics/shape_single", "image/colour_of", "video/direction"]
    assert t["kinds"][3].startswith("chat/")
    assert "image/colour_of" not in AUX_KINDS  # its answer depends on which shape the question names
    assert t["aux_targets"][0] == tok.encode(samples[0].answer)[0] and t["aux_targets"][2] is not None
    assert t["aux_targets"][1] is None and t["aux_targets"][3] is None
    batch = collate(encs, tok.special_tokens["[PAD]"])
    packed = model.pack(batch["pixel_values"], batch["grid_thws"])
    assert sum(map(sum, t["media_tokens"])) == sum(packed.tokens)


def test_object_targets_label_the_tokens_under_each_shape_and_nothing_else(setup):
    from training.generators.common import COLOUR_NAMES, SHAPES

    tok, model, proc = setup
    media = model.config.media
    for i in range(20):
        s = sample("heldout", i, family="image")
        e = encode(s, proc, tok)
        t = object_targets(s, e, media)
        _, gh, gw = e.grids[0]
        cols = gw // 2
        assert t.shape == ((gh // 2) * cols, 4)
        labelled = t[:, 0] >= 0
        assert ((t[:, 1] >= 0) == labelled).all() and (t[:, 2] == -1).all()
        centres = []
        for o in s.meta["objects"]:  # sizes here are never resized: one token is 28 x 28 pixels
            row, col = int(o["y"] // 28), int(o["x"] // 28)
            want = [SHAPES.index(o["shape"]), COLOUR_NAMES.index(o["colour"]), -1]
            assert t[row * cols + col, :3].tolist() == want  # the token holding its centre
            centres.append(row * cols + col)
        # one centre token per object (the later one where two share a cell), -1 for every other token
        last = {cell: i for i, cell in enumerate(centres)}
        assert {k: int(t[k, 3]) for k in last} == last and (t[:, 3] >= 0).sum() == len(last)
        assert ((t[:, 3] == -1) | (t[:, 3] >= 0)).all()
        # most of the image is background: a shape covers a few of the tokens
        assert 0 < labelled.sum() <= 4 * len(s.meta["objects"]) and labelled.float().mean() < 0.8
    for family, task in (("video", "direction"), ("chat", None)):
        s = sample("train", 0, family=family, task=task)
        e = encode(s, proc, tok)
        t = object_targets(s, e, media)
        assert t.shape[0] == sum((g[1] // 2) * (g[2] // 2) for g in e.grids)
        assert (t[:, :3] == -1).all() and (t[:, 3] == -2).all()  # no image: no centres either


def test_object_targets_of_a_screenshot_are_its_words_where_they_are_written(setup):
    from training.generators.common import COLOUR_NAMES
    from training.generators.screenshots import WORDS

    tok, model, proc = setup
    for i, task in enumerate(("highlighted", "button_colour", "title", "field")):
        s = sample("heldout", i, family="screenshot", task=task)
        e = encode(s, proc, tok)
        t = object_targets(s, e, model.config.media)
        cols = e.grids[0][2] // 2
        assert (t[:, 0] == -1).all() and (t[:, 3] == -2).all()  # no shapes
        words = [WORDS[k] for k in t[:, 2].tolist() if k >= 0]
        # a cell holds one word (two rows of check boxes may share one): every button's label is there
        assert set(words) <= {x["word"] for x in s.meta["texts"]}
        assert set(words) >= {x["word"] for x in s.meta["texts"] if x.get("button")}
        title = [WORDS[k] for k in t[:cols, 2].tolist() if k >= 0]  # the title bar: the first row
        assert title and set(title) == {s.meta["texts"][0]["word"]}
        if task == "highlighted":
            assert f"{s.answer}*" in words and not any(w.endswith("*") and w != f"{s.answer}*" for w in words)
        if task == "button_colour":  # its label, and its colour, under the same tokens
            label = s.messages[-1]["content"][-1]["text"].split("the ")[1].removesuffix(" button?")
            rows = t[t[:, 2] == WORDS.index(label)]
            assert len(rows) and (rows[:, 1] == COLOUR_NAMES.index(s.answer)).all()


def test_object_targets_of_a_video_follow_its_chunks(setup):
    from training.generators.common import SHAPES

    tok, model, proc = setup
    for i in range(10):
        s = sample("heldout", i, family="video", task="first_appear")
        e = encode(s, proc, tok)
        t = object_targets(s, e, model.config.media)
        assert (t[:, 2] == -1).all()
        chunks = s.meta["chunk_objects"]
        assert len(e.grids) == len(chunks) >= 2
        first = SHAPES.index(s.answer)
        per_chunk = t[:, 0].split([(g[1] // 2) * (g[2] // 2) for g in e.grids])
        # chunk by chunk: the labelled shapes are exactly the objects shown by then
        for labels, objects in zip(per_chunk, chunks):
            assert set(labels[labels >= 0].tolist()) == {SHAPES.index(o["shape"]) for o in objects}
        assert set(per_chunk[-1][per_chunk[-1] >= 0].tolist()) >= {first}


def test_attention_targets_are_the_tokens_of_each_object_the_question_names(setup):
    from training.generators.common import COLOUR_NAMES, SHAPES
    from training.generators.screenshots import WORDS

    tok, model, proc = setup
    media = model.config.media

    def targets(s):
        e = encode(s, proc, tok)
        rows, where = object_targets(s, e, media), token_positions(e.grids, 2)
        counts = [(g[1] // 2) * (g[2] // 2) for g in e.grids]
        return rows, attention_targets(s, rows, where, counts), counts

    for i in range(8):  # left/right: both objects, in the order the question names them
        s = sample("heldout", i, family="image", task="position")
        rows, refs, _ = targets(s)
        assert len(refs) == 2
        named = s.messages[-1]["content"][-1]["text"]
        for (tokens, where, count), ref in zip(refs, s.meta["refs"]):
            assert count == -1
            assert (rows[tokens, 0] == SHAPES.index(ref["shape"])).all()
            assert (rows[tokens, 1] == COLOUR_NAMES.index(ref["colour"])).all()
            o = next(
                o for o in s.meta["objects"] if (o["shape"], o["colour"]) == (ref["shape"], ref["colour"])
            )
            w, h = s.meta["size"]
            assert abs(where[0] - o["x"] / w) < 28 / w and abs(where[1] - o["y"] / h) < 28 / h
        a, b = (f"{r['colour']} {r['shape']}" for r in s.meta["refs"])
        assert named.index(a) < named.index(b)
    s = sample("heldout", 0, family="image", task="shape_of")
    rows, refs, _ = targets(s)
    assert len(refs) == 1 and (rows[refs[0][0], 0] == SHAPES.index(s.answer)).all()
    s = sample("heldout", 0, family="screenshot", task="button_colour")
    rows, refs, _ = targets(s)
    assert len(refs) == 1 and (rows[refs[0][0], 1] == COLOUR_NAMES.index(s.answer)).all()
    s = sample("heldout", 0, family="screenshot", task="highlighted")
    rows, refs, _ = targets(s)
    assert {WORDS[k] for k in rows[refs[0][0], 2].tolist()} == {f"{s.answer}*"}
    s = sample("heldout", 3, family="video", task="at_time")
    rows, refs, counts = targets(s)
    chunk = s.meta["refs"][0]["chunk"]
    assert refs[0][0].tolist() == list(range(sum(counts[:chunk]), sum(counts[: chunk + 1])))
    assert targets(sample("heldout", 0, family="video", task="direction"))[1] == []  # nothing named
    seen = set()
    for i in range(30):  # a count: the centre token of each object counted, one each, and how many
        s = sample("heldout", i, family="image", task=("count_all", "count_colour")[i % 2])
        rows, refs, _ = targets(s)
        question = s.messages[-1]["content"][-1]["text"]  # "How many red shapes are there?"
        colour = question.split()[2] if s.task == "count_colour" else None
        if colour and s.answer != "0":  # the colour's tokens, looked at as any named colour's are
            look = refs[0][0]
            assert refs[0][2] == -1 and (rows[look, 1] == COLOUR_NAMES.index(colour)).all()
        if not refs or refs[-1][2] < 0:  # two centres in one cell: not counted
            continue
        tokens, where, count = refs[-1]
        counted = [k for k, o in enumerate(s.meta["objects"]) if colour in (None, o["colour"])]
        assert count == int(s.answer) == len(tokens) and sorted(rows[tokens, 3].tolist()) == counted
        if count == 0:
            assert where.tolist() == [0.5, 0.5]
        else:  # the counted objects' mean place, to within a cell
            w, h = s.meta["size"]
            x = sum(s.meta["objects"][k]["x"] for k in counted) / count / w
            assert abs(where[0] - x) < 28 / w
        seen.add((s.task, count > 0))
    assert seen == {("count_all", True), ("count_colour", True), ("count_colour", False)}
    counts = (sample("train", i, family="image", task="count_colour") for i in range(80))
    thinking = next(s for s in counts if s.thinking and s.meta["refs"])
    assert targets(thinking)[1] == []  # a trace enumerates the objects itself


def test_token_positions_are_cell_centres_per_item_in_packing_order():
    got = token_positions([(1, 4, 6), (4, 2, 2)], 2)  # a 2 x 3 image, then one 1 x 1 video chunk
    want = [[1 / 6, 0.25], [0.5, 0.25], [5 / 6, 0.25], [1 / 6, 0.75], [0.5, 0.75], [5 / 6, 0.75], [0.5, 0.5]]
    assert torch.allclose(got, torch.tensor(want))
    assert token_positions([], 2).shape == (0, 2)
