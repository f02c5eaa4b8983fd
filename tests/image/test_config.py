"""The typed image config: every file composes and validates, defaults live once, bad keys fail in one line."""

import dataclasses
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from kflow.training import ConfigError
from kflow_image.benchmark import variant_config
from kflow_image.config import (
    AutoencoderRunConfig,
    BenchmarkConfig,
    ImageRunConfig,
    SampleRunConfig,
    from_dict,
    register_hydra_schemas,
)

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "image"
register_hydra_schemas(ConfigStore.instance())


def composed(name: str, *overrides: str) -> dict:
    with initialize_config_dir(str(CONFIGS), version_base="1.3"):
        cfg = compose(name, overrides=list(overrides))
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)


def without_hydra(cfg: dict) -> dict:
    return {k: v for k, v in cfg.items() if k != "hydra"}


@pytest.mark.parametrize("group", ["data", "transform", "model", "codec"])
def test_every_group_file_composes_and_validates(group):
    for path in sorted((CONFIGS / group).glob("*.yaml")):
        overrides = [f"{group}={path.stem}", "data.root=/data/x", "codec.path=/models/vae"]
        cfg = ImageRunConfig.from_dict(without_hydra(composed("train_image", *overrides)))
        assert cfg.output_dir.startswith("outputs/image/")


@pytest.mark.parametrize(
    "experiment, levels, classes_cfg", [("celebahq256", 1, 1.0), ("church256", 2, 1.0), ("imagenet256", 2, 1.5)]
)
def test_paper_experiments_compose(experiment, levels, classes_cfg):
    cfg = ImageRunConfig.from_dict(
        without_hydra(
            composed("train_image", f"experiment={experiment}", "data.root=/data/x", "codec.path=/models/vae")
        )
    )
    assert (cfg.model.preset, cfg.codec.name, cfg.transform.name, cfg.transform.wavelet) == (
        "DiT-L/2",
        "diffusers",
        "wavelet",
        "db6",
    )
    assert cfg.transform.levels == levels and cfg.sample.cfg_scale == classes_cfg
    assert cfg.data.reference_fraction == 0.0 and cfg.data.size == 256 and cfg.sample.num_samples == 50000
    with pytest.raises(ConfigError, match="data=folder needs data.root"):  # required, refused before work
        ImageRunConfig.from_dict(
            without_hydra(composed("train_image", f"experiment={experiment}", "codec.path=/models/vae"))
        )
    with pytest.raises(ConfigError, match="codec=diffusers needs codec.path"):
        ImageRunConfig.from_dict(
            without_hydra(composed("train_image", f"experiment={experiment}", "data.root=/data/x"))
        )


def test_latent_demo_and_other_scripts_compose():
    cfg = ImageRunConfig.from_dict(without_hydra(composed("train_image", "experiment=mnist_latent")))
    assert cfg.codec.path == "outputs/image/autoencoder-mnist.pt" and cfg.data.pad_to == 32
    auto = AutoencoderRunConfig.from_dict(without_hydra(composed("train_autoencoder")))
    assert auto.output == "outputs/image/autoencoder-mnist.pt" and auto.data.name == "mnist"
    sample = SampleRunConfig.from_dict(
        without_hydra(composed("sample_image", "run_dir=/runs/x", "sample.total_steps=7"))
    )
    merged = sample.sample_config(cfg.sample)
    assert merged.total_steps == 7 and merged.method == cfg.sample.method
    for variants in ("pixel", "latent"):
        bench = from_dict(BenchmarkConfig, without_hydra(composed("benchmark_image", f"variants={variants}")))
        runs = [variant_config(bench, v, 0) for v in bench.variants]
        assert "fm" in bench.variants and all(r.transform.name for r in runs)


def test_group_files_only_choose():
    """A group file states what it chooses; it never restates a schema default (one source per default)."""
    defaults = dataclasses.asdict(ImageRunConfig())
    for group in ("data", "transform", "model", "codec"):
        for path in (CONFIGS / group).glob("*.yaml"):
            values = yaml.safe_load(path.read_text()) or {}
            for key, value in values.items():
                if key in ("name", "preset", "defaults"):
                    continue
                assert value != defaults[group][key], f"{path.name}: {group}.{key}={value!r} restates the default"


def test_unknown_keys_and_bad_values_fail_in_one_line():
    base = {"output_dir": "/tmp/x"}
    cases = [
        ({"transform": {"foo": 1}}, "unknown key transform.foo"),
        ({"train": {"steps": "many"}}, "train.steps='many': expected int"),
        ({"train": {"seed": 3}}, "unknown key train.seed"),
        ({"transform": {"name": "dct"}}, "transform.name='dct'"),
        ({"sample": {"method": "leapfrog"}}, "sample.method='leapfrog'"),
        ({"codec": {"name": "autoencoder"}}, "codec=autoencoder needs codec.path"),
        ({"data": {"reference_fraction": 1.0}}, "data.reference_fraction=1.0"),
        ({"train": {"lr": -1.0}}, "train.lr must be > 0"),
        ({"model": {"preset": "DiT-Z/2"}}, "model.preset='DiT-Z/2'"),
        ({"transform": {"name": "wavelet", "levels": 1, "num_bands": 3}}, "at most 2 bands"),
    ]
    for extra, message in cases:
        with pytest.raises(ConfigError) as info:
            ImageRunConfig.from_dict({**base, **extra})
        assert message in str(info.value) and "\n" not in str(info.value), (extra, str(info.value))
    with pytest.raises(ConfigCompositionException, match="transform.foo"):
        composed("train_image", "transform.foo=1")
    with pytest.raises(ConfigError, match="mode='movie'"):
        SampleRunConfig.from_dict({"run_dir": "x", "mode": "movie"})
