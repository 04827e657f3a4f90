"""Trainer for the bundled model on the synthetic curriculum (CPU, or CUDA where a GPU is lent).

    PLAN=gpu DEVICE=cuda bash training/curriculum.sh training/runs/main python3   # the bundled weights
    bash training/curriculum.sh training/runs/main      # the CPU plan: five phases, ~48 CPU-min
    python -m training.train --out training/runs/main --mix ground --phase-minutes 6   # one phase
    python -m training.train --out training/runs/main --export mm_model/bundled/tiny   # weights only
    python -m training.train ... --aux-weight 1 --vision-lr-mult 3 --device cuda         # options

The log has each question kind's loss per step (`kinds`), drawn in the loss curve's second panel.
`--aux-weight` adds `AuxHeads`, which supervise the vision tower directly on media-only answers
through a max/min/mean readout: the tower then carries the window title (100% read directly) and
the LM learns to read it in ~3k single-kind samples (docs/bench/probe/, docs/bench/aux_extension/);
`training.probe` measures one kind alone, directly or through the LM. `--object-weight` adds per-token
targets: the shape, colour or word under each media token and its position (`object_targets`,
`token_positions`), which the answers alone did not teach the tokens (`training.token_probe`,
docs/bench/objects/). `--attend-weight` adds attention targets: head j of LM layer `--attend-layer`,
where the answer starts, attends to the question's j-th named object and carries its place
(`attention_targets`, `ref_attention`; `training.attention_probe`, docs/bench/attend/);
`--count-weight` adds counting targets (the last head of that layer on a sink and one token per
counted object) and `--swap-weight` the count interchange loss (`count_swap_loss`; docs/bench/buttons/);
`--canvas-weight` asks each picture's tokens to stay the same on a larger seen canvas (`training.canvas`,
docs/bench/canvas/).

Batches: `batch` samples per step, right-padded (causal attention makes right padding safe
without a mask), media of all samples packed into one MoonViT-3D call. Loss only on the
assistant's tokens (answer, or thinking trace + answer), each sample's prompt rendered by the
same `Processor` the API uses. fp32 (bf16 matmuls are ~10x slower on AVX2-only CPUs; TF32 on cuda). Resumable:
`ckpt.safetensors` + `ckpt.json` in `--out` every `--ckpt-minutes` (no pickles); data are a pure function of the step, so a resumed
run sees exactly the samples it would have seen.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import random
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mm_model.config import ModelConfig
from mm_model.lm.config import LMConfig, RopeScaling
from mm_model.lm.moe import Router
from mm_model.multimodal import KimiK25Model
from mm_model.processor import Processor
from mm_model.tokenizer import JsonTokenizer, Tokenizer
from training import canvas
from training.generators import MIXES, Sample, parse_mix, sample
from training.generators.common import COLOUR_NAMES, SHAPES
from training.generators.images import MAX_SHAPES
from training.generators.screenshots import SEEN_HEIGHT, SEEN_WIDTH, WORDS
from vision.config import MediaConfig, VisionConfig
from vision.packing import merged_tokens
from vision.preprocess import plan_for

IGNORE = -100
# the most patches a training image has: the largest seen screenshot (images and video frames are smaller)
TRAINED_PATCHES = (SEEN_WIDTH[1] // 14) * (SEEN_HEIGHT[1] // 14)


def model_config(tok: Tokenizer, *, vision_hidden: int = 128, vision_layers: int = 4, lm_hidden: int = 192,
                 lm_layers: int = 4, experts: int = 8, moe_inter: int = 128, vision_mlp: int = 2) -> ModelConfig:  # fmt: skip
    """The bundled model's architecture: every K2.5 feature, small sizes."""
    vocab = -(-tok.vocab_size // 64) * 64
    sp = tok.special_tokens
    lm = LMConfig(
        vocab_size=vocab, hidden_size=lm_hidden, intermediate_size=2 * lm_hidden, moe_intermediate_size=moe_inter,
        num_hidden_layers=lm_layers, num_attention_heads=4, q_lora_rank=96, kv_lora_rank=64,
        qk_nope_head_dim=32, qk_rope_head_dim=16, v_head_dim=32, n_routed_experts=experts, num_experts_per_tok=2,
        n_shared_experts=1, n_group=1, topk_group=1, routed_scaling_factor=2.5, first_k_dense_replace=1,
        rope_theta=10000.0, max_position_embeddings=4096,
        rope_scaling=RopeScaling(factor=4.0, original_max_position_embeddings=1024, beta_fast=32.0, beta_slow=1.0,
                                 mscale=1.0, mscale_all_dim=1.0),
        bos_token_id=sp["[BOS]"], eos_token_id=sp["<|im_end|>"], pad_token_id=sp["[PAD]"],
    )  # fmt: skip
    vision = VisionConfig(
        hidden_size=vision_hidden, num_hidden_layers=vision_layers, num_attention_heads=4,
        intermediate_size=vision_mlp * vision_hidden, pos_emb_height=32, pos_emb_width=32, text_hidden_size=lm_hidden,
    )  # fmt: skip
    # the image budget the curriculum trains on, as the release caps its own input (in_patch_limit):
    # larger pictures are resized into it by the processor rather than met at sizes never trained
    media = MediaConfig(in_patch_limit=TRAINED_PATCHES)
    return ModelConfig(vision=vision, text=lm, media=media, media_placeholder_token_id=sp["<|media_pad|>"])


@dataclass
class Encoded:
    ids: Tensor  # (L,) prompt + target
    labels: Tensor  # (L,) target ids at target positions, IGNORE elsewhere (unshifted)
    patches: Tensor | None
    grids: list[tuple[int, int, int]]


def encode(s: Sample, processor: Processor, tok: Tokenizer) -> Encoded:
    """Prompt (rendered exactly as at inference) + assistant target, with the loss mask."""
    prompt = processor(s.messages, thinking=s.thinking)
    target = torch.tensor(tok.encode(s.target_text()), dtype=torch.int64)
    ids = torch.cat([prompt.input_ids, target])
    labels = torch.full_like(ids, IGNORE)
    labels[len(prompt.input_ids) :] = target
    return Encoded(ids, labels, prompt.pixel_values, [m.grid for m in prompt.media])


def collate(batch: list[Encoded], pad_id: int) -> dict[str, Tensor | None]:
    """Right-padded (B, S) ids and labels; all samples' media packed in order."""
    n = max(len(e.ids) for e in batch)
    ids = torch.full((len(batch), n), pad_id, dtype=torch.int64)
    labels = torch.full((len(batch), n), IGNORE, dtype=torch.int64)
    for i, e in enumerate(batch):
        ids[i, : len(e.ids)] = e.ids
        labels[i, : len(e.labels)] = e.labels
    patches = [e.patches for e in batch if e.patches is not None]
    grids = [g for e in batch for g in e.grids]
    return {
        "input_ids": ids,
        "labels": labels,
        "pixel_values": torch.cat(patches) if patches else None,
        "grid_thws": torch.tensor(grids, dtype=torch.int64) if grids else None,
    }


class Batches(torch.utils.data.Dataset):
    """Batch `step` of the run, encoded and collated: a pure function of the step, so a DataLoader
    worker can build the next batches (PIL drawing, resizing) while the model trains on this one."""

    def __init__(
        self,
        processor: Processor,
        tok: Tokenizer,
        batch: int,
        mix: tuple,
        steps: int,
        twins: bool = False,
        largest_twins: bool = False,
    ) -> None:
        self.processor, self.tok, self.batch, self.mix, self.steps = processor, tok, batch, mix, steps
        self.twins, self.largest_twins = twins, largest_twins

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, step: int) -> dict:
        index = range(step * self.batch, (step + 1) * self.batch)
        samples = [sample("train", i, mix=self.mix) for i in index]
        # the twins' own random streams: the samples stay those of a run without them
        rngs = [random.Random(f"canvas/{i}") for i in index] if self.twins else None
        return training_batch(samples, self.processor, self.tok, rngs, self.largest_twins)


