"""The training objective: the answer's cross-entropy, and the optional targets on top of it.

`loss_fn` adds, each behind its weight (the trainer's flags): a media-scale penalty; `AuxHeads`, which
read media-only answers and each token's shape, colour, word and place straight from the media
embeddings; attention targets on the heads of one LM layer (`ref_attention`), with counting targets
and the count interchange loss (`count_swap_loss`); and the canvas-twin and background-attention
losses of the vision tower (`training.canvas`). The targets come with the batch (`training.batches`).
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mm_model.multimodal import KimiK25Model
from training import canvas
from training.batches import AUX_KINDS, IGNORE
from training.generators.common import COLOUR_NAMES, SHAPES
from training.generators.images import MAX_SHAPES
from training.generators.screenshots import WORDS

COUNT_HEAD = -1  # the attention head a counting question's targets supervise (heads 0, 1: named objects)


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
