"""``data.subset_seed``: seeded, nested random training subsets (scaling curves)."""

from kflow_mol.config import DataConfig
from kflow_mol.experiment import load_split


def test_random_subsets_are_nested_seeded_and_not_the_first_clusters():
    full = load_split(DataConfig(source="pyxtal"), "train")
    small = load_split(DataConfig(source="pyxtal", subset_seed=0), "train", limit=10)
    large = load_split(DataConfig(source="pyxtal", subset_seed=0), "train", limit=30)
    again = load_split(DataConfig(source="pyxtal", subset_seed=0), "train", limit=10)
    other = load_split(DataConfig(source="pyxtal", subset_seed=1), "train", limit=10)
    key = lambda cs: [c.pos.sum().item() for c in cs]  # noqa: E731
    assert len(small) == 10 and len(large) == 30
    assert key(large)[:10] == key(small) == key(again)
    assert key(other) != key(small)
    assert key(small) != key(full[:10])
