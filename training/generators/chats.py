"""Multi-turn chats: a first question about an image or screenshot already answered, then a second.

The second question is asked about the same media in the following user turn (the media stays in
the first turn, as in a real conversation); only the last answer is the target.
"""

from __future__ import annotations

import random

from training.generators import images, screenshots
from training.generators.common import Sample, Wording, words_of


def make(
    rng: random.Random, *, unseen: bool = False, task: str | None = None, thinking: float = 0.0,
    wording: Wording | None = None,
) -> Sample:  # fmt: skip
    """Two questions about one image or screenshot, both worded by `wording` (default: canonical)."""
    while True:
        if rng.random() < 0.5:
            w, h = images.image_size(rng, unseen)
            image, objects = images.scene(rng, w, h, rng.randint(2, 5))
            qs = images.questions(rng, objects)
            kind = "image"
        else:
            w, h = screenshots.screen_size(rng, unseen)
            style = rng.choice(("colour", "highlight"))
            image, info = screenshots.render(rng, w, h, style)
            qs = screenshots.questions(rng, info, style)
            kind = "screenshot"
        if len(qs) >= 2:
            break
    first, second = rng.sample(sorted(qs), 2)
    (text1, answer1), (text2, answer2) = (words_of(qs[k], wording) for k in (first, second))
    messages = [
        {"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": text1}]},
        {"role": "assistant", "content": answer1},
        {"role": "user", "content": text2},
    ]
    meta = {"size": (w, h), "unseen": unseen, "media": kind}
    return Sample("chat", f"{kind}_{qs[second].task}", messages, answer2, None, False, meta)
