"""How a question is worded: the canonical template, the many wordings trained, and those held out.

Every question kind has its canonical wording (the one the `heldout`, `unseen`, `long` and `letters`
splits ask, so their figures stay comparable across stages), wordings used in training and wordings
held out for the `phrasing` split: other verbs and word order, contractions, politeness, US and UK
spelling, synonyms ("shade", "hue"; "objects", "things") and object words ("ball" for a circle, "box"
for a square). Some synonyms are held out too (`HELD_OUT_WORDS`). On top, `surface` varies case,
final punctuation and white space, and adds greetings and thanks.

A template is `(text, answer_form)`: the text's `{slots}` are filled from the question's slots and the
word choices; `answer_form` (None: the canonical answer) rewrites the answer for wordings that ask for
a sentence ("What happens to the ball?" -> "the ball moves left").
"""

from __future__ import annotations

import random
import re

from training.generators.common import QA

# word class -> (trained variants, held-out variants); the first trained variant is the canonical one
WORDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "cw": (("colour", "color", "shade"), ("hue",)),
    "shapes": (("shapes", "objects", "things"), ("items",)),
    "pic": (("image", "picture"), ("photo",)),
    "win": (("window", "dialog"), ("app",)),
    "thing": (("object", "thing", "shape"), ("item",)),
}
HELD_OUT_WORDS = {k: v[1] for k, v in WORDS.items()}
KNOWN_WORDS = frozenset(w for pair in WORDS.values() for words in pair for w in words)  # trained or held out
# object words people use for the shapes drawn (trained: the phrasing split asks them too)
NOUNS = {"circle": ("circle", "ball"), "square": ("square", "box"), "triangle": ("triangle",),
         "diamond": ("diamond",)}  # fmt: skip
P_NOUN = 0.25  # P(a shape is called by its other name, where it has one)
# P(a trained question's word-class slot is a made-up word instead): a held-out synonym is a word the
# model never met (the tokenizer spells "hue" h-u-e), so training meets unknown words in those places and
# the question is read from the rest of it; a person meeting an unfamiliar synonym does the same
P_NOVEL = 0.15

