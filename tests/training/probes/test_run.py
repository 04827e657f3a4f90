"""The probes' runner: each name reaches its probe with its own defaults and the shared flags; errors are argparse's."""

from __future__ import annotations

import dataclasses
import json
from importlib import import_module

import pytest
import torch

import mm_model
from training.probes.run import NAMES, main, parser


@pytest.mark.parametrize(
    "name, defaults, load_kw",
    [
        ("learn", {"kind": "basics/shape_single", "heldout": 64, "threads": 2}, None),
        ("tokens", {"model": "tiny", "train": 600, "test": 200, "threads": None}, {"dtype": torch.float32, "device": "cpu"}),
        ("attention", {"model": None, "n": 192, "layer": 2, "split": "heldout", "threads": 2}, {}),
        ("canvas", {"model": None, "n": 40, "pads": (28, 56, 84), "threads": 2}, {}),
        ("sizes", {"model": None, "n": 120, "task": "image/count_all", "threads": 2}, {}),
    ],
)  # fmt: skip
def test_each_name_runs_its_probe_with_its_defaults_and_writes_the_summary(
    name, defaults, load_kw, tmp_path, monkeypatch, capsys
):
    module = import_module(f"training.probes.{name}")
    seen, loaded, threads = [], [], []

    def run(args, model):
        seen.append((vars(args).copy(), model))
        return {"result": name}

    def load(source, **kw):
        loaded.append((source, kw))
        return "a model"

    table = lambda summary: f"table of {summary['result']}"  # noqa: E731
    monkeypatch.setattr(module, "PROBE", dataclasses.replace(module.PROBE, run=run, table=table))
    monkeypatch.setattr(mm_model, "load", load)
    monkeypatch.setattr(torch, "set_num_threads", threads.append)
    out = tmp_path / "deeper" / "out.json"  # the runner makes the folder
    summary = main([name, "--json", str(out)])
    (args, model), = seen  # fmt: skip
    assert {k: args[k] for k in defaults} == defaults and "probe" not in args
    assert threads == ([defaults["threads"]] if defaults["threads"] else [])
    if load_kw is None:  # builds its own model: no --model, the result alone
        assert model is None and loaded == [] and "model" not in args
        assert summary == {"result": name}
    else:
        assert model == "a model" and loaded == [(defaults["model"], load_kw)]
        assert summary == {"model": defaults["model"] or "bundled", "result": name}
    assert json.loads(out.read_text()) == summary
    assert capsys.readouterr().out == f"table of {name}\n"


def test_learn_records_its_flags_in_the_order_the_old_probe_did():
    ap, _ = parser()
    args = ap.parse_args(["learn"])
    assert list(vars(args)) == ["probe", "kind", "lm", "steps", "batch", "lr", "every", "heldout", "init",
                                "sizes", "seed", "threads", "json"]  # fmt: skip


@pytest.mark.parametrize(
    "argv, message",
    [
        (["nope"], "argument PROBE: invalid choice: 'nope'"),
        ([], "the following arguments are required: PROBE"),
        (["learn", "--model", "tiny"], "unrecognized arguments: --model tiny"),  # learn builds its own
        (["tokens", "--n", "3"], "unrecognized arguments: --n 3"),  # tokens takes --train / --test
        (["canvas", "--pads", "30"], "argument --pads: must be whole cells (28 px): 30"),
    ],
)
def test_a_bad_command_line_is_an_argparse_error_naming_what_is_wrong(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    if argv == ["nope"]:
        assert all(name in err for name in NAMES)
