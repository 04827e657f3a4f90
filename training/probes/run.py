"""The probes' shared runner: `python -m training.probes PROBE [flags]`.

    python -m training.probes tokens --model DIR --json out.json
    python -m training.probes PROBE --help      # PROBE: learn, tokens, attention, canvas, sizes or traces

Each probe module declares a `Probe`: a function from the parsed flags (and the loaded model) to a
result dict, its own flags, and the table it prints. The runner adds the flags they share (`--model`,
`--n`, `--threads`, `--json`), loads the model, prints the table and writes the JSON:
{"model": --model or "bundled", **result} (a probe that builds its own model: the result alone).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

import mm_model
from mm_model.api import Model
from mm_model.processor import Processor
from mm_model.tokenizer import Tokenizer
from training.batches import training_batch
from training.generators import sample

NAMES = ("learn", "tokens", "attention", "canvas", "sizes", "traces")  # modules of training.probes


@dataclass(frozen=True)
class Probe:
    """What a probe module gives the runner.

    Args:
        run: (flags, model) -> the result dict; model is None where `load` is None.
        add_args: adds the probe's own flags.
        table: the printed summary of the JSON ({"model": ..., **result}); None: prints nothing.
        load: `mm_model.load` keywords for `--model`; None: no `--model`, the probe builds its own.
        model: `--model`'s default (None: the bundled default, "bundled" in the JSON).
        n: `--n`'s default and help; None: no `--n`.
        threads: `--threads`' default; None: torch's own thread count unless given.
        check: an error message for flags that parse but do not go together, else None.
    """

    run: Callable[[argparse.Namespace, Model | None], dict]
    add_args: Callable[[argparse.ArgumentParser], None]
    table: Callable[[dict], str] | None = None
    load: dict[str, Any] | None = field(default_factory=dict)
    model: str | None = None
    n: tuple[int, str] | None = None
    threads: int | None = 2
    check: Callable[[argparse.Namespace], str | None] = lambda args: None


def probes() -> dict[str, Any]:
    """name -> probe module (imported here: each of them imports this module's helpers)."""
    return {name: import_module(f"training.probes.{name}") for name in NAMES}


def parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The runner's parser and one subparser a probe: its docstring, the shared flags, its own."""
    raw = argparse.RawDescriptionHelpFormatter
    ap = argparse.ArgumentParser(prog="python -m training.probes", description=__doc__, formatter_class=raw)
    sub = ap.add_subparsers(dest="probe", required=True, metavar="PROBE")
    subs = {}
    for name, module in probes().items():
        spec: Probe = module.PROBE
        p = sub.add_parser(name, help=module.__doc__.splitlines()[0], description=module.__doc__,
                           formatter_class=raw)  # fmt: skip
        if spec.load is not None:
            p.add_argument(
                "--model", default=spec.model, help="bundled model name or exported model directory"
            )
        if spec.n is not None:
            p.add_argument("--n", type=int, default=spec.n[0], help=spec.n[1])
        spec.add_args(p)
        # after the probe's own flags: a result that records them (learn's "args") keeps their order
        p.add_argument("--threads", type=int, default=spec.threads, help="torch threads")
        p.add_argument("--json", default=None, help="write the result here")
        subs[name] = p
    return ap, subs


def main(argv: list[str] | None = None) -> dict:
    """Parse, run the named probe, print its table and write its JSON; returns what was written."""
    ap, subs = parser()
    args = ap.parse_args(argv)
    name = vars(args).pop("probe")  # the probe's flags alone: a result may record them
    spec: Probe = probes()[name].PROBE
    error = spec.check(args)
    if error:
        subs[name].error(error)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = None
    if spec.load is not None:
        model = mm_model.load(args.model, **spec.load)
    result = spec.run(args, model)
    summary = result if spec.load is None else {"model": args.model or "bundled", **result}
    if spec.table is not None:
        print(spec.table(summary))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def progress(items: Iterable, desc: str, leave: bool = False) -> tqdm:
    """tqdm at most every 5 s: a probe runs minutes on a shared CPU."""
    return tqdm(items, desc=desc, mininterval=5, leave=leave)


def kind_batch(kind: str, split: str, start: int, n: int, processor: Processor, tok: Tokenizer) -> dict:
    """Samples start .. start + n of `kind` ("family/task") from `split`, in their canonical wording,
    collated with their targets
    (`training.batches.training_batch`)."""
    family, task = kind.split("/")
    return training_batch(
        [sample(split, start + i, family=family, task=task, wording="canonical") for i in range(n)],
        processor,
        tok,
    )