T = tuple[str, str | None]
# task -> (canonical, trained, held out). Tasks are "family/task"; position has an h and a v axis.
TEMPLATES: dict[str, tuple[T, tuple[T, ...], tuple[T, ...]]] = {
    "image/count_all": (
        ("How many shapes are in the image?", None),
        (("How many {shapes} are there?", None), ("Count the {shapes} in the {pic}.", None),
         ("What is the number of {shapes} in the {pic}?", None), ("How many {shapes} can you see?", None),
         ("How many {shapes} do you see in this {pic}?", None), ("Count the {shapes}.", None),
         ("How many {shapes} does the {pic} show?", None)),
        (("What's the total number of {shapes} here?", None),
         ("Tell me how many {shapes} the {pic} contains.", None), ("Number of {shapes} in this {pic}?", None)),
    ),
    "image/count_colour": (
        ("How many {colour} shapes are there?", None),
        (("Count the {colour} {shapes}.", None), ("How many {shapes} are {colour}?", None),
         ("What is the number of {colour} {shapes}?", None),
         ("How many {colour} {shapes} can you see in the {pic}?", None),
         ("How many {colour} {shapes} are in the {pic}?", None)),
        (("Tell me how many {colour} {shapes} there are.", None), ("What's the count of {colour} {shapes}?", None),
         ("{colour} {shapes}: how many?", None)),
    ),
    "image/colour_of": (
        ("What colour is the {shape}?", None),
        (("What {cw} is the {shape}?", None), ("Which {cw} is the {shape}?", None),
         ("What is the {cw} of the {shape}?", None), ("Tell me the {cw} of the {shape}.", None),
         ("The {shape} is what {cw}?", None), ("What {cw} is the {shape} in the {pic}?", None)),
        (("What's the {shape}'s {cw}?", None), ("Name the {cw} of the {shape}.", None),
         ("Which {cw} does the {shape} have?", None)),
    ),
    "image/shape_of": (
        ("What shape is the {colour} object?", None),
        (("What shape is the {colour} {thing}?", None), ("Which shape is {colour}?", None),
         ("What is the shape of the {colour} {thing}?", None), ("Name the shape of the {colour} one.", None),
         ("The {colour} {thing} is what shape?", None)),
        (("What's the {colour} {thing}'s shape?", None), ("Tell me which shape is {colour}.", None),
         ("What kind of shape is the {colour} {thing}?", None)),
    ),
    "image/position/h": (
        ("Is the {a} left or right of the {b}?", None),
        (("Is the {a} to the left or to the right of the {b}?", None),
         ("Is the {a} on the left or the right of the {b}?", None),
         ("Relative to the {b}, is the {a} left or right?", None), ("Is the {a} left of or right of the {b}?", None)),
        (("Would you say the {a} is left or right of the {b}?", None),
         ("Compared with the {b}, is the {a} on the left or on the right?", None)),
    ),
    "image/position/v": (
        ("Is the {a} above or below the {b}?", None),
        (("Is the {a} located above or below the {b}?", None), ("Is the {a} above the {b} or below it?", None),
         ("Relative to the {b}, is the {a} above or below?", None), ("Is the {a} placed above or below the {b}?", None)),
        (("Would you say the {a} is above or below the {b}?", None),
         ("Compared with the {b}, is the {a} above it or below it?", None)),
    ),
    "image/describe": (
        ("What shapes do you see, and what colours are they?", None),
        (("What shapes are there and what {cw}s are they?", None), ("Describe the shapes in the {pic}.", None),
         ("Which shapes and {cw}s do you see?", None), ("List the shapes and their {cw}s.", None),
         ("What is in the {pic}?", None), ("What do you see in this {pic}?", None)),
        (("Tell me every shape you see and its {cw}.", None), ("What's in the {pic}? Name each shape with its {cw}.", None),
         ("Which {shapes} are shown, and in what {cw}s?", None)),
    ),
    "basics/colour_single": (
        ("What colour is the shape?", None),
        (("What {cw} is it?", None), ("What {cw} is the {thing}?", None), ("Which {cw} is this shape?", None),
         ("What is the {cw} of the shape?", None)),
        (("What's the {cw} of this shape?", None), ("Tell me its {cw}.", None)),
    ),
    "basics/shape_single": (
        ("What shape is it?", None),
        (("What shape is this?", None), ("Which shape is shown?", None), ("What shape do you see?", None),
         ("Name the shape.", None), ("What shape is in the {pic}?", None)),
        (("What's the shape in the {pic}?", None), ("Tell me what shape this is.", None)),
    ),
    "screenshot/title": (
        ("What is the title of the window?", None),
        (("What's the {win} title?", None), ("What does the title bar say?", None),
         ("Read the title of the {win}.", None), ("What is the {win} called?", None),
         ("What is the name of this {win}?", None), ("What is the title of this {win}?", None)),
        (("Tell me the {win}'s title.", None), ("What title does this {win} have?", None),
         ("What text is in the title bar?", None)),
    ),
    "screenshot/highlighted": (
        ("Which button is highlighted?", None),
        (("Which button is selected?", None), ("Which button is highlighted in this {win}?", None),
         ("What is the highlighted button?", None), ("Name the highlighted button.", None),
         ("Which one of the buttons is highlighted?", None)),
        (("What's the label of the highlighted button?", None), ("Tell me which button is highlighted.", None),
         ("Which button is the highlighted one in the {win}?", None)),
    ),
    "screenshot/button_colour": (
        ("What colour is the {label} button?", None),
        (("What {cw} is the {label} button?", None), ("What is the {cw} of the {label} button?", None),
         ("Which {cw} is the button labelled {label}?", None), ("Which {cw} is the button labeled {label}?", None),
         ("The {label} button is what {cw}?", None)),
        (("What's the {label} button's {cw}?", None), ("Tell me the {cw} of the button that says {label}.", None)),
    ),
    "screenshot/checked": (
        ("How many boxes are checked?", None),
        (("How many checkboxes are checked?", None), ("How many boxes are ticked?", None),
         ("Count the checked boxes.", None), ("What is the number of checked boxes?", None),
         ("How many check boxes are ticked in this {win}?", None)),
        (("How many boxes have a tick?", None), ("Tell me how many boxes are checked.", None)),
    ),
    "screenshot/field": (
        ("What is written in the {name} field?", None),
        (("What's in the {name} field?", None), ("What does the {name} field say?", None),
         ("What is the value of the {name} field?", None), ("Read the {name} field.", None),
         ("What is typed in the {name} field?", None)),
        (("Tell me what the {name} field contains.", None), ("What text is in the {name} field?", None),
         ("What has been entered in the {name} field?", None)),
    ),
    "video/direction": (
        ("Which way does the {colour} {shape} move?", None),
        (("In which direction does the {colour} {shape} move?", None),
         ("Which direction is the {colour} {shape} moving?", None), ("Where does the {colour} {shape} go?", None),
         ("Which way is the {shape} going?", None), ("Which way does the {shape} move?", None),
         ("What happens to the {shape}?", "the {shape} moves {answer}"),
         ("What happens to the {colour} {shape} in this video?", "the {colour} {shape} moves {answer}"),
         ("What happens to the {shape} in this video?", "the {shape} moves {answer}")),
        (("Tell me which way the {colour} {shape} moves.", None),
         ("What direction does the {shape} travel in?", None),
         ("What does the {shape} do in the video?", "the {shape} moves {answer}")),
    ),
    "video/colour_order": (
        ("In what order does the {shape} change colour?", None),
        (("In what order does the {shape} change {cw}?", None), ("Which {cw}s does the {shape} turn, in order?", None),
         ("List the {shape}'s {cw}s in order.", None), ("What {cw}s does the {shape} go through, in order?", None)),
        (("What's the sequence of {cw}s of the {shape}?", None), ("Tell me the {cw}s the {shape} takes, in order.", None)),
    ),
    "video/flashes": (
        ("How many times does the screen flash?", None),
        (("How often does the screen flash?", None), ("Count the flashes.", None), ("How many flashes are there?", None),
         ("How many times does the video flash?", None), ("What is the number of flashes?", None)),
        (("Tell me how many times the screen flashes.", None), ("How many flashes do you see in the video?", None)),
    ),
    "video/first_appear": (
        ("Which appears first, the {a} or the {b}?", None),
        (("Which shows up first, the {a} or the {b}?", None), ("Does the {a} or the {b} appear first?", None),
         ("Which comes first: the {a} or the {b}?", None), ("What appears earlier, the {a} or the {b}?", None)),
        (("Which one is seen first, the {a} or the {b}?", None),
         ("Between the {a} and the {b}, which appears first?", None)),
    ),
    "video/at_time": (
        ("What colour is the {shape} at {time}?", None),
        (("What {cw} is the {shape} at {time}?", None), ("At {time}, what {cw} is the {shape}?", None),
         ("What is the {shape}'s {cw} at {time}?", None), ("Which {cw} does the {shape} have at {time}?", None)),
        (("Tell me the {cw} of the {shape} at {time}.", None), ("What's the {cw} of the {shape} at the {time} mark?", None)),
    ),
}  # fmt: skip

