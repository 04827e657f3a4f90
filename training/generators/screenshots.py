"""Synthetic app windows: title bar, menu bar, checkboxes, a text field and a row of buttons.

Questions: read the title, read a field, which button is highlighted, how many boxes are checked,
the colour of the button labelled X. Seen sizes: 150..224 x 130..196; unseen (eval only): larger
windows (252..336 x 224..280) or wide, short ones (aspect 2.3..2.8).
"""

from __future__ import annotations

import random

from PIL import Image

from training.generators.common import (
    COLOUR_NAMES,
    COLOURS,
    QA,
    Sample,
    Wording,
    font,
    new_canvas,
    numbered,
    worded,
)

TITLES = ("Settings", "Login", "Export", "Print", "Update", "Search", "Profile", "Options")
BUTTONS = ("OK", "Cancel", "Save", "Open", "Apply", "Delete", "Next", "Back", "Help", "Close")
CHECKS = ("Wifi", "Sound", "Email", "Backup", "Sync", "Alerts", "Updates", "Bluetooth")
FIELDS = ("Name", "User", "City")
VALUES = ("Anna", "Ben", "Carl", "Dora", "Eve", "Finn", "Gus", "Hana")
MENUS = ("File", "Edit", "View", "Tools", "Help")
TASKS = ("title", "highlighted", "button_colour", "checked", "field")
# Every word a window shows, then each button label highlighted: the classes of the trainer's
# per-token word targets (what is written under each token, from the layout `render` records).
WORDS = tuple(dict.fromkeys(TITLES + BUTTONS + CHECKS + FIELDS + VALUES + MENUS)) + tuple(
    f"{b}*" for b in BUTTONS
)


SEEN_WIDTH, SEEN_HEIGHT = (150, 224), (130, 196)  # px, a seen window's sides


def screen_size(rng: random.Random, unseen: bool = False) -> tuple[int, int]:
    if not unseen:
        return rng.randint(*SEEN_WIDTH), rng.randint(*SEEN_HEIGHT)
    if rng.random() < 0.5:
        return rng.randint(252, 336), rng.randint(224, 280)
    h = rng.randint(130, 150)
    return int(h * rng.uniform(2.3, 2.8)), h


# P(a training screenshot is shown smaller) and by how much: a window larger than the image budget
# (in_patch_limit) is shrunk into it by the processor, so its 12-px text arrives at 8-11 px; training
# meets that scale on seen-size windows shrunk the same way (bicubic, as vision.preprocess resizes)
P_SHRINK, SHRINK = 0.35, (0.6, 0.95)


def shrink(image: Image.Image, texts: list[dict], factor: float) -> tuple[Image.Image, list[dict]]:
    """`image` scaled by `factor` (bicubic) and each drawn word's box with it."""
    w, h = image.size
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    sx, sy = size[0] / w, size[1] / h
    boxes = [
        {**t, "box": (t["box"][0] * sx, t["box"][1] * sy, t["box"][2] * sx, t["box"][3] * sy)} for t in texts
    ]
    return image.resize(size, Image.Resampling.BICUBIC), boxes


def text_width(text: str, size: int) -> int:
    left, _, right, _ = font(size).getbbox(text)
    return int(right - left)


