"""Trainer pieces on a tiny model: prompts match inference, labels mask the prompt, loss goes down."""

from __future__ import annotations

import math

import pytest
import torch

from mm_model.processor import Processor
from training.generators import sample
from training.tokenizer import build as build_tokenizer
from training.train import (
    AUX_KINDS,
    IGNORE,
    AuxHeads,
    RouterBalance,
    attention_targets,
    aux_targets,
    build,
    call_inputs,
    collate,
    count_swap_loss,
    encode,
    kind_curves,
    kind_losses,
    loss_fn,
    object_targets,
    param_groups,
    pooled_features,
    ref_attention,
    token_positions,
    training_batch,
)

SIZES = {"vision_hidden": 32, "vision_layers": 1, "lm_hidden": 64, "lm_layers": 2, "moe_inter": 32}


def train_cli(monkeypatch, out, *flags: str) -> None:
    """`python -m training.train --out OUT FLAGS` on the tiny sizes, batch 2, batches built in the loop."""
    import json
    import sys

    from training import train as trainer

    argv = ["train", "--out", str(out), "--workers", "0", "--batch", "2", "--sizes", json.dumps(SIZES), *flags]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    trainer.main()


@pytest.fixture(scope="module")
def setup():
    tok = build_tokenizer(vocab_size=1024, n=100, per_task=3)
    model = build(tok, 0, SIZES)
    return tok, model, Processor(model.config, tok)


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


def test_a_few_steps_reduce_the_loss_and_reach_the_vision_tower(setup):
    tok, model, proc = setup
    torch.manual_seed(0)
    model = build(tok, 0, SIZES).train()
    balance = RouterBalance(model)
    batch = collate([encode(sample("train", i), proc, tok) for i in range(4)], tok.special_tokens["[PAD]"])
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(8):
        loss = loss_fn(model, batch)
        opt.zero_grad()
        loss.backward()
        if not losses:
            grad = model.vision_tower.patch_embed.proj.weight.grad
            assert grad is not None and grad.abs().sum() > 0  # gradients flow through MoonViT-3D
        opt.step()
        balance.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses
    assert any(r.e_score_correction_bias.abs().sum() > 0 for r in balance.routers)


def test_media_scale_penalty_is_zero_at_matched_scales_and_positive_otherwise(setup):
    tok, model, proc = setup
    batch = collate(
        [encode(sample("train", i, family="image"), proc, tok) for i in range(2)], tok.special_tokens["[PAD]"]
    )
    stats: dict = {}
    plain = loss_fn(model, batch)
    with_penalty = loss_fn(model, batch, scale_weight=1.0, stats=stats)
    ratio = stats["media_rms"] / stats["text_rms"]
    assert with_penalty.item() == pytest.approx(
        plain.item() + torch.log(torch.tensor(ratio)).item() ** 2, rel=1e-4
    )


def test_checkpoint_round_trip_without_pickles(setup, tmp_path):
    from training.train import CKPT_TENSORS, load_ckpt, restore, save_ckpt

    tok, _, proc = setup
    model = build(tok, 0, SIZES).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batch = collate([encode(sample("train", i), proc, tok) for i in range(2)], tok.special_tokens["[PAD]"])
    loss_fn(model, batch).backward()
    opt.step()
    save_ckpt(tmp_path, model, opt, 7, 12.5, {"sizes": "{}", "batch": 2})
    assert (tmp_path / CKPT_TENSORS).read_bytes()[:8] != b"PK\x03\x04"  # not a zip/pickle archive
    fresh = build(tok, 1, SIZES)
    fresh_opt = torch.optim.AdamW(fresh.parameters(), lr=1e-3)
    tensors, info = load_ckpt(tmp_path)
    restore(tensors, info, fresh, fresh_opt)
    assert info["step"] == 7 and info["elapsed"] == 12.5
    for (name, a), b in zip(model.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), name
    a, b = opt.state_dict()["state"], fresh_opt.state_dict()["state"]
    assert a.keys() == b.keys()
    for idx in a:
        for name in a[idx]:
            assert torch.equal(torch.as_tensor(a[idx][name]), torch.as_tensor(b[idx][name])), (idx, name)


