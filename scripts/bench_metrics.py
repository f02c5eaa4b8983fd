"""Benchmark the assembly metrics: PM-atom, PM-center and RMSD_17 on synthetic clusters.

Clusters are 17 rigid copies of one RDKit-embedded molecule (default hexylbenzene, 30 atoms
with H; 384 graph automorphisms) at jittered grid sites with random orientations. The
prediction moves every molecule by a random rigid motion (about 0.5 Å / 10 degrees) and, in
half of the clusters, relabels the molecules at random, so RMSD_17 has real assignment and
symmetry work to do. Timings are medians (wall clock and process CPU) over ``--repeats`` runs.

    OMP_NUM_THREADS=1 python scripts/bench_metrics.py --clusters 1000 --repeats 5
    OMP_NUM_THREADS=1 python scripts/bench_metrics.py --clusters 1000 --repeats 3 --reference
    OMP_NUM_THREADS=1 python scripts/bench_metrics.py --clusters 1000 --repeats 5 --before 24d5bbe

``--reference`` adds the per-cluster RMSD_17 loop the batched path replaced (``rmsd17_loop`` of
``tests/mol/_reference_rmsd.py``, the reference of the equality test; it needs the repository's
``tests/`` folder), timed in the same process for a side-by-side ratio. ``--before REV`` adds the RMSD_17 of git revision
REV (``kflow_mol/metrics/assembly_rmsd.py`` as it was there, loaded from ``git show`` next to
the current helpers; its batched path and, with ``--reference``, its loop) on the same inputs,
interleaved with the current one, and checks that both find the same correspondences.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import types
from pathlib import Path

import torch

from kflow.benchmarking import interleaved_times, markdown_table
from kflow_mol.metrics import SymmetryCache, pm_atom, pm_center, rmsd17


def embedded_molecule(smiles: str, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Centred 3-D coordinates (T, 3) and atomic numbers (T,) of an RDKit conformer."""
    from rdkit import Chem
    from rdkit.Chem import AllChem

    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    if AllChem.EmbedMolecule(mol, randomSeed=seed) != 0:
        raise RuntimeError(f"RDKit could not embed {smiles!r}")
    pos = torch.tensor(mol.GetConformer().GetPositions(), dtype=torch.float64)
    return pos - pos.mean(0), torch.tensor([a.GetAtomicNum() for a in mol.GetAtoms()])


def random_rotations(count: int, generator: torch.Generator, angle_scale: float | None = None) -> torch.Tensor:
    """(count, 3, 3) proper rotations: uniform, or of small angles when angle_scale is set."""
    if angle_scale is None:
        q, r = torch.linalg.qr(torch.randn(count, 3, 3, generator=generator, dtype=torch.float64))
        q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1)).unsqueeze(-2)
        q[torch.linalg.det(q) < 0, :, 0] *= -1
        return q
    axis_angle = angle_scale * torch.randn(count, 3, generator=generator, dtype=torch.float64)
    skew = torch.zeros(count, 3, 3, dtype=torch.float64)
    skew[:, 0, 1], skew[:, 0, 2] = -axis_angle[:, 2], axis_angle[:, 1]
    skew[:, 1, 2] = -axis_angle[:, 0]
    return torch.linalg.matrix_exp(skew - skew.transpose(-1, -2))


def make_clusters(num_clusters: int, smiles: str, num_molecules: int, seed: int):
    """True and predicted clusters (C, N, 3), atomic numbers (N,), molecule index (N,)."""
    generator = torch.Generator().manual_seed(seed)
    molecule, numbers = embedded_molecule(smiles, seed)
    size = molecule.shape[0]
    grid = (
        torch.stack(torch.meshgrid(*[torch.arange(3.0, dtype=torch.float64)] * 3, indexing="ij"), -1).reshape(-1, 3)[
            :num_molecules
        ]
        * 9.0
    )
    sites = grid + 0.8 * torch.randn(num_clusters, num_molecules, 3, generator=generator, dtype=torch.float64)
    orient = random_rotations(num_clusters * num_molecules, generator)
    orient = orient.reshape(num_clusters, num_molecules, 3, 3)
    true = molecule @ orient.transpose(-1, -2) + sites.unsqueeze(-2)  # (C, M, T, 3)
    wobble = random_rotations(num_clusters * num_molecules, generator, angle_scale=0.1)
    shift = 0.5 * torch.randn(num_clusters, num_molecules, 1, 3, generator=generator, dtype=torch.float64)
    centre = true.mean(-2, keepdim=True)
    pred = (true - centre) @ wobble.reshape(num_clusters, num_molecules, 3, 3).transpose(-1, -2)
    pred = pred + centre + shift
    for c in range(0, num_clusters, 2):
        pred[c] = pred[c][torch.randperm(num_molecules, generator=generator)]
    mol_index = torch.arange(num_molecules).repeat_interleave(size)
    return (
        true.reshape(num_clusters, -1, 3),
        pred.reshape(num_clusters, -1, 3),
        numbers.repeat(num_molecules),
        mol_index,
    )


def module_at(revision: str, path: str = "kflow_mol/metrics/assembly_rmsd.py") -> types.ModuleType:
    """The module ``path`` as it was at git ``revision``, imported under a private name."""
    root = Path(__file__).resolve().parent.parent
    source = subprocess.run(
        ["git", "show", f"{revision}:{path}"], cwd=root, capture_output=True, text=True, check=True
    ).stdout
    module = types.ModuleType(f"_before_{revision}")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(source, f"{revision}:{path}", "exec"), module.__dict__)
    return module


