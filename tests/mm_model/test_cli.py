"""The `mm-model` command line, run in-process."""

from __future__ import annotations

import pytest
import torch

from mm_model.checkpoint import load_model
from mm_model.cli import example_screenshot, main


def test_info_reports_parameters_and_token_costs(tiny_dir, sample_video, capsys):
    assert (
        main(["info", str(tiny_dir), "--image", str(example_screenshot()), "--video", str(sample_video)]) == 0
    )
    out = capsys.readouterr().out
    assert "active per token" in out
    assert "960x600 -> 770 LM tokens" in out  # 616x980 padded -> 44x70 patches -> 22*35
    assert "5 sampled frames in 2 chunks" in out


def test_info_k25_preset(capsys):
    assert main(["info", "k25"]) == 0
    out = capsys.readouterr().out
    assert "471,143,920" in out and "384 experts top-8" in out


def test_chat_streams_and_reports_usage(tiny_dir, capsys):
    code = main(["chat", "what is in the picture?", str(tiny_dir), "--image", str(example_screenshot()),
                 "--max-new-tokens", "5", "--thinking"])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0
    assert "prompt tokens (770 vision)" in captured.err


def test_bad_input_is_a_message_not_a_traceback(tiny_dir, capsys):
    assert main(["chat", "hi", str(tiny_dir), "--image", "/no/such.png"]) == 2
    assert "such.png" in capsys.readouterr().err
    assert main(["chat", "hi", str(tiny_dir), "--budget", "lots"]) == 2


@pytest.mark.parity
def test_convert_to_transformers_and_back(tiny_dir, tmp_path):
    pytest.importorskip("transformers")
    hf_dir, back_dir = tmp_path / "hf", tmp_path / "back"
    assert main(["convert", str(tiny_dir), str(hf_dir), "--to", "transformers"]) == 0
    assert main(["convert", str(hf_dir), str(back_dir)]) == 0
    a, b = load_model(tiny_dir), load_model(back_dir)
    ids = torch.tensor([[3, 4, 5, 6]])
    with torch.no_grad():
        assert torch.equal(a(ids), b(ids))
    assert (back_dir / "tokenizer.json").exists()