def test_loss_weighs_each_sample_equally_whatever_its_target_length(setup):
    """The batch loss is the mean over samples of each sample's mean token loss, so a long thinking
    trace counts as one sample, not as twenty answers."""
    tok, model, proc = setup
    long_s = next(
        s for s in (sample("train", i, family="image", task="count_all") for i in range(50)) if s.thinking
    )
    short_s = sample("train", 1, family="image", task="colour_of")
    encs = [encode(long_s, proc, tok), encode(short_s, proc, tok)]
    assert (encs[0].labels != IGNORE).sum() > 3 * (encs[1].labels != IGNORE).sum()
    pad = tok.special_tokens["[PAD]"]
    model.eval()
    with torch.no_grad():
        alone = [loss_fn(model, collate([e], pad)).item() for e in encs]
        both = loss_fn(model, collate(encs, pad)).item()
    assert both == pytest.approx(sum(alone) / 2, rel=1e-4)


def test_per_kind_losses_are_the_per_sample_losses_grouped_by_question_kind(setup):
    """The log's per-task learning curves: each kind's mean is the mean of its samples' own losses."""
    tok, model, proc = setup
    samples = [sample("train", i, family=f) for i, f in enumerate(("image", "video", "image", "chat"))]
    encs = [encode(s, proc, tok) for s in samples]
    pad = tok.special_tokens["[PAD]"]
    model.eval()
    with torch.no_grad():
        stats: dict = {}
        loss_fn(model, collate(encs, pad), stats=stats)
        alone = [loss_fn(model, collate([e], pad)).item() for e in encs]
    kinds = [f"{s.family}/{s.task}" for s in samples]
    by_kind = kind_losses(kinds, stats["per_sample"])
    assert set(by_kind) == set(kinds)
    for kind in set(kinds):
        own = [v for k, v in zip(kinds, alone) if k == kind]
        assert by_kind[kind] == pytest.approx(sum(own) / len(own), abs=1e-3)
    rows = [{"step": s, "kinds": {"a/x": float(s)}} for s in range(1, 201)] + [
        {"step": 150, "kinds": {"b/y": 1.0}}
    ]
    curves = kind_curves(rows, bin_steps=100)
    assert curves["a/x"] == ([100, 200], [50.5, 150.5]) and curves["b/y"] == ([200], [1.0])


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


def test_pooled_features_see_a_single_salient_token_and_the_first_and_last_chunk():
    flat = torch.ones(12, 8)  # (T, D): 12 identical tokens, a video of 3 chunks of 4
    edge = flat.clone()
    edge[5, 2] += 3.0  # one token of the middle chunk differs in one channel
    got = pooled_features(edge, 4, 4)
    assert got.shape == (40,) and got.pow(2).mean().sqrt().item() == pytest.approx(1.0, rel=1e-6)
    # [max | min | mean | first-chunk max | last-chunk max], up to the rms scale (got[0] is a 1)
    want = torch.ones(40)
    want[2], want[16 + 2] = 4.0, 1.25  # the max sees the whole 3.0; the mean a twelfth of it
    assert torch.allclose(got / got[0], want)
    late = flat.clone()
    late[-1, 0] -= 3.0  # in the last chunk only, downwards
    got = pooled_features(late, 4, 4)
    want = torch.ones(40)
    want[8], want[16] = -2.0, 0.75  # min and mean move; the chunk maxima do not
    assert torch.allclose(got / got[1], want)


