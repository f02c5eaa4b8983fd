"""The typed image config: every file composes and validates, defaults live once, bad keys fail in one line."""

import dataclasses
import json
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from kflow.training import ConfigError
from kflow.training.config import from_dict
from kflow_image.benchmark import variant_config
from kflow_image.config import (
    AutoencoderRunConfig,
    BenchmarkConfig,
    ImageRunConfig,
    SampleRunConfig,
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
        cfg = from_dict(ImageRunConfig, without_hydra(composed("train_image", *overrides)))
        assert cfg.output_dir.startswith("outputs/image/")


@pytest.mark.parametrize(
    "experiment, levels, classes_cfg", [("celebahq256", 1, 1.0), ("church256", 2, 1.0), ("imagenet256", 2, 1.5)]
)
def test_paper_experiments_compose(experiment, levels, classes_cfg):
    cfg = from_dict(
        ImageRunConfig,
        without_hydra(
            composed("train_image", f"experiment={experiment}", "data.root=/data/x", "codec.path=/models/vae")
        ),
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
        from_dict(
            ImageRunConfig, without_hydra(composed("train_image", f"experiment={experiment}", "codec.path=/models/vae"))
        )
    with pytest.raises(ConfigError, match="codec=diffusers needs codec.path"):
        from_dict(
            ImageRunConfig, without_hydra(composed("train_image", f"experiment={experiment}", "data.root=/data/x"))
        )


def test_latent_demo_and_other_scripts_compose():
    cfg = from_dict(ImageRunConfig, without_hydra(composed("train_image", "experiment=mnist_latent")))
    assert cfg.codec.path == "outputs/image/autoencoder-mnist.pt" and cfg.data.pad_to == 32
    auto = from_dict(AutoencoderRunConfig, without_hydra(composed("train_autoencoder")))
    assert auto.output == "outputs/image/autoencoder-mnist.pt" and auto.data.name == "mnist"
    sample = from_dict(
        SampleRunConfig, without_hydra(composed("sample_image", "run_dir=/runs/x", "sample.total_steps=7"))
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
        ({"seed": 3}, "unknown key seed"),
        ({"train": {"resume": True}}, "train.resume is set from the top level: use resume=... instead"),
        ({"transform": {"name": "dct"}}, "unknown transform.name 'dct'"),
        ({"sample": {"method": "leapfrog"}}, "unknown sample.method 'leapfrog'"),
        ({"codec": {"name": "autoencoder"}}, "codec=autoencoder needs codec.path"),
        ({"data": {"reference_fraction": 1.0}}, "data.reference_fraction=1.0"),
        ({"train": {"lr": -1.0}}, "train: lr must be > 0"),
        ({"model": {"preset": "DiT-Z/2"}}, "unknown model.preset 'DiT-Z/2'"),
        ({"output_dir": "???"}, "output_dir is required"),
        ({"transform": {"name": "wavelet", "levels": 1, "num_bands": 3}}, "at most 2 bands"),
    ]
    for extra, message in cases:
        with pytest.raises(ConfigError) as info:
            from_dict(ImageRunConfig, {**base, **extra})
        assert message in str(info.value) and "\n" not in str(info.value), (extra, str(info.value))
    with pytest.raises(ConfigCompositionException, match="transform.foo"):
        composed("train_image", "transform.foo=1")
    with pytest.raises(ConfigError, match="unknown mode 'movie'"):
        from_dict(SampleRunConfig, {"run_dir": "x", "mode": "movie"})


def test_run_level_keys_are_those_of_the_molecular_branch():
    """output_dir / device / resume at the top, the seed in train.seed (kflow_mol.config.AssemblyConfig too)."""
    from kflow_mol.config import AssemblyConfig

    for schema in (ImageRunConfig, AssemblyConfig):
        names = {f.name for f in dataclasses.fields(schema)}
        assert {"output_dir", "device", "resume"} <= names and "seed" not in names
        assert "seed" in {f.name for f in dataclasses.fields(schema().train)}
    cfg = from_dict(ImageRunConfig, {"output_dir": "/tmp/x", "resume": True, "train": {"seed": 4}})
    train = cfg.train_config()
    assert (train.seed, train.resume, train.out_dir, train.steps) == (4, True, "/tmp/x", 2000)


def test_a_run_config_json_of_the_older_layout_still_loads():
    """tests/image/fixtures/run_config_2026-12.json was written by ImageRunConfig.to_dict() before the keys moved."""
    saved = json.loads((Path(__file__).parent / "fixtures" / "run_config_2026-12.json").read_text())
    assert saved["seed"] == 3 and saved["train"]["resume"] is True  # the older layout
    cfg = ImageRunConfig.from_saved(saved)
    assert cfg.train.seed == 3 and cfg.resume is True and cfg.train.steps == 4 and cfg.train.ema_decay == 0.99
    assert (cfg.transform.name, cfg.transform.num_bands, cfg.model.hidden, cfg.sample.total_steps) == (
        "wavelet",
        3,
        32,
        4,
    )
    assert ImageRunConfig.from_saved(cfg.to_dict()) == cfg  # today's layout reads back as written


def test_sample_overrides_are_checked_against_the_sample_group():
    from kflow_image.config import SampleConfig

    listed = composed("sample_image", "run_dir=x")["sample"]  # every key overridable without '+', all null
    assert set(listed) == {f.name for f in dataclasses.fields(SampleConfig)} and set(listed.values()) == {None}
    with pytest.raises(ConfigError, match="unknown key sample.steps"):
        from_dict(SampleRunConfig, {"run_dir": "x", "sample": {"steps": 3}})
    with pytest.raises(ConfigError, match="sample.total_steps must be >= 1"):
        from_dict(SampleRunConfig, {"run_dir": "x", "sample": {"total_steps": 0}})
    with pytest.raises(ConfigError, match="run_dir is required"):
        from_dict(SampleRunConfig, {})
