"""The fast atom-level blocks: neighbour search against its dense reference, ContactConv equivariance."""

import pytest
import torch
from e3nn import o3

from kflow_mol.models import PRESETS, build_model
from kflow_mol.models.layers import ContactConv, atom_conv_layer, build_atom_edges


def shuffled_clusters(sizes=(3, 5, 2), atoms_per_mol=(4, 7, 3, 5, 6), seed=0):
    """Clusters with molecules of different sizes whose atoms are interleaved within each cluster."""
    g = torch.Generator().manual_seed(seed)
    pos, mol_index, atom_batch, first_mol = [], [], [], 0
    for b, num_mols in enumerate(sizes):
        counts = [atoms_per_mol[(b + m) % len(atoms_per_mol)] for m in range(num_mols)]
        mols = torch.arange(first_mol, first_mol + num_mols).repeat_interleave(torch.tensor(counts))
        mols = mols[torch.randperm(len(mols), generator=g)]  # atoms of one molecule not contiguous
        centres = 4.0 * torch.randn(num_mols, 3, generator=g, dtype=torch.float64)
        pos.append(centres[mols - first_mol] + 1.3 * torch.randn(len(mols), 3, generator=g, dtype=torch.float64))
        mol_index.append(mols)
        atom_batch.append(torch.full((len(mols),), b))
        first_mol += num_mols
    return torch.cat(pos), torch.cat(mol_index), torch.cat(atom_batch)


def edge_set(edges):
    return sorted(zip(edges.src.tolist(), edges.dst.tolist(), edges.intra.tolist()))


@pytest.mark.parametrize("mode", ["knn", "radius"])
@pytest.mark.parametrize("k_intra,k_inter", [(3, 4), (8, 50)])
def test_neighbour_search_matches_dense_reference(mode, k_intra, k_inter):
    pos, mol_index, atom_batch = shuffled_clusters()
    kwargs = dict(mode=mode, k_intra=k_intra, k_inter=k_inter, radius=3.0)
    fast, dense = (
        build_atom_edges(pos, mol_index, atom_batch, **kwargs),
        build_atom_edges(pos, mol_index, atom_batch, dense=True, **kwargs),
    )
    assert edge_set(fast) == edge_set(dense)
    assert len(fast.src) > 0 and bool(fast.intra.any()) and bool((~fast.intra).any())
    same_mol = mol_index[fast.src] == mol_index[fast.dst]
    assert torch.equal(same_mol, fast.intra)
    assert torch.equal(atom_batch[fast.src], atom_batch[fast.dst])  # never across clusters
    assert not bool((fast.src == fast.dst).any())


def test_contact_conv_is_equivariant_in_float64():
    torch.manual_seed(0)
    hidden = o3.Irreps("8x0e+4x1o+4x1e+2x2e")
    irreps_sh = o3.Irreps.spherical_harmonics(2)
    conv = ContactConv(hidden, irreps_sh, 5, radial_hidden=8, channels=4).double()
    num_nodes, num_edges = 7, 20
    h = hidden.randn(num_nodes, -1, dtype=torch.float64)
    src, dst = torch.randint(0, num_nodes, (num_edges,)), torch.randint(0, num_nodes, (num_edges,))
    vec = torch.randn(num_edges, 3, dtype=torch.float64)
    scalars = torch.randn(num_edges, 5, dtype=torch.float64)
    rot = o3.rand_matrix(dtype=torch.float64)

    def run(features, vectors):
        sh = o3.spherical_harmonics(irreps_sh, vectors, normalize=True, normalization="component")
        return conv(features, src, dst, sh, scalars)

    out = run(h, vec)
    rotated = run(h @ hidden.D_from_matrix(rot).T, vec @ rot.T)
    # e3nn builds D in float32, hence 1e-6
    torch.testing.assert_close(rotated, out @ hidden.D_from_matrix(rot).T, atol=1e-6, rtol=0)
    assert (out - h).abs().max() > 1e-3  # messages change the features
    # the inversion (parity) as well: -rot is an improper element of O(3)
    inverted = run(h @ hidden.D_from_matrix(-rot).T, -vec @ rot.T)
    torch.testing.assert_close(inverted, out @ hidden.D_from_matrix(-rot).T, atol=1e-6, rtol=0)


def test_contact_conv_rejects_harmonics_without_l1():
    with pytest.raises(ValueError, match="1x0e\\+1x1o"):
        ContactConv(o3.Irreps("4x0e+2x1o"), o3.Irreps("1x0e+1x2e"), 3)
    with pytest.raises(ValueError, match="atom_conv must be one of"):
        atom_conv_layer("fast", o3.Irreps("4x0e"), o3.Irreps.spherical_harmonics(2), 3, 8, 4)


@pytest.mark.parametrize("atom_conv", ["contact", "e3nn"])
def test_both_atom_blocks_give_an_equivariant_network(atom_conv):
    torch.manual_seed(0)
    model = build_model("S", atom_layers=1, atom_conv=atom_conv).double().eval()
    pos, mol_index, atom_batch = shuffled_clusters(sizes=(3, 4))
    order = torch.argsort(mol_index, stable=True)  # the model wants atoms grouped by cluster only
    pos, mol_index, atom_batch = pos[order], mol_index[order], atom_batch[order]
    mol_batch = torch.tensor([0] * 3 + [1] * 4)
    g = torch.Generator().manual_seed(1)
    inputs = dict(
        z=torch.randint(1, 9, (len(pos),), generator=g),
        pos=pos,
        mol_index=mol_index,
        atom_batch=atom_batch,
        mol_batch=mol_batch,
        s=torch.rand(2, generator=g, dtype=torch.float64),
    )
    rot = o3.rand_matrix(dtype=torch.float64)
    out = model(**inputs)
    moved = model(**dict(inputs, pos=pos @ rot.T + torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)))
    torch.testing.assert_close(moved.translation, out.translation @ rot.T, atol=1e-8, rtol=0)
    torch.testing.assert_close(moved.rotation, out.rotation @ rot.T, atol=1e-8, rtol=0)


@pytest.mark.slow
def test_presets_use_the_contact_block_and_l_is_large():
    assert all(values["atom_conv"] == "contact" for values in PRESETS.values())
    sizes = {name: sum(p.numel() for p in build_model(name).parameters()) for name in PRESETS}
    assert sizes["S"] < sizes["M"] < sizes["L"]
    assert sizes["L"] >= 3_100_000  # at least the AssembleFlow reference model (issue 15)