def test_aux_loss_trains_the_vision_tower_and_the_heads(setup):
    tok, _, proc = setup
    model = build(tok, 0, SIZES).train()
    samples = [sample("train", i, family="basics") for i in range(4)]
    encs = [encode(s, proc, tok) for s in samples]
    batch = {**collate(encs, tok.special_tokens["[PAD]"]), **aux_targets(samples, encs, proc)}
    aux = AuxHeads(model.config.text.hidden_size, model.config.text.vocab_size)
    plain = loss_fn(model, batch)
    stats: dict = {}
    with_aux = loss_fn(model, batch, stats=stats, aux=aux, aux_weight=0.5)
    assert with_aux.item() == pytest.approx(plain.item() + 0.5 * stats["aux"], rel=1e-5)
    assert stats["aux"] > 0
    with_aux.backward()
    assert model.vision_tower.patch_embed.proj.weight.grad.abs().sum() > 0
    assert aux.heads["basics__shape_single"].weight.grad.abs().sum() > 0
    assert aux.heads["video__direction"].weight.grad is None  # no sample of that kind


def test_a_run_from_before_the_count_heads_resumes_with_fresh_ones_and_a_foreign_head_is_refused(
    setup, tmp_path
):
    from training.train import load_ckpt, restore, save_ckpt

    tok, _, _ = setup
    model = build(tok, 0, SIZES)
    dims = (model.config.text.hidden_size, model.config.text.vocab_size, model.config.text.v_head_dim)
    old = AuxHeads(*dims)
    del old.counted, old.centres  # the heads a stage-6 run did not have
    save_ckpt(tmp_path, model, torch.optim.AdamW(model.parameters()), 3, 1.0, {}, aux=old)
    tensors, info = load_ckpt(tmp_path)
    new = AuxHeads(*dims)
    restore(tensors, info, build(tok, 1, SIZES), aux=new)
    assert torch.equal(new.attended.weight, old.attended.weight)  # the run's heads kept
    tensors["aux/other.weight"] = torch.zeros(1)
    with pytest.raises(RuntimeError, match="aux heads do not match"):
        restore(tensors, info, build(tok, 1, SIZES), aux=AuxHeads(*dims))


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


def test_object_loss_trains_the_tower_and_the_object_head(setup):
    tok, _, proc = setup
    model = build(tok, 0, SIZES).train()
    samples = [sample("train", i, family="image") for i in range(3)] + [
        sample("train", 0, family="screenshot")
    ]
    batch = training_batch(samples, proc, tok)
    aux = AuxHeads(model.config.text.hidden_size, model.config.text.vocab_size)
    plain = loss_fn(model, batch)
    stats: dict = {}
    total = loss_fn(model, batch, stats=stats, aux=aux, object_weight=2.0)
    assert total.item() == pytest.approx(plain.item() + 2.0 * (stats["obj"] + stats["where"]), rel=1e-5)
    from training.generators.screenshots import WORDS

    chance = sum(math.log(k) for k in (4, 6, len(WORDS)))  # shape, colour, word: a random head's guess
    assert stats["obj"] == pytest.approx(chance, rel=0.3)
    loss_fn(model, batch, stats=stats, aux=aux, object_weight=2.0, count_weight=1.0)  # and the centres
    assert stats["obj"] - chance == pytest.approx(math.log(2), abs=0.3)
    total.backward()
    assert model.vision_tower.patch_embed.proj.weight.grad.abs().sum() > 0
    assert aux.objects.weight.grad.abs().sum() > 0 and aux.where.weight.grad.abs().sum() > 0


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


def attend_batch(tok, proc, n: int = 4) -> dict:
    samples = [sample("train", i, family="image", task="position") for i in range(n)]
    samples += [sample("train", 0, family="video", task="at_time"), sample("train", 0, family="chat")]
    return training_batch(samples, proc, tok)


