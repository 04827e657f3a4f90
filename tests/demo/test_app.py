"""The Gradio demo, started on a free localhost port and driven through `gradio_client`.

Tiny random model: answers are gibberish, so the tests check plumbing (streaming, thinking apart from
the answer, stats, errors in the chat, the app still answering afterwards), not quality.
"""

from __future__ import annotations

import dataclasses
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

gr = pytest.importorskip("gradio")
gradio_client = pytest.importorskip("gradio_client")

import mm_model  # noqa: E402
from demo import app  # noqa: E402
from demo.media import Limits, check_file, video_plan  # noqa: E402
from video import iter_chunks  # noqa: E402
from vision.preprocess import num_tokens  # noqa: E402

DEFAULTS = {
    "mode": "Instant",
    "budget_kind": "none",
    "budget_tokens": 64,
    "max_new_tokens": 12,
    "temperature": 0.0,
}


def ask(url: str, text: str, files: list[Path] = (), client=None, **controls) -> list:
    """All streamed outputs of one /chat call (a fresh session unless `client` is given).

    The Media controls (fps, max_frames, max_patches) come last; left out, the app's defaults apply."""
    c = client or gradio_client.Client(url, verbose=False)
    message = {"text": text, "files": [gradio_client.handle_file(str(f)) for f in files]}
    values = list({**DEFAULTS, **{k: v for k, v in controls.items() if k in DEFAULTS}}.values())
    if {"fps", "max_frames", "max_patches"} & set(controls):  # max_patches' default is the model's own
        values += [controls.get("fps", 2.0), controls.get("max_frames", 0)]
        values += [controls["max_patches"]] if "max_patches" in controls else []
    job = c.submit(message, *values, api_name="/chat")
    try:
        outputs = list(job)  # every streamed update (job.result() would give only the first)
        if job.exception() is not None:  # iteration ends quietly on a server-side error
            raise job.exception()
    finally:
        if client is None:
            c.close()
    return outputs


def parts(final: list[dict]) -> dict[str, dict]:
    """The final messages of one answer by role in the layout: thinking, answer, stats."""
    out = {}
    for m in final:
        title = (m.get("metadata") or {}).get("title")
        out["thinking" if title == "Thinking" else "stats" if title else "answer"] = m
    return out


def image_tokens(model) -> int:
    """Vision tokens of the example image (`example_image.png`) for `model`'s preprocessing."""
    from PIL import Image

    width, height = Image.open(app.ASSETS / "example_image.png").size
    return num_tokens(height, width, model.config.media)


def test_image_question_streams_answer_and_stats(url, model):
    outputs = ask(url, "What shapes do you see?", [app.ASSETS / "example_image.png"])
    assert len(outputs) >= 3, "the answer should arrive in several streamed updates, not at once"
    final = parts(outputs[-1])
    assert final.keys() == {"answer", "stats"}
    assert final["answer"]["content"] and not final["answer"]["content"].startswith(app.ERROR)
    stats = final["stats"]["metadata"]["title"]
    assert f"vision {image_tokens(model)} " in stats, stats
    assert "thinking 0" in stats and "tok/s" in stats and "first token" in stats


def test_video_question_in_thinking_mode_with_budget(url, model):
    outputs = ask(url, "What happens to the ball?", [app.ASSETS / "example_video.mp4"], mode="Thinking",
                  budget_kind="number", budget_tokens=16, max_new_tokens=24)  # fmt: skip
    final = parts(outputs[-1])
    assert final["thinking"]["metadata"]["status"] == "done"
    assert any((m.get("metadata") or {}).get("status") == "pending" for o in outputs[:-1] for m in o), (
        "the thinking should stream into an open (pending) section first"
    )
    plan = video_plan(app.ASSETS / "example_video.mp4", model.config.media)
    stats = final["stats"]["metadata"]["title"]
    # The preview panel's cost is the cost the model paid.
    assert f"vision {plan.vision_tokens} " in stats, (plan, stats)
    thinking_tokens = int(stats.split("thinking ")[1].split(" ")[0])
    assert 1 <= thinking_tokens <= 16, stats


