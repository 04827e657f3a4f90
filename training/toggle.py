"""The Toggle stage (K2.5 report, section 4.4.2) in its offline form: rollouts, Toggle's reward, fine-tune.

    python -m training.toggle --init training/runs/thinking --out training/runs/toggle
    python -m training.toggle ... --problems 24 --k 4 --iterations 4 --m 1 --steps 150

Iteration t, in phase `toggle_phase(t, m)` (0: budget-limited, 1: standard scaling):
1. Rollouts: `--k` thinking replies at `--temperature` (0.7; the report samples at 1, where the tiny
   model was right on 31% of its replies), top-p 0.95, from the current weights to each of `--problems` problems per trace kind (split "toggle": seeds apart from every other
   split, asked in trained wordings); reward 1 where the whole answer is right (`same_answer`).
2. Budgets: each problem's ceil ρ-th percentile of its correct rollouts' thinking lengths, estimated at
   t = 0 and then fixed (`estimate_budget`), as the report fixes them.
3. Toggle rewards (`toggle_group_rewards`): in phase 0 a right answer over its problem's budget earns 0,
   unless the group solves that problem below λ. Kept, per problem: in phase 0 the shortest rewarded
   rollout, in phase 1 a random rewarded one. This is the offline form of the report's reinforcement
   learning (rejection sampling, then supervised fine-tuning on what the reward keeps): at this scale a
   policy gradient over 4 rollouts is mostly noise, and fine-tuning on the kept traces moves the policy
   the same way.
4. Fine-tune `--steps` steps on the kept traces (thinking mode: trace, `</think>`, answer), half of each
   batch drawn from the curriculum mix so that what the earlier stages taught stays, with the
   curriculum's tower and attention targets on (`--aux-weight` etc.; the first run trained the LM loss
   alone and the readouts the earlier stages built drifted: seen screenshots 96 -> 79). One AdamW for
   the whole stage, its moments carried across iterations.

`--init` is a training run (its checkpoint carries the aux heads those targets need) or exported
weights (the heads then start untrained: pass `--aux-weight 0 --object-weight 0 --attend-weight 0`).

Lengths are thinking tokens (the report counts the whole response; here answers are 1-3 tokens and the
decoding budget counts thinking). Writes `toggle.json` (per iteration: phase, mean budget, thinking tokens,
reward, Toggle reward, problems kept) and `toggle.png` into `--out`, and the final weights there.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from benchmarks.common import same_answer
from mm_model.toggle.rule import estimate_budget, toggle_group_rewards, toggle_phase
from training.evaluate import THINKING_TOKENS, TRACE_TASKS
from training.generators import Sample, parse_mix, sample
from training.train import RouterBalance

REPLAY_MIX = "image=0.33,screenshot=0.25,basics=0.04,video=0.3,chat=0.04,image/count_colour=0.04"


@dataclass(frozen=True)
class Rollout:
    trace: str
    thinking_tokens: int
    correct: bool


def problems(n: int, tasks: tuple[tuple[str, str], ...]) -> list[Sample]:
    """`n` problems per (family, task), split "toggle", in trained wordings."""
    return [sample("toggle", i, family=f, task=t, wording="train") for f, t in tasks for i in range(n)]


def rollouts(model, s: Sample, k: int, seed: int, temperature: float = 0.7) -> list[Rollout]:
    """`k` sampled thinking replies to `s`; a reply whose thinking ran out of tokens is wrong."""
    out = []
    for j in range(k):
        r = model.chat(s.messages, thinking=True, temperature=temperature, top_p=0.95, seed=seed * 1009 + j,
                       max_new_tokens=THINKING_TOKENS)  # fmt: skip
        ok = r.finish_reason == "stop" and r.answered and same_answer(r.text, s.answer)
        out.append(Rollout(r.thinking.strip(), r.usage["thinking_tokens"], ok))
    return out


def keep(
    group: list[Rollout], budget: int | None, lam: float, iteration: int, m: int, rng: random.Random
) -> tuple[Rollout | None, list[float]]:
    """The rollout to fine-tune on (None: no rewarded one) and the group's Toggle rewards."""
    rewards = toggle_group_rewards([float(r.correct) for r in group], [r.thinking_tokens for r in group], budget,
                                   lam, iteration, m)  # fmt: skip
    kept = [r for r, w in zip(group, rewards, strict=True) if w > 0]
    if not kept:
        return None, rewards
    if toggle_phase(iteration, m) == 0:
        return min(kept, key=lambda r: r.thinking_tokens), rewards
    return rng.choice(kept), rewards


