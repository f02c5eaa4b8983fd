"""Every system's numbers stay what they were when the systems moved onto the core sampler.

``fixtures/systems_golden.json`` holds, for fixed seeds on a tiny float64 cluster set, each
system's loss (with a generator and with Trainer draws) and its sampled positions, NFE and
trajectory ``k``s, recorded with the systems' own integrators (CrystalFlow's Euler / Heun /
RK4 loop, AssembleFlow's band-by-band end-pose Euler loop) before they were replaced by
:class:`kflow.sampling.KFlowSampler` and :meth:`kflow.path.KAmplitudePath.project_to_band`.
The test recomputes them with today's code.

Regenerate (only when a change of numbers is intended):
``OMP_NUM_THREADS=1 .venv/bin/python tests/mol/test_systems_numerics.py``.
"""

import functools
import json
from pathlib import Path

import pytest
import torch

from kflow.training import StepDraws
from kflow_mol.models import build_model
from kflow_mol.testing import synthetic_batch

GOLDEN = Path(__file__).resolve().parent / "fixtures" / "systems_golden.json"

CASES = {
    # name: (registry name, K, constructor options, sample options)
    "gnn_md": ("gnn_md", 1, {}, {}),
    "crystalsde_ve_em": ("crystalsde_ve", 1, {}, {"steps_per_band": 3}),
    "crystalsde_vp_pc": ("crystalsde_vp", 1, {}, {"steps_per_band": 3, "method": "pc"}),
    "crystalflow_ve_euler": ("crystalflow_ve", 1, {}, {"steps_per_band": 3, "method": "euler"}),
    "crystalflow_ve_heun": ("crystalflow_ve", 1, {}, {"steps_per_band": [3], "method": "heun"}),
    "crystalflow_vp_rk4": ("crystalflow_vp", 1, {}, {"steps_per_band": 3, "method": "rk4"}),
    "crystalflow_vp_heun": ("crystalflow_vp", 1, {}, {"steps_per_band": 2, "method": "heun"}),
    "crystalflow_lerp": ("crystalflow_lerp", 1, {}, {"steps_per_band": 3}),
    "assembleflow": ("assembleflow", 1, {}, {"steps_per_band": 4}),
    "kflow_assembleflow_K2": ("kflow_assembleflow", 2, {}, {"steps_per_band": [3, 2]}),
    "kflow_assembleflow_K3_rev_smooth": (
        "kflow_assembleflow",
        3,
        {"reverse": True, "bump": "smoothstep"},
        {"steps_per_band": [2, 3, 1]},
    ),
    "kflow_K2": ("kflow", 2, {}, {"steps_per_band": [2, 3]}),
    "kflow_K3_endpose": ("kflow", 3, {"parametrization": "endpose"}, {"steps_per_band": 2}),
}


def build(name: str):
    """The system of case ``name`` (translation scale 2 Å)."""
    from kflow_mol.systems import build_system

    system, bands, options, _ = CASES[name]
    return build_system(system, translation_scale=2.0, K=bands, **options)


@functools.cache
def network(head: str):
    """The float64 network of a head, built once from seed 0 (losses and sampling leave its weights as they are)."""
    torch.manual_seed(0)
    return build_model("S", head=head).double().eval()


def compute(name: str) -> dict:
    """Losses, sampled positions, NFE and ``k``s of case ``name`` on two float64 clusters."""
    torch.set_num_threads(1)
    batch = synthetic_batch(0, 1, num_mols=4, atoms_per_mol=3)
    system = build(name)
    model = network(system.head)
    loss, _ = system.loss(model, batch, generator=torch.Generator().manual_seed(0))
    loss_draws, _ = system.loss(model, batch, draws=StepDraws(seed=0, step=1))
    out = system.sample(
        model, batch, return_trajectory=True, generator=torch.Generator().manual_seed(0), **CASES[name][3]
    )
    return {
        "loss": float(loss.detach()),
        "loss_draws": float(loss_draws.detach()),
        "pos": out.pos.tolist(),
        "nfe": out.nfe,
        "ks": [float(k) for k in out.ks],
        "trajectory_mid": out.trajectory[len(out.trajectory) // 2].tolist(),
    }


@pytest.mark.parametrize("name", list(CASES))
def test_system_numbers_are_unchanged(name):
    expected = json.loads(GOLDEN.read_text())[name]
    got = compute(name)
    assert got["nfe"] == expected["nfe"]
    assert got["ks"] == pytest.approx(expected["ks"], abs=1e-12)
    assert got["loss"] == pytest.approx(expected["loss"], rel=1e-9, abs=1e-12)
    assert got["loss_draws"] == pytest.approx(expected["loss_draws"], rel=1e-9, abs=1e-12)
    for key in ("pos", "trajectory_mid"):
        torch.testing.assert_close(
            torch.tensor(got[key], dtype=torch.float64),
            torch.tensor(expected[key], dtype=torch.float64),
            atol=1e-9,
            rtol=0,
        )


if __name__ == "__main__":
    GOLDEN.write_text(json.dumps({name: compute(name) for name in CASES}, indent=1) + "\n")
    print(f"wrote {GOLDEN}")