def same_correspondences(a, b) -> bool:
    """Two AssemblyRMSD results agree: equal integer fields, float fields within 1e-5 relative."""
    for name in a.__dataclass_fields__:
        x, y = getattr(a, name), getattr(b, name)
        if x.is_floating_point():
            if not torch.allclose(x, y, rtol=1e-5, atol=0, equal_nan=True):
                return False
        elif not torch.equal(x, y):
            return False
    return True


def reference_loop():
    """``rmsd17_loop`` of ``tests/mol/_reference_rmsd.py``: the per-cluster RMSD_17 loop."""
    path = Path(__file__).resolve().parent.parent / "tests" / "mol" / "_reference_rmsd.py"
    if not path.is_file():
        raise SystemExit(f"bench_metrics: error: --reference needs {path} (the repository's tests folder)")
    spec = importlib.util.spec_from_file_location("_reference_rmsd", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.rmsd17_loop


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clusters", type=int, default=1000)
    parser.add_argument("--rmsd-clusters", type=int, default=None, help="clusters for RMSD_17 (default: --clusters)")
    parser.add_argument("--molecules", type=int, default=17)
    parser.add_argument("--smiles", default="CCCCCCc1ccccc1")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    parser.add_argument("--before", default=None, help="git revision whose RMSD_17 is timed alongside")
    parser.add_argument(
        "--reference", action="store_true", help="also time the original per-cluster RMSD_17 loop (same results)"
    )
    return parser.parse_args(argv)


def timed_functions(args: argparse.Namespace, true, pred, subset: tuple, cache) -> tuple[list[tuple], object]:
    """``[(name, fn, clusters)]`` to time, and the module of ``--before`` (or None)."""
    rmsd_clusters = subset[0].shape[0]
    mol_index = subset[3]
    timed = [
        ("PM-atom", lambda: pm_atom(true, pred), args.clusters),
        ("PM-center", lambda: pm_center(true, pred, mol_index), args.clusters),
        ("RMSD_17", lambda: rmsd17(*subset, cache=cache), rmsd_clusters),
    ]
    if args.reference:
        loop = reference_loop()
        timed.append(("RMSD_17 per-cluster loop", lambda: loop(*subset, cache=cache), rmsd_clusters))
    before = module_at(args.before) if args.before else None
    if before is not None:
        timed.append((f"RMSD_17 at {args.before} (before)", lambda: before.rmsd17(*subset, cache=cache), rmsd_clusters))
        if args.reference:  # revisions of that time kept their loop behind vectorized=False
            name = f"RMSD_17 per-cluster loop at {args.before}"
            timed.append((name, lambda: before.rmsd17(*subset, cache=cache, vectorized=False), rmsd_clusters))
    return timed, before


def timing_rows(timed: list[tuple], wall: list[list[float]], cpu: list[list[float]]) -> list[dict]:
    """One JSON row per timed function: medians of wall and CPU seconds, clusters per second, every time."""
    return [
        {
            "metric": name,
            "clusters": count,
            "median_s": statistics.median(wall[index]),
            "median_cpu_s": statistics.median(cpu[index]),
            "clusters_per_s": count / statistics.median(wall[index]),
            "times_s": wall[index],
            "cpu_times_s": cpu[index],
        }
        for index, (name, _, count) in enumerate(timed)
    ]


def print_rows(args: argparse.Namespace, atoms: int, rows: list[dict], summary: dict) -> None:
    print(
        f"{args.clusters} clusters of {args.molecules} x {atoms // args.molecules} "
        f"atoms, {args.dtype}, device {args.device}, {args.threads} thread(s), "
        f"median of {args.repeats}"
    )
    header = ["metric", "clusters", "median wall s", "median CPU s", "CPU s per 1,000 clusters"]
    cells = [
        [row["metric"], row["clusters"], f"{row['median_s']:.3f}", f"{row['median_cpu_s']:.3f}"]
        + [f"{1000 * row['median_cpu_s'] / row['clusters']:.2f}"]
        for row in rows
    ]
    print(markdown_table(header, cells))
    print("values: " + ", ".join(f"{k}={v:.3f}" for k, v in summary.items()))


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    true, pred, z, mol_index = make_clusters(args.clusters, args.smiles, args.molecules, args.seed)
    true, pred = true.to(args.device, dtype), pred.to(args.device, dtype)
    mol_index = mol_index.to(args.device)
    rmsd_clusters = args.rmsd_clusters or args.clusters
    cache = SymmetryCache()
    rmsd17(true[0], pred[0], z, mol_index, cache=cache)  # RDKit work once, as in evaluation
    subset = (true[:rmsd_clusters], pred[:rmsd_clusters], z, mol_index)
    timed, before = timed_functions(args, true, pred, subset, cache)
    wall, cpu = interleaved_times([fn for _, fn, _ in timed], args.repeats)
    rows = timing_rows(timed, wall, cpu)
    result = rmsd17(*subset, cache=cache)
    summary = {
        "atoms_per_cluster": true.shape[1],
        "pm_atom_mean": pm_atom(true, pred).mean().item(),
        "pm_center_mean": pm_center(true, pred, mol_index).mean().item(),
        "rmsd_17_mean": result.rmsd_17.mean().item(),
        "n_matched_mean": result.n_matched.float().mean().item(),
    }
    print_rows(args, true.shape[1], rows, summary)
    if before is not None:
        summary["same_as_before"] = same_correspondences(result, before.rmsd17(*subset, cache=cache))
        print(f"same correspondences and values as {args.before}: {summary['same_as_before']}")
    if args.out:
        with open(args.out, "w") as handle:
            json.dump({"args": vars(args), "timings": rows, "values": summary}, handle, indent=2)


if __name__ == "__main__":
    main()