def test_bad_file_shows_error_and_app_keeps_answering(url, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    client = gradio_client.Client(url, verbose=False)
    try:
        error = ask(url, "What is this?", [broken], client=client)[-1]
        assert len(error) == 1 and error[0]["content"].startswith(app.ERROR), error
        assert (
            "broken.png" in error[0]["content"] and "gradio_cache" not in error[0]["content"]
        )  # no server paths
        # Same session: the failed turn stays on screen but is left out of the model's history.
        again = parts(
            ask(url, "Describe the screenshot.", [app.ASSETS / "example_screenshot.png"], client=client)[-1]
        )
        assert again["answer"]["content"] and not again["answer"]["content"].startswith(app.ERROR)
        assert "vision 0 " not in again["stats"]["metadata"]["title"]
        # A follow-up question without files reuses the screenshot's features from the earlier turn.
        follow = parts(ask(url, "And which button is highlighted?", client=client)[-1])
        assert "media items encoded now: 0" in follow["stats"]["content"], follow["stats"]
    finally:
        client.close()


def test_unsupported_file_and_empty_message(url, tmp_path):
    notes = tmp_path / "notes.pdf"
    notes.write_bytes(b"%PDF-1.4")
    # Gradio itself refuses file types outside the textbox's file_types (a toast in the browser).
    with pytest.raises(Exception, match="Invalid file type"):
        ask(url, "Read this", [notes])
    assert ask(url, "   ")[-1][0]["content"].startswith(app.ERROR + "type a question")
    assert parts(ask(url, "hello")[-1])["answer"]["content"]


def test_two_users_share_one_model_without_cross_talk(url, model):
    """Two sessions at once: the queue runs them one after the other, each gets its own answer."""
    a, b = (gradio_client.Client(url, verbose=False) for _ in range(2))
    try:
        jobs = [
            c.submit({"text": "What is this?", "files": [gradio_client.handle_file(str(app.ASSETS / f))]},
                     *DEFAULTS.values(), api_name="/chat")
            for c, f in ((a, "example_image.png"), (b, "example_video.mp4"))
        ]  # fmt: skip
        finals = [parts(list(j)[-1]) for j in jobs]
    finally:
        a.close(), b.close()
    video_tokens = video_plan(app.ASSETS / "example_video.mp4", model.config.media).vision_tokens
    assert f"vision {image_tokens(model)} " in finals[0]["stats"]["metadata"]["title"]
    assert f"vision {video_tokens} " in finals[1]["stats"]["metadata"]["title"]


def test_stopping_an_answer_stops_generation_and_frees_the_model(url, model, monkeypatch):
    ended = {}
    chat = model.chat

    class Watched:  # the demo's view of a ChatStream, noting how far generation got when it ended
        def __init__(self, stream):
            self.stream, self.pieces = stream, 0

        def __iter__(self):
            try:
                for piece in self.stream:
                    self.pieces += 1
                    yield piece
            finally:
                ended.update(pieces=self.pieces, finished=self.stream.result is not None)
                done.set()

        @property
        def result(self):
            return self.stream.result

    done = threading.Event()
    monkeypatch.setattr(model, "chat", lambda *a, **k: Watched(chat(*a, **k)))
    client = gradio_client.Client(url, verbose=False)
    try:
        controls = {**DEFAULTS, "max_new_tokens": 1500}
        job = client.submit(
            {"text": "Tell me everything.", "files": []}, *controls.values(), api_name="/chat"
        )
        first = next(iter(job))  # generation is running
        assert not first[0]["content"].startswith(app.ERROR), first
        job.cancel()
        assert done.wait(60), "the generation did not end after Stop"
        print(f"generation stopped after {ended['pieces']} streamed pieces")
        assert not ended["finished"] and ended["pieces"] < 1500, ended
    finally:
        client.close()
    assert parts(ask(url, "hello")[-1])["answer"]["content"]  # the model is free: the next user is served


def test_an_empty_answer_is_said_not_shown_as_a_blank_bubble(url, model, monkeypatch):
    chat = model.chat

    class Silent:  # the model closes its turn at once: no answer pieces, an empty result
        def __init__(self, stream):
            self.stream, self.result = stream, None

        def __iter__(self):
            for piece in self.stream:
                if piece.kind == "thinking":
                    yield piece
            self.result = dataclasses.replace(self.stream.result, text="", finish_reason="stop")

    monkeypatch.setattr(model, "chat", lambda *a, **k: Silent(chat(*a, **k)))
    final = parts(ask(url, "hello")[-1])
    assert (
        final["answer"]["content"]
        == app.NOTICE + "the model produced no answer: it ended its turn without one"
    )
    assert "answer " in final["stats"]["metadata"]["title"]
    history = [{"role": "user", "content": ["hello"]}, final["answer"]]
    msgs = app.to_messages(history, {"text": "and now?", "files": []}, Limits())
    assert msgs[1] == {"role": "assistant", "content": ""}  # the model's history: what it really said


def test_files_served_only_from_uploads_and_examples(url, tiny_dir):
    ok = urllib.request.urlopen(f"{url}gradio_api/file={app.ASSETS / 'example_image.png'}")
    assert ok.status == 200
    for path in (tiny_dir / "config.json", Path(app.__file__)):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{url}gradio_api/file={path}")
        assert err.value.code == 403


def test_video_plan_matches_the_chunks_the_model_gets(model):
    path = app.ASSETS / "example_video.mp4"
    plan = video_plan(path, model.config.media)
    chunks = list(iter_chunks(path, fps=model.config.media.sample_fps, cfg=model.config.media))
    assert plan.timestamps == tuple(c.timestamp_text for c in chunks)
    assert (plan.frames_kept, plan.chunks) == (sum(c.num_frames for c in chunks), len(chunks)) == (24, 6)
    assert plan.vision_tokens == sum(c.num_tokens for c in chunks)


def test_limits_have_clear_messages(tmp_path):
    video = app.ASSETS / "example_video.mp4"
    assert check_file(video, Limits()) == "video"
    with pytest.raises(mm_model.InputError, match=r"lasts 12\.0 s; this demo accepts videos up to 1 s"):
        check_file(video, Limits(max_video_seconds=1))
    with pytest.raises(mm_model.InputError, match=r"up to 0\.001 MB"):
        check_file(video, Limits(max_upload_mb=0.001))


def test_long_pasted_text_file_becomes_text(tmp_path):
    pasted = tmp_path / "pasted_text.txt"  # what Gradio makes of a paste over max_plain_text_length
    pasted.write_text("a long log " * 300)
    msgs = app.to_messages([], {"text": "Summarise", "files": [str(pasted)]}, Limits())
    assert msgs[0]["content"] == [
        {"type": "text", "text": "a long log " * 300},
        {"type": "text", "text": "Summarise"},
    ]


def test_history_to_messages_drops_errors_and_display_only_messages():
    shot = str(app.ASSETS / "example_screenshot.png")
    history = [
        {"role": "user", "content": [{"path": shot}, "first?"]},
        {"role": "assistant", "content": "thinking...", "metadata": {"title": "Thinking"}},
        {"role": "user", "content": [{"type": "text", "text": "ignored?"}]},  # grouped into the same turn
        {"role": "assistant", "content": "an answer", "metadata": {}},
        {"role": "assistant", "content": "stats", "metadata": {"title": "prompt 1 · vision 0"}},
        {"role": "user", "content": [{"type": "file", "file": {"path": "/no/such/broken.png"}}]},
        {"role": "assistant", "content": app.ERROR + "broken"},
    ]
    msgs = app.to_messages(history, {"text": "next", "files": []}, Limits())
    assert msgs == [
        {"role": "user", "content": [{"type": "image", "image": shot}, {"type": "text", "text": "first?"}]},
        {"role": "user", "content": [{"type": "text", "text": "ignored?"}]},
        {"role": "assistant", "content": "an answer"},
        {"role": "user", "content": [{"type": "text", "text": "next"}]},
    ]


def test_add_demo_command_flags():
    import argparse

    parser = argparse.ArgumentParser()
    app.add_demo_command(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["demo"])
    assert (args.source, args.host, args.port, args.share) == ("tiny", "127.0.0.1", None, False)
    args = parser.parse_args(["demo", "/ckpt", "--host", "0.0.0.0", "--port", "8000", "--share",
                              "--max-upload-mb", "10", "--max-video-seconds", "30"])  # fmt: skip
    assert (args.source, args.port, args.share, args.max_upload_mb, args.max_video_seconds) == (
        "/ckpt", 8000, True, 10.0, 30.0,
    )  # fmt: skip
    assert args.func is app.run_demo


# ---- the demo over an endpoint (`mm-model demo URL`): our server as the stand-in ---------------------


@pytest.fixture(scope="module")
def endpoint(tiny_dir):
    """`mm-model serve` on its own copy of the tiny random model: the endpoint URL."""
    pytest.importorskip("fastapi")
    pytest.importorskip("openai")
    from mm_model.server import background_server, create_app

    with background_server(create_app(mm_model.load(tiny_dir), model_name="tiny-random")) as base:
        yield base


def demo_fn(demo, name: str):
    """One of the app's event functions by name (`respond`: the chat; `preview`: the side panel), as written
    (Gradio's ChatInterface wraps `respond` in an async generator)."""
    import inspect

    return next(inspect.unwrap(f.fn) for f in demo.fns.values() if getattr(f.fn, "__name__", "") == name)


def final_parts(respond, message: dict, *controls) -> dict[str, dict]:
    """`parts` of the last update of one `respond` call, with gr.ChatMessages as the dicts the client sees."""
    last = list(respond(message, [], *controls))[-1]
    return parts([m if isinstance(m, dict) else dataclasses.asdict(m) for m in last])


def model_info(demo) -> str:
    return next(b.value for b in demo.blocks.values() if getattr(b, "elem_id", None) == "model-info")


ENDPOINT_QUESTIONS = {  # (question, file, controls: mode, budget kind, budget tokens, max new tokens, temperature)
    "image_instant": ("What shapes do you see?", "example_image.png", ("Instant", "none", 64, 12, 0.0)),
    "video_thinking_budget": ("What happens to the ball?", "example_video.mp4", ("Thinking", "number", 16, 24, 0.0)),
}  # fmt: skip


@pytest.mark.parametrize("case", list(ENDPOINT_QUESTIONS))
def test_the_demo_over_an_endpoint_answers_as_over_the_local_model(endpoint, tiny_dir, case):
    question, file, controls = ENDPOINT_QUESTIONS[case]
    local_model = mm_model.load(tiny_dir)
    remote = mm_model.load(endpoint)
    message = {"text": question, "files": [str(app.ASSETS / file)]}
    local = final_parts(demo_fn(app.build_demo(local_model), "respond"), message, *controls)
    got = final_parts(demo_fn(app.build_demo(remote), "respond"), message, *controls)
    assert got.keys() == local.keys() and "answer" in got
    assert got["answer"]["content"] == local["answer"]["content"] and not got["answer"]["content"].startswith(
        app.ERROR
    )
    if "thinking" in local:
        assert got["thinking"]["content"] == local["thinking"]["content"]
    # the same token counts (our server reports vision and thinking tokens); the times differ
    counts = [p["stats"]["metadata"]["title"].split(" tokens ")[0] for p in (got, local)]
    assert counts[0] == counts[1] and "vision " in counts[0], counts
    # and the same as the API's answer for the same messages
    kind = "video" if file.endswith(".mp4") else "image"
    thinking = controls[0] == "Thinking"
    messages = [{"role": "user", "content": [{"type": kind, kind: str(app.ASSETS / file)},
                                             {"type": "text", "text": question}]}]  # fmt: skip
    ref = local_model.chat(messages, max_new_tokens=controls[3], thinking=thinking,
                           budget=controls[2] if thinking else None)  # fmt: skip
    assert got["answer"]["content"] == (ref.text if ref.answered else app.NOTICE + ref.notice)


def test_the_demo_says_which_model_it_talks_to_and_where(endpoint, model, tmp_path):
    remote = mm_model.load(endpoint)
    demo = app.build_demo(remote)
    assert f"Answers come from **model tiny-random at {endpoint}**" in model_info(demo)
    assert "on this machine" in model_info(app.build_demo(model))
    # The side panel: the cost at K2.5's sampling, said to be an estimate (the endpoint samples itself).
    preview = demo_fn(demo, "preview")({"files": [str(app.ASSETS / "example_video.mp4")]})
    plan = video_plan(app.ASSETS / "example_video.mp4")
    assert f"{plan.frames_kept} frames kept" in preview and f"{plan.vision_tokens} vision tokens" in preview
    assert f"model tiny-random at {endpoint} samples the media itself" in preview
    assert "samples the media itself" not in demo_fn(app.build_demo(model), "preview")(
        {"files": [str(app.ASSETS / "example_video.mp4")]}
    )


def test_mm_model_demo_url_loads_the_endpoint(endpoint, monkeypatch, capsys):
    launched = {}
    monkeypatch.setattr(app, "launch", lambda demo, **kw: launched.update(demo=demo, **kw))
    assert app.main([endpoint, "--model", "tiny-random", "--port", "7999"]) == 0
    assert f"answers come from model tiny-random at {endpoint}" in capsys.readouterr().out
    assert launched["port"] == 7999 and launched["demo"].title == "mm-model · tiny-random demo"
    assert f"model tiny-random at {endpoint}" in model_info(launched["demo"])
    assert app.main([endpoint, "--model", "nope"]) == 2
    assert f"the endpoint {endpoint} does not serve model 'nope'" in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "want"), [([], True), (["--compile", "off"], False)])
