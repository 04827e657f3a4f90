"""`lmms-eval --model mm_model`: the plugin's pieces without lmms-eval, and the whole class inside lmms-eval's
own model registry and `lmms` interface when its source is at hand ($LMMS_EVAL_SRC; see `lmms_oracle`).

lmms-eval is not installed in CI (heavy dependencies; the `lmms` extra is kept out of `test`), so the
registry test loads lmms-eval 0.7.3's files directly with stubs for cv2/decord/datasets, as the
oracle does; everything our code does is also tested here without it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from PIL import Image

import mm_model
from benchmarks.video_suites.backends import Reply, content
from benchmarks.video_suites.lmms_plugin import CLASS_PATH, MODEL_ID, Generator, sampling, visual_parts
from tests.benchmarks import lmms_oracle
from tests.conftest import write_video


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("lmms") / "clip.mp4", frames=12, fps=4, size=(32, 32))


def test_a_video_goes_as_one_video_part_and_images_as_images():
    assert visual_parts(["/x/a.mp4"]) == ("/x/a.mp4", "")
    frames = [Image.new("RGB", (8, 8)), Image.new("RGB", (8, 8))]
    assert visual_parts(frames) == (frames, "before")
    with pytest.raises(mm_model.InputError, match="one video"):
        visual_parts(["/x/a.mp4", "/x/b.mp4"])
    with pytest.raises(mm_model.InputError, match="video files and PIL images"):
        visual_parts(["/x/a.txt"])


def test_generation_kwargs():
    assert sampling({"max_new_tokens": 16, "temperature": 0.7, "do_sample": False, "until": ["\n\n"]}) == {
        "max_new_tokens": 16, "temperature": 0.0, "top_p": 1.0}  # fmt: skip
    assert sampling({})["max_new_tokens"] == 1024  # lmms-eval's default when a task sets none


def test_generator_asks_our_model_with_video_in_chunks(tiny_dir, clip):
    gen = Generator(str(tiny_dir), fps="2", max_frames="none", thinking="false")
    seen = []
    real = gen.backend.answer

    def spy(request):
        seen.append(request)
        return real(request)

    gen.backend.answer = spy
    docs = {"videomme": {"test": [{"q": 1}, {"q": 2}]}}
    args = [("Which colour?", {"max_new_tokens": 3, "temperature": 0, "do_sample": False},
             lambda doc: [str(clip)], 1, "videomme", "test")]  # fmt: skip
    ((text, counts),) = gen.generate(args, docs, progress=False)
    req = seen[0]
    assert (
        req.video == str(clip)
        and req.images == ""
        and req.max_new_tokens == 3
        and req.sample_id == "videomme/1"
    )
    assert [p["type"] for p in content(req)] == ["video", "text"]
    assert isinstance(text, str) and counts["input_tokens"] > 0 and counts["output_tokens"] <= 3
    # the same question straight through our model: the plugin adds nothing of its own
    direct: Reply = gen.backend.answer(req)
    assert direct.text == text and direct.frames == 6  # 12 frames at 4 fps, sampled at 2 fps


@pytest.mark.parity
def test_mm_model_inside_lmms_eval_registry_and_interface(tiny_dir, clip):
    src = lmms_oracle.find_source()
    if src is None:
        pytest.skip(
            "lmms-eval 0.7.3 source not found (set LMMS_EVAL_SRC; see tests/benchmarks/lmms_oracle.py)"
        )
    with tempfile.TemporaryDirectory() as home, lmms_oracle.stubbed(src, Path(home)):
        from lmms_eval.api.instance import GenerationResult, Instance
        from lmms_eval.api.model import lmms
        from lmms_eval.models.registry_v2 import ModelRegistryV2

        from benchmarks.video_suites.lmms_plugin import manifest

        class EntryPoint:  # what importlib.metadata yields for our pyproject entry point
            load = staticmethod(lambda: manifest)

        registry = ModelRegistryV2()
        registry._select_entry_points = lambda group: [EntryPoint()] if group == "lmms_eval.models" else []
        registry.load_entrypoint_manifests()
        assert registry.resolve(MODEL_ID).class_path == CLASS_PATH
        cls = registry.get_model_class(MODEL_ID)  # imports it and checks lmms / is_simple as lmms-eval does
        assert issubclass(cls, lmms) and cls.is_simple
        model = cls.create_from_arg_string(f"pretrained={tiny_dir},fps=2,thinking=false", {"batch_size": 1})
        model.task_dict = {"mvbench_action_sequence": {"train": [{"video": "clip"}]}}
        gen = {"max_new_tokens": 2, "temperature": 0, "do_sample": False}
        meta = {"task": "mvbench_action_sequence", "doc_id": 0, "repeats": 1}
        request = Instance("generate_until", ("Question:What?\nOption:\n(A) x\n(B) y\nOnly give the best option.\n", gen,
                                              lambda doc: [str(clip)], 0, "mvbench_action_sequence", "train"), 0, meta)  # fmt: skip
        (result,) = model.generate_until([request])
        assert isinstance(result, GenerationResult) and isinstance(result.text, str)
        assert result.token_counts.input_tokens > 0
        with pytest.raises(NotImplementedError):
            model.loglikelihood([request])
