"""kflow_edge.run_folder: the run-folder format of both branches (config.yaml, checkpoints/{last,best}.pt)."""

import json

import pytest

from kflow.training import ConfigError
from kflow_edge import run_folder


def test_config_round_trips_and_older_json_folders_still_read(tmp_path):
    values = {"output_dir": str(tmp_path), "resume": False, "train": {"seed": 3, "lr": 0.001}, "seeds": [0, 1]}
    assert run_folder.write_config(tmp_path, values).name == "config.yaml"
    assert run_folder.read_config(tmp_path) == values
    old = tmp_path / "old"
    old.mkdir()
    (old / "run_config.json").write_text(json.dumps(values))
    assert run_folder.read_config(old) == values


def test_bad_folders_are_refused_in_one_line(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a run folder \\(no config.yaml\\)"):
        run_folder.read_config(tmp_path)
    (tmp_path / "config.yaml").write_text("- a list\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        run_folder.read_config(tmp_path)
    with pytest.raises(ConfigError, match="last.pt: no such checkpoint"):
        run_folder.checkpoint_path(tmp_path)
    with pytest.raises(ConfigError, match="best.pt exists only when the run validated"):
        run_folder.checkpoint_path(tmp_path, "best")
    with pytest.raises(ConfigError, match="choose one of"):
        run_folder.checkpoint_path(tmp_path, "first")
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.pt").write_bytes(b"")
    assert run_folder.checkpoint_path(tmp_path) == tmp_path / "checkpoints" / "last.pt"