def test_mm_model_demo_compiles_and_warms_up_before_the_page_opens(tiny_dir, monkeypatch, capsys, argv, want):
    """A local model decodes with the compiled step unless told not to, warmed up before `launch`."""
    events: list[str] = []
    real_load = mm_model.load

    def load(source, **kw):
        events.append(f"load compile={kw['compile']}")
        return real_load(source)

    monkeypatch.delenv("MM_MODEL_COMPILE", raising=False)
    monkeypatch.setattr(mm_model, "load", load)
    monkeypatch.setattr(mm_model.Model, "compiled", property(lambda self: want))
    monkeypatch.setattr(mm_model.Model, "warm_up", lambda self: events.append("warm-up") or 2.0)
    monkeypatch.setattr(app, "launch", lambda demo, **kw: events.append("launch"))
    assert app.main([str(tiny_dir), *argv]) == 0
    assert events == [f"load compile={want}", *(["warm-up"] if want else []), "launch"]
    assert ("decode step ready in 2 s" in capsys.readouterr().out) is want


def test_an_endpoint_gone_down_is_said_in_the_chat_naming_it(tiny_dir):
    from mm_model.remote import RemoteModel
    from mm_model.server import background_server, create_app

    with background_server(create_app(mm_model.load(tiny_dir))) as base:
        remote = RemoteModel(base, max_retries=0)
    respond = demo_fn(app.build_demo(remote), "respond")
    (error,) = list(respond({"text": "hello", "files": []}, [], *DEFAULTS.values()))[-1]
    assert error["content"].startswith(app.ERROR + f"cannot connect to the endpoint {base}"), error


