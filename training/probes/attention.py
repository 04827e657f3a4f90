"""Where does the LM look, and what does it read there? Attention on the objects a question names.

    python -m training.probes attention                          # the bundled model
    python -m training.probes attention --model /tmp/export --json docs/bench/attend/probe_after.json

For held-out questions that name objects (the shape of the red object, left/right of two objects,
the colour of the OK button, the highlighted button, the colour at a timestamp), from the position
that predicts the answer's first token: each layer's and head's attention mass on the named objects'
tokens (`training.losses.ref_attention`), and, for left/right, how well a linear fit reads each named
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
from collections import defaultdict

import torch
from torch import Tensor

from training.losses import call_inputs, ref_attention
from training.probes.run import Probe, kind_batch
from training.probes.tokens import regress

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
        batch = kind_batch(f"{family}/{task}", split, start, min(n - start, batch_size), proc, proc.tokenizer)
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


def run(args: argparse.Namespace, model) -> dict:
    """`probe` of the model in fp32, with the flags it ran with."""
    model.model.float().eval()
    results = probe(model, args.n, args.layer, args.split)
    return {"n": args.n, "layer": args.layer, "split": args.split, "kinds": results}


def add_args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument(
        "--layer", type=int, default=2, help="the layer whose heads the attention targets supervise"
    )
    ap.add_argument(
        "--split", default="heldout", choices=("heldout", "unseen"), help="unseen: the larger, wider images"
    )


def table(summary: dict) -> str:
    results, n, supervised = summary["kinds"], summary["n"], summary["layer"]
    layers, heads = len(results["image/position"]["mass"]), len(results["image/position"]["mass"][0])
    lines = [
        f"attention from the answer position on the named object(s) (two: first/second), n = {n} a kind",
        f"{'kind':<26}" + "".join(f"{f'layer {i}, by head':<{10 * heads}}" for i in range(layers)),
    ]
    for kind, row in results.items():
        if "mass" in row:
            cells = ["/".join(f"{m:.2f}" for m in head) for layer in row["mass"] for head in layer]
            lines.append(f"{kind:<26}" + "".join(f"{c:<10}" for c in cells))
    r2 = results["image/position"]["read_r2"]
    lines.append(
        f"left/right: R^2 of the first/second object's place from head 0/1 of layer {supervised}: {r2}"
    )
    for kind, row in results.items():
        if "count_mass" in row:
            lines.append(f"{kind}: the last head's attention on the sink and the centres, by layer "
                         f"{row['count_mass']}; R^2 of 1/(k+1) from it at layer {supervised}: {row['count_r2']}")  # fmt: skip
    return "\n".join(lines)


PROBE = Probe(run=run, add_args=add_args, table=table, n=(192, "held-out questions per kind"))
