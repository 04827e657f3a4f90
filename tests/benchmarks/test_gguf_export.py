"""The GGUF export hands llama.cpp's converter what it needs (a tokenizer of the model's vocab size,
per-expert checkpoint keys), says why when the converter is missing or fails, and — where the
llama-cpp-python sdist is unpacked ($LLAMA_CPP_SRC or `make peers`) — the real converter's GGUF reads
back with the model's hyperparameters and weights."""

from __future__ import annotations

import copy
import json
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks import gguf_export
from benchmarks.gguf_export import PeerUnavailable, byte_level_vocab, convert, find_converter, save_checkpoint
from mm_model.lm import LMConfig

pytest.importorskip("transformers")


@pytest.mark.parametrize("size", [257, 320, 32768], ids=["one_merge", "tiny_model", "bench_model"])
def test_byte_level_vocab_has_exactly_the_model_size(size):
    vocab, pairs = byte_level_vocab(size)
    assert sorted(vocab.values()) == list(range(size))  # no gaps: no [PAD] rows in the GGUF
    assert len(pairs) == size - 256
    assert all(vocab[a + b] == 256 + i for i, (a, b) in enumerate(pairs))


@pytest.mark.parametrize("size", [256, 256 + 65536 + 1], ids=["no_merges", "past_all_pairs"])
def test_byte_level_vocab_rejects_sizes_it_cannot_fill(size):
    with pytest.raises(ValueError, match="outside"):
        byte_level_vocab(size)


@pytest.fixture(scope="module")
def tiny_ref():
    from benchmarks.lm_speed import build_pair

    return build_pair(LMConfig.tiny(vocab_size=320), torch.float32)[1]


def test_checkpoint_has_what_the_converter_reads(tiny_ref, tmp_path):
    from safetensors import safe_open
    from transformers import AutoTokenizer

    ckpt = save_checkpoint(tiny_ref, tmp_path / "ckpt")
    config = json.loads((ckpt / "config.json").read_text())
    assert config["architectures"] == ["DeepseekV3ForCausalLM"]
    # The converter's get_vocab_base: AutoTokenizer, every id below the config's vocab size.
    tok = AutoTokenizer.from_pretrained(ckpt)
    assert len(tok) == config["vocab_size"] == 320
    assert max(tok.vocab.values()) == 319
    text = "Ünïcode 🦙 and  spaces\n"
    assert tok.decode(tok.encode(text, add_special_tokens=False)) == text
    # The converter merges experts from per-expert keys (`mlp.experts.{i}.gate_proj.weight`).
    with safe_open(ckpt / "model.safetensors", "pt") as f:
        keys = set(f.keys())
    assert "model.layers.1.mlp.experts.7.up_proj.weight" in keys
    assert "model.layers.1.mlp.gate.e_score_correction_bias" in keys


def _fake_src(root: Path, converter_body: str) -> Path:
    """A directory shaped like vendor/llama.cpp whose converter is `converter_body`."""
    src = root / "vendor" / "llama.cpp"
    (src / "gguf-py" / "gguf").mkdir(parents=True)
    (src / "conversion").mkdir()
    (src / "conversion" / "__init__.py").write_text("")
    (src / "conversion" / "base.py").write_text(
        "class TextModel:\n    def get_vocab_base_pre(self, t): return 'unknown'\n"
    )
    (src / "convert_hf_to_gguf.py").write_text(textwrap.dedent(converter_body))
    return src


def test_find_converter_takes_the_sdist_or_its_vendor_dir(tmp_path, monkeypatch):
    src = _fake_src(tmp_path, "")
    assert find_converter(tmp_path) == src
    assert find_converter(src) == src
    monkeypatch.setenv("LLAMA_CPP_SRC", str(tmp_path))
    assert find_converter() == src


def test_missing_converter_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("LLAMA_CPP_SRC", str(tmp_path / "nowhere"))
    with pytest.raises(
        PeerUnavailable, match=r"convert_hf_to_gguf.py .* not found under .*nowhere.*LLAMA_CPP_SRC"
    ):
        find_converter()
    monkeypatch.delenv("LLAMA_CPP_SRC")
    monkeypatch.setattr(gguf_export, "DEFAULT_SRC", tmp_path / "absent")
    with pytest.raises(PeerUnavailable, match=r"absent \(default path\).*make peers"):
        find_converter()


