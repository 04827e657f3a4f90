"""How fast can the vision tower learn one question kind when supervised directly?

    python -m training.probe --kind basics/shape_single --steps 800 --lr 1e-3
    python -m training.probe --kind screenshot/title --steps 800 --init training/runs/v5

Trains only the vision tower, the projector and one `AuxHeads` head (no LM) on one AUX_KINDS kind,
from scratch or from a run's checkpoint, and prints held-out accuracy every `--every` steps; a JSON
of the curve goes to `--json`. It separates the two reasons a kind can stay at chance in the full
curriculum: the tower cannot see it yet (chance here too), or the LM does not read it (learned here).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from mm_model.processor import Processor
from mm_model.tokenizer import JsonTokenizer
from training.generators import sample
from training.train import AUX_KINDS, AuxHeads, aux_targets, build, collate, encode, load_ckpt, restore

BUNDLED_TOKENIZER = Path(__file__).resolve().parents[1] / "mm_model" / "bundled" / "tiny" / "tokenizer.json"


def probe_batch(kind: str, split: str, start: int, n: int, processor: Processor, tok: JsonTokenizer) -> dict:
    """n samples of `kind` from `split`, collated with their aux targets."""
    family, task = kind.split("/")
    samples = [sample(split, start + i, family=family, task=task) for i in range(n)]
    encoded = [encode(s, processor, tok) for s in samples]
    return {**collate(encoded, tok.special_tokens["[PAD]"]), **aux_targets(samples, encoded, processor)}


def run(args: argparse.Namespace) -> list[dict]:
    from tqdm import tqdm

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    tok_file = Path(args.init) / "tokenizer.json" if args.init else BUNDLED_TOKENIZER
    tok = JsonTokenizer.from_file(tok_file)
    model = build(tok, args.seed, json.loads(args.sizes))
    if args.init:
        tensors, info = load_ckpt(Path(args.init))
        restore(tensors, info, model)
    processor = Processor(model.config, tok)
    aux = AuxHeads(model.config.text.hidden_size, model.config.text.vocab_size)
    params = [*model.vision_tower.parameters(), *model.mm_projector.parameters(), *aux.parameters()]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    held = probe_batch(args.kind, "heldout", 0, args.heldout, processor, tok)

    def accuracy() -> float:
        with torch.no_grad():
            logits, targets = aux.predict(
                model.embed_media(model.pack(held["pixel_values"], held["grid_thws"])), held
            )
        return float((logits.argmax(1) == targets).float().mean())

    curve, start = [], time.perf_counter()
    for step in tqdm(range(args.steps + 1), desc=f"probe {args.kind}", mininterval=5):
        if step % args.every == 0:
            curve.append({"step": step, "images": step * args.batch, "heldout_accuracy": round(accuracy(), 4),
                          "seconds": round(time.perf_counter() - start, 1)})  # fmt: skip
            tqdm.write(
                f"step {step:5d}  images {step * args.batch:6d}  held-out accuracy {curve[-1]['heldout_accuracy']:.2f}"
            )
        if step == args.steps:
            break
        batch = probe_batch(args.kind, "train", step * args.batch, args.batch, processor, tok)
        loss = aux.loss(model.embed_media(model.pack(batch["pixel_values"], batch["grid_thws"])), batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "curve": curve}, indent=1) + "\n")
    return curve


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kind", default="basics/shape_single", choices=AUX_KINDS)
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--every", type=int, default=100, help="evaluate every this many steps")
    ap.add_argument("--heldout", type=int, default=64, help="held-out samples")
    ap.add_argument("--init", default=None, help="a training run directory to start from (default: scratch)")
    ap.add_argument("--sizes", default="{}", help="JSON overrides of the model sizes (as training.train)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None, help="write the curve here")
    run(ap.parse_args())


if __name__ == "__main__":
    main()
