"""The demo app on a free localhost port, shared by the gradio_client and browser tests."""

from __future__ import annotations

import os
import socket

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def model(tiny_dir):
    """The tiny random test model (gibberish answers: the plumbing tests), or DEMO_TEST_MODEL (a bundled
    name or a directory). The example-card tests use the bundled model (`bundled_url`)."""
    import mm_model

    return mm_model.load(os.environ.get("DEMO_TEST_MODEL") or tiny_dir, device="cpu")


@pytest.fixture(scope="session")
def url(model, tmp_path_factory):
    """Gradio's own test pattern: launch(prevent_thread_lock=True), a private GRADIO_TEMP_DIR, close after."""
    pytest.importorskip("gradio")
    from demo import app
    from demo.media import Limits

    mp = pytest.MonkeyPatch()
    mp.setenv("GRADIO_TEMP_DIR", str(tmp_path_factory.mktemp("gradio_cache")))
    mp.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    demo = app.build_demo(model, Limits(max_upload_mb=5, max_video_seconds=60))
    _, local_url, _ = app.launch(demo, port=free_port(), prevent_thread_lock=True, quiet=True)
    assert local_url.startswith("http://127.0.0.1:")
    yield local_url
    demo.close()
    mp.undo()


@pytest.fixture(scope="session")
def bundled_url(tmp_path_factory):
    """The demo on the bundled model (real answers: the example cards' expected ones)."""
    pytest.importorskip("gradio")
    import mm_model
    from demo import app

    mp = pytest.MonkeyPatch()
    mp.setenv("GRADIO_TEMP_DIR", str(tmp_path_factory.mktemp("gradio_cache_bundled")))
    mp.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    demo = app.build_demo(mm_model.load("tiny", device="cpu"), title="mm-model · tiny")
    _, local_url, _ = app.launch(demo, port=free_port(), prevent_thread_lock=True, quiet=True)
    yield local_url
    demo.close()
    mp.undo()


@pytest.fixture(scope="session")
def endpoint_demo(tmp_path_factory):
    """`mm-model demo URL`: the demo over a `RemoteModel` whose endpoint is `mm-model serve` on the bundled
    model (its own copy). Yields (demo URL, endpoint URL)."""
    pytest.importorskip("gradio")
    pytest.importorskip("fastapi")
    pytest.importorskip("openai")
    import mm_model
    from demo import app
    from mm_model.server import background_server, create_app

    mp = pytest.MonkeyPatch()
    mp.setenv("GRADIO_TEMP_DIR", str(tmp_path_factory.mktemp("gradio_cache_endpoint")))
    mp.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    with background_server(create_app(mm_model.load("tiny", device="cpu"))) as endpoint:
        remote = mm_model.load(endpoint)
        demo = app.build_demo(remote, title=f"mm-model · {remote.name}")
        _, local_url, _ = app.launch(demo, port=free_port(), prevent_thread_lock=True, quiet=True)
        yield local_url, endpoint
        demo.close()
    mp.undo()
