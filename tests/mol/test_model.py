"""Equivariance and shape tests of the assembly velocity network."""

import pytest
import torch

from kflow.testing import assert_equivariant, random_rotation
from kflow_mol.models import PRESETS, build_model


def random_clusters(num_clusters=2, num_mols=5, atoms_per_mol=4, dtype=torch.float64, seed=0):
    """Random rigid molecules (a synthetic stand-in: shapes only, no chemistry)."""
    g = torch.Generator().manual_seed(seed)
    atoms = num_clusters * num_mols * atoms_per_mol
    mol_index = torch.arange(num_clusters * num_mols).repeat_interleave(atoms_per_mol)
    mol_batch = torch.arange(num_clusters).repeat_interleave(num_mols)
    atom_batch = mol_batch[mol_index]
    pos = (
        torch.randn(atoms, 3, generator=g, dtype=dtype) * 1.2
        + 4 * torch.randn(num_clusters * num_mols, 3, generator=g, dtype=dtype)[mol_index]
    )
    z = torch.randint(1, 9, (atoms,), generator=g)
    s = torch.rand(num_clusters, generator=g, dtype=dtype)
    return dict(z=z, pos=pos, mol_index=mol_index, atom_batch=atom_batch, mol_batch=mol_batch, s=s)


@pytest.mark.parametrize("head", ["rigid", "atom"])
@pytest.mark.parametrize("edge_mode", ["knn", "radius"])
def test_rotation_translation_equivariance(head, edge_mode):
    torch.manual_seed(0)
    model = build_model("S", head=head, edge_mode=edge_mode, atom_layers=1).double().eval()
    inputs = random_clusters()
    rot = random_rotation(generator=torch.Generator().manual_seed(1))
    shift = torch.tensor([3.0, -1.5, 7.0], dtype=torch.float64)

    def velocities(pos):
        out = model(**dict(inputs, pos=pos))
        return (out.translation, out.rotation) if head == "rigid" else (out.atom,)

    assert all(v.abs().max() > 1e-6 for v in velocities(inputs["pos"]))
    assert_equivariant(
        velocities,
        inputs["pos"],
        rotate_in=lambda pos: pos @ rot.T + shift,
        rotate_out=lambda vs: tuple(v @ rot.T for v in vs),
        atol=1e-5,
        rtol=0,
    )


def test_molecule_permutation_equivariance():
    torch.manual_seed(0)
    model = build_model("S", atom_layers=1).double().eval()
    inputs = random_clusters(num_clusters=1, num_mols=6, atoms_per_mol=3)
    perm = torch.tensor([3, 0, 5, 1, 4, 2])  # new molecule i = old molecule perm[i]
    inv = torch.argsort(perm)
    atom_order = torch.cat([torch.nonzero(inputs["mol_index"] == m).flatten() for m in perm])
    permuted = dict(
        inputs, z=inputs["z"][atom_order], pos=inputs["pos"][atom_order], mol_index=inv[inputs["mol_index"][atom_order]]
    )
    out, out_perm = model(**inputs), model(**permuted)
    torch.testing.assert_close(out_perm.translation, out.translation[perm], atol=1e-8, rtol=0)
    torch.testing.assert_close(out_perm.rotation, out.rotation[perm], atol=1e-8, rtol=0)


def test_clusters_in_a_batch_are_independent():
    model = build_model("S", atom_layers=1).double().eval()
    both = random_clusters(num_clusters=2, num_mols=4, atoms_per_mol=3)
    first = {key: value for key, value in random_clusters(num_clusters=2, num_mols=4, atoms_per_mol=3).items()}
    atoms = both["atom_batch"] == 0
    mols = both["mol_batch"] == 0
    single = dict(
        z=first["z"][atoms],
        pos=first["pos"][atoms],
        mol_index=first["mol_index"][atoms],
        atom_batch=first["atom_batch"][atoms],
        mol_batch=first["mol_batch"][mols],
        s=first["s"][:1],
    )
    torch.testing.assert_close(model(**single).translation, model(**both).translation[mols], atol=1e-10, rtol=0)


def test_presets_are_valid_and_unknown_preset_is_rejected():
    import inspect

    from kflow_mol.models import AssemblyGNN

    accepted = set(inspect.signature(AssemblyGNN).parameters)
    assert set(PRESETS) == {"S", "M", "L"}
    for values in PRESETS.values():
        assert set(values) <= accepted
    sizes = [sum(p.numel() for p in build_model(name).parameters()) for name in ("S", "M")]
    assert 0 < sizes[0] < sizes[1]
    with pytest.raises(ValueError, match="unknown model preset"):
        build_model("XL")


@pytest.mark.parametrize("preset", ["S", "M"])
def test_forward_and_backward_under_bf16_autocast(preset):
    model = build_model(preset)
    inputs = random_clusters(dtype=torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(**inputs)
    assert out.translation.dtype == torch.float32 and torch.isfinite(out.rotation).all()
    (out.translation.sum() + out.rotation.sum()).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("options", [dict(sh_lmax=4), dict(mol_layers=4), dict(self_condition=True)])
def test_orientation_options_are_equivariant(options):
    """Higher-degree orientation features, more cluster-wide layers and self-conditioning
    (the previous velocity rotates with the inputs) keep the network SE(3)-equivariant."""
    torch.manual_seed(0)
    model = build_model("S", atom_layers=1, **options).double().eval()
    inputs = random_clusters()
    rot = random_rotation(generator=torch.Generator().manual_seed(2))
    shift = torch.tensor([-2.0, 0.5, 4.0], dtype=torch.float64)
    previous = torch.randn(10, 6, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    extra = (lambda prev: {"self_condition": prev}) if options.get("self_condition") else (lambda prev: {})

    def velocities(pos, prev):
        out = model(**dict(inputs, pos=pos), **extra(prev))
        return out.translation, out.rotation

    assert all(v.abs().max() > 1e-6 for v in velocities(inputs["pos"], previous))
    assert_equivariant(
        velocities,
        (inputs["pos"], previous),
        rotate_in=lambda args: (
            args[0] @ rot.T + shift,
            torch.cat([args[1][:, :3] @ rot.T, args[1][:, 3:] @ rot.T], -1),
        ),
        rotate_out=lambda vs: tuple(v @ rot.T for v in vs),
        atol=1e-5,
        rtol=0,
    )


def test_self_conditioning_changes_the_velocity():
    model = build_model("S", self_condition=True).double().eval()
    inputs = random_clusters()
    previous = torch.randn(10, 6, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    plain, conditioned = model(**inputs), model(**inputs, self_condition=previous)
    assert not torch.allclose(plain.rotation, conditioned.rotation)
    with pytest.raises(ValueError, match="self_condition"):
        build_model("S")(**dict(inputs, pos=inputs["pos"].float(), s=inputs["s"].float()), self_condition=previous)