# greetings before and thanks after the question: (trained, held out)
PREFIXES = (("Please: ", "Quick question: ", "Hey, ", "Question: "), ("Could you help me? ", "Hi! "))
SUFFIXES = ((" Thanks.", " Thanks!", " Please answer briefly."), (" Thank you!",))
CANONICAL_SHARE = 0.3  # P(a training question is asked in its canonical wording)


def novel_word(rng: random.Random) -> str:
    """A made-up lower-case word of 3-6 letters, never one of WORDS' (KNOWN_WORDS)."""
    while True:
        made = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 6)))
        if made not in KNOWN_WORDS and made.rstrip("s") not in KNOWN_WORDS:
            return made


def _pick(rng: random.Random, word: str, held_out: bool) -> str:
    trained, held = WORDS[word]
    if held_out and rng.random() < 0.5:
        return rng.choice(held)
    if not held_out and rng.random() < P_NOVEL:
        return novel_word(rng)
    return rng.choice(trained)


def _noun(rng: random.Random, shape: str) -> str:
    names = NOUNS[shape]
    return names[1] if len(names) > 1 and rng.random() < P_NOUN else names[0]


def surface(text: str, rng: random.Random, held_out: bool = False) -> str:
    """Case, final punctuation, white space, greetings and thanks, as people type."""
    if rng.random() < 0.12:
        prefix = rng.choice(PREFIXES[held_out and rng.random() < 0.5])
        text = prefix + (text[0].lower() + text[1:] if prefix.endswith(", ") else text)
    if rng.random() < 0.08:
        text += rng.choice(SUFFIXES[held_out and rng.random() < 0.5])
    r = rng.random()
    if r < 0.15:
        text = text.lower()
    elif r < 0.18:
        text = text.upper()
    elif r < 0.25:
        text = text[0].lower() + text[1:]
    r = rng.random()
    if r < 0.12:
        text = text.rstrip("?.!")
    elif r < 0.16 and text.endswith("?"):
        text += "?"
    elif r < 0.2 and text.endswith("?"):
        text = text[:-1] + " ?"
    if rng.random() < 0.1:
        words = text.split(" ")
        i = rng.randrange(len(words))
        words[i] += " "
        text = " ".join(words)
    if rng.random() < 0.05:
        text = rng.choice(("  ", " ", "\n")) + text + rng.choice(("", " ", "  "))
    return text