def test_default_mode_is_the_models_own(model):
    """ "Default" leaves thinking to the model: a checkpoint thinks, as the release does; a model whose
    template defaults to instant (the bundled one) answers as in Instant mode."""
    respond = demo_fn(app.build_demo(model), "respond")
    message = {"text": "What shapes do you see?", "files": [str(app.ASSETS / "example_image.png")]}

    def shown(mode: str) -> dict[str, str]:
        got = final_parts(respond, message, mode, "none", 64, 12, 0.0)
        return {k: got[k]["content"] for k in ("thinking", "answer") if k in got}

    assert model.default_thinking
    assert "thinking" in shown("Default") and shown("Default") == shown("Thinking")
    model.default_thinking = False
    try:
        assert "thinking" not in shown("Default") and shown("Default") == shown("Instant")
    finally:
        model.default_thinking = True


# ---- Media controls: fps, max frames, image max patches -------------------------------------------


def vision_of(outputs: list) -> int:
    import re

    return int(re.search(r"vision (\d+) ", parts(outputs[-1])["stats"]["metadata"]["title"]).group(1))


def test_media_controls_reach_model_chat(url, model):
    from dataclasses import replace

    video = [app.ASSETS / "example_video.mp4"]  # 12 s: 24 frames at 2 fps (6 chunks), 12 at 1 fps (3)
    tokens_per_chunk = video_plan(video[0], model.config.media).tokens_per_chunk
    assert vision_of(ask(url, "What happens?", video)) == 6 * tokens_per_chunk
    assert vision_of(ask(url, "What happens?", video, fps=1.0)) == 3 * tokens_per_chunk
    assert vision_of(ask(url, "What happens?", video, max_frames=4)) == tokens_per_chunk
    image = [app.ASSETS / "example_image.png"]
    small = replace(model.config.media, in_patch_limit=16)
    from PIL import Image

    width, height = Image.open(image[0]).size
    assert vision_of(ask(url, "What shapes?", image, max_patches=16)) == num_tokens(height, width, small)
    assert num_tokens(height, width, small) < image_tokens(model)


