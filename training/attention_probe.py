"""Where does the LM look, and what does it read there? Attention on the objects a question names.

    python -m training.attention_probe                          # the bundled model
    python -m training.attention_probe --model /tmp/export --json docs/bench/attend/probe_after.json

For held-out questions that name objects (the shape of the red object, left/right of two objects,
the colour of the OK button, the highlighted button, the colour at a timestamp), from the position
that predicts the answer's first token: each layer's and head's attention mass on the named objects'
tokens (`training.train.ref_attention`), and, for left/right, how well a linear fit reads each named
object's place from what head j of `--layer` outputs (R^2 on held-out questions). The trainer's
attention targets (`--attend-weight`) supervise head j of that layer to attend to the j-th named
object and carry its place: on the weights before them no head looked at the two objects of a
left/right question, and a head taught only to look read their colour, never their place
(docs/bench/attend/). For counting questions: the last head's attention on the sequence's first
token and the counted objects' centre tokens, and how well a fit reads 1/(k+1) from its output
(docs/bench/buttons/).
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import torch
from torch import Tensor

from training.generators import sample
from training.token_probe import regress
from training.train import call_inputs, ref_attention, training_batch

KINDS = (
    ("image", "shape_of"),
    ("image", "colour_of"),
    ("image", "position"),
    ("screenshot", "button_colour"),
    ("screenshot", "highlighted"),
    ("video", "at_time"),
)
COUNTS = (("image", "count_all"), ("image", "count_colour"))


def named_attention(
    model, family: str, task: str, n: int, batch_size: int = 24, split: str = "heldout"
) -> list[dict[str, Tensor]]:
    """Per LM layer: `ref_attention` over n questions of one kind from `split` (mass, read, order, where;
    for counts the count head's keys)."""
    proc, layers = model.processor, model.model.language_model.model.layers
    out: list[dict[str, list]] = [defaultdict(list) for _ in layers]
    for start in range(0, n, batch_size):
        samples = [
            sample(split, i, family=family, task=task) for i in range(start, min(n, start + batch_size))
        ]
        batch = training_batch(samples, proc, proc.tokenizer)
        with torch.no_grad(), call_inputs({i: layer.self_attn for i, layer in enumerate(layers)}) as seen:
            model.model(batch["input_ids"], batch["pixel_values"], batch["grid_thws"])
            for i, layer in enumerate(layers):
                ref = ref_attention(layer.self_attn, seen[i], batch, model.config.media_placeholder_token_id)
                for k, v in ref.items():
                    out[i][k].append(v.float())
    return [{k: torch.cat(v) for k, v in layer.items()} for layer in out]


def held_out_r2(x: Tensor, y: Tensor) -> float:
    """Mean R^2 over y's columns of a ridge fit on the first half, scored on the second: a head's
    output (v = 32 wide) against ~100 questions, where a plain least-squares fit overfits."""
    half = len(x) // 2
    return sum(regress(x[:half], y[:half], x[half:], y[half:], ridge=1.0)) / y.shape[1]


def head_mass(r: dict[str, Tensor], refs: int) -> list[list[float]]:
    """[head][j]: one layer's mean attention, per head, on the question's j-th named object."""
    heads = r["mass"].shape[1]
    return [
        [round(float(r["mass"][r["order"] == j, h].exp().mean()), 3) for j in range(refs)]
        for h in range(heads)
    ]


def probe(model, n: int, layer: int, split: str = "heldout") -> dict:
    """{kind: {"objects": how many the question names, "mass": [layer][head][j] mean attention on the
    j-th, and for left/right "read_r2": [j] how well head j of `layer` carries the j-th's place}}."""
    results = {}
    for family, task in KINDS:
        per_layer = named_attention(model, family, task, n, split=split)
        refs = int(per_layer[0]["order"].max()) + 1
        row: dict = {"objects": refs, "mass": [head_mass(r, refs) for r in per_layer]}
        if task == "position":
            r = per_layer[layer]
            pick = [r["order"] == j for j in range(refs)]
            row["read_r2"] = [
                round(held_out_r2(r["read"][p, j], r["where"][p]), 3) for j, p in enumerate(pick)
            ]
        results[f"{family}/{task}"] = row
    for family, task in COUNTS:
        per_layer = named_attention(model, family, task, n, split=split)
        r = per_layer[layer]
        results[f"{family}/{task}"] = {
            "count_mass": [round(float(x["count_mass"].exp().mean()), 3) for x in per_layer],
            "count_r2": round(held_out_r2(r["count_read"], 1 / (r["count"][:, None] + 1.0)), 3),
        }
    return results


def main() -> None:
    import mm_model

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="bundled model name or checkpoint directory")
    ap.add_argument("--n", type=int, default=192, help="held-out questions per kind")
    ap.add_argument(
        "--layer", type=int, default=2, help="the layer whose heads the attention targets supervise"
    )
    ap.add_argument(
        "--split", default="heldout", choices=("heldout", "unseen"), help="unseen: the larger, wider images"
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = mm_model.load(args.model) if args.model else mm_model.load()
    model.model.float().eval()
    results = probe(model, args.n, args.layer, args.split)
    layers, heads = len(results["image/position"]["mass"]), len(results["image/position"]["mass"][0])
    print(
        f"attention from the answer position on the named object(s) (two: first/second), n = {args.n} a kind"
    )
    print(f"{'kind':<26}" + "".join(f"{f'layer {i}, by head':<{10 * heads}}" for i in range(layers)))
    for kind, row in results.items():
        if "mass" in row:
            cells = ["/".join(f"{m:.2f}" for m in head) for layer in row["mass"] for head in layer]
            print(f"{kind:<26}" + "".join(f"{c:<10}" for c in cells))
    r2 = results["image/position"]["read_r2"]
    print(f"left/right: R^2 of the first/second object's place from head 0/1 of layer {args.layer}: {r2}")
    for kind, row in results.items():
        if "count_mass" in row:
            print(f"{kind}: the last head's attention on the sink and the centres, by layer "
                  f"{row['count_mass']}; R^2 of 1/(k+1) from it at layer {args.layer}: {row['count_r2']}")  # fmt: skip
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        summary = {"model": args.model or "bundled", "n": args.n, "layer": args.layer, "split": args.split}
        summary["kinds"] = results
        Path(args.json).write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