def template_key(qa: QA) -> str:
    """The TEMPLATES key of a question: its kind, and for position its axis."""
    key = qa.slots["kind"]
    return f"{key}/{qa.slots['axis']}" if key == "image/position" else key


def word(qa: QA, rng: random.Random, style: str) -> tuple[str, str]:
    """(question, answer) for `qa` in `style`: "canonical" (its own question), "train" (a trained
    wording, or the canonical one at CANONICAL_SHARE) or "heldout" (a held-out wording only)."""
    if style == "canonical" or (style == "train" and rng.random() < CANONICAL_SHARE):
        return qa.question, qa.answer
    held_out = style == "heldout"
    _, trained, held = TEMPLATES[template_key(qa)]
    text, form = rng.choice(held if held_out else trained)
    fill = {k: v for k, v in qa.slots.items() if k not in ("kind", "axis")}
    nouns = {}
    for key in ("shape", "a_shape", "b_shape"):
        if key in fill:
            nouns[key] = _noun(rng, fill[key])
    if "shape" in nouns:
        fill["shape"] = nouns["shape"]
    for side in ("a", "b"):
        if f"{side}_shape" in fill:
            colour = fill.get(f"{side}_colour")
            fill[side] = f"{colour} {nouns[side + '_shape']}" if colour else nouns[side + "_shape"]
    for name in WORDS:
        if "{" + name + "}" in text:
            fill[name] = _pick(rng, name, held_out)
    fill["answer"] = qa.answer
    question = text.format(**fill)
    if qa.slots["kind"] == "video/first_appear":  # answered with the word the question used
        answer = nouns["a_shape"] if qa.answer == qa.slots["a_shape"] else nouns["b_shape"]
    else:
        answer = form.format(**fill) if form else qa.answer
    question = question[:1].upper() + question[1:]  # "{colour} {shapes}: how many?" starts with a slot
    return surface(question, rng, held_out), answer


def check_templates() -> None:
    """Every template's slots are ones its kind provides (run by the tests)."""
    for key, (canonical, trained, held) in TEMPLATES.items():
        for text, form in (canonical, *trained, *held):
            for slot in re.findall(r"\{(\w+)\}", text + (form or "")):
                if slot not in (*WORDS, "answer", "shape", "colour", "a", "b", "label", "name", "time"):
                    raise ValueError(f"{key}: template {text!r} has unknown slot {slot!r}")