@dataclass
class Tuner:
    """The stage's training side: the network, its aux heads (None: no curriculum targets), one AdamW
    and one router balancer for the whole stage (a balancer per call would pile hooks on the routers)."""

    net: torch.nn.Module
    aux: torch.nn.Module | None
    opt: torch.optim.Optimizer
    balance: RouterBalance
    weights: dict  # loss_fn's aux_weight, object_weight, attend_weight

    @classmethod
    def of(cls, net, aux, lr: float, weights: dict) -> Tuner:
        from training.train import param_groups

        groups = param_groups(net)
        if aux is not None:
            groups.append({"params": list(aux.parameters()), "weight_decay": 0.0, "lr_mult": 1.0})
        opt = torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.98), eps=1e-8)
        return cls(net, aux, opt, RouterBalance(net), weights if aux is not None else {})


def fine_tune(
    model, kept: list[Sample], steps: int, batch: int, lr: float, step0: int, tuner: Tuner
) -> float:
    """`steps` AdamW steps on batches half `kept` (thinking mode) and half curriculum; the mean loss."""
    from training.batches import training_batch
    from training.losses import loss_fn

    net = tuner.net
    net.train().requires_grad_(True)  # loaded for inference: no gradients
    mix = parse_mix(REPLAY_MIX)
    rng = random.Random(step0)
    losses = []
    for step in range(steps):
        ours = [rng.choice(kept) for _ in range(batch // 2)]
        # curriculum samples from an index range no other stage reads, so they are fresh ones
        rest = [
            sample("train", 50_000_000 + (step0 + step) * batch + i, mix=mix)
            for i in range(batch - len(ours))
        ]
        b = training_batch(ours + rest, model.processor, model.tokenizer)
        warm = min(1.0, (step + 1) / 20)
        for g in tuner.opt.param_groups:
            g["lr"] = lr * warm * g["lr_mult"]
        loss = loss_fn(net, b, scale_weight=0.1, aux=tuner.aux, **tuner.weights)
        tuner.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        tuner.opt.step()
        tuner.balance.step()
        losses.append(loss.item())
    net.eval().requires_grad_(False)
    model._media_cache.clear()  # the tower changed: features cached before are stale
    return sum(losses) / len(losses)


def load(source: str, want_aux: bool):
    """(Model, aux heads or None): a training run's weights and heads, or exported / bundled weights."""
    import mm_model
    from mm_model.api import Model
    from mm_model.tokenizer import JsonTokenizer
    from training.losses import AuxHeads
    from training.train import CKPT_TENSORS, build, load_ckpt, restore

    run = Path(source)
    if not (run / CKPT_TENSORS).exists():
        model = mm_model.load(source, dtype=torch.float32, device="cpu")
        cfg = model.config.text
        aux = AuxHeads(cfg.hidden_size, cfg.vocab_size, cfg.v_head_dim) if want_aux else None
        return model, aux
    tensors, info = load_ckpt(run)
    tok = JsonTokenizer.from_file(run / "tokenizer.json")
    net = build(tok, 0, json.loads(info["args"]["sizes"]))
    cfg = net.config.text
    aux = AuxHeads(cfg.hidden_size, cfg.vocab_size, cfg.v_head_dim) if want_aux else None
    restore(tensors, info, net, aux=aux)
    return Model(net, tok, path=run), aux


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    t = [r["iteration"] for r in rows]
    a.plot(t, [r["thinking_tokens"] for r in rows], "o-", label="mean thinking tokens (rollouts)")
    a.plot(t, [r["budget"] for r in rows], "s--", label="mean budget (fixed at t=0)")
    b.plot(t, [r["reward"] for r in rows], "o-", label="reward (answer right)")
    b.plot(t, [r["toggle_reward"] for r in rows], "s--", label="Toggle reward")
    for ax in (a, b):
        for r in rows:
            if r["phase"] == 0:
                ax.axvspan(r["iteration"] - 0.5, r["iteration"] + 0.5, color="0.92")
        ax.set_xlabel("iteration (shaded: budget-limited phase)")
        ax.legend(fontsize=8)
    a.set_ylabel("tokens")
    b.set_ylabel("mean over rollouts")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(args: argparse.Namespace) -> list[dict]:
    from tqdm import tqdm

    from mm_model.checkpoint import save_model

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    weights = {"aux_weight": args.aux_weight, "object_weight": args.object_weight,
               "attend_weight": args.attend_weight}  # fmt: skip
    model, aux = load(args.init, want_aux=any(weights.values()))
    todo = problems(args.problems, TRACE_TASKS)
    tuner = Tuner.of(model.model, aux, args.lr, weights)
    rng = random.Random(args.seed)
    budgets: list[int | None] = []
    rows: list[dict] = []
    for t in range(args.iterations):
        t0 = time.time()
        phase = toggle_phase(t, args.m)
        with torch.no_grad():
            groups = [rollouts(model, s, args.k, seed=t * 100_003 + i, temperature=args.temperature)
                      for i, s in enumerate(tqdm(todo, desc=f"rollouts {t}", mininterval=10))]  # fmt: skip
        if t == 0:
            budgets = [estimate_budget([r.thinking_tokens for r in g], [r.correct for r in g], args.rho)
                       for g in groups]  # fmt: skip
        kept, all_rewards = [], []
        for s, g, budget in zip(todo, groups, budgets, strict=True):
            choice, rewards = keep(g, budget, args.lam, t, args.m, rng)
            all_rewards += rewards
            if choice is not None:
                kept.append(replace(s, trace=choice.trace, thinking=True))
        every = [r for g in groups for r in g]
        row = {"iteration": t, "phase": phase,
               "budget": sum(b for b in budgets if b is not None) / max(1, sum(b is not None for b in budgets)),
               "thinking_tokens": sum(r.thinking_tokens for r in every) / len(every),
               "reward": sum(r.correct for r in every) / len(every),
               "toggle_reward": sum(all_rewards) / len(all_rewards), "kept": len(kept), "problems": len(todo),
               "kept_thinking_tokens": 0.0, "loss": None}  # fmt: skip
        if kept:
            tok = model.tokenizer
            row["kept_thinking_tokens"] = sum(len(tok.encode(s.trace)) for s in kept) / len(kept)
            row["loss"] = fine_tune(model, kept, args.steps, args.batch, args.lr, t * args.steps, tuner)
        row["seconds"] = round(time.time() - t0, 1)
        rows.append(row)
        print(json.dumps(row))
        (out / "toggle.json").write_text(
            json.dumps({"args": vars(args), "iterations": rows}, indent=1) + "\n"
        )
    save_model(model.model.eval(), out, tokenizer_dir=None)
    shutil.copy(Path(model.path) / "tokenizer.json", out / "tokenizer.json")
    if (Path(model.path) / "preprocessor_config.json").exists():
        shutil.copy(Path(model.path) / "preprocessor_config.json", out / "preprocessor_config.json")
    plot(rows, out / "toggle.png")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--init", default="tiny", help="bundled model name or exported weights")
    ap.add_argument("--out", required=True)
    ap.add_argument("--problems", type=int, default=24, help="problems per trace kind")
    ap.add_argument("--k", type=int, default=4, help="rollouts per problem")
    ap.add_argument("--iterations", type=int, default=4)
    ap.add_argument("--m", type=int, default=1, help="iterations per phase")
    ap.add_argument("--rho", type=float, default=50, help="budget percentile of a problem's correct lengths")
    ap.add_argument("--lam", type=float, default=0.5, help="the budget binds where group accuracy >= lam")
    ap.add_argument("--steps", type=int, default=150, help="fine-tuning steps per iteration")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--temperature", type=float, default=0.7, help="rollout sampling temperature")
    for name in ("aux", "object", "attend"):
        ap.add_argument(f"--{name}-weight", type=float, default=1.0, help=f"the curriculum's --{name}-weight")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    run(ap.parse_args())


if __name__ == "__main__":
    main()