def render(rng: random.Random, width: int, height: int, style: str) -> tuple[Image.Image, dict]:
    """A window; style "highlight" (one blue button) or "colour" (buttons of distinct colours)."""
    chrome = tuple(rng.randint(236, 250) for _ in range(3))
    image, draw = new_canvas(width, height, chrome)
    info: dict = {"title": rng.choice(TITLES)}
    texts: list[dict] = []  # each drawn word: its class in WORDS, box (x0, y0, x1, y1), a button's colour

    def text(word: str, x0: float, y0: float, size: int) -> None:
        texts.append({"word": word, "box": (x0, y0, x0 + text_width(word, size), y0 + size), "colour": None})

    bar = tuple(rng.randint(40, 80) for _ in range(3))
    draw.rectangle((0, 0, width, 21), fill=bar)
    draw.text((8, 3), info["title"], font=font(14), fill=(255, 255, 255))
    text(info["title"], 8, 3, 14)
    y = 24
    if rng.random() < 0.6:  # a menu bar, as a distractor
        x = 6
        for m in rng.sample(MENUS, rng.randint(2, 4)):
            draw.text((x, y), m, font=font(11), fill=(60, 60, 60))
            text(m, x, y, 11)
            x += text_width(m, 11) + 10
        y += 16
    # buttons first, anchored at the bottom, so the rest fills what is left
    n_buttons = rng.randint(2, 3)
    while True:
        labels = rng.sample(BUTTONS, n_buttons)
        widths = [max(40, text_width(lab, 12) + 16) for lab in labels]
        if sum(widths) + 8 * (n_buttons + 1) <= width or n_buttons == 1:
            break
        n_buttons -= 1
    colours = rng.sample(COLOUR_NAMES, n_buttons) if style == "colour" else None
    hi = rng.randrange(n_buttons)
    x, by = width - 8, height - 30
    buttons = []
    for i in reversed(range(n_buttons)):
        x0 = x - widths[i]
        if style == "colour":
            fill, ink, outline = COLOURS[colours[i]], (255, 255, 255), None
        elif i == hi:
            fill, ink, outline = (30, 110, 230), (255, 255, 255), (10, 60, 160)
        else:
            fill, ink, outline = (215, 215, 215), (30, 30, 30), (150, 150, 150)
        draw.rectangle((x0, by, x, by + 22), fill=fill, outline=outline)
        tw = text_width(labels[i], 12)
        draw.text((x0 + (widths[i] - tw) / 2, by + 4), labels[i], font=font(12), fill=ink)
        word = f"{labels[i]}*" if style == "highlight" and i == hi else labels[i]
        texts.append({"word": word, "box": (x0, by, x, by + 22), "colour": colours[i] if colours else None,
                      "button": True})  # fmt: skip
        buttons.append(
            {"label": labels[i], "colour": colours[i] if colours else None, "highlighted": i == hi}
        )
        x = x0 - 8
    info["buttons"] = buttons[::-1]
    # a text field
    info["field"] = None
    if by - y >= 30 and rng.random() < 0.85:
        name, value = rng.choice(FIELDS), rng.choice(VALUES)
        draw.text((8, y + 4), f"{name}:", font=font(12), fill=(20, 20, 20))
        text(name, 8, y + 4, 12)
        fx = 8 + text_width(f"{name}:", 12) + 6
        draw.rectangle(
            (fx, y, min(width - 8, fx + 90), y + 20), fill=(255, 255, 255), outline=(120, 120, 120)
        )
        draw.text((fx + 4, y + 3), value, font=font(12), fill=(0, 0, 0))
        text(value, fx + 4, y + 3, 12)
        info["field"] = (name, value)
        y += 26
    # checkboxes in the space left
    room = max(0, (by - 4 - y) // 19)
    n_checks = rng.randint(0, min(3, room))
    checks = []
    for lab in rng.sample(CHECKS, n_checks):
        on = rng.random() < 0.5
        draw.rectangle((10, y + 3, 22, y + 15), fill=(255, 255, 255), outline=(60, 60, 60))
        if on:
            draw.line((12, y + 9, 15, y + 13), fill=(10, 10, 10), width=2)
            draw.line((15, y + 13, 21, y + 4), fill=(10, 10, 10), width=2)
        draw.text((28, y + 2), lab, font=font(12), fill=(20, 20, 20))
        text(lab, 28, y + 2, 12)
        checks.append((lab, on))
        y += 19
    info["checks"] = checks
    info["texts"] = texts
    return image, info


def questions(rng: random.Random, info: dict, style: str) -> dict[str, QA]:
    out = {
        "title": QA(
            "title", "What is the title of the window?", info["title"], slots={"kind": "screenshot/title"}
        )
    }
    if style == "highlight":
        label = next(b["label"] for b in info["buttons"] if b["highlighted"])
        out["highlighted"] = QA(
            "highlighted",
            "Which button is highlighted?",
            label,
            refs=({"highlighted": True},),
            slots={"kind": "screenshot/highlighted"},
        )
    else:
        b = rng.choice(info["buttons"])
        out["button_colour"] = QA(
            "button_colour", f"What colour is the {b['label']} button?", b["colour"],
            refs=({"word": b["label"], "button": True},), slots={"kind": "screenshot/button_colour", "label": b["label"]},
        )  # fmt: skip
    checked = [lab for lab, on in info["checks"] if on]
    out["checked"] = QA(
        "checked",
        "How many boxes are checked?",
        str(len(checked)),
        numbered(checked),
        slots={"kind": "screenshot/checked"},
    )
    if info["field"]:
        name, value = info["field"]
        out["field"] = QA("field", f"What is written in the {name} field?", value,
                          slots={"kind": "screenshot/field", "name": name})  # fmt: skip
    return out


def make(
    rng: random.Random, *, unseen: bool = False, task: str | None = None, thinking: float = 0.0,
    wording: Wording | None = None, shrinks: random.Random | None = None,
) -> Sample:  # fmt: skip
    """A window and one question about it; `shrinks` (training: an rng of its own, so the windows are
    those drawn without it) shows P_SHRINK of them smaller."""
    while True:
        w, h = screen_size(rng, unseen)
        want = task or rng.choice(TASKS)
        style = (
            "colour"
            if want == "button_colour"
            else "highlight"
            if want == "highlighted"
            else rng.choice(("colour", "highlight"))
        )
        image, info = render(rng, w, h, style)
        qs = questions(rng, info, style)
        if want in qs:
            break
    qa = qs[want]
    think = qa.trace is not None and rng.random() < thinking
    texts = info["texts"]
    if shrinks is not None and shrinks.random() < P_SHRINK:
        image, texts = shrink(image, texts, shrinks.uniform(*SHRINK))
    meta = {"size": image.size, "unseen": unseen, "texts": texts}
    return worded("screenshot", qa, {"type": "image", "image": image}, think, wording, meta)
