"""Draw the demo's bundled example image and video deterministically (small files, no randomness).

python scripts/make_demo_examples.py   # writes mm_model/assets/example_image.png and example_video.mp4

The image: a red square and a blue circle on a light background. The video: 3 s at 10 fps, 160x120,
H.264 (plays in browsers): a ball rolls left to right and turns green halfway. At the 2 fps the
model samples, that is 6 frames in 2 chunks. The screenshot example comes from make_example_assets.py.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageDraw

ASSETS = Path(__file__).resolve().parents[1] / "mm_model" / "assets"


def draw_image(width: int = 320, height: int = 240) -> Image.Image:
    image = Image.new("RGB", (width, height), (245, 243, 238))
    d = ImageDraw.Draw(image)
    d.rectangle((40, 70, 130, 160), fill=(214, 48, 49))
    d.ellipse((180, 65, 280, 165), fill=(9, 132, 227))
    d.line((0, 200, width, 200), fill=(120, 120, 120), width=3)
    return image


def draw_frame(i: int, frames: int, width: int, height: int) -> np.ndarray:
    image = Image.new("RGB", (width, height), (250, 250, 250))
    d = ImageDraw.Draw(image)
    d.rectangle((0, height - 20, width, height), fill=(180, 160, 120))  # the floor
    r = 14
    x = r + (width - 2 * r) * i // (frames - 1)
    colour = (220, 60, 40) if i < frames // 2 else (40, 170, 70)
    d.ellipse((x - r, height - 20 - 2 * r, x + r, height - 20), fill=colour)
    return np.asarray(image)


def write_video(path: Path, seconds: int = 3, fps: int = 10, size: tuple[int, int] = (160, 120)) -> None:
    width, height = size
    frames = seconds * fps
    with av.open(str(path), "w", options={"movflags": "+faststart"}) as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        # One thread and fixed settings: the bytes are the same on every run.
        stream.options = {"crf": "30", "preset": "medium", "threads": "1", "x264-params": "threads=1"}
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(draw_frame(i, frames, width, height), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


if __name__ == "__main__":
    ASSETS.mkdir(parents=True, exist_ok=True)
    image_path, video_path = ASSETS / "example_image.png", ASSETS / "example_video.mp4"
    draw_image().save(image_path, optimize=True)
    write_video(video_path)
    for p in (image_path, video_path):
        print(f"wrote {p} ({p.stat().st_size:,} bytes)")
