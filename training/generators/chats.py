"""Multi-turn chats: a first question about an image or screenshot already answered, then a second.

The second question is asked about the same media in the following user turn (the media stays in
the first turn, as in a real conversation); only the last answer is the target.
"""

from __future__ import annotations

import random

from training.generators import images, screenshots
from training.generators.common import Sample


def make(
    rng: random.Random, *, unseen: bool = False, task: str | None = None, thinking: float = 0.0
) -> Sample:
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
    q1, q2 = qs[first], qs[second]
    messages = [
        {
            "role": "user",
            "content": [{"type": "image", "image": image}, {"type": "text", "text": q1.question}],
        },
        {"role": "assistant", "content": q1.answer},
        {"role": "user", "content": q2.question},
    ]
    meta = {"size": (w, h), "unseen": unseen, "media": kind}
    return Sample("chat", f"{kind}_{q2.task}", messages, q2.answer, None, False, meta)
