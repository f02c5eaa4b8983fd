"""Fixed splits: random and formula-disjoint, written once."""

import pytest

from kflow_mol.data.splits import make_splits, read_splits, split_ids, write_splits_once


def _formulas():
    return {f"id{k:02d}": f"C{k % 7 + 1}H4" for k in range(40)}


def test_formula_split_keeps_formulas_together():
    formulas = _formulas()
    splits = make_splits(formulas, seed=0, mode="formula")
    parts = [set(splits[k]) for k in ("train", "val", "test")]
    assert sum(len(p) for p in parts) == 40 and set().union(*parts) == set(formulas)
    seen = [{formulas[i] for i in p} for p in parts]
    assert not (seen[0] & seen[1] or seen[0] & seen[2] or seen[1] & seen[2])
    assert splits["random"] != splits["formula"]
    assert [len(splits["random"][k]) for k in ("train", "val", "test")] == [32, 4, 4]
    assert make_splits(formulas, seed=0) == splits and make_splits(formulas, seed=1) != splits


def test_splits_are_written_once(tmp_path):
    path = tmp_path / "splits.json"
    first = write_splits_once(path, make_splits(_formulas(), seed=0))
    again = write_splits_once(path, make_splits(_formulas(), seed=5))
    assert again == first == read_splits(path)
    assert split_ids(first, "val", "random") == set(first["random"]["val"])
    with pytest.raises(ValueError, match="split must be"):
        split_ids(first, "training")
    (tmp_path / "bad.json").write_text('{"train": []}')
    with pytest.raises(ValueError, match="bad.json"):
        read_splits(tmp_path / "bad.json")


def test_pinned_splits_keep_pinned_parts_stay_formula_disjoint_and_hit_the_shares():
    from kflow_mol.data.splits import make_pinned_splits

    formulas = {f"c{i:03d}": f"F{i // 2}" for i in range(200)}  # 100 formulas, two crystals each
    pinned = {"c000": "test", "c001": "train", "c002": "val", "c010": "train"}
    splits = make_pinned_splits(formulas, pinned, (0.8, 0.1, 0.1), seed=3)
    part_of = {cid: part for part in ("train", "val", "test") for cid in splits[part]}
    assert sorted(part_of) == sorted(formulas)
    assert part_of["c000"] == part_of["c001"] == "test"  # test wins; c001 follows its formula
    assert part_of["c002"] == part_of["c003"] == "val" and part_of["c010"] == part_of["c011"] == "train"
    for cid, part in part_of.items():
        assert part_of[f"c{int(cid[1:]) ^ 1:03d}"] == part  # formula-disjoint
    assert [len(splits[p]) for p in ("train", "val", "test")] == [160, 20, 20]
    assert splits == make_pinned_splits(formulas, pinned, (0.8, 0.1, 0.1), seed=3)


def test_pinned_formulas_fill_only_groups_without_a_pinned_crystal():
    from kflow_mol.data.splits import make_pinned_splits

    formulas = {"a1": "A", "a2": "A", "b1": "B", **{f"x{i}": f"X{i}" for i in range(20)}}
    splits = make_pinned_splits(formulas, {"a1": "val"}, seed=0, pinned_formulas={"A": "test", "B": "test"})
    assert {"a1", "a2"} <= set(splits["val"]) and "b1" in splits["test"]


def test_pinned_splits_split_every_stratum_close_to_the_shares():
    from kflow_mol.data.splits import make_pinned_splits

    formulas = {f"{source}{i}": f"{source}F{i}" for source, n in (("big", 400), ("tiny", 40)) for i in range(n)}
    strata = {cid: cid.rstrip("0123456789") for cid in formulas}
    splits = make_pinned_splits(formulas, {}, (0.8, 0.1, 0.1), seed=1, strata=strata)
    for source, n in (("big", 400), ("tiny", 40)):
        sizes = [sum(strata[c] == source for c in splits[p]) for p in ("train", "val", "test")]
        assert sizes == [0.8 * n, 0.1 * n, 0.1 * n]
