"""training.toggle: which rollout the Toggle stage keeps, in each phase, and one iteration end to end."""

from __future__ import annotations

import json
import random

import pytest

from training.toggle import Rollout, keep, problems


def _group(*items):
    return [Rollout(f"t{n}", n, ok) for n, ok in items]


def test_the_budget_phase_keeps_the_shortest_right_rollout_within_the_budget():
    g = _group((30, True), (12, True), (20, True), (5, False))
    kept, rewards = keep(g, budget=15, lam=0.5, iteration=0, m=1, rng=random.Random(0))
    assert kept.thinking_tokens == 12
    assert rewards == [0.0, 1.0, 0.0, 0.0]  # right but over budget earns nothing where the group is good


def test_over_budget_answers_keep_their_reward_where_the_group_is_below_lambda():
    g = _group((30, True), (5, False), (6, False), (7, False))  # accuracy 0.25 < lambda
    kept, rewards = keep(g, budget=10, lam=0.5, iteration=0, m=1, rng=random.Random(0))
    assert kept.thinking_tokens == 30 and rewards == [1.0, 0.0, 0.0, 0.0]


def test_the_scaling_phase_keeps_any_right_rollout_and_nothing_when_none_is_right():
    g = _group((30, True), (12, True), (5, False))
    picked = {keep(g, 15, 0.5, iteration=1, m=1, rng=random.Random(s))[0].thinking_tokens for s in range(40)}
    assert picked == {30, 12}
    assert (
        keep(g, 15, 0.5, iteration=2, m=2, rng=random.Random(0))[0].thinking_tokens == 12
    )  # m=2: phase 1 at 2,3
    assert keep(_group((9, False)), 15, 0.5, 1, 1, random.Random(0)) == (None, [0.0])


def test_problems_are_their_own_split_and_have_traces():
    from training.evaluate import TRACE_TASKS
    from training.generators import sample

    ps = problems(2, TRACE_TASKS)
    assert len(ps) == 2 * len(TRACE_TASKS) and all(p.trace for p in ps)
    assert ps[0].messages != sample("heldout", 0, family="image", task="count_all").messages


def _tiny_net():
    from training.tokenizer import build as build_tokenizer
    from training.train import build

    tok = build_tokenizer(vocab_size=1024, n=60, per_task=2)
    sizes = {"vision_hidden": 32, "vision_layers": 1, "lm_hidden": 64, "lm_layers": 2, "moe_inter": 32}
    return tok, sizes, build(tok, 0, sizes)


@pytest.mark.slow
def test_one_iteration_end_to_end_writes_its_record_and_weights(tmp_path, monkeypatch):
    """A tiny random model (nothing right: nothing kept, no fine-tuning), then the fine-tuning step alone,
    with the curriculum's tower and attention targets on: the aux heads learn too."""

    from mm_model.checkpoint import save_model
    from training import toggle

    tok, _, net = _tiny_net()
    init = tmp_path / "init"
    save_model(net.eval(), init, tokenizer_dir=None)
    tok.save(init / "tokenizer.json")
    monkeypatch.setattr(toggle, "THINKING_TOKENS", 6)
    args = toggle.argparse.Namespace(init=str(init), out=str(tmp_path / "out"), problems=1, k=2, iterations=1, m=1,
                                     rho=50, lam=0.5, steps=2, batch=2, lr=1e-4, seed=0, threads=1,
                                     temperature=0.7, aux_weight=1.0, object_weight=1.0, attend_weight=1.0)  # fmt: skip
    rows = toggle.run(args)
    record = json.loads((tmp_path / "out" / "toggle.json").read_text())
    assert record["iterations"] == rows and rows[0]["phase"] == 0 and rows[0]["problems"] == 6
    assert (tmp_path / "out" / "toggle.png").exists() and (tmp_path / "out" / "model.safetensors").exists()
    model, aux = toggle.load(str(init), want_aux=True)
    s = problems(1, (("image", "count_all"),))[0]
    model.media_embeddings(model.processor(s.messages).media)  # something in the cache
    assert model._media_cache
    tuner = toggle.Tuner.of(
        model.model, aux, 1e-3, {"aux_weight": 1.0, "object_weight": 1.0, "attend_weight": 1.0}
    )
    before = [p.detach().clone() for p in model.model.parameters()]
    heads = [p.detach().clone() for p in aux.parameters()]
    loss = toggle.fine_tune(model, [s], steps=2, batch=2, lr=1e-3, step0=0, tuner=tuner)
    assert loss > 0 and any((a != b.detach()).any() for a, b in zip(before, model.model.parameters()))
    assert any((a != b.detach()).any() for a, b in zip(heads, aux.parameters()))
    assert not model._media_cache  # the tower moved: no stale features
    assert not model.model.training and not any(p.requires_grad for p in model.model.parameters())
    # without targets no heads are made, and the optimizer holds the network's parameters alone
    bare = toggle.Tuner.of(model.model, None, 1e-3, {"aux_weight": 1.0})
    assert bare.weights == {} and sum(len(g["params"]) for g in bare.opt.param_groups) == len(before)


def test_a_training_run_lends_its_aux_heads(tmp_path):
    """--init a training run: the network and the aux heads come back as its checkpoint holds them."""
    import torch

    from training import toggle
    from training.losses import AuxHeads
    from training.train import param_groups, save_ckpt

    tok, sizes, net = _tiny_net()
    cfg = net.config.text
    torch.manual_seed(3)
    aux = AuxHeads(cfg.hidden_size, cfg.vocab_size, cfg.v_head_dim)
    opt = torch.optim.AdamW([*param_groups(net), {"params": list(aux.parameters()), "lr_mult": 1.0}])
    save_ckpt(tmp_path, net, opt, 7, 1.0, {"sizes": json.dumps(sizes), "batch": 2})
    tok.save(tmp_path / "tokenizer.json")
    model, got = toggle.load(str(tmp_path), want_aux=True)
    assert all(
        torch.equal(a, b) for a, b in zip(net.state_dict().values(), model.model.state_dict().values())
    )
    saved_aux = aux.state_dict()
    # save_ckpt was given no aux: the heads start fresh; with them, they are restored
    save_ckpt(tmp_path, net, opt, 7, 1.0, {"sizes": json.dumps(sizes), "batch": 2}, aux=aux)
    _, got = toggle.load(str(tmp_path), want_aux=True)
    assert all(torch.equal(saved_aux[k], v) for k, v in got.state_dict().items())
    assert toggle.load(str(tmp_path), want_aux=False)[1] is None