def test_ref_attention_reads_what_the_layer_itself_computes(setup):
    tok, _, proc = setup
    model = build(tok, 0, SIZES).eval()
    batch = attend_batch(tok, proc)
    attn = model.language_model.model.layers[1].self_attn
    with (
        torch.no_grad(),
        call_inputs({0: attn, 1: attn.o_proj}) as seen,
    ):  # the layer's input, its heads' output
        model(batch["input_ids"], batch["pixel_values"], batch["grid_thws"])
        ref = ref_attention(attn, seen[0], batch, model.config.media_placeholder_token_id)
    assert ref["order"].tolist() == [0, 1] * 4 + [0]  # two objects per position question, one chunk
    # each head's read at the answer position is the layer's own output there (SDPA, causal)
    answers = [int((row != IGNORE).nonzero()[0]) - 1 for row in batch["labels"][:5]]
    heads = model.config.text.num_attention_heads
    own = torch.stack(
        [seen[1][0][i, a].view(heads, -1) for i, a in enumerate(answers) for _ in range(1 + (i < 4))]
    )
    assert torch.allclose(ref["read"], own, atol=1e-5)
    mass = ref["mass"].exp()
    assert ((mass > 0) & (mass < 1)).all()
    # an untrained layer spreads its attention: about the object's share of the tokens before the answer
    share = torch.tensor([len(t) / a for i, a in enumerate(answers) for t, _, _ in batch["attend"][i]])
    assert mass.mean(1).div(share).mean().item() == pytest.approx(1.0, abs=0.5)


def test_attention_loss_trains_the_supervised_layer_and_the_read_head(setup):
    tok, _, proc = setup
    model = build(tok, 0, SIZES).train()
    batch = attend_batch(tok, proc)
    aux = AuxHeads(model.config.text.hidden_size, model.config.text.vocab_size, model.config.text.v_head_dim)
    plain = loss_fn(model, batch)
    stats: dict = {}
    total = loss_fn(model, batch, stats=stats, aux=aux, attend_weight=0.5, attend_layer=1)
    assert total.item() == pytest.approx(plain.item() + 0.5 * (stats["attend"] + stats["read"]), rel=1e-5)
    assert stats["attend"] > 1 and stats["read"] > 0  # an untrained head: well under half its mass there
    total.backward()
    layers = model.language_model.model.layers
    assert layers[1].self_attn.q_b_proj.weight.grad.abs().sum() > 0
    assert aux.attended.weight.grad.abs().sum() > 0
    assert model.vision_tower.patch_embed.proj.weight.grad.abs().sum() > 0  # through the keys and values
    for p in model.parameters():
        p.grad = None
    no_refs = {**batch, "attend": [[] for _ in batch["attend"]]}
    stats = {}
    loss_fn(model, no_refs, stats=stats, aux=aux, attend_weight=0.5, attend_layer=1)
    assert "attend" not in stats


def test_a_count_attends_to_the_sink_and_the_centres_and_reads_how_many(setup):
    tok, _, proc = setup
    model = build(tok, 0, SIZES).train()
    samples = [
        sample("heldout", i, family="image", task=t) for i in range(4) for t in ("count_all", "count_colour")
    ]
    batch = training_batch(samples, proc, tok)
    kept = [i for i, refs in enumerate(batch["attend"]) if refs and refs[-1][2] >= 0]
    assert len(kept) >= 6
    attn = model.language_model.model.layers[1].self_attn
    with torch.no_grad(), call_inputs({0: attn, 1: attn.o_proj}) as seen:
        model(batch["input_ids"], batch["pixel_values"], batch["grid_thws"])
        ref = ref_attention(attn, seen[0], batch, model.config.media_placeholder_token_id)
    assert {"count_ce", "count_mass", "count_read", "count"} <= set(ref)
    assert ((ref["count_mass"] < 0) & (-ref["count_mass"] <= ref["count_ce"] + 1e-5)).all()
    assert ref["count"].tolist() == [int(samples[i].answer) for i in kept]
    heads = model.config.text.num_attention_heads
    answers = {i: int((batch["labels"][i] != IGNORE).nonzero()[0]) - 1 for i in kept}
    own = torch.stack([seen[1][0][i, answers[i]].view(heads, -1)[-1] for i in kept])  # the last head's
    assert torch.allclose(ref["count_read"], own, atol=1e-5)
    # cross-entropy against the uniform over k + 1 tokens: at least that uniform's entropy, and an
    # untrained head, spread over every token before the answer, pays about log(tokens)
    assert (ref["count_ce"] >= torch.log(ref["count"] + 1.0) - 1e-5).all()
    assert ref["count_ce"].mean().item() == pytest.approx(
        math.log(sum(answers.values()) / len(kept)), rel=0.3
    )
    aux = AuxHeads(model.config.text.hidden_size, model.config.text.vocab_size, model.config.text.v_head_dim)
    plain = loss_fn(model, batch)
    stats: dict = {}
    looks = loss_fn(model, batch, stats=stats, aux=aux, attend_weight=0.5, attend_layer=1)
    assert "count" not in stats  # the counting targets are their own flag
    assert looks.item() == pytest.approx(plain.item() + 0.5 * (stats["attend"] + stats["read"]), rel=1e-5)
    total = loss_fn(model, batch, stats=stats, aux=aux, attend_weight=0.5, attend_layer=1, count_weight=1.5)
    assert total.item() == pytest.approx(looks.item() + 1.5 * stats["count"], rel=1e-5)
    total.backward()
    assert aux.counted.weight.grad.abs().sum() > 0
    assert model.language_model.model.layers[1].self_attn.q_b_proj.weight.grad.abs().sum() > 0
    assert model.vision_tower.patch_embed.proj.weight.grad.abs().sum() > 0


