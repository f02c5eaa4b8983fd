"""kflow_image.sampling_modes: the registry behind scripts/sample_image.py; every mode draws its figure."""

import pytest

from kflow.training import ConfigError
from kflow.training.config import from_dict
from kflow_image.config import SAMPLE_MODES, SampleRunConfig
from kflow_image.experiment import run_experiment
from kflow_image.sampling_modes import SAMPLING_MODES, run_sampling_mode


def tiny_run(folder, transform):
    run_experiment(
        {
            "output_dir": str(folder),
            "transform": transform,
            "model": {"hidden": 32, "depth": 1, "heads": 2},
            "train": {"steps": 2, "batch_size": 16, "progress": False},
            "sample": {"total_steps": 3},
            "eval": {"enabled": False},
            "figures": False,
        }
    )
    return folder


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    return tiny_run(root / "kflow", {"name": "fourier", "num_bands": 3}), tiny_run(
        root / "fm", {"name": "none", "num_bands": 1}
    )


def test_the_registry_has_every_mode_of_the_config():
    assert tuple(SAMPLING_MODES) == SAMPLE_MODES


FIGURES = {
    "grid": "grid.png",
    "noise_split": "noise_split_share_high.png",
    "drop_cond": "drop_cond.png",
    "restore": "restore_super_resolution.png",
    "trajectory": "trajectory.png",
    "edit": "edit.png",
}


@pytest.mark.parametrize("mode", SAMPLE_MODES)
def test_every_mode_writes_its_figure_and_reports_nfe(runs, tmp_path, mode):
    run, fm = runs
    cfg = from_dict(
        SampleRunConfig,
        {
            "run_dir": str(run),
            "mode": mode,
            "out_dir": str(tmp_path),
            "sample": {"total_steps": 3},
            "grid": {"per_class": 1},
            "noise_split": {"rows": 2, "per_row": 2},
            "drop_cond": {"per_class": 1},
            "restore": {"num_images": 2, "fm_run_dir": str(fm)},
            "edit": {"num_samples": 2, "amounts": [0.0, 1.0]},
        },
    )
    info = run_sampling_mode(cfg)
    assert info["mode"] == mode and (tmp_path / FIGURES[mode]).is_file()
    if mode == "restore":
        assert {"kflow", "observation", "fm_projection"} <= set(info)
    else:
        assert info["nfe"] == 3


def test_a_setting_the_run_cannot_take_is_one_config_error(runs, tmp_path):
    cfg = from_dict(
        SampleRunConfig,
        {"run_dir": str(runs[0]), "mode": "restore", "out_dir": str(tmp_path), "restore": {"observed_bands": 5}},
    )
    with pytest.raises(ConfigError, match="num_observed_bands=5"):
        run_sampling_mode(cfg)
