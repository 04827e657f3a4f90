"""The loss on a tiny model: it goes down, weighs samples equally, and each target trains what it should."""

from __future__ import annotations

import math

import pytest
import torch

from tests.training.conftest import SIZES
from training.batches import IGNORE, aux_targets, collate, encode, training_batch
from training.generators import sample
from training.losses import AuxHeads, call_inputs, count_swap_loss, loss_fn, pooled_features, ref_attention
from training.train import RouterBalance, build


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