@pytest.mark.parametrize(
    "controls, message",
    [({"max_frames": -2}, "Value -2 is less than minimum value 0"),
     ({"fps": 0}, "Value 0 is less than minimum value 0.25"),
     ({"max_patches": 2}, "Value 2 is less than minimum value 4")],
    ids=["max_frames", "fps", "max_patches"],
)  # fmt: skip
def test_out_of_range_media_controls_are_refused_and_the_app_keeps_answering(url, controls, message):
    """Gradio checks each control's range before our handler (which checks again: `chat_options`)."""
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match=message):
        ask(url, "What happens?", [app.ASSETS / "example_video.mp4"], **controls)
    assert parts(ask(url, "hello")[-1])["answer"]["content"]


def test_preview_reflects_the_media_controls(model):
    from demo.media import chat_options, describe

    video = str(app.ASSETS / "example_video.mp4")
    cfg, limits = model.config.media, Limits()
    assert "**24 frames kept** in **6 chunks**" in describe([video], cfg, limits)
    assert chat_options(2.0, 0, cfg.in_patch_limit, cfg, 2.0) == {}  # controls at the model's own values
    options = chat_options(1.0, 5, 64, cfg, 2.0)
    assert options == {"fps": 1.0, "num_frames": 5, "max_patches": 64}
    text = describe([video], cfg, limits, options)
    assert "sampled at 1 fps, at most 5 frames: **5 frames kept** in **2 chunks**" in text, text
    with pytest.raises(mm_model.InputError, match="num_frames must be an integer >= 1"):
        chat_options(2.0, -1, None, cfg, 2.0)
