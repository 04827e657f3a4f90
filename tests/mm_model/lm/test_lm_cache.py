"""Latent cache: absorbed decode == expanded decode == full recompute, at every step (fp32)."""

from __future__ import annotations

import copy

import pytest
import torch
from lm_helpers import randomize_

from mm_model import InputError
from mm_model.lm import DeepseekV3LM, LatentCache, LMConfig
from mm_model.lm.cache import latent_cache_bytes_per_token, per_head_cache_bytes_per_token

TOL = 1e-4  # fp32; observed ~1e-6 (absorption reorders the kv_b_proj products)


@pytest.fixture
def model() -> DeepseekV3LM:
    # YaRN original context 16 so decoding to 40 tokens runs through interpolated rope pairs.
    cfg = LMConfig.tiny(rope_scaling={"factor": 4.0, "original_max_position_embeddings": 16, "beta_fast": 32.0,
                                      "beta_slow": 1.0, "mscale": 1.0, "mscale_all_dim": 1.0})  # fmt: skip
    m = DeepseekV3LM(cfg).eval()
    randomize_(m)
    return m


@pytest.mark.parametrize("absorb", [True, False], ids=["absorbed", "expanded"])
def test_decode_equals_full_recompute_every_step(model, absorb):
    ids = torch.randint(0, 256, (2, 40))
    prompt = 12
    with torch.no_grad():
        full = model(ids)  # (B, 40, V) no cache
        cache = model.new_cache(2, 40)
        got = [model(ids[:, :prompt], cache=cache)]
        for t in range(prompt, 40):
            got.append(model(ids[:, t : t + 1], cache=cache, input_pos=torch.tensor([t]), absorb=absorb))
    got = torch.cat(got, dim=1)
    diffs = (got - full).abs().amax(dim=(0, 2))
    assert diffs.max().item() < TOL, f"per-step max diffs {diffs.tolist()}"


def test_absorbed_equals_expanded_for_a_chunk(model):
    """Both paths on a multi-token chunk after a cached prefix (mask with an offset)."""
    ids = torch.randint(0, 256, (1, 30))
    outs = []
    with torch.no_grad():
        for absorb in (True, False):
            cache = model.new_cache(1, 30)
            model(ids[:, :20], cache=cache)
            outs.append(model(ids[:, 20:], cache=cache, absorb=absorb))
        full = model(ids)[:, 20:]
    assert (outs[0] - outs[1]).abs().max().item() < TOL
    assert (outs[0] - full).abs().max().item() < TOL


def test_padded_batch_decode_matches_rows_alone(model):
    long, short = torch.randint(3, 256, (1, 14)), torch.randint(3, 256, (1, 6))
    ids = torch.cat((long, torch.cat((torch.zeros(1, 8, dtype=torch.long), short), 1)))
    mask = torch.ones_like(ids)
    mask[1, :8] = 0
    nxt = torch.randint(3, 256, (2, 5))
    with torch.no_grad():
        cache = model.new_cache(2, 19)
        steps = [model(ids, cache=cache, attention_mask=mask)[:, -1:]]
        steps += [model(nxt[:, i : i + 1], cache=cache) for i in range(5)]
        batched = torch.cat(steps, 1)
        alone_short = model(torch.cat((short, nxt[1:]), 1))[:, 5:]
        alone_long = model(torch.cat((long, nxt[:1]), 1))[:, 13:]
    assert (batched[1:] - alone_short).abs().max().item() < TOL
    assert (batched[:1] - alone_long).abs().max().item() < TOL


def test_reused_cache_forgets_earlier_padding(model):
    ids = torch.randint(3, 256, (1, 12))
    with torch.no_grad():
        want = model(ids)
        cache = model.new_cache(1, 12)
        model(ids, cache=cache, attention_mask=torch.tensor([[0] * 8 + [1] * 4]))  # first use: padded
        got = [model(ids[:, :3], cache=cache, attention_mask=torch.ones(1, 3, dtype=torch.long))]
        got += [model(ids[:, t : t + 1], cache=cache) for t in range(3, 12)]
    assert (torch.cat(got, 1) - want).abs().max().item() < TOL


def test_cache_is_preallocated_and_written_in_place(model):
    cache = model.new_cache(1, 8)
    ptr = cache.kv.data_ptr()
    with torch.no_grad():
        model(torch.randint(0, 256, (1, 3)), cache=cache)
        model(torch.randint(0, 256, (1, 1)), cache=cache)
    assert cache.kv.data_ptr() == ptr and cache.length == 4
    assert cache.kv[:, :, :4].abs().sum() > 0 and cache.kv[:, :, 4:].abs().sum() == 0
    with pytest.raises(InputError, match="exceeds the cache"):
        model(torch.zeros(1, 5, dtype=torch.long), cache=cache)


def test_latent_cache_is_35x_smaller_for_k25():
    cfg = LMConfig.k25()
    latent, per_head = latent_cache_bytes_per_token(cfg), per_head_cache_bytes_per_token(cfg)
    assert latent == 61 * 576 * 2  # 70,272 bytes per token in bf16
    assert per_head / latent > 35.5  # 64·(192+128)/576 = 35.6
    assert LatentCache(LMConfig.tiny(), 1, 4, dtype=torch.bfloat16).bytes_per_token() == 3 * 24 * 2


def test_preferred_dtype_is_a_float_dtype():
    from mm_model.lm import preferred_dtype

    assert preferred_dtype("cpu") in (torch.float32, torch.bfloat16)
    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        assert preferred_dtype("cpu") == torch.float32


def test_bf16_absorbed_decode_tracks_fp32(model):
    """bf16 storage (absorbed attention math upcast to fp32 on CPU): decode logits stay within bf16
    noise of the fp32 model (logits are O(1); tolerance 0.1 absolute, observed ~0.03)."""
    from mm_model.lm import cast_model

    ids = torch.randint(0, 256, (1, 20))
    with torch.no_grad():
        want = model(ids)[:, -1]
        low = cast_model(copy.deepcopy(model), torch.bfloat16)
        cache = low.new_cache(1, 20)
        low(ids[:, :19], cache=cache)
        got = low(ids[:, 19:], cache=cache, absorb=True)[:, -1].float()
        expanded = low(ids, absorb=False)[:, -1].float()
    assert cache.kv.dtype == torch.bfloat16
    assert (got - want).abs().max().item() < 0.1
    assert (got - expanded).abs().max().item() < 0.1