@pytest.mark.parametrize("argv", [["serve", "--help"], ["bench", "video", "--help"], ["--help"]])
def test_every_command_has_help(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "usage: mm-model" in out
    if argv == ["--help"]:
        assert all(name in out for name in ("serve", "demo", "bench", "chat", "info", "convert"))


def test_chat_says_when_the_model_gave_no_answer(tiny_dir, capsys):
    code = main(["chat", "hello", str(tiny_dir), "--max-new-tokens", "1", "--thinking"])
    out = capsys.readouterr().out
    assert code == 0
    assert out.rstrip().endswith("(the model produced no answer: max_new_tokens ran out while thinking)"), out


@pytest.fixture(scope="module")
def served(tiny_dir):
    """`mm-model serve` on the tiny random model, on a free loopback port: the endpoint URL."""
    pytest.importorskip("fastapi")
    pytest.importorskip("openai")
    import mm_model
    from mm_model.server import background_server, create_app

    with background_server(create_app(mm_model.load(tiny_dir), model_name="tiny-random")) as url:
        yield url


@pytest.mark.parametrize("flags", [[], ["--thinking", "--budget", "2"]], ids=["instant", "thinking_budget"])
def test_chat_against_an_endpoint_prints_the_local_answer(tiny_dir, served, sample_video, capsys, flags):
    def chat(source: str, *more: str) -> tuple[str, str]:
        code = main(["chat", "what is in the picture?", source, "--image", str(example_screenshot()), "--video",
                     str(sample_video), "--max-new-tokens", "6", *flags, *more])  # fmt: skip
        assert code == 0
        captured = capsys.readouterr()
        return captured.out, captured.err

    (local, local_stats), (remote, remote_stats) = chat(str(tiny_dir)), chat(served, "--model", "tiny-random")
    assert remote == local and local.strip()
    # the same counts (the server reports vision and thinking tokens too); times differ
    assert remote_stats.split(";")[0] == local_stats.split(";")[0] and "vision)" in remote_stats


@pytest.mark.parametrize(
    "usage, timings, line",
    [({"prompt_tokens": 9, "vision_tokens": 4, "thinking_tokens": 1, "answer_tokens": 2, "completion_tokens": 3},
      {"time_to_first_token_s": 0.5, "tokens_per_s": 10.0},
      "9 prompt tokens (4 vision), 1 thinking, 2 answer; first token 0.50 s, 10.0 tokens/s"),
     ({"prompt_tokens": 9, "completion_tokens": 3}, {"total_s": 1.0}, "9 prompt tokens, 3 completion tokens"),
     ({}, {}, "no usage reported")],
    ids=["ours", "vllm_without_reasoning_counts", "nothing"],
)  # fmt: skip
def test_usage_line_says_what_is_known(usage, timings, line):
    from mm_model.cli import usage_line

    assert usage_line(usage, timings) == line


def test_chat_with_a_bad_endpoint_is_a_message_naming_it(tiny_dir, served, capsys):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    assert main(["chat", "hi", closed]) == 2
    assert f"mm-model: cannot connect to the endpoint {closed}" in capsys.readouterr().err
    assert main(["chat", "hi", served, "--model", "nope"]) == 2
    assert f"the endpoint {served} does not serve model 'nope'" in capsys.readouterr().err
    assert main(["chat", "hi", str(tiny_dir), "--model", "tiny-random"]) == 2
    assert "--model and --api-key are for an endpoint URL" in capsys.readouterr().err


@pytest.mark.parametrize(("flag", "thinks"), [([], True), (["--thinking"], True), (["--no-thinking"], False)])
def test_chat_thinks_by_default_as_the_release_does(tiny_dir, capsys, flag, thinks):
    """A checkpoint's template opens a thinking block unless told not to; --no-thinking turns it off."""
    assert main(["chat", "hello", str(tiny_dir), "--max-new-tokens", "3", *flag]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("[thinking] ") == thinks
    assert ("0 thinking" in err) != thinks


def _vision(err: str) -> int:
    import re

    return int(re.search(r"prompt tokens \((\d+) vision\)", err).group(1))


def test_chat_media_flags(tiny_dir, sample_video, images, tmp_path, capsys):
    def vision(*argv: str) -> int:
        assert main(["chat", "what happens?", str(tiny_dir), "--max-new-tokens", "1", *argv]) == 0
        return _vision(capsys.readouterr().err)

    video = ("--video", str(sample_video))  # 25 frames at 10 fps: 2 fps keeps 5 (2 chunks), 1 fps 2
    assert vision(*video, "--fps", "1") == 6 < vision(*video) == 12 == vision(*video, "--fps", "2")
    assert vision(*video, "--num-frames", "4") == 6
    images[0].save(tmp_path / "shot.png")
    image = ("--image", str(tmp_path / "shot.png"))
    assert vision(*image, "--max-patches", "4") == 2 < vision(*image) == 6


@pytest.mark.parametrize(
    "argv, message",
    [(["--fps", "-1"], "--fps must be a number > 0 and <= 60, got -1.0"),
     (["--fps", "nan"], "--fps must be a number > 0 and <= 60, got nan"),
     (["--num-frames", "0"], "--num-frames must be an integer >= 1 and <= 16384, got 0"),
     (["--max-patches", "3"], "--max-patches must be an integer >= 4 and <= 16384, got 3")],
)  # fmt: skip
def test_bad_media_flags_are_a_message(tiny_dir, sample_video, argv, message, capsys):
    assert main(["chat", "hi", str(tiny_dir), "--video", str(sample_video), *argv]) == 2
    assert message in capsys.readouterr().err


def test_chat_with_tools_prints_the_calls(tiny_dir, tmp_path, capsys, monkeypatch):
    import json

    import mm_model
    from tests.mm_model.test_tools import CALL, TOOLS, script

    tools = tmp_path / "tools.json"
    tools.write_text(json.dumps(TOOLS))
    seen = script(
        monkeypatch, mm_model.load(tiny_dir).tokenizer, lambda prompt: "Checking." + CALL + "<|im_end|>"
    )
    assert main(["chat", "Weather in Paris?", str(tiny_dir), "--tools", str(tools), "--no-thinking"]) == 0
    out = capsys.readouterr().out
    assert "tool_declare" in seen[0]
    assert out.startswith("Checking.\n[tool call] ")
    call = json.loads(out.split("[tool call] ", 1)[1])
    assert call["function"] == {"name": "get_weather", "arguments": '{"city": "Paris"}'}
    tools.write_text("[{")
    assert main(["chat", "hi", str(tiny_dir), "--tools", str(tools)]) == 2
    assert "--tools" in capsys.readouterr().err