def test_the_count_swap_gives_one_counts_head_output_to_another_and_asks_for_that_count(setup):
    tok, _, proc = setup
    model = build(tok, 0, SIZES).train()
    samples = [sample("heldout", i, family="image", task="count_all") for i in range(6)]
    assert len({s.answer for s in samples}) > 1
    batch = training_batch(samples, proc, tok)
    media = model.embed_pixels(batch["pixel_values"], batch["grid_thws"])
    attn = model.language_model.model.layers[1].self_attn
    with call_inputs({0: attn.o_proj}) as seen:
        model(batch["input_ids"], media_embeds=media)
    heads = seen[0][0]  # (B, S, H * v): every head's output, the count head's last
    swapped = count_swap_loss(model, batch, media, heads, 1)
    blanked = count_swap_loss(model, batch, media, torch.zeros_like(heads), 1)
    vocab = model.config.text.vocab_size
    assert swapped.item() == pytest.approx(math.log(vocab), rel=0.3)  # an untrained model's guess
    assert abs(swapped.item() - blanked.item()) > 1e-4  # what the head is given reaches the answer
    swapped.backward()
    assert attn.kv_b_proj.weight.grad.abs().sum() > 0  # the donor's values are trained too
    same = training_batch([samples[0]] * 3, proc, tok)  # no two counts differ: nothing to swap
    assert (
        count_swap_loss(model, same, model.embed_pixels(same["pixel_values"], same["grid_thws"]), heads, 1)
        is None
    )
    stats: dict = {}
    aux = AuxHeads(model.config.text.hidden_size, vocab, model.config.text.v_head_dim)
    total = loss_fn(
        model,
        batch,
        stats=stats,
        aux=aux,
        attend_weight=0.5,
        attend_layer=1,
        count_weight=0.5,
        swap_weight=2.0,
    )
    plain = loss_fn(model, batch)
    assert total.item() == pytest.approx(plain.item() + 0.5 * stats["count"] + 2.0 * stats["swap"], rel=1e-5)


def test_token_positions_are_cell_centres_per_item_in_packing_order():
    got = token_positions([(1, 4, 6), (4, 2, 2)], 2)  # a 2 x 3 image, then one 1 x 1 video chunk
    want = [[1 / 6, 0.25], [0.5, 0.25], [5 / 6, 0.25], [1 / 6, 0.75], [0.5, 0.75], [5 / 6, 0.75], [0.5, 0.5]]
    assert torch.allclose(got, torch.tensor(want))
    assert token_positions([], 2).shape == (0, 2)


