"""The "Add a molecular system" example of kflow_mol/README.md works as written.

The test runs the README's code block (the system class), registers it with the one line the
README shows, and trains it for 2 steps and samples it through the same path as every system
(``build_flow`` from a config, ``experiment.train``, ``TrainedRun.predictor``).
"""

import re
from pathlib import Path

import pytest
import torch

from kflow_mol.config import AssemblyConfig, parse_method, with_method
from kflow_mol.experiment import build_flow, train, validate
from kflow_mol.systems import SYSTEMS
from kflow_mol.systems.base import AssemblySystem
from kflow_mol.testing import synthetic_batch, synthetic_cluster

README = Path(__file__).resolve().parents[2] / "kflow_mol" / "README.md"
MARKER = "<!-- example: add-a-system"


def readme_blocks() -> list[str]:
    """The python blocks of the README's "Add a molecular system" example: the file, the registry line."""
    text = README.read_text()
    assert MARKER in text, f"{README} lost its add-a-system example"
    return re.findall(r"```python\n(.*?)```", text[text.index(MARKER) :], re.S)[:2]


@pytest.fixture
def registered(monkeypatch):
    """The README's system, registered in SYSTEMS with the README's registry line."""
    file_block, registry_line = readme_blocks()
    namespace: dict = {}
    exec(compile(file_block, "centroid_shift.py", "exec"), namespace)
    entry = eval("{" + registry_line.strip() + "}", namespace)
    for name, builder in entry.items():
        monkeypatch.setitem(SYSTEMS, name, builder)
    return entry


def test_readme_system_registers_trains_two_steps_and_samples(registered, tmp_path):
    assert list(registered) == ["centroid_shift"]
    cfg = AssemblyConfig(system="centroid_shift", K=1, output_dir=str(tmp_path / "run"))
    cfg.train.steps, cfg.train.batch_size, cfg.train.ckpt_every = 2, 2, 1000
    validate(cfg)
    system = build_flow(cfg, translation_scale=2.0)
    assert isinstance(system, AssemblySystem) and (system.head, system.num_bands, system.default_steps) == (
        "rigid",
        1,
        1,
    )
    clusters = [synthetic_cluster(seed, dtype=torch.float32) for seed in range(4)]
    trained = train(cfg, clusters)
    assert trained.result.step == 2 and trained.name == "centroid_shift"
    batch = synthetic_batch(5, 6, dtype=torch.float32)
    prediction = trained.predictor(cfg)(batch)
    assert prediction.nfe == 1 and prediction.pos.shape == batch.pos_start.shape
    assert torch.isfinite(prediction.pos).all() and not torch.equal(prediction.pos, batch.pos_start)
    assert with_method(cfg, "centroid_shift").model.head == "rigid"  # a benchmark method name too
    assert parse_method("centroid_shift").system == "centroid_shift"


def test_a_system_without_its_attributes_is_refused(registered):
    file_block, _ = readme_blocks()
    broken = file_block.replace('head, stochastic, default_steps = "rigid", False, 1', "")
    assert broken != file_block
    namespace: dict = {}
    exec(compile(broken, "centroid_shift.py", "exec"), namespace)
    with pytest.raises(TypeError, match="system CentroidShift must set head"):
        namespace["CentroidShift"](translation_scale=1.0)
