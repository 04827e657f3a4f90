"""The static-shape decode step (`lm.static_step`) and its compiled wrapper (`lm.compiled`) against the
model's own forward: same logits (fp32, summation order only) and the same greedy tokens."""

from __future__ import annotations

import pytest
import torch
from lm_helpers import randomize_
from torch._dynamo.utils import counters
from torch._inductor.custom_graph_pass import CustomGraphPass

from mm_model.generation import decode_one_token, generate, prefill
from mm_model.lm import DeepseekV3LM, LMConfig
from mm_model.lm import compiled as compiled_mod
from mm_model.lm.compiled import DecodeStep, attended_slots, compile_requested, use_decode_step
from mm_model.lm.static_step import EXPERT_IMPLS, decode_step, register_model

TOL = 1e-4  # observed ~3e-6: the masked slots change nothing but the summation order


@pytest.fixture(scope="module")
def tiny() -> DeepseekV3LM:
    m = DeepseekV3LM(LMConfig.tiny()).eval().requires_grad_(False)
    randomize_(m, seed=3)
    return m


def _padded_prompts() -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.randint(3, 256, (3, 7), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[0, :3] = 0
    mask[2, :1] = 0
    return ids, mask


@pytest.mark.parametrize("spans", [False, True], ids=["whole-cache", "layers-and-spans"])
@pytest.mark.parametrize("experts", EXPERT_IMPLS)
def test_static_step_equals_forward(tiny, experts, spans):
    """The step over the whole cache tensor, or (as `DecodeStep` calls it) over the layers' views
    attending only over the first slots in blocks of 4 (the span grows 8, 12, ... 19 here)."""
    ids, mask = _padded_prompts()
    register_model(tiny)
    with torch.inference_mode():
        want_cache, got_cache = tiny.new_cache(3, 19), tiny.new_cache(3, 19)
        want = got = prefill(tiny, ids, want_cache, attention_mask=mask).argmax(-1)
        prefill(tiny, ids, got_cache, attention_mask=mask)
        for slot in range(7, 19):
            a = decode_one_token(tiny, want, want_cache, torch.tensor([slot]))
            kv, attended = got_cache.kv, None
            if spans:
                kv, attended = got_cache.layers, torch.empty(attended_slots(slot + 1, 19, block=4))
            b = decode_step(tiny, got, torch.tensor([slot]), kv, got_cache.key_valid, got_cache.pad,
                            experts, attended)  # fmt: skip
            diff = (a - b).abs().max().item()
            assert diff < TOL, f"slot {slot}: max abs logit diff {diff:.3g}"
            assert torch.equal(a.argmax(-1), b.argmax(-1)), f"slot {slot}: greedy tokens differ"
            want, got = a.argmax(-1), b.argmax(-1)
    assert torch.equal(want_cache.kv, got_cache.kv) or (want_cache.kv - got_cache.kv).abs().max() < TOL


def test_generate_runs_the_models_decode_step(tiny):
    ids, mask = _padded_prompts()
    want = generate(tiny, ids, attention_mask=mask, max_new_tokens=10).tokens
    calls = []
    step = DecodeStep(tiny, compile=False)

    def counted(tokens, cache, input_pos):
        calls.append(int(input_pos[0]))
        return step(tokens, cache, input_pos)

    use_decode_step(tiny, counted)
    try:
        got = generate(tiny, ids, attention_mask=mask, max_new_tokens=10).tokens
    finally:
        use_decode_step(tiny, None)
    assert calls == list(range(7, 16))  # the loop really went through the step
    assert torch.equal(got, want)


@pytest.mark.parametrize(
    "arg, env, expected",
    [(None, None, False), (None, "1", True), (None, "0", False), (False, "1", False), (True, "0", True)],
    ids=["default_off", "env_on", "env_off", "arg_beats_env_on", "arg_beats_env_off"],
)
def test_compile_setting(monkeypatch, arg, env, expected):
    if env is None:
        monkeypatch.delenv(compiled_mod.ENV, raising=False)
    else:
        monkeypatch.setenv(compiled_mod.ENV, env)
    assert compile_requested(arg) is expected
    # The server and demo default on: only an unset setting changes.
    assert compile_requested(arg, default=True) is (True if arg is None and env is None else expected)


def test_warm_up_runs_the_step_as_generate_does(tiny):
    assert compiled_mod.warm_up(tiny) is None  # no step: nothing to warm
    calls = []
    step = DecodeStep(tiny, compile=False)

    def counted(tokens, cache, input_pos):
        calls.append((tokens.shape, torch.is_inference(tokens)))
        return step(tokens, cache, input_pos)

    use_decode_step(tiny, counted)
    try:
        assert compiled_mod.warm_up(tiny, batch_size=3) > 0
    finally:
        use_decode_step(tiny, None)
    assert calls == [(torch.Size([3]), True)]  # the shape and kind of tensor a request's step gets


def test_compile_setting_rejects_other_values(monkeypatch):
    monkeypatch.setenv(compiled_mod.ENV, "yes")
    with pytest.raises(ValueError, match="MM_MODEL_COMPILE"):
        compile_requested()


def test_no_compiler_or_failed_compile_falls_back_with_one_line(tiny, monkeypatch, capsys):
    ids = torch.tensor([[5, 6, 7]])
    want = generate(tiny, ids, max_new_tokens=4).tokens
    monkeypatch.setattr(compiled_mod, "cxx_compiler", lambda: None)
    step = DecodeStep(tiny, compile=True)
    assert not step.compiled
    assert capsys.readouterr().err.count("\n") == 1

    def broken(module, **kw):
        def fail(*args):
            raise RuntimeError("inductor failed")

        return fail

    monkeypatch.setattr(compiled_mod, "cxx_compiler", lambda: "g++")
    monkeypatch.setattr(torch, "compile", broken)
    step = DecodeStep(tiny, compile=True)
    assert step.compiled
    use_decode_step(tiny, step)
    try:
        got = generate(tiny, ids, max_new_tokens=4).tokens
    finally:
        use_decode_step(tiny, None)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "compile failed" in err
    assert not step.compiled and torch.equal(got, want)


def test_attended_slots_are_whole_blocks_within_the_cache():
    assert [attended_slots(n, 700) for n in (1, 256, 257, 512, 513, 700)] == [256, 256, 512, 512, 700, 700]
    assert attended_slots(5, 3, block=4) == 3


class _CacheWrites(CustomGraphPass):
    """Records, from inductor's graph after its own passes, the ops that write into the step's inputs."""

    def __init__(self) -> None:
        self.writes: list[tuple[str, str]] = []

    def __call__(self, graph: torch.fx.Graph) -> None:
        for node in graph.nodes:
            name = str(node.target)
            if node.op == "call_function" and ("index_put" in name or "scatter" in name):
                first = node.args[0]
                self.writes.append((name, first.op if isinstance(first, torch.fx.Node) else "-"))

    def uuid(self) -> None:
        return None


@pytest.mark.slow
@pytest.mark.skipif(compiled_mod.cxx_compiler() is None, reason="inductor needs a C++ compiler")
def test_compiled_step_greedy_tokens_equal_eager():
    # Two layers (one dense, one MoE) keep the compile to seconds; fullgraph=True makes any graph
    # break an error, so this also checks that the step has no host sync.
    model = DeepseekV3LM(LMConfig.tiny(num_hidden_layers=2)).eval().requires_grad_(False)
    randomize_(model, seed=5)
    ids = torch.tensor([[9, 4, 200, 31, 7]])
    want = generate(model, ids, max_new_tokens=6).tokens
    writes = _CacheWrites()
    step = DecodeStep(model, compile=True, options={**compiled_mod.INDUCTOR_OPTIONS,
                                                    "post_grad_custom_post_pass": writes})  # fmt: skip
    step.block = 4  # the attended span grows 8, 12 while generating: each new span reuses the graph
    use_decode_step(model, step)
    counters.clear()
    got = generate(model, ids, max_new_tokens=6).tokens
    assert step.compiled, "the compile fell back to eager"
    assert torch.equal(got, want), f"compiled {got.tolist()} != eager {want.tolist()}"
    if torch._C.has_mkl:  # freezing in force: the graph's fp32 linears became packed constants
        assert counters["inductor"]["mkldnn_linear_weight_pack_matcher_count"] > 0
    # Each layer's new latent goes straight into that layer's cache input (an index_put that inductor
    # makes in place); with the cache as one input it went through a scatter that rebuilt the whole
    # cache every layer and step.
    assert writes.writes == [("aten.index_put.default", "placeholder")] * 2, writes.writes
    # A longer prompt (another cache length, other spans) reuses the graph: the lengths are symbols.
    compiles = counters["stats"]["unique_graphs"]
    assert compiles == 1
    longer = torch.tensor([[9, 4, 200, 31, 7, 11, 3, 250, 1, 77, 8]])
    got = generate(model, longer, max_new_tokens=6).tokens
    assert counters["stats"]["unique_graphs"] == compiles, "a new cache length recompiled the step"
    use_decode_step(model, None)
    assert torch.equal(got, generate(model, longer, max_new_tokens=6).tokens)


def test_default_experts_formulation():
    """Plain fp32 experts stay in the graph ("reduce"); INT4 and bf16 ones take the custom op."""
    import copy

    from mm_model.lm import cast_model
    from mm_model.lm.compiled import default_experts
    from mm_model.lm.int4_experts import quantize_experts_

    model = DeepseekV3LM(LMConfig.tiny(num_hidden_layers=2)).eval().requires_grad_(False)
    assert default_experts(model) == "reduce"
    assert default_experts(quantize_experts_(copy.deepcopy(model))) == "op"
    assert default_experts(cast_model(copy.deepcopy(model), torch.bfloat16)) == "op"


@pytest.mark.slow
@pytest.mark.skipif(compiled_mod.cxx_compiler() is None, reason="inductor needs a C++ compiler")
def test_compiled_step_with_int4_experts_equals_eager():
    """The server compiles by default, so the INT4 release's path (routed experts as the custom op,
    in torch's CPU 4-bit layout where the kernel exists) must compile too, to the same tokens."""
    from mm_model.lm.int4_experts import quantize_experts_

    model = DeepseekV3LM(LMConfig.tiny(num_hidden_layers=2)).eval().requires_grad_(False)
    randomize_(model, seed=6)
    quantize_experts_(model)
    ids = torch.tensor([[3, 14, 15, 92, 65]])
    want = generate(model, ids, max_new_tokens=6).tokens
    step = DecodeStep(model, compile=True)
    assert step.experts == "op"
    use_decode_step(model, step)
    try:
        got = generate(model, ids, max_new_tokens=6).tokens
    finally:
        use_decode_step(model, None)
    assert step.compiled, "the compile fell back to eager"
    assert torch.equal(got, want), f"compiled {got.tolist()} != eager {want.tolist()}"


@pytest.mark.slow
@pytest.mark.skipif(compiled_mod.cxx_compiler() is None, reason="inductor needs a C++ compiler")
def test_warm_up_compiles_every_graph_a_long_answer_needs():
    """Past `LONG_SPAN` attended slots inductor wants a second graph: the warm-up builds it, so a
    request that runs that long does not stall on a compile halfway."""
    model = DeepseekV3LM(LMConfig.tiny(num_hidden_layers=2, max_position_embeddings=8192)).eval()
    model.requires_grad_(False)
    use_decode_step(model, DecodeStep(model, compile=True))
    counters.clear()
    assert compiled_mod.warm_up(model) > 0
    assert counters["stats"]["unique_graphs"] == 2
    with torch.inference_mode():
        cache = model.new_cache(1, 6000)
        cache.length = 5000
        model.decode_step(torch.tensor([7]), cache, torch.tensor([5000]))
    generate(model, torch.tensor([[9, 4, 200]]), max_new_tokens=3)
    assert counters["stats"]["unique_graphs"] == 2, "a step after the warm-up compiled again"
