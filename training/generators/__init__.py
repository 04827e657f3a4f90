"""Seeded generators of the synthetic curriculum and the mix the trainer draws from.

`sample(split, index)` is a pure function of its arguments: the same (split, index) gives the same
sample on any machine. Splits: "train", "heldout" (same distributions, other seeds), "unseen"
(resolutions and aspect ratios never trained on), "long" (videos longer than any in training),
"calib" (Toggle calibration), "letters" (videos asked with lettered options, as the video benchmarks ask),
"phrasing" (training distributions asked only in held-out wordings: `phrasing`). Training questions
are worded many ways (`phrasing.word`); every other split asks the canonical wording, drawn from an
rng of its own so that the media of a (split, index) do not depend on it.
"""

from __future__ import annotations

from training.generators import chats, images, phrasing, screenshots, videos
from training.generators.common import Sample, rng_for

# Training mix: family -> weight. Thinking-mode probability for tasks that carry a trace.
MIX = (("image", 0.3), ("screenshot", 0.3), ("video", 0.34), ("chat", 0.06))
# Still images only, bootstrap tasks included.
GROUND_MIX = (("image", 0.45), ("screenshot", 0.3), ("basics", 0.25))
# Grounded-first: the full task set, weighted towards still images (cheap samples, learned first).
IMAGE_FIRST_MIX = (("image", 0.38), ("screenshot", 0.3), ("basics", 0.08), ("video", 0.19), ("chat", 0.05))
# A progressive curriculum (`training/curriculum.sh`): basics -> images -> ground -> image_first (x2).
# From scratch on the full mix the model stays at the answer prior (the other 14 question kinds'
# gradients drown each one's grounding signal); one kind alone is learned in ~100 steps, and each
# stage then starts from a model that already looks at the image.
MIXES = {
    "basics": (("basics", 1.0),),
    "images": (("basics", 0.2), ("image", 0.8)),
    "ground": GROUND_MIX,
    "image_first": IMAGE_FIRST_MIX,
    "full": MIX,
}
THINKING = 0.35
# P(a training trace is followed by its enumeration again): the redundant verification that long
# chains of thought carry (the K2.5 report: Toggle removes "repeated verification"); a model trained on
# it thinks twice as long on half the problems, for the same answer, which the Toggle stage is to trim.
# The second pass opens with "check:" so the model knows which pass it is in: repeated bare, the tiny
# LM could not tell and looped (`... purple.000 purple.000 purple.`)
RECHECK = 0.5
CHOICE = 0.3  # P(a training video question is asked with lettered options, as the video benchmarks do)
FAMILY_TASKS = {
    "image": images.TASKS,
    "screenshot": screenshots.TASKS,
    "video": videos.TASKS,
    "basics": images.BASICS,
}


def parse_mix(spec: str) -> tuple[tuple[str, float], ...]:
    """A MIXES name, or entries "family[/task][=weight]" joined by commas (weights default to 1 and
    are normalised): `--mix screenshot/title` trains one question kind alone."""
    if spec in MIXES:
        return MIXES[spec]
    entries = []
    for part in spec.split(","):
        name, _, weight = part.strip().partition("=")
        family, _, task = name.partition("/")
        if family not in (*FAMILY_TASKS, "chat") or (task and task not in FAMILY_TASKS.get(family, ())):
            raise ValueError(
                f"unknown mix entry {name!r}: a MIXES name ({', '.join(MIXES)}) or family[/task]"
            )
        entries.append((name, float(weight or 1.0)))
    total = sum(w for _, w in entries)
    return tuple((name, w / total) for name, w in entries)


def sample(
    split: str, index: int, *, family: str | None = None, task: str | None = None, mix: tuple | None = None,
    wording: str | None = None, thinking: float | None = None,
) -> Sample:  # fmt: skip
    """Sample `index` of `split`; family/task force a kind (eval), else drawn from `mix` (default MIX).
    `wording` ("canonical", "train", "heldout") overrides the split's own (the probes train on the
    canonical questions, as their recorded curves did). `thinking` overrides THINKING, the share of
    training questions with a trace asked in thinking mode.

    The "basics" bootstrap family (one large shape: its colour, its shape) is only in the curriculum's
    early MIXES."""
    rng = rng_for(split, index, f"{family}/{task}")
    if family is None:
        r, acc = rng.random(), 0.0
        for entry, weight in mix or MIX:  # noqa: B007
            acc += weight
            if r < acc:
                break
        family, _, picked = entry.partition("/")  # a mix entry may name one task: "screenshot/title"
        task = task or picked or None
    thinking = (THINKING if thinking is None else thinking) if split in ("train", "calib") else 0.0
    style = wording or {"train": "train", "phrasing": "heldout"}.get(split, "canonical")
    words = rng_for(split, index, "wording")
    kw = {"task": task, "wording": lambda qa: phrasing.word(qa, words, style)}
    s = _make(family, split, index, rng, thinking, kw)
    if split == "train" and s.thinking and rng_for(split, index, "recheck").random() < RECHECK:
        s.trace = f"{s.trace} check: {s.trace}"
    return s


def _make(family: str, split: str, index: int, rng, thinking: float, kw: dict) -> Sample:
    unseen = split == "unseen"
    if family == "image":
        return images.make(rng, unseen=unseen, thinking=thinking, **kw)
    if family == "screenshot":
        shrinks = rng_for(split, index, "shrink") if split == "train" else None
        return screenshots.make(rng, unseen=unseen, thinking=thinking, shrinks=shrinks, **kw)
    if family == "video":
        choice = {"train": CHOICE, "letters": 1.0}.get(split, 0.0)
        return videos.make(rng, long=split == "long", thinking=thinking, choice=choice, **kw)
    if family == "basics":
        return images.make_basic(rng, unseen=unseen, **kw)
    if family == "chat":
        return chats.make(rng, unseen=unseen, thinking=thinking, **kw)
    raise ValueError(f"unknown family {family!r}")


__all__ = ["FAMILY_TASKS", "GROUND_MIX", "MIX", "MIXES", "Sample", "parse_mix", "sample"]