def test_param_groups_put_the_multiplier_on_vision_only(setup):
    tok, _, _ = setup
    model = build(tok, 0, SIZES)
    groups = param_groups(model, 3.0)
    names = {id(p): n for n, p in model.named_parameters()}
    assert sum(len(g["params"]) for g in groups) == len(names)
    for g in groups:
        vision = {names[id(p)].startswith(("vision_tower.", "mm_projector.")) for p in g["params"]}
        assert vision == {g["lr_mult"] == 3.0}
        assert all(
            (p.dim() >= 2 and "embed" not in names[id(p)]) == (g["weight_decay"] > 0) for p in g["params"]
        )


def test_a_run_with_aux_heads_resumes_them_and_their_optimizer_state(tmp_path, monkeypatch):
    from training import train as trainer

    def run(steps: int) -> None:
        train_cli(monkeypatch, tmp_path, "--mix", "basics", "--steps", str(steps), "--aux-weight", "1",
                  "--vision-lr-mult", "2")  # fmt: skip

    run(2)
    tensors, info = trainer.load_ckpt(tmp_path)
    assert info["step"] == 2 and any(k.startswith("aux/") for k in tensors)
    assert [g["lr_mult"] for g in info["param_groups"]][-1] == 2.0  # the aux group
    saved = {k: v.clone() for k, v in tensors.items() if k.startswith("aux/")}
    run(3)
    tensors, info = trainer.load_ckpt(tmp_path)
    assert info["step"] == 3
    assert any(not torch.equal(saved[k], tensors[k]) for k in saved)  # trained on from the restored heads
    # a probe (or any reader) of the run gets its trained heads through load_weights
    from training.probe import load_start

    _, heads, _ = load_start(str(tmp_path), 0, SIZES)
    assert all(
        torch.equal(heads.state_dict()[k.removeprefix("aux/")], v)
        for k, v in tensors.items()
        if k.startswith("aux/")
    )


def test_a_run_resumes_a_checkpoint_from_before_an_aux_head_was_added(tmp_path, monkeypatch):
    import json

    from safetensors.torch import save_file

    from training import train as trainer

    def run(steps: int) -> None:
        train_cli(monkeypatch, tmp_path, "--mix", "image", "--steps", str(steps), "--aux-weight", "1",
                  "--object-weight", "1")  # fmt: skip

    run(2)
    tensors, info = trainer.load_ckpt(tmp_path)
    # make it an older run's checkpoint: no word head, its aux group two tensors shorter
    for key in [k for k in tensors if k.startswith("aux/words.")]:
        del tensors[key]
    aux_ids = info["param_groups"][-1]["params"]
    info["param_groups"][-1]["params"] = aux_ids[:-2]
    for idx in aux_ids[-2:]:
        for key in [k for k in tensors if k.startswith(f"opt/{idx}/")]:
            del tensors[key]
        info["opt_scalars"] = {k: v for k, v in info["opt_scalars"].items() if not k.startswith(f"{idx}/")}
    save_file(tensors, str(tmp_path / trainer.CKPT_TENSORS))
    (tmp_path / trainer.CKPT_INFO).write_text(json.dumps(info))
    lm_moment = tensors["opt/0/exp_avg"].clone()
    run(3)
    tensors, info = trainer.load_ckpt(tmp_path)
    assert info["step"] == 3 and "aux/words.weight" in tensors
    assert len(info["param_groups"][-1]["params"]) == len(aux_ids)
    # the model's moments were restored and trained on, not started afresh (a fresh one is 0.1 x grad)
    assert not torch.equal(tensors["opt/0/exp_avg"], lm_moment)
    assert tensors["opt/0/exp_avg"].norm() > 0.5 * lm_moment.norm()


