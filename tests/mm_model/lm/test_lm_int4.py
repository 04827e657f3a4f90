"""INT4 routed experts: the pack-quantized format against compressed-tensors itself, config validation,
checkpoints (single file and sharded) that stay INT4 in memory, and the CPU kernel against its slow twin."""

from __future__ import annotations

import json
import math

import pytest
import torch
from lm_helpers import randomize_
from safetensors.torch import save_file

from mm_model.lm import CheckpointError, DeepseekV3LM, LMConfig, export_state_dict, load_lm
from mm_model.lm.int4 import (
    dequantize_int4,
    pack_int4,
    parse_quantization_config,
    quantize_int4,
    release_quantization_config,
    unpack_int4,
)
from mm_model.lm.int4_experts import Int4Experts, cpu_kernel_available, int4_experts, quantize_experts_
from mm_model.lm.moe import Experts


def _scheme():
    from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme

    args = QuantizationArgs(num_bits=4, type="int", symmetric=True, strategy="group", group_size=32)
    return QuantizationScheme(targets=["Linear"], weights=args)


@pytest.mark.parametrize("shape", [(1, 32), (7, 64), (3, 5, 96)], ids=["one_group", "rows", "stacked"])
def test_packing_is_compressed_tensors(shape):
    """Our words are the library's, bit for bit, and unpack back (its unpack agrees too)."""
    helpers = pytest.importorskip("compressed_tensors.compressors.pack_quantized.helpers")
    q = torch.randint(-8, 8, shape, dtype=torch.int8)
    packed = pack_int4(q)
    assert packed.dtype == torch.int32 and packed.shape == (*shape[:-1], shape[-1] // 8)
    assert torch.equal(packed, helpers.pack_to_int32(q, 4))
    assert torch.equal(unpack_int4(packed), q)
    assert torch.equal(helpers.unpack_from_int32(packed, 4, torch.Size(shape)), q)


def test_quantize_and_dequantize_agree_with_the_library():
    """The library compresses a weight with our scales into our words, and decompresses our words and
    scales into exactly our dequantised weight (bf16 scales: products rounded to bf16 alike)."""
    pytest.importorskip("compressed_tensors")
    from compressed_tensors.compressors.pack_quantized.base import PackedQuantizationCompressor as PQC

    w = torch.randn(48, 96) * torch.linspace(0.01, 3, 96)  # groups of very different ranges
    w[3, :32] = 0  # an all-zero group
    packed, scale = quantize_int4(w)
    assert scale.dtype == torch.bfloat16 and scale.shape == (48, 3)
    ours = dequantize_int4(packed, scale)
    theirs = PQC.decompress(
        {"weight_packed": packed, "weight_scale": scale, "weight_shape": torch.tensor([48, 96])}, _scheme()
    )
    assert torch.equal(theirs["weight"], ours)
    compressed = PQC.compress({"weight": w, "weight_scale": scale}, _scheme())
    assert torch.equal(compressed["weight_packed"], packed)
    err = (ours.float() - w).abs().amax(-1) / w.abs().amax(-1).clamp_min(1e-12)
    assert err.max() < 0.1  # within half a step of 1/7.5 of each row's range, plus bf16 rounding


@pytest.mark.parametrize(
    "path, value, field",
    [
        (("quant_method",), "gptq", "quant_method"),
        (("format",), "int-quantized", "format"),
        (("format",), "nvfp4-pack-quantized", "format"),
        (("config_groups", "group_0", "weights", "num_bits"), 8, "weights.num_bits"),
        (("config_groups", "group_0", "weights", "group_size"), 128, "weights.group_size"),
        (("config_groups", "group_0", "weights", "symmetric"), False, "weights.symmetric"),
        (("config_groups", "group_0", "weights", "type"), "float", "weights.type"),
        (("config_groups", "group_0", "weights", "strategy"), "channel", "weights.strategy"),
        (("config_groups", "group_0", "weights", "actorder"), "group", "weights.actorder"),
        (("config_groups", "group_0", "input_activations"), {"num_bits": 8}, "input_activations"),
        (("quantization_status",), "frozen", "quantization_status"),
    ],
    ids=[
        "method",
        "format",
        "nvfp4",
        "bits",
        "group",
        "asymmetric",
        "float",
        "channel",
        "actorder",
        "activations",
        "status",
    ],
)
def test_unsupported_quantization_config_names_field_and_value(path, value, field):
    d = release_quantization_config()
    parse_quantization_config(d)  # the release's own config is accepted
    node = d
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(CheckpointError) as info:
        parse_quantization_config(d)
    assert f"{field} is {value!r}" in str(info.value), str(info.value)


@pytest.fixture
def int4_model() -> DeepseekV3LM:
    m = DeepseekV3LM(LMConfig.tiny()).eval()
    randomize_(m)
    return quantize_experts_(m)


def _save(model: DeepseekV3LM, path, shards: int = 1, quantization_config=None) -> dict:
    path.mkdir(parents=True, exist_ok=True)
    d = model.config.to_hf_dict()
    d["quantization_config"] = quantization_config or release_quantization_config()
    (path / "config.json").write_text(json.dumps(d))
    items = [(k, v.contiguous().clone()) for k, v in export_state_dict(model)]
    if shards == 1:
        save_file(dict(items), str(path / "model.safetensors"))
        return dict(items)
    weight_map = {}
    for s in range(shards):
        name = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        save_file(dict(items[s::shards]), str(path / name))
        weight_map.update(dict.fromkeys(dict(items[s::shards]), name))
    (path / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return dict(items)


@pytest.mark.parametrize("shards", [1, 3], ids=["single_file", "sharded_index"])
def test_int4_checkpoint_loads_int4(int4_model, tmp_path, shards):
    items = _save(int4_model, tmp_path, shards)
    assert items["model.layers.1.mlp.experts.7.down_proj.weight_shape"].tolist() == [64, 32]
    assert items["model.layers.2.mlp.experts.0.up_proj.weight_packed"].dtype == torch.int32
    loaded = load_lm(tmp_path)
    experts = int4_experts(loaded)
    assert [name for name, _ in experts] == ["model.layers.1.mlp.experts", "model.layers.2.mlp.experts"]
    assert not any(
        isinstance(p, torch.nn.Parameter) and p.dim() == 3 for p in loaded.parameters()
    )  # no bf16 experts
    a, b = int4_model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ids = torch.randint(0, 256, (2, 7))
    with torch.no_grad():
        assert torch.equal(int4_model(ids), loaded(ids))


def test_int4_experts_hold_4_bits_and_a_scale_per_32(int4_model):
    cfg = int4_model.config
    experts = int4_model.model.layers[1].mlp.experts
    weights = cfg.n_routed_experts * 3 * cfg.hidden_size * cfg.moe_intermediate_size
    held = sum(t.numel() * t.element_size() for t in experts.buffers())
    assert held == weights // 2 + weights // 32 * 2


def test_int4_experts_equal_the_dequantised_bf16_path(int4_model):
    """Int4Experts (dequantise per hit expert) == plain Experts holding the dequantised weights."""
    cfg = int4_model.config
    q = int4_model.model.layers[1].mlp.experts
    plain = Experts(cfg)
    with torch.no_grad():
        for e in range(cfg.n_routed_experts):
            plain.gate_up_proj[e] = q.weight("gate_up", e, torch.float32)
            plain.down_proj[e] = q.weight("down", e, torch.float32)
    x = torch.randn(11, cfg.hidden_size)
    weights, idx = torch.rand(11, 2), torch.randint(0, cfg.n_routed_experts, (11, 2))
    with torch.no_grad():
        diff = (q(x, weights, idx) - plain(x, weights, idx, impl="loop")).abs().max().item()
        # one token takes the direct path (its k experts in turn); its twin is the general dispatch
        one = (
            (q(x[:1], weights[:1], idx[:1]) - q(x[:1], weights[:1], idx[:1], impl="loop")).abs().max().item()
        )
    assert diff < 1e-6 and one < 1e-6, (diff, one)


@pytest.mark.skipif(not cpu_kernel_available(), reason="torch has no CPU 4-bit kernel")
def test_cpu_kernel_matches_its_slow_twin(int4_model, tmp_path):
    """bf16 on the CPU converts to torch's 4-bit kernel layout; logits agree with dequantise-at-use."""
    _save(int4_model, tmp_path)
    fast = load_lm(tmp_path, dtype=torch.bfloat16)
    slow = load_lm(tmp_path, dtype=torch.bfloat16, int4_kernel=False)
    assert {m.layout for _, m in int4_experts(fast)} == {"cpu"}
    assert {m.layout for _, m in int4_experts(slow)} == {"release"}
    ids = torch.randint(0, 256, (2, 9))
    with torch.no_grad():
        a, b = fast(ids).float(), slow(ids).float()
    diff = ((a - b).abs().max() / b.abs().max()).item()
    assert diff < 2e-2, f"relative max diff {diff}"  # bf16 activations; the kernel accumulates in fp32
    with pytest.raises(CheckpointError, match="kernel layout"):
        list(export_state_dict(fast))


def test_latent_cache_decode_with_int4_experts(int4_model):
    """Step-by-step decode through the latent cache equals the full forward (fp32, INT4 experts)."""
    ids = torch.randint(0, 256, (1, 10))
    with torch.no_grad():
        full = int4_model(ids)
        cache = int4_model.new_cache(1, 10)
        steps = [int4_model(ids[:, :6], cache=cache)[:, -1]]
        steps += [int4_model(ids[:, i : i + 1], cache=cache)[:, -1] for i in range(6, 10)]
    diff = (torch.stack(steps[1:], 1) - full[:, 6:]).abs().max().item()
    assert (steps[0] - full[:, 5]).abs().max() < 1e-4 and diff < 1e-4, diff


def test_bad_int4_checkpoints_are_named(int4_model, tmp_path):
    items = _save(int4_model, tmp_path / "ok")
    cases = {
        "shape": {"model.layers.1.mlp.experts.2.gate_proj.weight_shape": torch.tensor([32, 32], dtype=torch.int32)},
        "dtype": {"model.layers.1.mlp.experts.2.gate_proj.weight_packed": items["model.layers.1.mlp.experts.2.gate_proj.weight_packed"].to(torch.int64)},
    }  # fmt: skip
    for name, change in cases.items():
        (tmp_path / name).mkdir()
        save_file({**items, **change}, str(tmp_path / name / "model.safetensors"))
        (tmp_path / name / "config.json").write_text((tmp_path / "ok" / "config.json").read_text())
    with pytest.raises(CheckpointError, match=r"experts\.2\.gate_proj\.weight_shape.*\[32, 32\].*\[32, 64\]"):
        load_lm(tmp_path / "shape")
    with pytest.raises(CheckpointError, match=r"weight_packed.*torch\.int64.*torch\.int32"):
        load_lm(tmp_path / "dtype")
    # INT4 tensors without a quantization_config are unknown keys, named
    d = json.loads((tmp_path / "ok" / "config.json").read_text())
    del d["quantization_config"]
    (tmp_path / "ok" / "config.json").write_text(json.dumps(d))
    with pytest.raises(CheckpointError, match=r"unknown keys .*weight_packed"):
        load_lm(tmp_path / "ok")


def test_int4_needs_group_multiples():
    with pytest.raises(ValueError, match="multiples of 32"):
        Int4Experts(LMConfig.tiny(moe_intermediate_size=48))
    assert math.gcd(LMConfig.tiny().moe_intermediate_size, 32) == 32


@pytest.mark.parametrize("layout", ["per_expert", "fused"])
def test_quantizing_while_loading_equals_quantizing_the_loaded_model(tmp_path, layout):
    """`quantize_experts=True` (what convert --to released-int4 uses) never holds bf16 experts and
    gives the bits `quantize_experts_` gives on the loaded model, for released and fused layouts."""
    m = DeepseekV3LM(LMConfig.tiny()).eval()
    randomize_(m)
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "config.json").write_text(json.dumps(m.config.to_hf_dict()))
    items = export_state_dict(m) if layout == "per_expert" else m.state_dict().items()
    save_file({k: v.contiguous().clone() for k, v in items}, str(tmp_path / "model.safetensors"))
    streamed = load_lm(tmp_path, dtype=torch.bfloat16, int4_kernel=False, quantize_experts=True)
    twin = quantize_experts_(load_lm(tmp_path, dtype=torch.bfloat16))
    a, b = streamed.state_dict(), twin.state_dict()
    assert len(int4_experts(streamed)) == 2
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
