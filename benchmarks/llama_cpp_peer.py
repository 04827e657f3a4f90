"""llama.cpp (through llama-cpp-python) as a peer in the LM benchmark: the reference's weights
converted to GGUF (`benchmarks.gguf_export`), then prefill and greedy decode timed the way
`benchmarks.lm_speed` times ours, on the same token ids and thread count.

`LlamaPeer.build` raises `PeerUnavailable` with a one-line reason (not installed, converter not
found, conversion failed, load failed); `lm_speed` prints that reason instead of the peer's numbers.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from benchmarks.gguf_export import PeerUnavailable, export, find_converter

# llama.cpp's own default logical batch: prefill runs in chunks of this many tokens.
N_BATCH = 512

__all__ = ["LlamaPeer", "PeerRun", "PeerUnavailable", "agreeing_prefix", "build_or_why", "unavailable_reason"]


def _import_llama_cpp() -> Any:
    """The llama_cpp module, or PeerUnavailable saying why it will not import."""
    try:
        import llama_cpp
    except ImportError as e:  # not installed; a broken shared library also lands here (OSError below)
        raise PeerUnavailable(
            f"llama-cpp-python is not installed ({e}); `make peers` builds it, or pip install '.[peers]'"
        ) from None
    except OSError as e:
        raise PeerUnavailable(f"llama-cpp-python is installed but its library fails to load: {e}") from None
    return llama_cpp


def unavailable_reason(src: str | os.PathLike[str] | None = None) -> str | None:
    """Why the peer cannot run here (one line), or None when llama_cpp imports and the converter is found."""
    try:
        _import_llama_cpp()
        find_converter(src)
    except PeerUnavailable as e:
        return str(e)
    return None


def agreeing_prefix(a: list[int], b: list[int]) -> int:
    """How many leading tokens two greedy sequences share."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


class PeerRun(NamedTuple):
    """One greedy generation in llama.cpp, as lm_speed's `Run`: seconds and the new token ids."""

    prefill_s: float
    decode_s: float
    tokens: list[int]  # steps + 1


class LlamaPeer:
    """One GGUF model loaded in llama.cpp, timed like `lm_speed`'s `prefill_ours` / `decode_ours`.

    Batch 1 only: llama-cpp-python's `Llama` holds one sequence.
    """

    def __init__(self, llm: Any, llama_cpp: Any, gguf: Path, convert_s: float) -> None:
        self.llm, self._lib, self.gguf, self.convert_s = llm, llama_cpp, gguf, convert_s
        self._tmp: tempfile.TemporaryDirectory | None = None  # owned by build_in_tempdir's peers

    @classmethod
    def build(
        cls,
        ref: Any,
        dtype: str,
        threads: int,
        n_ctx: int,
        workdir: Path,
        src: str | os.PathLike | None = None,
    ) -> LlamaPeer:
        """Convert `ref` (transformers DeepseekV3ForCausalLM) to `dtype` GGUF under `workdir` and load it.

        Args:
            dtype: "fp32" or "bf16" (the GGUF's weight type, as our rows' dtype).
            n_ctx: the longest sequence to be evaluated (prompt + decode steps, or a prefill length).
        """
        llama_cpp = _import_llama_cpp()
        t = time.perf_counter()
        path = export(ref, workdir, dtype, src)
        convert_s = time.perf_counter() - t
        try:
            llm = llama_cpp.Llama(
                model_path=str(path), n_ctx=n_ctx, n_batch=N_BATCH, n_threads=threads, n_threads_batch=threads,
                logits_all=False, verbose=False, seed=0,
            )  # fmt: skip
        except Exception as e:  # llama.cpp reports a failed load as a bare ValueError
            raise PeerUnavailable(f"llama.cpp could not load the converted {path.name}: {e}") from None
        return cls(llm, llama_cpp, path, convert_s)

    @classmethod
    def build_in_tempdir(cls, ref: Any, dtype: str, threads: int, n_ctx: int, src: Any = None) -> LlamaPeer:
        """`build` into a fresh temporary directory, removed with the peer (`close`)."""
        tmp = tempfile.TemporaryDirectory(prefix="lm_speed_gguf_")
        try:
            peer = cls.build(ref, dtype, threads, n_ctx, Path(tmp.name), src)
        except BaseException:
            tmp.cleanup()
            raise
        peer._tmp = tmp
        return peer

    def settings(self) -> dict[str, Any]:
        """What the timings ran with (flash attention off: llama-cpp-python's default)."""
        return {"llama_cpp_python": self._lib.__version__, "gguf": self.gguf.name, "n_batch": N_BATCH,
                "threads": self.llm.n_threads, "flash_attn": False, "logits_all": False}  # fmt: skip

    def close(self) -> None:
        self.llm.close()
        if self._tmp is not None:
            self._tmp.cleanup()

    def _argmax_last(self) -> int:
        # With logits_all=False, Llama.eval keeps no logits of its own (0.3.x); read the context's
        # last-token row in place: one (vocab,) float32 view and its argmax, as ours does per step.
        ptr = self._lib.llama_get_logits_ith(self.llm.ctx, -1)
        return int(np.ctypeslib.as_array(ptr, shape=(self.llm.n_vocab(),)).argmax())

    def prefill(self, ids: list[int]) -> int:
        """Evaluate `ids` from an empty cache (in llama.cpp's default 512-token batches); the next token."""
        self.llm.reset()
        self.llm.eval(ids)
        return self._argmax_last()

    def decode(self, ids: list[int], steps: int) -> PeerRun:
        """Prefill `ids`, then `steps` greedy steps (timed apart from the prefill)."""
        t = time.perf_counter()
        token = self.prefill(ids)
        t_prefill = time.perf_counter() - t
        tokens = [token]
        t = time.perf_counter()
        for _ in range(steps):
            self.llm.eval([token])
            token = self._argmax_last()
            tokens.append(token)
        return PeerRun(t_prefill, time.perf_counter() - t, tokens)


