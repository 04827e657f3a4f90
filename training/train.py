"""Trainer for the bundled model on the synthetic curriculum (CPU, or CUDA where a GPU is lent).

    PLAN=gpu DEVICE=cuda bash training/curriculum.sh training/runs/main python3   # the bundled weights
    bash training/curriculum.sh training/runs/main      # the CPU plan: five phases, ~48 CPU-min
    python -m training.train --out training/runs/main --mix ground --phase-minutes 6   # one phase
    python -m training.train --out training/runs/main --export mm_model/bundled/tiny   # weights only
    python -m training.train ... --aux-weight 1 --vision-lr-mult 3 --device cuda         # options

The log has each question kind's loss per step (`kinds`), drawn in the loss curve's second panel.
The batches and their targets are `training.batches`; the loss and the aux heads `training.losses`.
`--aux-weight` adds `AuxHeads`, which supervise the vision tower directly on media-only answers
through a max/min/mean readout: the tower then carries the window title (100% read directly) and
the LM learns to read it in ~3k single-kind samples (docs/bench/probe/, docs/bench/aux_extension/);
`python -m training.probes learn` measures one kind alone, directly or through the LM. `--object-weight`
adds per-token targets: the shape, colour or word under each media token and its position
(`object_targets`, `token_positions`), which the answers alone did not teach the tokens (`python -m
training.probes tokens`, docs/bench/objects/). `--attend-weight` adds attention targets: head j of LM
layer `--attend-layer`, where the answer starts, attends to the question's j-th named object and
carries its place (`attention_targets`, `ref_attention`; `python -m training.probes attention`,
docs/bench/attend/); `--count-weight` adds counting targets (the last head of that layer on a sink and
one token per counted object) and `--swap-weight` the count interchange loss (`count_swap_loss`;
docs/bench/buttons/); `--canvas-weight` asks each picture's tokens to stay the same on a larger seen
canvas (`training.canvas`, docs/bench/canvas/).

Batches: `batch` samples per step, right-padded (causal attention makes right padding safe
without a mask), media of all samples packed into one MoonViT-3D call. Loss only on the
assistant's tokens (answer, or thinking trace + answer), each sample's prompt rendered by the
same `Processor` the API uses. fp32 (bf16 matmuls are ~10x slower on AVX2-only CPUs; TF32 on cuda). Resumable:
`ckpt.safetensors` + `ckpt.json` in `--out` every `--ckpt-minutes` (no pickles); data are a pure function of the step, so a resumed
run sees exactly the samples it would have seen.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import time
from pathlib import Path

import torch
from torch import Tensor

from mm_model.config import ModelConfig
from mm_model.lm.config import LMConfig, RopeScaling
from mm_model.lm.moe import Router
from mm_model.multimodal import KimiK25Model
from mm_model.processor import Processor
from mm_model.tokenizer import JsonTokenizer, Tokenizer
from training.batches import Batches
from training.generators import MIXES, parse_mix
from training.generators.screenshots import SEEN_HEIGHT, SEEN_WIDTH
from training.losses import LATER_HEADS, AuxHeads, loss_fn
from vision.config import MediaConfig, VisionConfig

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
                largest_twins=args.largest_twins, thinking=args.thinking), batch_size=None,
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
    ap.add_argument(
        "--thinking",
        type=float,
        default=None,
        help="share of traced questions asked in thinking mode (default generators.THINKING)",
    )
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
