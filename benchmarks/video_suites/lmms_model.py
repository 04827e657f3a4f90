"""The lmms-eval model class behind `lmms-eval --model mm_model` (needs lmms-eval: `pip install 'mm-model[lmms]'`).

A thin shell over `lmms_plugin.Generator`, which holds the logic and is tested without lmms-eval.
"""

from __future__ import annotations

from typing import Any

from lmms_eval.api.instance import GenerationResult, TokenCounts
from lmms_eval.api.model import lmms

from benchmarks.video_suites.lmms_plugin import Generator


class MMModel(lmms):
    """Our local model for lmms-eval's generate_until tasks; video goes in 4-frame chunks at `fps`."""

    is_simple = True

    def __init__(self, pretrained: str = "tiny", **model_args: Any) -> None:
        super().__init__()
        self.generator = Generator(pretrained, **model_args)

    def generate_until(self, requests: list) -> list[GenerationResult]:
        answers = self.generator.generate([r.args for r in requests], self.task_dict, progress=self.rank == 0)
        return [GenerationResult(text, TokenCounts(**counts)) for text, counts in answers]

    def loglikelihood(self, requests: list) -> list:
        raise NotImplementedError("mm_model answers generate_until tasks only (the video benchmarks)")

    def generate_until_multi_round(self, requests: list) -> list:
        raise NotImplementedError("mm_model answers generate_until tasks only (the video benchmarks)")
