"""A transformers DeepseekV3 model -> a GGUF file, through llama.cpp's own `convert_hf_to_gguf.py`.

The converter is not in the llama-cpp-python wheel; it ships in that package's sdist under
`vendor/llama.cpp/` (with the matching `gguf-py`). `find_converter` looks, in order, at an explicit
path, `$LLAMA_CPP_SRC`, and `<venv>/llama_cpp_python-<version>` (where `make peers` unpacks it).

The converter needs a tokenizer beside the weights. Our bench models have none, so
`write_tokenizer` makes a byte-level BPE with exactly the config's vocab size; its tokens never
matter (the benchmark feeds token ids), only that the converter and llama.cpp accept the vocab.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

# The llama-cpp-python release whose vendored converter this was written against.
LLAMA_CPP_PYTHON_VERSION = "0.3.36"
DEFAULT_SRC = Path(sys.prefix) / f"llama_cpp_python-{LLAMA_CPP_PYTHON_VERSION}"  # the sdist's own top dir
OUTTYPES = {"fp32": "f32", "bf16": "bf16"}  # our dtype name -> the converter's --outtype

# Runs inside the converter's subprocess. Our tokenizer's pre-tokenizer is GPT-2's byte-level split,
# but its merges are ours, so the converter's checksum table (`get_vocab_base_pre`) cannot know it;
# answer "gpt-2" for it in this process only (the vendored file on disk stays as shipped).
_RUNNER = """
import runpy, sys
src = sys.argv[1]
sys.path[:0] = [src, src + "/gguf-py"]
import conversion.base
conversion.base.TextModel.get_vocab_base_pre = lambda self, tokenizer: "gpt-2"
sys.argv = [src + "/convert_hf_to_gguf.py", *sys.argv[2:]]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


class PeerUnavailable(RuntimeError):
    """The peer cannot run here; the message says why in one line."""


def find_converter(src: str | os.PathLike[str] | None = None) -> Path:
    """The `vendor/llama.cpp`-style directory holding `convert_hf_to_gguf.py` and `gguf-py`.

    Args:
        src: the unpacked sdist or its `vendor/llama.cpp`; default `$LLAMA_CPP_SRC`, then `DEFAULT_SRC`.
    """
    given = src or os.environ.get("LLAMA_CPP_SRC") or DEFAULT_SRC
    root = Path(given)
    for cand in (root, root / "vendor" / "llama.cpp"):
        if (cand / "convert_hf_to_gguf.py").is_file() and (cand / "gguf-py" / "gguf").is_dir():
            return cand
    origin = "given" if src else ("$LLAMA_CPP_SRC" if os.environ.get("LLAMA_CPP_SRC") else "default")
    raise PeerUnavailable(
        f"llama.cpp's convert_hf_to_gguf.py (with gguf-py) not found under {root} ({origin} path); "
        f"`make peers` unpacks the llama-cpp-python {LLAMA_CPP_PYTHON_VERSION} sdist there, "
        "or point --llama-cpp-src / $LLAMA_CPP_SRC at one"
    )


def byte_level_vocab(vocab_size: int) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """GPT-2's 256 byte symbols, then merges of symbol pairs in a fixed order until `vocab_size`.

    Every id below `vocab_size` is a real token, so the converter writes no padding entries and
    llama.cpp sees a vocab of exactly the model's size (its embedding rows).
    """
    from tokenizers.pre_tokenizers import ByteLevel

    alphabet = sorted(ByteLevel.alphabet())  # 256 printable stand-ins for the bytes
    # At least one merge: llama.cpp refuses a "gpt2" vocab whose GGUF has no tokenizer.ggml.merges.
    if not 257 <= vocab_size <= 256 + 256 * 256:
        raise ValueError(
            f"vocab_size {vocab_size} outside [257, 65792] for a byte-pair vocab llama.cpp loads"
        )
    vocab = {s: i for i, s in enumerate(alphabet)}
    merges = []
    for a in alphabet:
        for b in alphabet:
            if len(vocab) == vocab_size:
                return vocab, merges
            vocab[a + b] = len(vocab)
            merges.append((a, b))
    return vocab, merges


def write_tokenizer(directory: Path, vocab_size: int) -> None:
    """tokenizer.json + tokenizer_config.json that transformers' AutoTokenizer (the converter's
    reader) loads as a fast GPT-2-style byte-level BPE."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    vocab, merges = byte_level_vocab(vocab_size)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.save(str(directory / "tokenizer.json"))
    (directory / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": 1 << 20})
    )


def save_checkpoint(ref: Any, directory: Path) -> Path:
    """`ref` (a transformers DeepseekV3ForCausalLM) saved with a tokenizer the converter accepts."""
    directory.mkdir(parents=True, exist_ok=True)
    ref.save_pretrained(directory)
    write_tokenizer(directory, ref.config.vocab_size)
    return directory


def convert(checkpoint: Path, out: Path, dtype: str, src: str | os.PathLike[str] | None = None) -> Path:
    """Run the converter on `checkpoint` (a `save_checkpoint` directory) into `out` as `dtype`.

    Raises PeerUnavailable with the converter's last error line when it fails.
    """
    if dtype not in OUTTYPES:
        raise ValueError(f"dtype {dtype!r} not one of {sorted(OUTTYPES)}")
    converter = find_converter(src)
    cmd = [sys.executable, "-c", _RUNNER, str(converter), str(checkpoint)]
    cmd += ["--outfile", str(out), "--outtype", OUTTYPES[dtype]]
    env = {**os.environ, "NO_LOCAL_GGUF": "1"}  # the runner put gguf-py on the path already
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0 or not out.is_file():
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        last = lines[-1] if lines else f"exit status {proc.returncode}, no output"
        raise PeerUnavailable(f"convert_hf_to_gguf.py failed on the bench checkpoint: {last}")
    return out


def export(ref: Any, workdir: Path, dtype: str, src: str | os.PathLike[str] | None = None) -> Path:
    """`ref` -> `workdir/model-<dtype>.gguf` (the intermediate checkpoint is deleted afterwards)."""
    import shutil

    find_converter(src)  # fail before writing gigabytes
    try:
        byte_level_vocab(ref.config.vocab_size)
    except ValueError as e:
        raise PeerUnavailable(str(e)) from None
    ckpt = save_checkpoint(ref, workdir / f"hf-{dtype}")
    try:
        return convert(ckpt, workdir / f"model-{dtype}.gguf", dtype, src)
    finally:
        shutil.rmtree(ckpt, ignore_errors=True)
