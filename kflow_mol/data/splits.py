"""Fixed train/val/test splits as crystal-id lists, written once and reused.

Two splits are made together: ``random`` (ids shuffled) and ``formula`` (all crystals of
one molecular formula, e.g. polymorphs, land in the same part). The top-level
``train``/``val``/``test`` lists are the chosen default mode. A build with
``split_mode="all"`` instead puts every crystal in ``test`` (:func:`all_in`).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np

SPLIT_NAMES = ("train", "val", "test")
SPLIT_MODES = ("formula", "random")
ALL_TEST = "all"  # build setting: every kept crystal in ``test`` (one evaluation set)
BUILD_SPLIT_MODES = SPLIT_MODES + (ALL_TEST,)


def _assign(groups: list[list[str]], fractions: tuple[float, float, float], seed: int) -> dict[str, list[str]]:
    order = np.random.default_rng(seed).permutation(len(groups))
    total = sum(len(g) for g in groups)
    targets = np.cumsum(fractions) / sum(fractions) * total
    parts: dict[str, list[str]] = {name: [] for name in SPLIT_NAMES}
    count = 0
    for index in order:
        part = next(k for k, edge in enumerate(targets) if count < edge - 1e-9)
        parts[SPLIT_NAMES[part]].extend(groups[index])
        count += len(groups[index])
    return {name: sorted(ids) for name, ids in parts.items()}


def make_splits(
    formulas: dict[str, str],
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    mode: str = "formula",
) -> dict:
    """Random and formula-disjoint splits of crystal ids.

    Args:
        formulas: crystal id → molecular formula.
        fractions: train/val/test shares (by crystal count).
        seed: shuffling seed (used once, when the file is first written).
        mode: which split fills the top-level lists.

    Returns:
        A JSON-ready dict with ``train``, ``val``, ``test``, ``random``, ``formula``, ...
    """
    if mode not in SPLIT_MODES:
        raise ValueError(f"split mode must be one of {SPLIT_MODES}, got {mode!r}")
    ids = sorted(formulas)
    by_formula: dict[str, list[str]] = {}
    for crystal_id in ids:
        by_formula.setdefault(formulas[crystal_id], []).append(crystal_id)
    splits = {
        "random": _assign([[i] for i in ids], fractions, seed),
        "formula": _assign([by_formula[f] for f in sorted(by_formula)], fractions, seed),
    }
    return {**splits[mode], "mode": mode, "seed": seed, "fractions": list(fractions), **splits}


def all_in(part: str, ids: list[str], **info) -> dict:
    """Splits that put every id in one part (synthetic: train; evaluation-only: test)."""
    lists = {name: sorted(ids) if name == part else [] for name in SPLIT_NAMES}
    return {**lists, "mode": f"all_{part}", **info}


def write_splits_once(path: Path, splits: dict) -> dict:
    """Write ``splits`` unless ``path`` exists; return what the file holds."""
    path = Path(path)
    if path.exists():
        return read_splits(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(splits, indent=1) + "\n")
    return splits


def read_splits(path: Path) -> dict:
    """Load a ``splits.json`` and check it has the three id lists."""
    path = Path(path)
    try:
        splits = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: cannot read splits ({error})") from None
    missing = [name for name in SPLIT_NAMES if not isinstance(splits.get(name), list)]
    if missing:
        raise ValueError(f"{path}: splits file lacks id lists {missing}")
    return splits


def split_ids(splits: dict, split: str, mode: str | None = None) -> set[str]:
    """Crystal ids of one part, from the default lists or the named mode."""
    if split not in SPLIT_NAMES:
        raise ValueError(f"split must be one of {SPLIT_NAMES} or None, got {split!r}")
    source = splits if mode is None or mode == splits.get("mode") else splits.get(mode)
    if source is None:
        raise ValueError(f"splits have no {mode!r} mode (available: {[m for m in SPLIT_MODES if m in splits]})")
    return set(source[split])


def make_pinned_splits(
    formulas: dict[str, str],
    pinned: dict[str, str],
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    pinned_formulas: dict[str, str] | None = None,
    strata: dict[str, str] | None = None,
) -> dict:
    """One formula-disjoint split in which some crystals keep a given part.

    A formula group holding a pinned crystal goes to that crystal's part (``test`` wins over
    ``val`` over ``train`` when its pinned crystals disagree); else a group whose formula is
    in ``pinned_formulas`` goes to that part. The other groups, shuffled by ``seed``, each go
    to the part furthest below its target share within the stratum (e.g. the source) of most
    of its crystals, so every stratum is split close to ``fractions``.

    Args:
        formulas: crystal id → molecular formula.
        pinned: crystal id → ``train``/``val``/``test`` (ids not in ``formulas`` are ignored).
        fractions: train/val/test shares (pinned crystals included).
        seed: shuffling seed of the free groups.
        pinned_formulas: formula → part, for groups without a pinned crystal.
        strata: crystal id → stratum (None: one stratum).

    Returns:
        A JSON-ready dict with ``train``, ``val``, ``test``, ``mode`` (``formula``) and the
        same lists under ``formula``.
    """
    strata = strata or {}
    by_formula: dict[str, list[str]] = {}
    for crystal_id in sorted(formulas):
        by_formula.setdefault(formulas[crystal_id], []).append(crystal_id)
    parts: dict[str, list[str]] = {name: [] for name in SPLIT_NAMES}
    free = []
    for formula in sorted(by_formula):
        group = by_formula[formula]
        wanted = {pinned[c] for c in group if c in pinned}
        part = next((name for name in reversed(SPLIT_NAMES) if name in wanted), None)
        part = part or (pinned_formulas or {}).get(formula)
        if part is None:
            free.append(group)
        else:
            parts[part].extend(group)
    shares = np.asarray(fractions, dtype=float) / sum(fractions)
    sizes = Counter(strata.get(c) for c in formulas)
    counts = {stratum: np.zeros(len(SPLIT_NAMES)) for stratum in sizes}
    for index, name in enumerate(SPLIT_NAMES):
        for crystal_id in parts[name]:
            counts[strata.get(crystal_id)][index] += 1
    for index in np.random.default_rng(seed).permutation(len(free)):
        group = free[index]
        stratum = Counter(strata.get(c) for c in group).most_common(1)[0][0]
        part = int(np.argmax(shares * sizes[stratum] - counts[stratum]))
        parts[SPLIT_NAMES[part]].extend(group)
        for crystal_id in group:
            counts[strata.get(crystal_id)][part] += 1
    lists = {name: sorted(ids) for name, ids in parts.items()}
    return {**lists, "mode": "formula", "seed": seed, "fractions": list(fractions), "formula": lists}