def training_batch(
    samples: list[Sample],
    processor: Processor,
    tok: Tokenizer,
    twin_rngs: list[random.Random] | None = None,
    largest_twins: bool = False,
) -> dict:
    """`samples` encoded and collated, with their aux, per-token and attention targets, and with
    `twin_rngs` their canvas twins (each on the largest seen canvas if `largest_twins`): what `loss_fn`
    takes (the trainer's batches, the probes' and the tests')."""
    encoded = [encode(s, processor, tok) for s in samples]
    return {
        **collate(encoded, tok.special_tokens["[PAD]"]),
        **aux_targets(samples, encoded, processor),
        **token_targets(samples, encoded, processor),
        **(canvas_twins(samples, encoded, processor, twin_rngs, largest_twins) if twin_rngs else {}),
    }


def canvas_twins(
    samples: list[Sample],
    encoded: list[Encoded],
    processor: Processor,
    rngs: list[random.Random],
    largest: bool = False,
) -> dict[str, Tensor | None]:
    """Each single-image question's picture on a larger seen-size canvas (`training.canvas`): the twins'
    packed pixels and grids, and the merged-token indices of the cells a picture and its twin share,
    in the batch's media tokens ("twin_here", (n,)) and in the twins' ("twin_there", (n,))."""
    kernel = processor.config.vision.merge_kernel_size
    unit = processor.config.media.patch_size * kernel[0]
    patches, grids, here, there = [], [], [], []
    start = twin_start = 0
    for s, e, rng in zip(samples, encoded, rngs):
        image = canvas.picture(s.messages)
        box = canvas.twin_box(rng, image.size, s.family, unit, largest=largest) if image is not None else None
        if box is not None:
            item = processor.image_item(canvas.pad_edges(image, box))
            a, b = canvas.shared_cells(image.size, box, unit)
            patches.append(item.patches)
            grids.append(item.grid)
            here.append(a + start)
            there.append(b + twin_start)
            twin_start += item.tokens
        start += sum(merged_tokens(e.grids, kernel))
    if not grids:
        return {"twin_pixels": None, "twin_grids": None, "twin_here": None, "twin_there": None}
    return {
        "twin_pixels": torch.cat(patches),
        "twin_grids": torch.tensor(grids, dtype=torch.int64),
        "twin_here": torch.cat(here),
        "twin_there": torch.cat(there),
    }


# Question kinds whose answer depends on the media alone (not on which object the question names):
# for these an auxiliary head reads the answer's first token straight from the pooled media embeddings.
# Training only, never exported. Why: through the LM the vision tower gets a weak, late signal -- one
# answer token after the LM has learned where to look -- and a 4-layer ViT from scratch needs ~8k
# images of direct supervision to tell a circle from a square (chance for 400+ steps through the LM).
AUX_KINDS = (
    "basics/colour_single", "basics/shape_single", "image/count_all", "screenshot/title",
    "screenshot/highlighted", "screenshot/checked", "screenshot/field", "video/direction",
    "video/flashes", "video/colour_order", "video/first_appear",
)  # fmt: skip


def aux_targets(samples: list[Sample], encoded: list[Encoded], processor: Processor) -> dict[str, list]:
    """Per sample: its kind, its media's merged-token count per grid, and the aux target (the
    answer's first token id) where the kind is in AUX_KINDS, else None."""
    kinds = [f"{s.family}/{s.task}" for s in samples]
    answers = [s.meta.get("canonical_answer", s.answer) for s in samples]  # "the ball moves left": "left"
    targets = [processor.tokenizer.encode(a)[0] if k in AUX_KINDS and e.grids else None
               for k, a, e in zip(kinds, answers, encoded)]  # fmt: skip
    kernel = processor.config.vision.merge_kernel_size
    return {
        "kinds": kinds,
        "aux_targets": targets,
        "media_tokens": [merged_tokens(e.grids, kernel) for e in encoded],
    }