def test_export_writes_weights_a_fresh_loss_curve_and_the_run_summary(tmp_path, monkeypatch):
    import json

    from training import train as trainer

    run, dest = tmp_path / "run", tmp_path / "export"
    train_cli(monkeypatch, run, "--mix", "basics", "--steps", "2")
    (run / "loss_curve.png").write_bytes(b"stale")  # the export draws its own, not a copy of this
    trainer.export(run, dest)
    assert (dest / "loss_curve.png").read_bytes()[:4] == b"\x89PNG"
    info = json.loads((dest / "training.json").read_text())
    assert info["steps"] == 2 and info["samples"] == 4
    assert {"config.json", "tokenizer.json"} <= {p.name for p in dest.iterdir()}


def test_canvas_twins_pair_the_tokens_of_shared_cells_and_their_loss_trains_the_tower(setup):
    import random

    tok, _, proc = setup
    model = build(tok, 0, SIZES).train()
    samples = [sample("train", i, family=f) for i, f in enumerate(("image", "video", "screenshot", "basics"))]
    rngs = [random.Random(i) for i in range(len(samples))]
    batch = training_batch(samples, proc, tok, rngs)
    assert batch["twin_pixels"] is not None and len(batch["twin_here"]) == len(batch["twin_there"]) > 0
    media = model.embed_pixels(batch["pixel_values"], batch["grid_thws"])
    twin = model.embed_pixels(batch["twin_pixels"], batch["twin_grids"])
    assert int(batch["twin_here"].max()) < len(media) and int(batch["twin_there"].max()) < len(twin)
    # the paired tokens differ (the canvas changed around them) but are closer than random pairs
    a, b = media[batch["twin_here"]], twin[batch["twin_there"]]
    paired = torch.nn.functional.cosine_similarity(a, b).mean()
    shuffled = torch.nn.functional.cosine_similarity(a, b[torch.randperm(len(b))]).mean()
    assert paired > shuffled
    plain = loss_fn(model, batch)
    stats: dict = {}
    total = loss_fn(model, batch, stats=stats, canvas_weight=3.0)
    assert stats["canvas"] > 0
    assert total.item() == pytest.approx(plain.item() + 3.0 * stats["canvas"], rel=1e-5)
    model.zero_grad()
    (total - plain).backward()
    assert model.vision_tower.patch_embed.proj.weight.grad.abs().sum() > 0
    assert (
        model.language_model.model.embed_tokens.weight.grad is None
        or not model.language_model.model.embed_tokens.weight.grad.any()
    )
    # without rngs, no twins: the batch is the one a run without --canvas-weight trains on
    assert "twin_pixels" not in training_batch(samples, proc, tok)


def test_background_attention_is_a_share_of_the_towers_attention_and_training_lowers_it(setup):
    tok, _, proc = setup
    model = build(tok, 0, SIZES).train()
    samples = [sample("train", i, family=f) for i, f in enumerate(("image", "video", "screenshot", "image"))]
    batch = training_batch(samples, proc, tok)
    plain, stats = loss_fn(model, batch), {}
    total = loss_fn(model, batch, stats=stats, background_weight=2.0)
    assert 0 < stats["background"] < 1
    assert total.item() == pytest.approx(plain.item() + 2.0 * stats["background"], rel=1e-5)
    model.zero_grad()
    (total - plain).backward()
    assert model.vision_tower.encoder.blocks[0].wqkv.weight.grad.abs().sum() > 0
    assert (
        model.mm_projector.pre_norm.weight.grad is None or not model.mm_projector.pre_norm.weight.grad.any()
    )
    # a few steps on it alone move the tower's attention off the canvas
    from training import canvas

    blocks = model.vision_tower.encoder.blocks

    def mass():
        with call_inputs(dict(enumerate(blocks))) as calls:
            model.embed_pixels(batch["pixel_values"], batch["grid_thws"])
        return canvas.background_attention(blocks, calls)

    assert mass().item() == pytest.approx(stats["background"], rel=1e-5)
    opt = torch.optim.Adam(model.vision_tower.parameters(), lr=1e-2)
    for _ in range(8):
        opt.zero_grad()
        mass().backward()
        opt.step()
    assert mass().item() < 0.5 * stats["background"]
