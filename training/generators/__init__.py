"""Seeded generators of the synthetic curriculum and the mix the trainer draws from.

`sample(split, index)` is a pure function of its arguments: the same (split, index) gives the same
sample on any machine. Splits: "train", "heldout" (same distributions, other seeds), "unseen"
(resolutions and aspect ratios never trained on), "long" (videos longer than any in training),
"calib" (Toggle calibration).
"""

from __future__ import annotations

from training.generators import chats, images, screenshots, videos
from training.generators.common import Sample, rng_for

# Training mix: family -> weight. Thinking-mode probability for tasks that carry a trace.
MIX = (("image", 0.28), ("screenshot", 0.28), ("video", 0.38), ("chat", 0.06))
PHASE2_MIX = (("image", 0.25), ("screenshot", 0.25), ("video", 0.25), ("chat", 0.05), ("basics", 0.2))
THINKING = 0.35
CHOICE = 0.3  # P(a training video question is asked with lettered options, as the video benchmarks do)
FAMILY_TASKS = {
    "image": images.TASKS,
    "screenshot": screenshots.TASKS,
    "video": videos.TASKS,
    "basics": images.BASICS,
}


def sample(
    split: str, index: int, *, family: str | None = None, task: str | None = None, mix: tuple | None = None
) -> Sample:
    """Sample `index` of `split`; family/task force a kind (eval), else drawn from `mix` (default MIX).

    Phase 2 of the bundled model's training used PHASE2_MIX, which adds the "basics" bootstrap
    family (one large shape: its colour, its shape)."""
    rng = rng_for(split, index, f"{family}/{task}")
    if family is None:
        r, acc = rng.random(), 0.0
        for family, weight in mix or MIX:  # noqa: B007
            acc += weight
            if r < acc:
                break
    thinking = THINKING if split in ("train", "calib") else 0.0
    if family == "image":
        return images.make(rng, unseen=split == "unseen", task=task, thinking=thinking)
    if family == "screenshot":
        return screenshots.make(rng, unseen=split == "unseen", task=task, thinking=thinking)
    if family == "video":
        choice = CHOICE if split == "train" else 0.0
        return videos.make(rng, long=split == "long", task=task, thinking=thinking, choice=choice)
    if family == "basics":
        return images.make_basic(rng, unseen=split == "unseen", task=task)
    if family == "chat":
        return chats.make(rng, unseen=split == "unseen", task=task, thinking=thinking)
    raise ValueError(f"unknown family {family!r}")


__all__ = ["FAMILY_TASKS", "MIX", "PHASE2_MIX", "Sample", "sample"]
