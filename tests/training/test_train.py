"""The trainer on a tiny model: checkpoints without pickles resume runs, export, the log's curves."""

from __future__ import annotations

import pytest
import torch

from tests.training.conftest import SIZES
from training.batches import collate, encode
from training.generators import sample
from training.losses import AuxHeads, loss_fn
from training.train import build, kind_curves, kind_losses, param_groups


def train_cli(monkeypatch, out, *flags: str) -> None:
    """`python -m training.train --out OUT FLAGS` on the tiny sizes, batch 2, batches built in the loop."""
    import json
    import sys

    from training import train as trainer

    argv = ["train", "--out", str(out), "--workers", "0", "--batch", "2", "--sizes", json.dumps(SIZES), *flags]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    trainer.main()


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
    from training.probes.learn import load_start

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
