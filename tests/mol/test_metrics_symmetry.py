import torch

from kflow_mol.metrics import SymmetryCache, perceive_bonds
from kflow_mol.metrics.symmetry import cluster_topology


def embedded(smiles, seed=0):
    from rdkit import Chem
    from rdkit.Chem import AllChem

    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    AllChem.EmbedMolecule(mol, randomSeed=seed)
    bonds = sorted(tuple(sorted((b.GetBeginAtomIdx(), b.GetEndAtomIdx()))) for b in mol.GetBonds())
    pos = torch.tensor(mol.GetConformer().GetPositions(), dtype=torch.float64)
    return pos, torch.tensor([a.GetAtomicNum() for a in mol.GetAtoms()]), bonds


def test_bonds_from_coordinates_match_the_chemical_graph():
    pos, z, bonds = embedded("CC(C)(C)c1ccccc1O")
    found = perceive_bonds(pos, z, torch.zeros(len(z), dtype=torch.long))
    assert sorted(map(tuple, found.tolist())) == bonds


def test_automorphism_counts():
    cache = SymmetryCache()
    # benzene: D6h graph symmetry (12); t-butylbenzene: 2 (ring) x 3! (methyls) x (3!)^3 (H);
    # anthranilic acid: only the two NH2 hydrogens (the OH hydrogen tells the oxygens apart)
    for smiles, expected in [("c1ccccc1", 12), ("CC(C)(C)c1ccccc1", 2592), ("OC(=O)c1ccccc1N", 2)]:
        pos, z, bonds = embedded(smiles)
        graph = cache.canonical(tuple(z.tolist()), tuple(bonds))
        automorphisms, truncated = cache.automorphisms(graph.key)
        assert automorphisms.shape[0] == expected and not truncated
        assert torch.equal(automorphisms[0], torch.arange(len(z)))
    capped, truncated = SymmetryCache(max_automorphisms=1).automorphisms(graph.key)
    assert capped.shape[0] == 1 and truncated


def test_copies_listed_in_different_orders_are_mapped_onto_each_other():
    pos, z, _ = embedded("CC(=O)Nc1ccc(O)cc1")
    shuffle = torch.randperm(len(z), generator=torch.Generator().manual_seed(0))
    second = pos[shuffle] + torch.tensor([8.0, 0.0, 0.0], dtype=torch.float64)
    cluster = torch.cat([pos, second])
    numbers = torch.cat([z, z[shuffle]])
    mol = torch.arange(2).repeat_interleave(len(z))
    topology = cluster_topology(numbers, mol, perceive_bonds(cluster, numbers, mol), SymmetryCache())
    assert topology.group.tolist() == [0, 0]
    copies = topology.compounds[0]
    first, second = copies.atoms  # canonical order of each copy
    # canonical orders map the copies onto each other up to a graph automorphism (ring flip,
    # methyl hydrogens): one automorphism must superpose them exactly
    moved_back = cluster[second] - torch.tensor([8.0, 0.0, 0.0], dtype=torch.float64)
    deviation = (cluster[first[copies.automorphisms]] - moved_back).norm(dim=-1).amax(-1)
    assert deviation.min().item() < 1e-9
    assert torch.equal(numbers[first], numbers[second])
