"""One JSON reader for a model directory's files: each caller's error type, naming the file."""

from __future__ import annotations

import pytest

import mm_model
from mm_model.config import ModelConfig
from mm_model.jsonfile import read_json
from mm_model.lm.config import ConfigError
from mm_model.lm.loading import CheckpointError, read_config


def test_reads_valid_json_and_names_missing_or_broken_files(tmp_path):
    good = tmp_path / "good.json"
    good.write_text('{"a": [1, 2]}')
    assert read_json(good) == {"a": [1, 2]}
    with pytest.raises(mm_model.InputError, match="no missing.json in"):
        read_json(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text('{"a": ')
    with pytest.raises(ConfigError, match="broken.json.*not valid JSON"):
        read_json(broken, ConfigError)
    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(mm_model.InputError, match="binary.json"):
        read_json(binary)


@pytest.mark.parametrize("name", ["config.json", "preprocessor_config.json"])
def test_model_and_lm_configs_report_a_truncated_file_as_their_input_error(tmp_path, name):
    (tmp_path / "config.json").write_text('{"text_config": {}}')
    (tmp_path / name).write_text('{"media_proc_cfg": {"patch_size": 14')  # truncated
    with pytest.raises(ConfigError, match=name):
        ModelConfig.from_dir(tmp_path)
    if name == "config.json":
        with pytest.raises(CheckpointError, match=name):
            read_config(tmp_path)