def object_targets(s: Sample, e: Encoded, media: MediaConfig) -> Tensor:
    """(T, 4) int64 per merged media token of the sample: the index of the shape (SHAPES), the colour
    (COLOUR_NAMES) and the word (screenshots.WORDS) under it, each -1 where there is none; and in an
    image, the index (in `meta["objects"]`) of the object whose centre its cell holds, -1 for none
    (-2: not an image's token; two centres in one cell: the later object's).

    A shape is under a token when the token's 28x28-pixel cell holds the shape's centre or the cell's
    centre lies within its radius; a video chunk's tokens get the shapes shown throughout the chunk.
    A word (a button: its label, highlighted or not, and its colour) is under every cell its box's
    middle line crosses. Why: through the answers alone the tower learned colour per token (a linear
    probe reads it at 97% held out) but not the shape of a small object (42%, chance 25%), so no
    question that names one object among several could be answered; these targets supervise every
    token directly. The centres are what a count attends to (`attention_targets`): one token per object,
    however many tokens it covers.
    """
    kernel = media.merge_kernel_size
    counts = merged_tokens(e.grids, (kernel, kernel))
    out = torch.full((sum(counts), 4), -1, dtype=torch.int64)
    out[:, 3] = -2
    video = "chunk_objects" in s.meta
    per_grid = s.meta.get("chunk_objects") if video else [s.meta.get("objects")] * (len(e.grids) == 1)
    texts = s.meta.get("texts") or ()
    if (not per_grid or len(per_grid) != len(e.grids)) and not texts:
        return out
    w, h = s.meta["size"]
    (new_h, new_w), _ = plan_for(h, w, media, video=video)
    sx, sy = new_w / w, new_h / h
    unit = media.patch_size * kernel
    (_, gh, gw), start = e.grids[0], 0
    for t in sorted(texts, key=lambda t: "button" in t):  # a screenshot: one grid; buttons win a shared cell
        x0, y0, x1, y1 = t["box"]
        row = min(gh // kernel - 1, int((y0 + y1) / 2 * sy // unit))
        colour = COLOUR_NAMES.index(t["colour"]) if t["colour"] else -1
        label = torch.tensor([-1, colour, WORDS.index(t["word"])])
        for col in range(int(x0 * sx // unit), min(gw // kernel - 1, int((x1 * sx - 1) // unit)) + 1):
            out[row * (gw // kernel) + col, :3] = label
    for (_, gh, gw), objects, n in zip(e.grids, per_grid or (), counts):
        cols, rows = gw // kernel, gh // kernel
        if not video and objects is not None:  # an image whose objects are known
            out[start : start + n, 3] = -1
        for i, o in enumerate(objects or ()):
            x, y, r = o["x"] * sx, o["y"] * sy, o["r"] * sx
            label = torch.tensor([SHAPES.index(o["shape"]), COLOUR_NAMES.index(o["colour"]), -1])
            for row in range(rows):
                for col in range(cols):
                    holds = int(x // unit) == col and int(y // unit) == row
                    near = ((col + 0.5) * unit - x) ** 2 + ((row + 0.5) * unit - y) ** 2 < r * r
                    if holds or near:
                        out[start + row * cols + col, :3] = label
                    if holds and not video:
                        out[start + row * cols + col, 3] = i
        start += n
    return out


def token_positions(grids: list[tuple[int, int, int]], kernel: int) -> Tensor:
    """(T, 2) float (x, y) of each merged token's cell centre as a fraction of its grid's width and
    height, for items (or video chunks: one token per cell, frames pooled) of (t, h, w) patch grids.

    Why: the LM reads media tokens in raster order with 1-D positions, so "left of" is not linear
    in its input unless the tokens carry where they are (a linear probe read the bundled model's
    object tokens' x at R^2 0.21, `training.token_probe`)."""
    out = [torch.zeros(0, 2)]
    for _, h, w in grids:
        rows, cols = h // kernel, w // kernel
        y, x = torch.meshgrid(
            (torch.arange(rows) + 0.5) / rows, (torch.arange(cols) + 0.5) / cols, indexing="ij"
        )
        out.append(torch.stack([x.flatten(), y.flatten()], 1))
    return torch.cat(out)


HIGHLIGHTED = torch.tensor([i for i, w in enumerate(WORDS) if w.endswith("*")])
COUNT_HEAD = -1  # the attention head a counting question's targets supervise (heads 0, 1: named objects)


def attention_targets(
    s: Sample, rows: Tensor, where: Tensor, counts: list[int]
) -> list[tuple[Tensor, Tensor, int]]:
    """Per object the question names (`meta["refs"]`, in order): the indices of the sample's media
    tokens that show it, read off its `object_targets` rows (T, 4), its place (2,): the mean of
    those tokens' `token_positions` (`where`, (T, 2)), and -1. [] for a thinking sample or when a
    named object shows under no token. `counts`: merged tokens per grid (a video: per chunk).

    A ref picks tokens by shape, colour, word (a button in a screenshot is a word with a colour:
    `button`), `highlighted` (a highlighted button's label) and `chunk` (a video chunk's tokens).
    A counting question's ref (`count`: k) gives, last, the k objects' centre tokens (one each, none
    for k = 0), their mean place (the middle if none) and k; none where two centres share a cell. "How
    many red shapes?" with k > 0 also names its colour's tokens, as any ref with a colour does."""
    if s.thinking:
        return []
    out = []
    for ref in s.meta.get("refs", ()):
        if "count" in ref and not ("colour" in ref and ref["count"]):
            continue  # nothing to look at: only counted
        keep = torch.ones(len(rows), dtype=torch.bool)
        if "shape" in ref:
            keep &= rows[:, 0] == SHAPES.index(ref["shape"])
        if "colour" in ref:
            keep &= rows[:, 1] == COLOUR_NAMES.index(ref["colour"])
        if "word" in ref:
            keep &= rows[:, 2] == WORDS.index(ref["word"])
        if ref.get("button"):
            keep &= rows[:, 1] >= 0
        if ref.get("highlighted"):
            keep &= torch.isin(rows[:, 2], HIGHLIGHTED)
        if "chunk" in ref:
            index, first = torch.arange(len(rows)), sum(counts[: ref["chunk"]])
            keep &= (index >= first) & (index < first + counts[ref["chunk"]])
        if not keep.any():
            return []
        out.append((keep.nonzero().squeeze(1), where[keep].mean(0), -1))
    for ref in s.meta.get("refs", ()):
        if "count" in ref:  # last, so the named objects keep heads 0, 1, ...
            picked = [
                i for i, o in enumerate(s.meta["objects"]) if ref.get("colour", o["colour"]) == o["colour"]
            ]
            centres = [(rows[:, 3] == i).nonzero().squeeze(1) for i in picked]
            if len(picked) == ref["count"] and all(len(c) == 1 for c in centres):  # else two share a cell
                tokens = torch.cat(centres) if centres else torch.zeros(0, dtype=torch.int64)
                place = where[tokens].mean(0) if len(tokens) else torch.full((2,), 0.5)
                out.append((tokens, place, ref["count"]))
    return out


def token_targets(samples: list[Sample], encoded: list[Encoded], processor: Processor) -> dict:
    """The batch's per-token targets: `object_targets` and `token_positions` (media tokens in packing
    order) and, per sample, its `attention_targets`."""
    media = processor.config.media
    kernel = media.merge_kernel_size
    rows = [object_targets(s, e, media) for s, e in zip(samples, encoded)]
    where = [token_positions(e.grids, kernel) for e in encoded]
    return {
        "object_targets": torch.cat(rows),
        "token_positions": torch.cat(where),
        "attend": [
            attention_targets(s, r, w, merged_tokens(e.grids, (kernel, kernel)))
            for s, r, w, e in zip(samples, rows, where, encoded)
        ],
    }


@contextmanager
def call_inputs(modules: dict[int, nn.Module]) -> Iterator[dict[int, tuple]]:
    """While open, `seen[i]` holds the positional arguments of module i's latest call (forward
    pre-hooks, removed on exit): an attention layer's (x, cos, sin) for `ref_attention`."""
    seen: dict[int, tuple] = {}
    hooks = [
        m.register_forward_pre_hook(lambda _, args, i=i: seen.update({i: args})) for i, m in modules.items()
    ]
    try:
        yield seen
    finally:
        for hook in hooks:
            hook.remove()


def ref_attention(attn: nn.Module, args: tuple, batch: dict, media_id: int) -> dict[str, Tensor]:
    """What each head of one attention layer reads of the objects the question names, at the position
    that predicts the answer's first token.

    Args:
        attn: the layer's `MLAttention`; args: the (x (B, S, D), cos, sin) it was called with (a
            `call_inputs` capture); batch: `input_ids`, `labels` and `attend` (`attention_targets`).
    Returns, for the batch's P named objects: "mass" (P, H) the log attention on the object's tokens,
    per head; "read" (P, H, v) each head's output there (values weighted by attention, before
    `o_proj`); "order" (P,) the object's index among its sample's refs; "where" (P, 2) its place.
    For its C counting questions, of the layer's last head (`COUNT_HEAD`): "count_ce" (C,) the
    cross-entropy of its attention against the uniform over the sequence's first token (a sink) and
    the k objects' centre tokens; "count_mass" (C,) its log attention on them; "count_read" (C, v)
    its output there; "count" (C,) k. Keys with nothing to hold are left out ({} if the batch names
    nothing and counts nothing).
    Queries, keys and values are recomputed with the layer's own projections, so gradients reach every
    weight that shaped them.
    """
    x, cos, sin = args[:3]
    q_nope, q_rot, latent = attn.project(x, cos, sin)  # (B, S, H, n), (B, S, H, r), (B, S, C + r)
    c, k_rot = latent.split([attn.kv_lora_rank, attn.rope], dim=-1)
    b, s, h, _ = q_nope.shape
    k_nope, v = attn.kv_b_proj(c).view(b, s, h, attn.nope + attn.v_dim).split([attn.nope, attn.v_dim], -1)
    out: dict[str, list] = defaultdict(list)
    for i, refs in enumerate(batch["attend"]):
        if not refs:
            continue
        answer = int((batch["labels"][i] != IGNORE).nonzero()[0])
        q = torch.cat([q_nope[i, answer - 1], q_rot[i, answer - 1]], -1)  # (H, n + r)
        k = torch.cat([k_nope[i, :answer], k_rot[i, :answer, None].expand(-1, h, -1)], -1)  # (S', H, n + r)
        logp = torch.log_softmax(torch.einsum("hd,thd->ht", q, k).float() * attn.scale, -1)  # (H, S')
        read = torch.einsum("ht,thv->hv", logp.exp().to(v.dtype), v[i, :answer])  # (H, v)
        media = (batch["input_ids"][i, :answer] == media_id).nonzero().squeeze(1)
        for j, (tokens, where, count) in enumerate(refs):
            tokens = media[tokens.to(media.device)]
            if count >= 0:
                # uniform over the sink and one token per object: the sink's share, 1 / (k + 1), is the
                # count whatever the number of background tokens (docs/bench/buttons/)
                sink_and_centres = logp[COUNT_HEAD, torch.cat([tokens.new_zeros(1), tokens])]
                out["count_ce"].append(-sink_and_centres.mean())
                out["count_mass"].append(torch.logsumexp(sink_and_centres, 0))
                out["count_read"].append(read[COUNT_HEAD])
                out["count"].append(count)
                continue
            out["mass"].append(torch.logsumexp(logp[:, tokens], -1))
            out["read"].append(read)
            out["order"].append(j)
            out["where"].append(where.to(read.device))
    return {k: torch.tensor(v) if k in ("order", "count") else torch.stack(v) for k, v in out.items()}


def count_swap_loss(
    model: KimiK25Model, batch: dict, media: Tensor, heads: Tensor, layer: int
) -> Tensor | None:
    """Interchange training for counts: each counting question's count head (`COUNT_HEAD` of LM layer
    `layer`), at the position that predicts the answer, is given the output it had for the batch's next
    counting question of another count; the answer's first token must then be that question's.
    Cross-entropy over those questions; None if the batch has no two counts that differ.

    Why: the head carries the count at resolutions never trained on (a fit from its output reads
    1/(k+1) at R^2 0.91 on larger images, fitted on the trained sizes), while the answer kept reading
    the share of object tokens, which undercounts them (docs/bench/buttons/). This makes the answer
    depend on the head. `heads`: the layer's `o_proj` input from the batch's own pass, (B, S, H * v).
    """
    rows = [i for i, refs in enumerate(batch["attend"]) if refs and refs[-1][2] >= 0]
    count = {i: batch["attend"][i][-1][2] for i in rows}
    pairs = [(a, b) for a, b in zip(rows, rows[1:] + rows[:1]) if count[a] != count[b]]
    if not pairs:
        return None
    query = {i: int((batch["labels"][i] != IGNORE).nonzero()[0]) - 1 for i in rows}
    ends = list(itertools.accumulate(sum(c) for c in batch["media_tokens"]))
    starts = [0, *ends[:-1]]
    takers = [a for a, _ in pairs]
    attn = model.language_model.model.layers[layer].self_attn
    k = COUNT_HEAD % (heads.shape[-1] // attn.v_dim)
    head = slice(k * attn.v_dim, (k + 1) * attn.v_dim)

    def swap(_, args):
        x = args[0].clone()
        for j, (a, b) in enumerate(pairs):
            x[j, query[a], head] = heads[b, query[b], head]
        return (x, *args[1:])

    hook = attn.o_proj.register_forward_pre_hook(swap)
    try:
        logits = model(
            batch["input_ids"][takers], media_embeds=torch.cat([media[starts[a] : ends[a]] for a in takers])
        )
    finally:
        hook.remove()
    said = logits[torch.arange(len(pairs)), [query[a] for a in takers]]  # (n, V)
    wanted = torch.stack([batch["labels"][b, query[b] + 1] for _, b in pairs]).to(said.device)
    return F.cross_entropy(said.float(), wanted)


def pooled_features(item: Tensor, first: int, last: int) -> Tensor:
    """(T, D) media embeddings of one item -> (5D,) [max, min, mean over the item; max over its
    first `first` and last `last` tokens (a video's first and last chunk)], divided by its rms.

    Max and min read a few salient tokens (a shape's edges, a word's glyphs); a mean is dominated by
    the background and learns local form ~3x slower (docs/bench/probe/: basics/shape_single 100%
    held out after 6,400 images with max/min, 30-48% after 9,600 with the mean alone).
    """
    feats = torch.cat([item.amax(0), item.amin(0), item.mean(0), item[:first].amax(0), item[-last:].amax(0)])
    return feats / feats.pow(2).mean().sqrt().clamp(min=1e-6)


LATER_HEADS = ("objects.", "words.", "where.", "attended.", "counted.", "centres.")  # added after runs began


class AuxHeads(nn.Module):
    """One linear head per AUX_KINDS kind: `pooled_features` of the item's media embeddings -> the
    answer's first token."""

    def __init__(self, dim: int, vocab: int, v_dim: int = 32) -> None:
        super().__init__()
        self.heads = nn.ModuleDict({k.replace("/", "__"): nn.Linear(5 * dim, vocab) for k in AUX_KINDS})
        self.objects = nn.Linear(dim, len(SHAPES) + len(COLOUR_NAMES))  # per token: shape, colour
        self.words = nn.Linear(dim, len(WORDS))  # per screenshot token: the word written there
        self.where = nn.Linear(dim, 2)  # per token: (x, y) in its image or video frame
        self.attended = nn.Linear(v_dim, 2)  # per named object: (x, y) from the head that attends to it
        self.counted = nn.Linear(v_dim, MAX_SHAPES + 1)  # per counting question: k from the count head
        self.centres = nn.Linear(dim, 1)  # per image token: does its cell hold an object's centre

    def object_loss(self, media: Tensor, targets: Tensor, centres: bool = False) -> Tensor | None:
        """Summed cross-entropy of the shape, colour and word of each token that has one, and with
        `centres` whether an image token holds an object's centre (`object_targets`, (T, 4)); None if
        no token has any."""
        logits = torch.cat([self.objects(media), self.words(media)], 1)
        bounds = (0, len(SHAPES), len(SHAPES) + len(COLOUR_NAMES), logits.shape[1])
        losses = []
        for i, (lo, hi) in enumerate(itertools.pairwise(bounds)):
            keep = targets[:, i] >= 0
            if keep.any():
                losses.append(F.cross_entropy(logits[keep, lo:hi], targets[keep, i]))
        image = targets[:, 3] >= -1
        if centres and image.any():
            centre = (targets[image, 3] >= 0).to(media.dtype)
            losses.append(F.binary_cross_entropy_with_logits(self.centres(media[image]).squeeze(1), centre))
        return sum(losses) if losses else None

    def position_loss(self, media: Tensor, positions: Tensor) -> Tensor:
        """Mean squared error of each token's (x, y), x12: 1 for a constant guess of a uniform position."""
        return 12 * F.mse_loss(self.where(media), positions.to(media.dtype))

    def predict(self, media: Tensor, batch: dict) -> tuple[Tensor, Tensor] | None:
        """(logits (n, V), targets (n,)) for the batch's n samples with an aux target; None if n = 0."""
        start, logits, targets = 0, [], []
        for kind, target, counts in zip(batch["kinds"], batch["aux_targets"], batch["media_tokens"]):
            item = media[start : start + sum(counts)]  # (T_i, D); a video: one grid per 4-frame chunk
            start += sum(counts)
            if target is None:
                continue
            logits.append(self.heads[kind.replace("/", "__")](pooled_features(item, counts[0], counts[-1])))
            targets.append(target)
        if not logits:
            return None
        return torch.stack(logits), torch.tensor(targets, device=media.device)

    def loss(self, media: Tensor, batch: dict) -> Tensor | None:
        """Mean cross-entropy over the batch's samples with an aux target; None if there are none."""
        out = self.predict(media, batch)
        return None if out is None else F.cross_entropy(*out)


def loss_fn(
    model: KimiK25Model,
    batch: dict[str, Tensor | None],
    scale_weight: float = 0.0,
    stats: dict | None = None,
    aux: AuxHeads | None = None,
    aux_weight: float = 0.0,
    object_weight: float = 0.0,
    attend_weight: float = 0.0,
    attend_layer: int = 2,
    count_weight: float = 0.0,
    swap_weight: float = 0.0,
    canvas_weight: float = 0.0,
    background_weight: float = 0.0,
) -> Tensor:
    """Cross-entropy on the assistant tokens (mean per sample, then over samples), plus
    `scale_weight` x a media-scale penalty.

    The penalty, (log(rms of media embeddings / rms of text embeddings))^2, keeps the projector's
    output at the scale of the token embeddings. Without it the media embeddings grew ~500x in
    800 steps (run 1: rms 54 vs 0.03): behind the LM's pre-norm their scale is nearly free, Adam
    keeps growing it, and the gradient reaching the vision tower shrinks as 1/scale (1e-5 at
    the patch embedding) -- the model learned answer priors and ignored the images.
    """
    media = None
    blocks = model.vision_tower.encoder.blocks
    if batch["pixel_values"] is not None:
        with call_inputs(dict(enumerate(blocks)) if background_weight else {}) as tower_calls:
            media = model.embed_pixels(batch["pixel_values"], batch["grid_thws"])  # (T, D)
    # the layer's queries and keys are recomputed only for a ref with a loss: a count's needs --count-weight
    attend = (
        attend_weight
        and media is not None
        and any(count < 0 or count_weight for refs in batch.get("attend") or () for _, _, count in refs)
    )
    attn = model.language_model.model.layers[attend_layer].self_attn if attend else None
    with call_inputs({attend_layer: attn, -1: attn.o_proj} if attend else {}) as seen:
        logits = model(batch["input_ids"], media_embeds=media)  # (B, S, V)
    labels = batch["labels"][:, 1:]
    token_loss = F.cross_entropy(
        logits[:, :-1].transpose(1, 2).float(), labels, ignore_index=IGNORE, reduction="none"
    )  # (B, S-1)
    # each sample weighs the same: a token mean would let the long thinking traces (~20 tokens)
    # outweigh the one-token answers that carry the grounding signal
    counts = (labels != IGNORE).sum(1).clamp(min=1)
    per_sample = token_loss.sum(1) / counts  # (B,)
    loss = per_sample.mean()
    if stats is not None:
        stats["per_sample"] = per_sample.detach()
    if media is not None and (scale_weight or stats is not None):
        text_rms = model.language_model.model.embed_tokens.weight.detach().pow(2).mean().sqrt()
        media_rms = media.float().pow(2).mean().sqrt()
        if stats is not None:
            stats["media_rms"], stats["text_rms"] = float(media_rms.detach()), float(text_rms)
        if scale_weight:
            loss = loss + scale_weight * torch.log(media_rms / text_rms) ** 2
    if media is not None and aux is not None and aux_weight:
        aux_loss = aux.loss(media, batch)
        if aux_loss is not None:
            loss = loss + aux_weight * aux_loss
            if stats is not None:
                stats["aux"] = float(aux_loss.detach())
    if media is not None and aux is not None and object_weight and "object_targets" in batch:
        object_loss = aux.object_loss(media, batch["object_targets"], centres=bool(count_weight))
        if object_loss is not None:
            loss = loss + object_weight * object_loss
            if stats is not None:
                stats["obj"] = float(object_loss.detach())
        where_loss = aux.position_loss(media, batch["token_positions"])
        loss = loss + object_weight * where_loss
        if stats is not None:
            stats["where"] = float(where_loss.detach())
    if media is not None and canvas_weight and batch.get("twin_pixels") is not None:
        # the same cells, the same tokens, whatever the canvas around them (training.canvas)
        twin = model.embed_pixels(batch["twin_pixels"], batch["twin_grids"])
        a, b = media[batch["twin_here"]].float(), twin[batch["twin_there"]].float()
        canvas_loss = (a - b).pow(2).mean() / a.detach().pow(2).mean().clamp(min=1e-12)
        loss = loss + canvas_weight * canvas_loss
        if stats is not None:
            stats["canvas"] = float(canvas_loss.detach())
    if media is not None and background_weight:
        # still images' patches look at the picture, not at the flat canvas (training.canvas)
        mass = canvas.background_attention(blocks, tower_calls)
        if mass is not None:
            loss = loss + background_weight * mass
            if stats is not None:
                stats["background"] = float(mass.detach())
    if attend:
        # head j of the layer attends to the question's j-th named object: retrieval first, so the
        # answer's loss only has to teach what to read there (docs/bench/attend/)
        ref = ref_attention(attn, seen[attend_layer], batch, model.config.media_placeholder_token_id)
        if "count" in ref and count_weight:
            # counting: the head attends to the sink and the objects' centres alike, and what it reads
            # there says how many (the count read off the share of background tokens undercounted
            # larger images: docs/bench/buttons/)
            counted = F.cross_entropy(aux.counted(ref["count_read"]).float(), ref["count"].to(media.device))
            count_loss = ref["count_ce"].mean() + counted
            loss = loss + count_weight * count_loss
            if stats is not None:
                stats["count"] = float(count_loss.detach())
            swapped = count_swap_loss(model, batch, media, seen[-1][0], attend_layer) if swap_weight else None
            if swapped is not None:
                loss = loss + swap_weight * swapped
                if stats is not None:
                    stats["swap"] = float(swapped.detach())
        if "order" in ref:
            pick = torch.arange(len(ref["order"])), ref["order"].to(ref["mass"].device)
            attend_loss = -ref["mass"][pick].mean()
            # and what the head reads there says where the object is: the values carried colour and
            # never position, so "left of" stayed at chance with the retrieval learned (docs/bench/attend/)
            read_loss = 12 * F.mse_loss(aux.attended(ref["read"][pick]).float(), ref["where"].float())
            loss = loss + attend_weight * (attend_loss + read_loss)
            if stats is not None:
                stats["attend"], stats["read"] = float(attend_loss.detach()), float(read_loss.detach())
    return loss


class RouterBalance:
    """Auxiliary-loss-free load balancing (DeepSeek-V3): nudge each router's correction bias
    towards under-used experts after every step by `rate * sign(mean load - load)`."""

    def __init__(self, model: KimiK25Model, rate: float = 1e-3) -> None:
        self.rate = rate
        self.routers = [m for m in model.modules() if isinstance(m, Router)]
        self.counts = {id(r): torch.zeros(r.weight.shape[0], device=r.weight.device) for r in self.routers}
        for r in self.routers:
            r.register_forward_hook(self._hook)

    def _hook(self, module: Router, args: tuple, out: tuple[Tensor, Tensor]) -> None:
        if module.training:
            self.counts[id(module)] += torch.bincount(
                out[1].flatten(), minlength=module.weight.shape[0]
            ).float()

    @torch.no_grad()
    def step(self) -> float:
        """Update the biases; returns the worst max/mean load ratio of the step."""
        worst = 0.0
        for r in self.routers:
            c = self.counts[id(r)]
            if c.sum() == 0:
                continue
            r.e_score_correction_bias += self.rate * torch.sign(c.mean() - c)
            worst = max(worst, float(c.max() / c.mean()))
            c.zero_()
        return worst


def kind_losses(kinds: list[str], per_sample: Tensor) -> dict[str, float]:
    """Mean loss of each question kind ("family/task") in a batch: the per-task learning curves."""
    sums: dict[str, list[float]] = {}
    for kind, value in zip(kinds, per_sample.tolist()):
        sums.setdefault(kind, []).append(value)
    return {k: round(sum(v) / len(v), 4) for k, v in sorted(sums.items())}


def lr_at(step: int, progress: float, peak: float, warmup: int) -> float:
    """Linear warm-up over `warmup` steps, then cosine to 10% of peak as `progress` goes 0 -> 1."""
    if step < warmup:
        return peak * (step + 1) / warmup
    t = min(1.0, max(0.0, progress))
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))


def read_log(log_file: Path) -> list[dict]:
    """The step log; a resumed run re-logs the steps after its checkpoint, so the last row of a step wins."""
    by_step = {}
    for line in log_file.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            by_step[row["step"]] = row
    return [by_step[k] for k in sorted(by_step)]


def kind_curves(rows: list[dict], bin_steps: int = 100) -> dict[str, tuple[list[int], list[float]]]:
    """kind -> (bin end steps, mean loss of that kind's samples in each `bin_steps`-step bin)."""
    bins: dict[str, dict[int, list[float]]] = {}
    for r in rows:
        for kind, value in r.get("kinds", {}).items():
            bins.setdefault(kind, {}).setdefault((r["step"] - 1) // bin_steps, []).append(value)
    return {
        kind: ([(b + 1) * bin_steps for b in sorted(by)], [sum(by[b]) / len(by[b]) for b in sorted(by)])
        for kind, by in sorted(bins.items())
    }


def plot(log_file: Path, png: Path) -> None:
    """The loss curve; with a second panel of per-kind curves when the log has them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_log(log_file)
    if not rows:
        return
    steps = [r["step"] for r in rows]
    loss = [r["loss"] for r in rows]
    k = 25
    smooth = [
        sum(loss[max(0, i - k + 1) : i + 1]) / len(loss[max(0, i - k + 1) : i + 1]) for i in range(len(loss))
    ]
    curves = kind_curves(rows)
    fig, axes = plt.subplots(1, 2 if curves else 1, figsize=(14 if curves else 7, 4.5), squeeze=False)
    ax = axes[0, 0]
    ax.plot(steps, loss, alpha=0.3, label="loss per step")
    ax.plot(steps, smooth, label=f"mean of {k}")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (answer cross-entropy + penalty + aux)")
    ax.set_title(f"bundled tiny model: {rows[-1]['elapsed'] / 60:.0f} min, {rows[-1]['samples']} samples")
    ax.legend()
    if curves:
        ax = axes[0, 1]
        styles = {"image": "-", "screenshot": "--", "video": ":", "basics": "-.", "chat": "-"}
        for kind, (x, y) in curves.items():
            ax.plot(x, y, styles.get(kind.split("/")[0], "-"), label=kind, linewidth=1)
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_title("per question kind (mean per 100 steps)")
        ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(png, dpi=90)
    plt.close(fig)


def param_groups(model: KimiK25Model, vision_lr_mult: float = 1.0) -> list[dict]:
    """AdamW groups: weight decay on matrices (not embeddings); `lr_mult` on the vision tower and projector."""
    groups: dict[tuple[bool, bool], list] = {}
    for n, p in model.named_parameters():
        vision = n.startswith(("vision_tower.", "mm_projector."))
        groups.setdefault((vision, p.dim() >= 2 and "embed" not in n), []).append(p)
    return [{"params": ps, "weight_decay": 0.05 if decay else 0.0, "lr_mult": vision_lr_mult if vision else 1.0}
            for (vision, decay), ps in sorted(groups.items())]  # fmt: skip


def build(tok: Tokenizer, seed: int, sizes: dict) -> KimiK25Model:
    torch.manual_seed(seed)
    return KimiK25Model.build(model_config(tok, **sizes))


CKPT_TENSORS, CKPT_INFO = "ckpt.safetensors", "ckpt.json"


def save_ckpt(
    path: Path, model: KimiK25Model, opt: torch.optim.Optimizer, step: int, elapsed: float, args: dict,
    meta: dict | None = None, aux: AuxHeads | None = None,
) -> None:  # fmt: skip
    """Resumable state without pickles: tensors (model, aux heads, optimizer, RNG) as safetensors, the rest as JSON."""
    from safetensors.torch import save_file

    tensors = {f"model/{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if aux is not None:
        tensors.update({f"aux/{k}": v.detach().cpu().contiguous() for k, v in aux.state_dict().items()})
    opt_state = opt.state_dict()
    scalars = {}
    for idx, state in opt_state["state"].items():
        for name, value in state.items():
            if torch.is_tensor(value):
                tensors[f"opt/{idx}/{name}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{idx}/{name}"] = value
    tensors["rng"] = torch.get_rng_state()
    info = {"step": step, "elapsed": elapsed, "args": args, "meta": meta or {},
            "param_groups": opt_state["param_groups"], "opt_scalars": scalars}  # fmt: skip
    save_file(tensors, str(path / (CKPT_TENSORS + ".tmp")))
    (path / (CKPT_INFO + ".tmp")).write_text(json.dumps(info, default=str))
    os.replace(path / (CKPT_TENSORS + ".tmp"), path / CKPT_TENSORS)
    os.replace(path / (CKPT_INFO + ".tmp"), path / CKPT_INFO)


def load_ckpt(path: Path) -> tuple[dict, dict]:
    """(tensors, info) as `save_ckpt` wrote them."""
    from safetensors.torch import load_file

    return load_file(str(path / CKPT_TENSORS)), json.loads((path / CKPT_INFO).read_text())


def load_weights(model: KimiK25Model, source: str | Path, aux: AuxHeads | None = None) -> None:
    """Load `source`'s weights into `model`: a training run (its checkpoint) or an exported model
    directory. `aux` gets the run's aux heads where it has them (an export has none)."""
    source = Path(source)
    if (source / CKPT_TENSORS).exists():
        tensors, info = load_ckpt(source)
        restore(tensors, info, model, aux=aux)
    else:
        from mm_model.checkpoint import load_model

        model.load_state_dict(load_model(source).state_dict())


def restore(
    tensors: dict, info: dict, model: KimiK25Model, opt: torch.optim.Optimizer | None = None,
    aux: AuxHeads | None = None,
) -> None:  # fmt: skip
    model.load_state_dict({k.removeprefix("model/"): v for k, v in tensors.items() if k.startswith("model/")})
    if aux is not None and any(k.startswith("aux/") for k in tensors):
        saved = {k.removeprefix("aux/"): v for k, v in tensors.items() if k.startswith("aux/")}
        # a run from before the per-token, attention or count heads keeps its heads; those start fresh
        missing, unexpected = aux.load_state_dict(saved, strict=False)
        if unexpected or any(not k.startswith(LATER_HEADS) for k in missing):
            raise RuntimeError(f"aux heads do not match the checkpoint: {missing=} {unexpected=}")
    if opt is not None and len(info["param_groups"]) != len(opt.param_groups):
        # a checkpoint from before the vision/LM group split: weights only, fresh optimizer moments
        print(f"optimizer groups differ ({len(info['param_groups'])} saved): optimizer state not restored")
    elif opt is not None:
        state: dict[int, dict] = {}
        for key, value in tensors.items():
            if key.startswith("opt/"):
                _, idx, name = key.split("/", 2)
                state.setdefault(int(idx), {})[name] = value
        for key, value in info["opt_scalars"].items():
            idx, name = key.split("/", 1)
            state.setdefault(int(idx), {})[name] = value
        groups = [dict(g) for g in info["param_groups"]]
        if aux is not None and len(groups[-1]["params"]) != len(opt.param_groups[-1]["params"]):
            # aux heads added since the checkpoint (the last group): theirs start fresh, the rest resume
            print("aux heads changed since the checkpoint: their optimizer state starts fresh")
            for idx in groups[-1]["params"]:
                state.pop(idx, None)
            first = groups[-1]["params"][0]
            groups[-1]["params"] = list(range(first, first + len(opt.param_groups[-1]["params"])))
        opt.load_state_dict({"state": state, "param_groups": groups})


def train(args: argparse.Namespace) -> Path:
    from tqdm import tqdm

    torch.set_num_threads(args.threads)
    random.seed(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tok_file = out / "tokenizer.json"
    if not tok_file.exists() and args.init:
        tok_file.write_bytes((Path(args.init) / "tokenizer.json").read_bytes())
    if not tok_file.exists():
        from training.tokenizer import build as build_tokenizer

        build_tokenizer().save(tok_file)
    tok = JsonTokenizer.from_file(tok_file)
    sizes = json.loads(args.sizes)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.set_float32_matmul_precision("high")  # TF32 matmuls: fp32 weights, ~4x the fp32 rate
    model = build(tok, args.seed, sizes)
    if args.init and not (out / CKPT_TENSORS).exists():  # a new run from another's weights
        load_weights(model, args.init)
        print(f"weights from {args.init}; fresh optimizer")
    model = model.to(device)
    processor = Processor(model.config, tok)
    opt = torch.optim.AdamW(param_groups(model, args.vision_lr_mult), lr=args.lr, betas=(0.9, 0.98), eps=1e-8)
    step, elapsed = 0, 0.0
    ck_meta: dict = {}
    tensors, ck = load_ckpt(out) if (out / CKPT_TENSORS).exists() else ({}, {})
    # the aux heads are the last parameter group: before the restore when the checkpoint has them
    has_aux = any(k.startswith("aux/") for k in tensors)
    aux = (
        AuxHeads(
            model.config.text.hidden_size, model.config.text.vocab_size, model.config.text.v_head_dim
        ).to(device)
        if args.aux_weight or args.object_weight or args.attend_weight or has_aux
        else None
    )

    def add_aux_group() -> None:
        opt.add_param_group(
            {"params": list(aux.parameters()), "weight_decay": 0.0, "lr_mult": args.vision_lr_mult}
        )

    if aux is not None and has_aux:
        add_aux_group()
    if tensors:
        # this run's multipliers, not the checkpoint's (a phase may change --vision-lr-mult)
        mults = [g["lr_mult"] for g in opt.param_groups]
        restore(tensors, ck, model, opt, aux)
        for g, m in zip(opt.param_groups, mults, strict=True):
            g["lr_mult"] = m
        step, elapsed = ck["step"], ck["elapsed"]
        torch.set_rng_state(tensors["rng"])
        ck_meta = ck.get("meta", {})
        print(f"resumed at step {step} ({elapsed / 60:.1f} min)")
    if aux is not None and not has_aux:  # new heads: after the restore, which knew nothing of them
        add_aux_group()
    balance = RouterBalance(model)
    phase_step, phase_start = step, elapsed
    same_phase = ck_meta.get("phase", {}).get("mix") == args.mix and not args.new_phase
    if args.phase_minutes and same_phase:  # resuming this phase
        phase_step, phase_start = ck_meta["phase"]["start"]
    mix = parse_mix(args.mix)
    meta = {"phase": {"mix": args.mix, "start": (phase_step, phase_start)}} if args.phase_minutes else {}
    model.train()
    batches = iter(torch.utils.data.DataLoader(
        Batches(processor, tok, args.batch, mix, args.steps, twins=bool(args.canvas_weight),
                largest_twins=args.largest_twins), batch_size=None,
        sampler=range(step, args.steps), num_workers=args.workers, prefetch_factor=4 if args.workers else None,
    ))  # fmt: skip
    log = (out / "log.jsonl").open("a")
    bar = tqdm(total=args.steps, initial=step, desc="train", dynamic_ncols=True, mininterval=5)
    last_ckpt = time.time()
    while step < args.steps and (args.phase_minutes or elapsed < args.minutes * 60):
        t0 = time.time()
        # the schedule follows whichever budget runs out first: steps or training minutes
        if args.phase_minutes:  # a fresh warm-up + cosine over the phase
            progress = (elapsed - phase_start) / (args.phase_minutes * 60)
            lr = lr_at(step - phase_step, progress, args.lr, args.warmup)
            if progress >= 1:
                break
        else:
            progress = max(step / args.steps, elapsed / (args.minutes * 60))
            lr = lr_at(step, progress, args.lr, args.warmup)
        for g in opt.param_groups:
            g["lr"] = lr * g.get("lr_mult", 1.0)
        batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in next(batches).items()}
        stats: dict = {}
        loss = loss_fn(model, batch, args.scale_weight, stats, aux, args.aux_weight, args.object_weight,
                       args.attend_weight, args.attend_layer, args.count_weight, args.swap_weight,
                       args.canvas_weight, args.background_weight)  # fmt: skip
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0))
        opt.step()
        load = balance.step()
        step += 1
        elapsed += time.time() - t0
        per_sample = stats.pop("per_sample")
        row = {"step": step, "loss": round(loss.item(), 5), "lr": lr, "gnorm": round(gnorm, 3),
               "load": round(load, 2), "tokens": int(batch["input_ids"].numel()),
               **{k: round(v, 4) for k, v in stats.items()}, "kinds": kind_losses(batch["kinds"], per_sample),
               "samples": step * args.batch, "elapsed": round(elapsed, 1)}  # fmt: skip
        log.write(json.dumps(row) + "\n")
        log.flush()
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.3f}", s_step=f"{time.time() - t0:.2f}", lr=f"{lr:.1e}")
        if time.time() - last_ckpt > args.ckpt_minutes * 60:
            save_ckpt(out, model, opt, step, elapsed, vars(args), meta, aux)
            plot(out / "log.jsonl", out / "loss_curve.png")
            last_ckpt = time.time()
    bar.close()
    save_ckpt(out, model, opt, step, elapsed, vars(args), meta, aux)
    plot(out / "log.jsonl", out / "loss_curve.png")
    print(f"done: step {step}, {elapsed / 60:.1f} min")
    return out


def export(run: Path, dest: Path, dtype: torch.dtype = torch.float32) -> None:
    """Write the run's weights (released layout), config, tokenizer and loss curve into `dest`."""
    import shutil

    from mm_model.checkpoint import save_model
    from mm_model.lm.model import cast_model

    tensors, ck = load_ckpt(run)
    tok = JsonTokenizer.from_file(run / "tokenizer.json")
    model = build(tok, 0, json.loads(ck["args"]["sizes"]))
    restore(tensors, ck, model)
    if dtype != torch.float32:
        cast_model(model, dtype)
    save_model(model.eval(), dest, tokenizer_dir=None)
    shutil.copy(run / "tokenizer.json", dest / "tokenizer.json")
    plot(run / "log.jsonl", dest / "loss_curve.png")  # drawn now: the run's own picture may be older
    rows = [r for r in read_log(run / "log.jsonl") if r["step"] <= ck["step"]]
    info = {"steps": ck["step"], "samples": ck["step"] * ck["args"]["batch"],
            "train_minutes": round(ck["elapsed"] / 60, 1), "final_loss_mean_last_50": round(
                sum(r["loss"] for r in rows[-50:]) / max(1, len(rows[-50:])), 4),
            "max_train_sequence": max(r["tokens"] // ck["args"]["batch"] for r in rows),
            "parameters": sum(p.numel() for p in model.parameters()), "args": ck["args"]}  # fmt: skip
    (dest / "training.json").write_text(json.dumps(info, indent=2) + "\n")
    print(f"exported step {ck['step']} to {dest}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="training/runs/main")
    ap.add_argument("--steps", type=int, default=20000, help="at most this many steps")
    ap.add_argument("--minutes", type=float, default=90.0, help="stop after this much training time")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scale-weight", type=float, default=0.1, help="media/text embedding scale penalty")
    ap.add_argument(
        "--vision-lr-mult", type=float, default=1.0, help="lr multiplier: vision tower, projector, aux heads"
    )
    ap.add_argument("--device", default="cpu", help="cpu, or cuda (fp32 weights, TF32 matmuls)")
    ap.add_argument("--aux-weight", type=float, default=0.0, help="weight of the aux heads' loss (AUX_KINDS)")
    ap.add_argument("--object-weight", type=float, default=0.0,
                    help="weight of the per-token losses: the shape, colour or word under each media token, its position")  # fmt: skip
    ap.add_argument("--attend-weight", type=float, default=0.0,
                    help="weight of the attention targets: head j of --attend-layer attends to the question's j-th named object")  # fmt: skip
    ap.add_argument(
        "--attend-layer", type=int, default=2, help="the LM layer whose heads --attend-weight supervises"
    )
    ap.add_argument("--count-weight", type=float, default=0.0,
                    help="weight of the counting targets: the last head of --attend-layer on a sink and one token per object (needs --attend-weight)")  # fmt: skip
    ap.add_argument("--swap-weight", type=float, default=0.0,
                    help="weight of the count interchange loss (count_swap_loss; needs --count-weight)")  # fmt: skip
    ap.add_argument("--canvas-weight", type=float, default=0.0,
                    help="weight of the canvas-twin loss: the same cells' tokens on a larger seen canvas (training.canvas)")  # fmt: skip
    ap.add_argument("--background-weight", type=float, default=0.0,
                    help="weight of the tower's attention from still images' patches onto their flat background (training.canvas)")  # fmt: skip
    ap.add_argument("--largest-twins", action="store_true",
                    help="each twin on the largest seen canvas, not a random larger seen size")  # fmt: skip
    ap.add_argument("--threads", type=int, default=1, help="1 beats 2 on a busy shared CPU (no spin-waits)")
    ap.add_argument(
        "--workers", type=int, default=1, help="processes building batches ahead (0: in the loop)"
    )
    ap.add_argument("--ckpt-minutes", type=float, default=4.0)
    ap.add_argument(
        "--sizes", default="{}", help='JSON overrides of model_config sizes, e.g. {"lm_layers": 6}'
    )
    ap.add_argument(
        "--mix",
        default="full",
        help=f"a curriculum mix ({', '.join(MIXES)}) or kinds: screenshot/title=2,video",
    )
    ap.add_argument("--phase-minutes", type=float, default=0.0,
                    help="a phase of this many minutes from the checkpoint: fresh warm-up + cosine on --mix")  # fmt: skip
    ap.add_argument("--new-phase", action="store_true", help="start a new phase even if the mix is the same")
    ap.add_argument(
        "--init",
        default=None,
        help="start a new run from a run's or an exported model's weights (fresh optimizer)",
    )
    ap.add_argument("--export", default=None, help="export the run in --out to this directory and exit")
    ap.add_argument("--export-dtype", default="float32", choices=("float32", "bfloat16"))
    args = ap.parse_args()
    try:
        parse_mix(args.mix)
    except ValueError as exc:
        ap.error(str(exc))
    if args.export:
        export(Path(args.out), Path(args.export), getattr(torch, args.export_dtype))
    else:
        train(args)


if __name__ == "__main__":
    main()
