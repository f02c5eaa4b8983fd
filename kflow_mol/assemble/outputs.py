"""Writing a prediction: CIF, XYZ, PDB, trajectory, report.json and the PNG; output folder checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from kflow_mol.assemble.common import AssembleError

if TYPE_CHECKING:
    from kflow_mol.assemble.predict import AssemblyResult


def check_writable(folder: str | Path) -> Path:
    """Check, without creating anything, that ``folder`` exists as a writable folder or can be created.

    Raises:
        AssembleError: when a part of the path is a file, or the nearest existing folder is not writable.
    """
    import os

    folder = Path(folder).expanduser()
    probe = folder.absolute()
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise AssembleError(f"output folder {folder} cannot be written: {probe} is not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise AssembleError(f"output folder {folder} cannot be written: {probe} is not writable")
    return folder


def check_output_folder(folder: str | Path) -> Path:
    """Create ``folder`` (and parents) and check it can be written.

    Raises:
        AssembleError: when it cannot be created or written.
    """
    folder = Path(folder).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".kflow_write_test"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise AssembleError(f"output folder {folder} cannot be written: {reason}") from None
    return folder


def _atoms(species: np.ndarray, positions: np.ndarray, mol_index: np.ndarray, name: str):
    from ase import Atoms

    atoms = Atoms(numbers=species, positions=positions)
    atoms.set_array("mol", mol_index.astype(int))
    atoms.info["name"] = name
    return atoms


def _boxed(atoms, padding: float = 10.0):
    """A copy in an orthogonal P1 box with ``padding`` Å of vacuum (for CIF / PDB readers that want a cell)."""
    boxed = atoms.copy()
    low = boxed.positions.min(0) - padding
    lengths = np.maximum(boxed.positions.max(0) + padding - low, 1.0)
    boxed.positions -= low
    boxed.set_cell(np.diag(lengths))
    boxed.pbc = True
    return boxed


def write_result(result: AssemblyResult, folder: str | Path, png: bool = True) -> list[Path]:
    """Write one prediction through ``ase.io``.

    Files: ``<name>_predicted.cif`` (P1 box with vacuum; labels ``C12_m3`` carry the molecule),
    ``<name>_predicted.xyz`` (extended XYZ with a ``mol`` column), ``<name>_predicted.pdb``
    (one residue per molecule), ``<name>_start.xyz``, ``<name>_trajectory.xyz`` (one frame per
    saved k, ``k`` in each comment line), ``<name>_reference.xyz`` (crystal input),
    ``report.json`` and ``<name>.png`` (start and prediction side by side).

    Raises:
        AssembleError: when the folder cannot be written.
    """
    from ase.io import write

    folder = check_output_folder(folder)
    name = _safe(result.name)
    atoms = _atoms(result.species, result.positions, result.mol_index, name)
    paths = []
    labels = [f"{s}{i + 1}_m{m}" for i, (s, m) in enumerate(zip(atoms.get_chemical_symbols(), result.mol_index))]
    try:
        paths.append(folder / f"{name}_predicted.cif")
        write(paths[-1], _boxed(atoms), format="cif", labels=[labels])
        paths.append(folder / f"{name}_predicted.xyz")
        write(paths[-1], atoms, format="extxyz")
        paths.append(folder / f"{name}_predicted.pdb")
        pdb = atoms.copy()
        pdb.set_array("residuenumbers", result.mol_index.astype(int) + 1)
        write(paths[-1], pdb, format="proteindatabank")
        paths.append(folder / f"{name}_start.xyz")
        write(paths[-1], _atoms(result.species, result.start, result.mol_index, name), format="extxyz")
        frames = []
        relaxed = bool(result.report.get("relax")) and len(result.ks) > 1
        for index, (k, frame) in enumerate(zip(result.ks, result.trajectory)):
            image = _atoms(result.species, frame, result.mol_index, name)
            image.info["k"] = float(k)
            image.info["stage"] = "relaxed" if relaxed and index == len(result.ks) - 1 else "flow"
            frames.append(image)
        paths.append(folder / f"{name}_trajectory.xyz")
        write(paths[-1], frames, format="extxyz")
        if result.reference is not None:
            paths.append(folder / f"{name}_reference.xyz")
            write(paths[-1], _atoms(result.species, result.reference, result.mol_index, name), format="extxyz")
        paths.append(folder / "report.json")
        paths[-1].write_text(json.dumps(result.report, indent=2) + "\n")
        if png:
            paths.append(plot_result(result, folder / f"{name}.png"))
    except OSError as error:
        raise AssembleError(f"output folder {folder} cannot be written: {error.strerror or error}") from None
    return paths


def _safe(name: str) -> str:
    keep = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return keep.strip("._") or "molecule"


def plot_result(result: AssemblyResult, path: str | Path, size: float = 3.4, dpi: int = 90) -> Path:
    """Start and prediction side by side (3D scatter, atoms coloured by molecule, H smaller)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(2 * size, size + 0.3))
    FigureCanvasAgg(figure)
    colours = _molecule_colours(int(result.mol_index.max()) + 1)
    heavy = result.species > 1
    report = result.report
    panels = [("start", result.start), ("prediction", result.positions)]
    centred = [pos - pos.mean(0) for _, pos in panels]
    half = max(3.0, *(float(np.abs(c).max()) for c in centred))  # one scale: contraction shows
    for column, ((title, _), points) in enumerate(zip(panels, centred)):
        ax = figure.add_subplot(1, 2, column + 1, projection="3d")
        ax.scatter(*points[heavy].T, c=colours[result.mol_index[heavy]], s=14, depthshade=True, edgecolors="none")
        ax.scatter(*points[~heavy].T, c=colours[result.mol_index[~heavy]], s=4, alpha=0.6, edgecolors="none")
        for set_lim in (ax.set_xlim, ax.set_ylim, ax.set_zlim):
            set_lim(-half, half)
        ax.set_box_aspect((1, 1, 1), zoom=1.4)
        ax.set_axis_off()
        pred = report.get("prediction", {})
        if title == "prediction":
            line = f"prediction: collisions {pred.get('collision_pct', 0):.2f}%"
            if "pm_atom" in pred:
                line += f"\nPM-atom {pred['pm_atom']:.2f} Å (start {pred['identity_pm_atom']:.2f})"
            else:
                density = pred.get("packing", {}).get("density_g_cm3")
                if density is not None:
                    line += f"\ndensity ≈ {density:.2f} g/cm³"
        else:
            line = f"{report.get('start', 'start')} start"
        ax.set_title(line, fontsize=8)
    figure.suptitle(f"{report.get('formula', '')}: {report.get('num_mols', '')} molecules", fontsize=9)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=dpi, bbox_inches="tight", pad_inches=0.05)
    return path


def _molecule_colours(count: int) -> np.ndarray:
    from matplotlib import colormaps

    cmap = colormaps["tab20"]
    return np.array([cmap(i % 20) for i in range(count)])
