"""The llama.cpp peer says why it cannot run (no llama-cpp-python, a library that fails to load, no
converter), lm_speed carries that reason into its table and JSON, and — where llama-cpp-python is
installed and the converter unpacked (`make peers`) — a tiny model decodes greedily through it."""

from __future__ import annotations

import importlib.abc
import re
import sys

import pytest
import torch

from benchmarks import gguf_export, lm_speed
from benchmarks import llama_cpp_peer as peer_mod
from benchmarks.llama_cpp_peer import LlamaPeer, PeerUnavailable, agreeing_prefix, unavailable_reason
from mm_model.lm import LMConfig

pytest.importorskip("transformers")


@pytest.mark.parametrize(
    "a, b, n",
    [
        ([1, 2, 3], [1, 2, 3], 3),
        ([1, 2, 3], [1, 9, 3], 1),
        ([5], [6], 0),
        ([1, 2], [1, 2, 3], 2),
        ([], [1], 0),
    ],
    ids=["all", "first_only", "none", "shorter", "empty"],
)
def test_agreeing_prefix(a, b, n):
    assert agreeing_prefix(a, b) == n


class _FailingImport(importlib.abc.MetaPathFinder):
    """Makes `import llama_cpp` raise `error`, as a missing package or a broken .so would."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def find_spec(self, name, path=None, target=None):
        if name == "llama_cpp":
            raise self.error
        return None


@pytest.mark.parametrize(
    "error, reason",
    [
        (ModuleNotFoundError("No module named 'llama_cpp'"), r"not installed .*make peers"),
        (OSError("libllama.so: cannot open shared object file"), r"fails to load: libllama.so"),
    ],
    ids=["not_installed", "library_broken"],
)
def test_why_not_when_llama_cpp_does_not_import(monkeypatch, error, reason):
    monkeypatch.delitem(sys.modules, "llama_cpp", raising=False)
    monkeypatch.setattr(sys, "meta_path", [_FailingImport(error), *sys.meta_path])
    why = unavailable_reason()
    assert why is not None and "llama-cpp-python" in why
    assert re.search(reason, why), why


def test_why_not_when_the_converter_is_missing(monkeypatch, tmp_path):
    monkeypatch.setattr(peer_mod, "_import_llama_cpp", lambda: object())  # as if installed
    monkeypatch.setenv("LLAMA_CPP_SRC", str(tmp_path))
    why = unavailable_reason()
    assert why is not None and "convert_hf_to_gguf.py" in why and str(tmp_path) in why


def test_lm_speed_reports_why_the_peer_did_not_run(monkeypatch, capsys, tmp_path):
    """The benchmark still runs ours and the reference, and says why llama.cpp is absent: a line in the
    table output and `"llama_cpp": {"ran": false, "why": ...}` in the JSON (never a traceback)."""
    monkeypatch.setattr(lm_speed, "BENCH_CONFIG", LMConfig.tiny(n_routed_experts=8, num_experts_per_tok=2))
    fake_machine = {
        "cpu": {"model": "test", "kind": "test", "flags": []},
        "threads": 1,
        "bandwidth_gb_s": 10.0,
    }
    monkeypatch.setattr(lm_speed, "machine", lambda ceilings=False: fake_machine)
    monkeypatch.setenv("LLAMA_CPP_SRC", str(tmp_path / "no-sdist"))
    argv = "--dtypes fp32 --threads 1 --prefill-lens 16 --decode-batches 1 --decode-steps 4 --repeats 1"
    results = lm_speed.main([*argv.split(), "--prompt", "8", "--compile", "off"])
    assert results["llama_cpp"]["ran"] is False
    why = results["llama_cpp"]["why"]
    assert "llama-cpp-python is not installed" in why or "no-sdist" in why
    assert all(r["llama_cpp_tok_s"] is None for r in results["rows"])
    out = capsys.readouterr().out
    assert f"llama.cpp peer not run: {why}" in out
    off = lm_speed.main([*argv.split(), "--prompt", "8", "--compile", "off", "--peer", "off"])
    assert (off["llama_cpp"]["ran"], off["llama_cpp"]["why"]) == (False, "--peer off")


def _peer_or_skip() -> None:
    why = unavailable_reason()
    if why is not None:
        pytest.skip(f"llama.cpp peer unavailable here: {why}")


@pytest.mark.slow
def test_tiny_model_decodes_through_llama_cpp():
    _peer_or_skip()
    cfg = LMConfig.tiny(vocab_size=320)
    ours, ref = lm_speed.build_pair(cfg, torch.float32)
    ids = torch.randint(0, cfg.vocab_size, (1, 12), generator=torch.Generator().manual_seed(1))
    peer = LlamaPeer.build_in_tempdir(ref, "fp32", threads=1, n_ctx=64)
    try:
        gguf = peer.gguf
        assert peer.settings()["threads"] == 1 and gguf.name == "model-fp32.gguf"
        run = peer.decode(ids[0].tolist(), 8)
        first = peer.prefill(ids[0].tolist())
    finally:
        peer.close()
    assert not gguf.exists()  # the temporary directory goes with the peer
    assert len(run.tokens) == 9 and all(0 <= t < cfg.vocab_size for t in run.tokens)
    assert first == run.tokens[0]  # prefill from a reset cache is repeatable
    assert run.prefill_s > 0 and run.decode_s > 0
    with torch.inference_mode():
        mine = lm_speed.decode_ours(ours, ids, 8).tokens[0].tolist()
    # Random weights leave near-tied logits, so the two greedy runs may part; report, do not require.
    print(f"llama.cpp vs ours, fp32 greedy: {agreeing_prefix(run.tokens, mine)}/9 leading tokens agree")


def test_a_failed_load_is_a_reason_not_a_traceback(monkeypatch, tmp_path):
    class FakeLib:
        __version__ = "0"

        class Llama:
            def __init__(self, **kwargs):
                raise ValueError(f"Failed to load model from file: {kwargs['model_path']}")

    monkeypatch.setattr(peer_mod, "_import_llama_cpp", lambda: FakeLib)
    monkeypatch.setattr(peer_mod, "export", lambda ref, workdir, dtype, src: workdir / "m.gguf")
    with pytest.raises(PeerUnavailable, match=r"could not load the converted m.gguf: Failed to load"):
        LlamaPeer.build(None, "fp32", 1, 64, tmp_path)
    assert gguf_export.PeerUnavailable is PeerUnavailable


@pytest.mark.slow
def test_lm_speed_times_the_peer_beside_us(monkeypatch, capsys):
    _peer_or_skip()
    cfg = LMConfig.tiny(vocab_size=320)  # 256 would be bytes only, and llama.cpp needs a merge
    monkeypatch.setattr(lm_speed, "BENCH_CONFIG", cfg)
    fake_machine = {
        "cpu": {"model": "test", "kind": "test", "flags": []},
        "threads": 1,
        "bandwidth_gb_s": 10.0,
    }
    monkeypatch.setattr(lm_speed, "machine", lambda ceilings=False: fake_machine)
    argv = "--dtypes fp32 --threads 1 --prefill-lens 16 --decode-batches 1,2 --decode-steps 4 --repeats 1"
    results = lm_speed.main([*argv.split(), "--prompt", "8", "--compile", "off"])
    peer = results["llama_cpp"]
    assert peer["ran"] is True and peer["why"] is None and peer["convert_s"]["fp32"] > 0
    assert peer["greedy_leading_tokens_agree"].keys() == {"fp32 batch 1"}
    timed = {r["case"]: r["llama_cpp_tok_s"] for r in results["rows"]}
    assert timed["decode batch 2, 4 new tok"] is None  # batch 1 only
    assert all(
        timed[c] > 0
        for c in ("prefill 16 tok, batch 1", "decode batch 1, 4 new tok", "greedy 8 + 4 tok, batch 1")
    )
    assert results["decode_of_bandwidth_limit"]["fp32"]["llama_cpp"] > 0
    assert "rows with batch > 1 not run for it" in capsys.readouterr().out
