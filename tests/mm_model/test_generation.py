"""Generation loop: token equality with transformers' generate and with the full-recompute twin,
sampling controls, stops, streaming across multi-byte characters, logits processors."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent / "lm"))
from lm_helpers import make_reference, randomize_

from mm_model import InputError
from mm_model.generation import (
    StopStringFilter,
    TextStream,
    apply_repetition_penalty,
    generate,
    reference_generate,
    sample,
    stream,
)
from mm_model.lm import DeepseekV3LM, LMConfig, load_lm


@pytest.fixture(autouse=True)
def _one_thread():
    # Tiny models: one thread is faster, and immune to OpenMP stalls on a shared machine.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny() -> DeepseekV3LM:
    m = DeepseekV3LM(LMConfig.tiny()).eval()
    randomize_(m, seed=3)
    return m


@pytest.mark.parity
def test_greedy_64_tokens_match_transformers_generate(tmp_path):
    yarn = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16, "mscale": 1.0,
            "mscale_all_dim": 1.0}  # fmt: skip
    ref = make_reference(tmp_path, n_group=4, topk_group=2, rope_scaling=yarn)
    ours = load_lm(tmp_path)
    prompts = [[5, 17, 99, 3, 42, 8, 77, 64, 12, 30], [9, 81, 4]]
    ids = torch.tensor([[0] * 7 + prompts[1], prompts[0]])[[1, 0]]
    mask = (torch.arange(10)[None] >= torch.tensor([[0], [7]])).long()
    want = ref.generate(ids, attention_mask=mask, do_sample=False, max_new_tokens=64, min_new_tokens=64,
                        eos_token_id=None, pad_token_id=0)[:, 10:]  # fmt: skip
    got = generate(ours, prompts, max_new_tokens=64)
    assert got.tokens.shape == (2, 64) and got.finish_reasons == ["length", "length"]
    assert torch.equal(got.tokens, want), f"first mismatch at {(got.tokens != want).nonzero()[:3].tolist()}"


def test_cached_generate_equals_full_recompute(tiny):
    prompts = [[5, 17, 99, 3, 42, 8], [9, 81]]
    ids = torch.tensor([prompts[0], [0] * 4 + prompts[1]])
    mask = torch.tensor([[1] * 6, [0] * 4 + [1] * 2])
    want = reference_generate(tiny, ids, 24, attention_mask=mask)
    assert torch.equal(generate(tiny, prompts, max_new_tokens=24).tokens, want)
    assert torch.equal(generate(tiny, ids, attention_mask=mask, max_new_tokens=24).tokens, want)


def test_inputs_embeds_generation_equals_ids(tiny):
    """The multimodal model passes merged embeddings (plus the ids, for the repetition penalty)."""
    ids = torch.tensor([[5, 17, 99, 3], [0, 0, 9, 81]])
    mask = torch.tensor([[1, 1, 1, 1], [0, 0, 1, 1]])
    want = generate(tiny, ids, attention_mask=mask, max_new_tokens=8, repetition_penalty=1.2).tokens
    with torch.no_grad():
        embeds = tiny.embed(ids)
    got = generate(
        tiny, ids, inputs_embeds=embeds, attention_mask=mask, max_new_tokens=8, repetition_penalty=1.2
    )
    assert torch.equal(got.tokens, want)
    assert torch.equal(generate(tiny, None, inputs_embeds=embeds[:1], max_new_tokens=8).tokens,
                       generate(tiny, ids[:1], max_new_tokens=8).tokens)  # fmt: skip


def test_seeded_sampling_is_deterministic(tiny):
    kw = dict(max_new_tokens=16, temperature=1.0, top_k=50, top_p=0.9)
    a = generate(tiny, [[1, 2, 3]], seed=7, **kw).tokens
    assert torch.equal(a, generate(tiny, [[1, 2, 3]], seed=7, **kw).tokens)
    assert not torch.equal(a, generate(tiny, [[1, 2, 3]], seed=8, **kw).tokens)


def test_top_k_and_top_p_restrict_the_support():
    logits = torch.tensor([[4.0, 3.0, 2.0, 1.0, 0.0]]).repeat(2000, 1)
    g = torch.Generator().manual_seed(0)
    assert set(sample(logits, temperature=1.0, top_k=2, generator=g).tolist()) == {0, 1}
    p = torch.softmax(logits[0], -1)  # 0.64, 0.24, 0.09, ...: top_p 0.7 keeps the first two
    assert p[0] < 0.7 < p[0] + p[1]
    assert set(sample(logits, temperature=1.0, top_p=0.7, generator=g).tolist()) == {0, 1}
    assert set(sample(logits, temperature=1.0, top_p=0.5, generator=g).tolist()) == {0}
    assert sample(logits[:1], temperature=0.0).item() == 0


@pytest.mark.parity
def test_repetition_penalty_matches_transformers():
    transformers = pytest.importorskip("transformers")
    logits = torch.randn(2, 10)
    ids = torch.tensor([[1, 3, 3], [0, 9, 5]])
    want = transformers.RepetitionPenaltyLogitsProcessor(1.3)(ids, logits.clone())
    seen = torch.zeros(2, 10, dtype=torch.bool).scatter_(1, ids, True)
    torch.testing.assert_close(apply_repetition_penalty(logits, seen, 1.3), want)


def test_stop_tokens_end_rows_independently(tiny):
    free = generate(tiny, [[1, 2, 3], [4, 5]], max_new_tokens=12).tokens
    stop = free[0, 4].item()
    got = generate(tiny, [[1, 2, 3], [4, 5]], max_new_tokens=12, stop_token_ids=[stop], pad_token_id=0)
    first = (free[0] == stop).nonzero()[0].item()
    assert got.lengths[0] == first + 1 and got.finish_reasons[0] == "stop_token"
    assert torch.equal(got.tokens[0, : first + 1], free[0, : first + 1])
    assert (got.tokens[0, first + 1 :] == 0).all()


def _decode(ids: list[int]) -> str:
    """A byte-level toy tokenizer: token t is byte t (invalid UTF-8 becomes U+FFFD, like real ones)."""
    return bytes(t % 256 for t in ids).decode("utf-8", errors="replace")


def test_text_stream_holds_incomplete_characters():
    s = TextStream(_decode)
    pieces = [s.push(b) for b in "aé€😀b".encode()]
    assert "".join(pieces) + s.flush() == "aé€😀b"
    assert all("\ufffd" not in p for p in pieces)
    assert pieces[:3] == ["a", "", "é"]  # é is two bytes: nothing until the second arrives


def test_stop_string_filter_never_leaks_a_prefix():
    f = StopStringFilter(["</ans>"])
    out = [f.push(p) for p in ["ok </", "an", "s> tail"]]
    assert out == ["ok ", "", ""] and f.stopped
    g = StopStringFilter(["</ans>"])
    assert g.push("a</") == "a" and g.push("b") == "</b" and g.flush() == ""


def test_stream_matches_generate_and_stops_at_strings(tiny):
    tokens = generate(tiny, [[1, 2, 3]], max_new_tokens=20).tokens[0].tolist()
    text = "".join(stream(tiny, [1, 2, 3], decode=_decode, max_new_tokens=20))
    assert text == _decode(tokens)
    stop = _decode(tokens[5:7])
    if stop and "\ufffd" not in stop:
        cut = "".join(stream(tiny, [1, 2, 3], decode=_decode, max_new_tokens=20, stop_strings=[stop]))
        assert cut == _decode(tokens).split(stop)[0]
        res = generate(tiny, [[1, 2, 3]], max_new_tokens=20, stop_strings=[stop], decode=_decode)
        assert res.finish_reasons == ["stop_string"] and stop in _decode(
            res.tokens[0, : res.lengths[0]].tolist()
        )


def test_logits_processor_sees_steps_and_can_force_tokens(tiny):
    calls = []

    def force_seven_on_step_2(step, generated, logits):
        calls.append((step, tuple(generated.shape)))
        if step == 2:
            logits = torch.full_like(logits, float("-inf"))
            logits[:, 7] = 0
        return logits

    out = generate(tiny, [[1, 2], [3, 4]], max_new_tokens=4, logits_processors=[force_seven_on_step_2])
    assert calls == [(0, (2, 0)), (1, (2, 1)), (2, (2, 2)), (3, (2, 3))]
    assert out.tokens[:, 2].tolist() == [7, 7]


def test_bad_requests_raise_input_error(tiny):
    with pytest.raises(InputError, match="context window"):
        generate(tiny, [[1] * 300], max_new_tokens=1)
    with pytest.raises(InputError, match="decode"):
        generate(tiny, [[1]], max_new_tokens=1, stop_strings=["x"])
    with pytest.raises(InputError, match="at least one token"):
        generate(tiny, [[1], []], max_new_tokens=1)
    with pytest.raises(InputError, match="top_p"):
        generate(tiny, [[1]], max_new_tokens=1, temperature=1.0, top_p=0.0)