# ---- lm_speed's peer bookkeeping: its JSON "llama_cpp" entry (`info`), row columns, summary line ----
def build_or_why(
    ref: Any, dtype: str, threads: int, n_ctx: int, src: Any, info: dict[str, Any]
) -> LlamaPeer | None:
    """A peer on `ref`'s weights as `dtype` GGUF, or None with the reason in info["why"].

    `info` starts as {"ran": False, "why": unavailable_reason() or None, "convert_s": {}, ...}; a
    reason found before any peer ran stops later dtypes from trying again.
    """
    if info["why"] is not None and not info["ran"]:
        return None
    try:
        peer = LlamaPeer.build_in_tempdir(ref, dtype, threads, n_ctx, src)
    except PeerUnavailable as e:
        info["why"] = f"{dtype}: {e}" if info["ran"] else str(e)
        return None
    info["ran"], info["convert_s"][dtype] = True, round(peer.convert_s, 1)
    info.setdefault("settings", peer.settings())
    return peer


def close_all(peers: dict[str, LlamaPeer | None]) -> None:
    for p in peers.values():
        if p is not None:
            p.close()
    peers.clear()


def row_columns(ours_tps: float, peer_tps: float | None) -> dict[str, Any]:
    """The peer's entries in one lm_speed row."""
    if peer_tps is None:
        return {"llama_cpp_tok_s": None}
    return {"llama_cpp_tok_s": round(peer_tps, 1), "ours_over_llama_cpp": round(ours_tps / peer_tps, 2)}


def summary_line(info: dict[str, Any]) -> str:
    """One line under lm_speed's table: why the peer did not run, or what it ran with."""
    if not info["ran"]:
        return f"llama.cpp peer not run: {info['why']}"
    agree = ", ".join(f"{k} {v}" for k, v in info["greedy_leading_tokens_agree"].items()) or "-"
    settings = ", ".join(f"{k} {v}" for k, v in info["settings"].items())
    tail = f"; {info['why']}" if info["why"] else ""
    return (f"llama.cpp peer ({settings}): batch 1 only (rows with batch > 1 not run for it); GGUF "
            f"conversion seconds {info['convert_s']}; greedy leading tokens agreeing with ours: {agree}{tail}")  # fmt: skip
