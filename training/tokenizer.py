"""Train the bundled model's byte-level BPE tokenizer on the curriculum text.

    python -m training.tokenizer --out mm_model/bundled/tiny/tokenizer.json --vocab 1024

The K2.5 special tokens (<think>, </think>, <|im_end|>, <|media_pad|>, ...) are appended after
the learned vocabulary by `mm_model.tokenizer.train_tokenizer`.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

from mm_model.processor import K25_DEFAULT_SYSTEM
from mm_model.tokenizer import JsonTokenizer, train_tokenizer
from training.generators import FAMILY_TASKS, sample
from training.generators.videos import stamp

VOCAB_SIZE = 1024


def corpus(n: int = 4000, per_task: int = 50) -> Iterator[str]:
    """The text the model will see: system prompt, template words, questions, answers, traces, timestamps."""
    yield K25_DEFAULT_SYSTEM
    yield "system user assistant image video"
    for c in range(64):
        yield stamp(c)
    for i in range(n):
        s = sample("train", i)
        for m in s.messages:
            content = m["content"]
            parts = (
                [content] if isinstance(content, str) else [p["text"] for p in content if p["type"] == "text"]
            )
            yield from parts
        yield s.answer
        if s.trace:
            yield s.trace
    for family, tasks in FAMILY_TASKS.items():  # every task at least a few times
        for task in tasks:
            for i in range(per_task):
                s = sample("train", i, family=family, task=task)
                yield s.messages[-1]["content"][-1]["text"]
                yield s.answer


def build(vocab_size: int = VOCAB_SIZE, n: int = 4000, per_task: int = 50) -> JsonTokenizer:
    """BPE merges stop early when the corpus runs out of pairs: the curriculum gives ~640 ids."""
    return train_tokenizer(list(corpus(n, per_task)), vocab_size)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="mm_model/bundled/tiny/tokenizer.json")
    ap.add_argument("--vocab", type=int, default=VOCAB_SIZE)
    ap.add_argument("--samples", type=int, default=4000)
    args = ap.parse_args()
    tok = build(args.vocab, args.samples)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    tok.save(args.out)
    print(f"vocabulary {tok.vocab_size} -> {args.out}")


if __name__ == "__main__":
    main()