def test_converter_runs_with_the_pre_tokenizer_answered_gpt2(tmp_path):
    # The fake converter writes what the runner's patched checksum lookup answers, and its arguments.
    src = _fake_src(
        tmp_path,
        """
        import sys
        import conversion.base
        out = sys.argv[sys.argv.index("--outfile") + 1]
        pre = conversion.base.TextModel().get_vocab_base_pre(None)
        open(out, "w").write(pre + " " + " ".join(sys.argv[1:]))
    """,
    )
    out = convert(tmp_path / "ckpt", tmp_path / "m.gguf", "bf16", src)
    assert out.read_text().split() == [
        "gpt-2",
        str(tmp_path / "ckpt"),
        "--outfile",
        str(out),
        "--outtype",
        "bf16",
    ]


def test_converter_failure_gives_its_last_error_line(tmp_path):
    src = _fake_src(tmp_path, "raise NotImplementedError('Deepseek pre-tokenizer is not supported yet!')")
    with pytest.raises(PeerUnavailable, match=r"failed .*NotImplementedError: Deepseek pre-tokenizer"):
        convert(tmp_path / "ckpt", tmp_path / "m.gguf", "fp32", src)
    with pytest.raises(ValueError, match="fp16"):
        convert(tmp_path / "ckpt", tmp_path / "m.gguf", "fp16", src)


def _real_converter() -> Path:
    try:
        return find_converter()
    except PeerUnavailable as e:
        pytest.skip(f"llama.cpp's converter is not unpacked here (make peers): {e}")


@pytest.mark.slow
@pytest.mark.parametrize("dtype, ggml_type", [("fp32", "F32"), ("bf16", "BF16")])
def test_real_converter_writes_the_model(tiny_ref, tmp_path, dtype, ggml_type):
    src = _real_converter()
    sys.path.insert(0, str(src / "gguf-py"))  # the gguf reader that matches this converter
    try:
        import gguf
    finally:
        sys.path.remove(str(src / "gguf-py"))
    ref = copy.deepcopy(tiny_ref).to(torch.bfloat16) if dtype == "bf16" else tiny_ref
    out = gguf_export.export(ref, tmp_path, dtype, src)
    assert not (tmp_path / f"hf-{dtype}").exists()  # the intermediate checkpoint is removed
    reader = gguf.GGUFReader(out)
    meta = {k: f.contents() for k, f in reader.fields.items() if not k.startswith("tokenizer.ggml.t")}
    cfg = tiny_ref.config
    assert meta["general.architecture"] == "deepseek2"
    assert meta["tokenizer.ggml.pre"] == "gpt-2"
    assert len(reader.fields["tokenizer.ggml.tokens"].data) == cfg.vocab_size
    expect = {"block_count": cfg.num_hidden_layers, "expert_count": cfg.n_routed_experts,
              "expert_used_count": cfg.num_experts_per_tok, "leading_dense_block_count": cfg.first_k_dense_replace,
              "attention.kv_lora_rank": cfg.kv_lora_rank, "rope.dimension_count": cfg.qk_rope_head_dim}  # fmt: skip
    assert {k: meta[f"deepseek2.{k}"] for k in expect} == expect
    tensors = {t.name: t for t in reader.tensors}
    exps = tensors["blk.1.ffn_gate_exps.weight"]  # per-expert weights merged into one tensor
    assert list(exps.shape) == [cfg.hidden_size, cfg.moe_intermediate_size, cfg.n_routed_experts]
    embed = tensors["token_embd.weight"]
    assert embed.tensor_type.name == ggml_type
    if dtype == "fp32":  # f32 is carried bit for bit
        want = tiny_ref.model.embed_tokens.weight.detach().numpy()
        np.testing.assert_array_equal(np.asarray(embed.data).reshape(want.shape), want)
