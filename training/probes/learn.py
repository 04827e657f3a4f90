"""How fast does the model learn one question kind when trained on that kind alone?

    python -m training.probes learn --kind basics/shape_single --steps 800 --lr 1e-3
    python -m training.probes learn --kind screenshot/title --steps 300 --init mm_model/bundled/tiny --lm --lr 3e-4

Direct (default): trains only the vision tower, the projector and one `AuxHeads` head (no LM) on one
AUX_KINDS kind and prints held-out accuracy every `--every` steps. With `--lm`: trains the whole model
on the answer tokens alone (the trainer's loss) and scores held-out answers whose every token is the
argmax (teacher-forced), for any question kind. `--init` is a training run (its checkpoint, with its
aux heads if it trained them: `--steps 0` then scores the run's own heads) or an exported model
directory. A JSON of the curve goes to `--json`.

The two modes separate the reasons a kind can stay at chance in the full curriculum: the tower does not
carry it (direct: chance too), the LM does not read what the tower carries (direct: learned; --lm from
the same start: chance), or the kind gets too few of the mix's samples (both learn it alone).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from mm_model.multimodal import KimiK25Model
from mm_model.processor import Processor
from mm_model.tokenizer import JsonTokenizer
from training.batches import AUX_KINDS, IGNORE
from training.generators import FAMILY_TASKS
from training.losses import AuxHeads, loss_fn
from training.probes.run import Probe, kind_batch, progress
from training.train import build, load_weights, param_groups

BUNDLED_TOKENIZER = Path(__file__).resolve().parents[2] / "mm_model" / "bundled" / "tiny" / "tokenizer.json"


def load_start(init: str | None, seed: int, sizes: dict) -> tuple[KimiK25Model, AuxHeads, JsonTokenizer]:
    """A fresh model and aux heads (bundled tokenizer), or the weights of a training run (its aux heads
    too, if it trained them) or an exported model (fresh heads)."""
    tok = JsonTokenizer.from_file(Path(init) / "tokenizer.json" if init else BUNDLED_TOKENIZER)
    model = build(tok, seed, sizes)
    aux = AuxHeads(model.config.text.hidden_size, model.config.text.vocab_size)
    if init:
        load_weights(model, init, aux)
    return model, aux, tok


def answers_right(model: KimiK25Model, batch: dict) -> float:
    """Fraction of the batch's samples whose every answer token is the argmax (teacher-forced)."""
    logits = model(batch["input_ids"], batch["pixel_values"], batch["grid_thws"])
    pred, labels = logits[:, :-1].argmax(-1), batch["labels"][:, 1:]
    return float(((pred == labels) | (labels == IGNORE)).all(1).float().mean())


def run(args: argparse.Namespace, model: None = None) -> dict:
    """{"args": the flags, "curve": held-out accuracy every `--every` steps}; the model is built here."""
    torch.manual_seed(args.seed)
    model, aux, tok = load_start(args.init, args.seed, json.loads(args.sizes))
    processor = Processor(model.config, tok)
    if args.lm:
        opt = torch.optim.AdamW(param_groups(model), lr=args.lr, betas=(0.9, 0.98))
    else:
        params = [*model.vision_tower.parameters(), *model.mm_projector.parameters(), *aux.parameters()]
        opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    held = kind_batch(args.kind, "heldout", 0, args.heldout, processor, tok)

    def accuracy() -> float:
        model.eval()
        with torch.no_grad():
            if args.lm:
                right = answers_right(model, held)
            else:
                logits, targets = aux.predict(
                    model.embed_pixels(held["pixel_values"], held["grid_thws"]), held
                )
                right = float((logits.argmax(1) == targets).float().mean())
        model.train()
        return right

    curve, start = [], time.perf_counter()
    bar = progress(range(args.steps + 1), f"probe {args.kind}", leave=True)
    for step in bar:
        if step % args.every == 0:
            curve.append({"step": step, "images": step * args.batch, "heldout_accuracy": round(accuracy(), 4),
                          "seconds": round(time.perf_counter() - start, 1)})  # fmt: skip
            bar.write(
                f"step {step:5d}  images {step * args.batch:6d}  held-out accuracy {curve[-1]['heldout_accuracy']:.2f}"
            )
        if step == args.steps:
            break
        batch = kind_batch(args.kind, "train", step * args.batch, args.batch, processor, tok)
        if args.lm:
            for g in opt.param_groups:  # a short warm-up: the LM's start may be a trained model
                g["lr"] = args.lr * min(1.0, (step + 1) / 30)
            loss = loss_fn(model, batch, scale_weight=0.1)
        else:
            loss = aux.loss(model.embed_pixels(batch["pixel_values"], batch["grid_thws"]), batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if args.lm:
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    bar.close()
    return {"args": vars(args), "curve": curve}


def add_args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument(
        "--kind", default="basics/shape_single", help="family/task (direct mode: one of AUX_KINDS)"
    )
    ap.add_argument("--lm", action="store_true", help="train the whole model through the LM's answer tokens")
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--every", type=int, default=100, help="evaluate every this many steps")
    ap.add_argument("--heldout", type=int, default=64, help="held-out samples")
    ap.add_argument(
        "--init", default=None, help="a training run or exported model to start from (default: scratch)"
    )
    ap.add_argument("--sizes", default="{}", help="JSON overrides of the model sizes (as training.train)")
    ap.add_argument("--seed", type=int, default=0)


def check(args: argparse.Namespace) -> str | None:
    family, _, task = args.kind.partition("/")
    if task not in FAMILY_TASKS.get(family, ()) or (not args.lm and args.kind not in AUX_KINDS):
        return f"--kind {args.kind}: direct mode takes one of {', '.join(AUX_KINDS)}; --lm any family/task"
    return None


PROBE = Probe(run=run, add_args=add_args, load=None, check=check)
