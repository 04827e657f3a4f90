"""Draw the bundled example screenshots and the README's example video deterministically.

python -m scripts.make_example_assets   # writes example_screenshot.png, example_window.png, example_moving.mp4

example_screenshot.png: a 960x600 settings dialog, the size of a real screenshot (the demo's and the
tests' example). example_window.png: a held-out window from the training curriculum's own generator
(`training.generators.screenshots`, split "example"), at a trained size, so that `make example` asks
the bundled model something it was trained to answer. example_moving.mp4: a held-out direction video
from the same curriculum (`training.generators.videos`, split "example"), 8 frames at 2 fps, for the
same reason (the demo's ball video, `make_demo_examples.py`, is drawn unlike the training videos).
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

ASSETS = Path(__file__).resolve().parents[1] / "mm_model" / "assets"
OUT = ASSETS / "example_screenshot.png"
WINDOW = ASSETS / "example_window.png"
MOVING = ASSETS / "example_moving.mp4"


def draw_dialog(width: int = 960, height: int = 600) -> Image.Image:
    image = Image.new("RGB", (width, height), (236, 239, 244))
    d = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=18)
    small = ImageFont.load_default(size=15)
    # Window frame and title bar.
    d.rectangle((40, 30, width - 40, height - 30), fill=(255, 255, 255), outline=(160, 166, 178), width=2)
    d.rectangle((40, 30, width - 40, 72), fill=(52, 101, 164))
    d.text((60, 41), "Account Settings", fill=(255, 255, 255), font=font)
    for i, colour in enumerate([(237, 106, 94), (245, 191, 79), (98, 197, 84)]):
        x = width - 120 + 26 * i
        d.ellipse((x, 43, x + 16, 59), fill=colour)
    # Form fields.
    labels = [("Name", "Ada Lovelace"), ("Email", "ada@example.org"), ("City", "London")]
    for i, (label, value) in enumerate(labels):
        y = 110 + 60 * i
        d.text((80, y + 8), label, fill=(40, 44, 52), font=font)
        d.rectangle((220, y, 620, y + 38), fill=(250, 250, 252), outline=(170, 176, 188), width=2)
        d.text((232, y + 9), value, fill=(20, 20, 20), font=font)
    # Checkboxes: two of three checked.
    for i, (label, checked) in enumerate(
        [("Send newsletter", True), ("Two-factor login", True), ("Share usage data", False)]
    ):
        y = 300 + 40 * i
        d.rectangle((80, y, 104, y + 24), fill=(255, 255, 255), outline=(90, 96, 110), width=2)
        if checked:
            d.line((84, y + 12, 91, y + 19, 100, y + 5), fill=(52, 101, 164), width=4)
        d.text((118, y + 2), label, fill=(40, 44, 52), font=small)
    # Buttons: "Save" is highlighted.
    d.rounded_rectangle((600, 480, 720, 528), 8, fill=(52, 101, 164))
    d.text((637, 492), "Save", fill=(255, 255, 255), font=font)
    d.rounded_rectangle((740, 480, 880, 528), 8, fill=(255, 255, 255), outline=(150, 156, 168), width=2)
    d.text((780, 492), "Cancel", fill=(40, 44, 52), font=font)
    return image


def draw_window() -> tuple[Image.Image, dict]:
    """A curriculum window (seen size, highlighted-button style) from its own seed; returns the image
    and what it shows (title, buttons, field, checks)."""
    from training.generators.common import rng_for
    from training.generators.screenshots import render, screen_size

    rng = rng_for("example", 0, "screenshot")
    width, height = screen_size(rng)
    return render(rng, width, height, "highlight")


def draw_moving() -> tuple[list[Image.Image], str, str]:
    """A curriculum direction video (seen length and size) from its own seed: (frames, question, answer)."""
    from training.generators.common import rng_for
    from training.generators.videos import direction, frame_size

    rng = rng_for("example", 0, "video")
    frames, qa, _ = direction(rng, frame_size(rng), long=False)
    return frames, qa.question, qa.answer


if __name__ == "__main__":
    from training.generators.videos import write_mp4

    ASSETS.mkdir(parents=True, exist_ok=True)
    draw_dialog().save(OUT, optimize=True)
    window, info = draw_window()
    window.save(WINDOW, optimize=True)
    frames, question, answer = draw_moving()
    write_mp4(frames, MOVING)
    for p in (OUT, WINDOW, MOVING):
        print(f"wrote {p} ({p.stat().st_size:,} bytes)")
    print(f"{WINDOW.name} shows: {info}")
    print(f"{MOVING.name}: {question} {answer}")
