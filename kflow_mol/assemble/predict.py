"""Packing a molecule: start states in, the model run, every draw scored, the best kept (:func:`assemble`)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from kflow.training.config import check_choice, check_range
from kflow_mol.assemble.common import STARTS, TYPICAL_CONTACT_RATIO
from kflow_mol.assemble.inputs import AssemblyInput, read_input
from kflow_mol.assemble.model import LoadedModel, load_model
from kflow_mol.assemble.outputs import write_result
from kflow_mol.assemble.physics import best_draw, physical_report, reference_scores, relax_clashes
from kflow_mol.assemble.starts import molecule_start, van_der_waals_volume


@dataclass
class AssemblyResult:
    """A predicted cluster.

    Attributes:
        name: the input's name (file stem or ``"smiles"``).
        species: (A,) atomic numbers, A = ``num_mols * n``.
        positions: (A, 3) predicted positions, Å.
        mol_index: (A,) molecule of every atom.
        start: (A, 3) the start state of the kept draw.
        trajectory: (F, A, 3) positions along k (start first, prediction last; with clash
            removal the last frame is the relaxed output, at the same k as the one before).
        ks: (F,) the k of every frame.
        report: the report (``report.json``).
        reference: (A, 3) the real cluster (crystal input), else None.
    """

    name: str
    species: np.ndarray
    positions: np.ndarray
    mol_index: np.ndarray
    start: np.ndarray
    trajectory: np.ndarray
    ks: np.ndarray
    report: dict
    reference: np.ndarray | None = None

    def write(self, folder: str | Path, png: bool = True) -> list[Path]:
        """Write the outputs into ``folder`` (:func:`write_result`)."""
        return write_result(self, folder, png=png)


def _draw_seeds(seed: int, samples: int) -> list[int]:
    return [int(seed) + i for i in range(samples)]


def assemble(
    molecule_or_path: str | Path | AssemblyInput,
    num_mols: int = 17,
    start: str = "scrambled",
    model: str | Path | LoadedModel = "default",
    samples: int = 1,
    seed: int = 0,
    *,
    relax: bool = True,
    steps: int | None = None,
    method: str | None = None,
    device: str = "cpu",
) -> AssemblyResult:
    """Predict how ``num_mols`` rigid copies of a molecule pack (or re-pack a crystal's cluster).

    Args:
        molecule_or_path: a SMILES string, a molecule file (SDF, MOL, PDB, XYZ), a crystal
            file (CIF, periodic XYZ, POSCAR, .res), or an :class:`AssemblyInput`.
        num_mols: copies in the cluster (17: the size the model was trained on).
        start: ``"scrambled"`` or ``"local"`` start preset.
        model: ``"default"`` (the shipped model), a checkpoint path, or a :class:`LoadedModel`.
        samples: start states drawn; the physically best prediction is kept (:func:`best_draw`).
        seed: seed of the conformer (SMILES) and of the start states (draw i uses ``seed + i``).
        relax: remove clashes between molecules by rigid translations (:func:`relax_clashes`)
            after the prediction; the network's raw prediction is scored under ``raw``.
        steps: sampler steps in total (None: the model's own ``sample.steps``).
        method: sampler method (None: the model's own).
        device: ``cpu`` or ``cuda``.

    Returns:
        An :class:`AssemblyResult`; ``result.write(folder)`` writes every output.

    Raises:
        AssembleError: bad input, model or option (one line).

    Example::

        >>> from kflow_mol import assemble
        >>> result = assemble("CC(=O)Oc1ccccc1C(=O)O")  # doctest: +SKIP
        >>> result.positions.shape, result.report["prediction"]["collision_pct"]  # doctest: +SKIP
        ((357, 3), 0.0)
    """
    tic = time.perf_counter()
    check_options(start, num_mols, samples, steps)
    request = _Request(num_mols, start, samples, seed, relax)
    loaded = model if isinstance(model, LoadedModel) else load_model(model, device, start)
    molecule = _as_input(molecule_or_path, loaded, seed, num_mols)
    vdw = van_der_waals_volume(molecule.numbers, molecule.positions)
    clusters, start_info = _start_clusters(molecule, request, vdw)
    predictions = _predict(loaded, clusters, steps, method, device, seed)
    draws, outputs = _score_draws(molecule, clusters, predictions, request, vdw)
    best = best_draw(draws)
    report = _report(molecule, loaded, request, (start_info, vdw, draws, best), clusters[best], tic)
    return _result(molecule, request, clusters[best], predictions[best], outputs[best], report)


@dataclass(frozen=True)
class _Request:
    """The options of one :func:`assemble` call that shape the draws and the report."""

    num_mols: int
    start: str
    samples: int
    seed: int
    relax: bool

    @property
    def seeds(self) -> list[int]:
        return _draw_seeds(self.seed, self.samples)


def check_options(start: str, num_mols: int, samples: int, steps: int | None) -> None:
    """Refuse a bad start preset, cluster size, sample count or step count (one line; :func:`assemble`
    and :class:`~kflow_mol.assemble.job.AssembleConfig` check the same)."""
    check_choice("start", start, STARTS)
    check_range("num_mols", num_mols, minimum=2)
    check_range("samples", samples, minimum=1)
    if steps is not None:
        check_range("steps", steps, minimum=1)


def _as_input(molecule_or_path, loaded: LoadedModel, seed: int, num_mols: int) -> AssemblyInput:
    """An :class:`AssemblyInput` as given, or read from a path / SMILES within the model's atom limit."""
    if isinstance(molecule_or_path, AssemblyInput):
        return molecule_or_path
    return read_input(molecule_or_path, max_atoms=loaded.max_atoms, seed=seed, num_mols=num_mols)


def _start_clusters(molecule: AssemblyInput, request: _Request, vdw: float) -> tuple[list, dict]:
    """One start state per draw seed, and the description of the first start (report's ``start_state``)."""
    clusters, start_info = [], None
    for draw_seed in request.seeds:
        data, info = molecule_start(molecule, request.num_mols, request.start, draw_seed, repeat=0, vdw_volume=vdw)
        clusters.append(data)
        start_info = start_info or info
    return clusters, start_info


def _score_draws(
    molecule: AssemblyInput, clusters: list, predictions: list, request: _Request, vdw: float
) -> tuple[list[dict], list[np.ndarray]]:
    """Score every draw (clash removal first when ``request.relax``).

    Returns:
        ``(draws, outputs)``: the report entry of every draw and its output positions ``(A, 3)``.
    """
    num_mols = request.num_mols
    numbers = clusters[0].z.numpy().reshape(num_mols, -1)
    draws, outputs = [], []
    for index, (data, (raw, _, _)) in enumerate(zip(clusters, predictions)):
        target = data.pos_target.double().numpy().reshape(num_mols, -1, 3)
        start_state = data.pos_start.double().numpy().reshape(num_mols, -1, 3)
        raw = raw.reshape(num_mols, -1, 3)
        pos, relaxation = relax_clashes(numbers, raw) if request.relax else (raw, None)
        entry = {"sample": index, "seed": request.seeds[index]}
        has_reference = molecule.reference is not None
        if has_reference:
            entry.update(reference_scores(pos, target, start_state))
        entry.update(physical_report(numbers, pos, vdw))
        if relaxation is not None:
            entry["relaxation"] = relaxation
            entry["raw"] = {
                **(reference_scores(raw, target, start_state) if has_reference else {}),
                **physical_report(numbers, raw, vdw),
            }
            entry["raw"].pop("packing")
        draws.append(entry)
        outputs.append(pos.reshape(-1, 3))
    return draws, outputs


def _report(molecule: AssemblyInput, loaded: LoadedModel, request: _Request, scored: tuple, kept, tic: float) -> dict:
    """The report (``report.json``) of one :func:`assemble` call.

    Args:
        molecule: the input.
        loaded: the model.
        request: the call's options.
        scored: ``(start_info, vdw_volume, draws, best)``.
        kept: the kept draw's cluster (``AssemblyData``).
        tic: ``time.perf_counter()`` at the start of the call (for ``wall_s``).
    """
    start_info, vdw, draws, best = scored
    num_mols = request.num_mols
    numbers = kept.z.numpy().reshape(num_mols, -1)
    report = {
        "input": molecule.source,
        "name": molecule.name,
        "kind": molecule.kind,
        "formula": molecule.formula,
        "atoms_per_molecule": int(len(molecule.numbers)),
        "num_mols": int(num_mols),
        "start": request.start,
        "start_state": start_info,
        "seed": int(request.seed),
        "samples": int(request.samples),
        "model": loaded.describe(),
        "notes": list(molecule.notes),
        "vdw_volume_A3": round(vdw, 2),
        "chosen_sample": best,
        "relax": bool(request.relax),
        "selection": "fewest colliding pairs (output, then raw prediction), then contact_score "
        f"(mean |closest contact / vdW sum - {TYPICAL_CONTACT_RATIO}| over molecules)",
        "prediction": draws[best],
        "start_physical": physical_report(numbers, kept.pos_start.double().numpy().reshape(num_mols, -1, 3), vdw),
        "draws": draws,
    }
    if loaded.trained_start and loaded.trained_start != request.start:
        report["notes"].append(
            f"the model was trained on {loaded.trained_start} starts; this {request.start} start is outside its training"
        )
    if molecule.reference is not None:
        reference = kept.pos_target.double().numpy().reshape(num_mols, -1, 3)
        report["reference"] = {"crystal_id": molecule.crystal_id, **physical_report(numbers, reference, vdw)}
    report["wall_s"] = round(time.perf_counter() - tic, 3)
    return report


def _result(
    molecule: AssemblyInput, request: _Request, kept, prediction: tuple, pos: np.ndarray, report: dict
) -> AssemblyResult:
    """The :class:`AssemblyResult` of the kept draw; with clash removal, its output is the trajectory's last frame."""
    _, trajectory, ks = prediction
    if request.relax:
        trajectory = np.concatenate([trajectory, pos[None]])
        ks = np.append(ks, ks[-1])
    numbers = kept.z.numpy().reshape(request.num_mols, -1)
    return AssemblyResult(
        name=molecule.name,
        species=numbers.reshape(-1).copy(),
        positions=pos,
        mol_index=np.repeat(np.arange(request.num_mols), numbers.shape[1]),
        start=kept.pos_start.double().numpy(),
        trajectory=trajectory,
        ks=ks,
        report=report,
        reference=kept.pos_target.double().numpy() if molecule.reference is not None else None,
    )


def _predict(
    loaded: LoadedModel, clusters: list, steps: int | None, method: str | None, device: str, seed: int
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Run the model on every cluster in one batch: ``[(pos (A, 3), trajectory (F, A, 3), ks (F,))]``."""
    from torch_geometric.data import Batch

    from kflow_mol.experiment import flow_predictor

    cfg = loaded.cfg
    total = steps  # None: the system's default_steps (kflow: the run's sample.steps, set by build_flow)
    generator = torch.Generator().manual_seed(1_000_003 * int(seed)) if loaded.run.stochastic else None
    predict = flow_predictor(
        loaded.run.flow, loaded.run.model, method or cfg.sample.method, total, True, generator=generator
    )
    batch = Batch.from_data_list(clusters).to(device)
    with torch.no_grad():
        out = predict(batch)
    sizes = [int(c.num_nodes) for c in clusters]
    pieces = torch.split(out.pos.detach().double().cpu(), sizes)
    if out.trajectory:
        frames = torch.stack([f.detach().double().cpu() for f in out.trajectory])
        ks = np.asarray([float(k) for k in out.ks])
    else:
        frames = torch.stack([batch.pos_start.double().cpu(), out.pos.detach().double().cpu()])
        ks = np.asarray([0.0, float(loaded.run.flow.num_bands)])
    frame_pieces = torch.split(frames, sizes, dim=1)
    return [(p.numpy(), f.numpy(), ks) for p, f in zip(pieces, frame_pieces)]
