"""Real crystals → whole molecules.

This is the only module that touches the crystal parsers (pymatgen for CIF, ASE for
databases) and RDKit. A crystal is read into a :class:`Crystal` (full unit cell, P1),
then :func:`perceive_molecules` finds covalently bonded groups across periodic images,
unwraps each into a whole molecule and labels the symmetry-independent ones.

Anything wrong with an entry raises :class:`CrystalRejected` with a reason from
:data:`REJECTION_REASONS`, so a batch can record it and go on.
"""

from __future__ import annotations

import re
import warnings
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from ase.data import atomic_numbers as ATOMIC_NUMBERS
from ase.data import chemical_symbols as CHEMICAL_SYMBOLS
from ase.data import covalent_radii as COVALENT_RADII
from scipy.spatial import cKDTree

REJECTION_REASONS: dict[str, str] = {
    "unparsable": "the file or row could not be read as a crystal",
    "disorder": "partial occupancy or a disorder group",
    "not_organic": "no carbon, or elements outside the organic set",
    "missing_h": "no hydrogen atoms, or RDKit needs radicals to explain the bonding",
    "polymeric": "a molecule is bonded to its own periodic image (chain or network)",
    "multiple_molecules": "more than one kind of molecule in the cell",
    "too_many_atoms": "a molecule has more atoms than the configured limit",
    "valence": "an atom has more bonds than its element allows, or an H is not singly bonded",
    "formula_mismatch": "the perceived molecule disagrees with the entry's own SMILES",
    "overlap": "atoms of different molecules closer than the minimum distance",
    "start_overlap": "no start state without atom overlaps was found",
    "not_rigid": "a start molecule is not a rigid motion of its target",
    "bad_cluster_file": "a COD-Cluster17 CSV file breaks the layout",
    "generation_failed": "PyXtal could not place the molecule in the drawn space group",
    "truncated": "the file ends mid-line inside a loop (cut off: no final newline)",
    "unknown_element": "an atom's type symbol (or, when it is ? or ., its label) names no chemical element",
    "site_count_mismatch": "the atom_site rows expand by symmetry to a different number of sites than were parsed",
    "bad_cell": "a non-finite or implausibly thin unit cell, or non-finite coordinates",
    "too_large": "the input file is larger than the configured size limit",
    "not_periodic": "an ASE frame or database row without a unit cell or without periodic boundaries",
    "bad_name": "an ASE frame without a name in a multi-frame file, or with a name used before",
    "duplicate": "the same crystal as one kept from another collection (same refcode, or formula and cell)",
    "timeout": "reading and processing the entry took longer than the configured time limit",
    "error": "an unexpected exception while processing the entry (type and first line; traceback in errors.log)",
}

ORGANIC_ELEMENTS = frozenset(
    ATOMIC_NUMBERS[s] for s in ("H", "B", "C", "N", "O", "F", "Si", "P", "S", "Cl", "Br", "I", "Se")
)
MAX_BONDS = {1: 1, 5: 4, 6: 4, 7: 4, 8: 3, 9: 1, 14: 4, 15: 5, 16: 6, 17: 1, 34: 6, 35: 1, 53: 3}

BOND_TOLERANCE = 0.4  # Å added to the sum of covalent radii (the COD selection rule)


class CrystalRejected(Exception):
    """An entry that cannot be used, with a reason key from :data:`REJECTION_REASONS`."""

    def __init__(self, reason: str, detail: str = ""):
        if reason not in REJECTION_REASONS:
            raise ValueError(f"unknown rejection reason {reason!r}")
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass
class Crystal:
    """A full unit cell (all symmetry copies present).

    Attributes:
        crystal_id: stable id (COD number, CSD refcode, ...).
        source: source key, e.g. ``"cod_cif"``.
        numbers: (N,) atomic numbers.
        frac: (N, 3) fractional coordinates.
        cell: (3, 3) lattice vectors as rows, Å.
        meta: free-form metadata (space group, SMILES, ...).
    """

    crystal_id: str
    source: str
    numbers: np.ndarray
    frac: np.ndarray
    cell: np.ndarray
    meta: dict = field(default_factory=dict)


@dataclass
class Molecule:
    """One whole molecule in Cartesian coordinates.

    Attributes:
        numbers: (n,) atomic numbers.
        positions: (n, 3) unwrapped coordinates, Å; centroid inside the home cell.
        orbit: label of its symmetry-independent class (equal for symmetry copies).
        atom_ids: (n,) indices of its atoms in the :class:`Crystal`.
    """

    numbers: np.ndarray
    positions: np.ndarray
    orbit: int
    atom_ids: np.ndarray

    @property
    def centroid(self) -> np.ndarray:
        return self.positions.mean(axis=0)


@dataclass
class MolecularCrystal:
    """A crystal split into whole, identical molecules.

    Attributes:
        crystal: the source crystal.
        molecules: every molecule of the unit cell.
        formula: Hill formula of one molecule.
        independent: index of one representative molecule per symmetry-independent class.
    """

    crystal: Crystal
    molecules: list[Molecule]
    formula: str
    independent: list[int]


# ----------------------------------------------------------------------------- readers


def _cif_has_disorder(block: dict) -> str | None:
    occupancies = block.get("_atom_site_occupancy")
    if occupancies is not None:
        for value in occupancies:
            value = value.split("(")[0]
            if value not in (".", "?") and abs(float(value) - 1.0) > 1e-3:
                return f"occupancy {value}"
    groups = block.get("_atom_site_disorder_group")
    if groups is not None and any(g not in (".", "?") for g in groups):
        return "disorder group present"
    return None


MISSING_VALUES = ("?", ".", "")
MIN_PLANE_SPACING = 1.0  # Å, a cell thinner than this cannot hold organic molecules without overlaps
MAX_FRACTIONAL = 10.0  # |fractional coordinate| above this is a broken number (real files stay within [-1, 2])
_MMCIF_TAG = re.compile(r"(?m)^(\s*_[A-Za-z0-9_]+)\.")


def read_cif_text(path: Path) -> str:
    """A CIF file's text (UTF-8; undecodable bytes become U+FFFD, as pymatgen reads them).

    ``.mmcif`` files have their DDL2 tag names (``_cell.length_a``) rewritten to the DDL1
    names pymatgen reads (``_cell_length_a``).

    Raises:
        CrystalRejected: ``truncated`` when the file ends mid-line inside a loop.
    """
    text = Path(path).read_bytes().decode("utf-8", errors="replace")
    if Path(path).suffix.lower() == ".mmcif":
        text = _MMCIF_TAG.sub(r"\1_", text)
    last_line = text.rsplit("\n", 1)[-1].strip()
    ends_mid_line = bool(text) and not text.endswith(("\n", "\r"))
    in_loop = "data_" in text and "loop_" in text
    if ends_mid_line and in_loop and last_line and not last_line.startswith(("_", "#", ";", "data_", "loop_")):
        raise CrystalRejected(
            "truncated", f"{Path(path).name}: ends mid-line without a final newline: {last_line[-40:]!r}"
        )
    return text


def _atom_symbols_from_labels(parser, block, name: str) -> int:
    """Check every atom_site row names an element; fill ``?``/``.`` type symbols from labels.

    Returns:
        How many type symbols were taken from the labels.

    Raises:
        CrystalRejected: ``unknown_element`` for a row whose type symbol (or, when that is
        missing, its label) names no element.
    """
    from pymatgen.core import Element

    labels = block.data.get("_atom_site_label")
    if labels is None:
        raise CrystalRejected("unparsable", f"{name}: no _atom_site_label loop")
    types = block.data.get("_atom_site_type_symbol")
    from_labels = 0
    for index, label in enumerate(labels):
        raw = types[index] if types is not None else label
        use_label = types is not None and raw in MISSING_VALUES
        symbol = parser._parse_symbol(label if use_label else raw) if (label if use_label else raw) else None
        if not symbol or not Element.is_valid_symbol(symbol):
            what = f"label {label!r} (type symbol {raw!r})" if use_label else f"type symbol {raw!r}"
            raise CrystalRejected("unknown_element", f"{name}: atom {label}: {what} names no element")
        if use_label:
            types[index] = symbol
            from_labels += 1
    return from_labels


def _check_coordinates(block, name: str) -> None:
    """Refuse ``?``/``.``/non-numeric/non-finite/absurd (> 10) fractional coordinates (pymatgen reads ``.`` as 0)."""
    from pymatgen.io.cif import str2float

    labels = block.data["_atom_site_label"]
    for axis in "xyz":
        values = block.data.get(f"_atom_site_fract_{axis}")
        if values is None or len(values) != len(labels):
            raise CrystalRejected("unparsable", f"{name}: _atom_site_fract_{axis} column missing or short")
        for label, value in zip(labels, values):
            try:
                number = str2float(value) if value not in MISSING_VALUES else None
            except ValueError:
                number = None
            if number is None or not abs(number) <= MAX_FRACTIONAL:
                raise CrystalRejected("unparsable", f"{name}: atom {label}: fract_{axis} is {value!r}")


def _check_cell_parameters(block, name: str) -> None:
    """Refuse cell lengths that are not positive and angles outside (0°, 180°), as written in the file."""
    from pymatgen.io.cif import str2float

    for axis, angle in zip("abc", ("alpha", "beta", "gamma")):
        limits = ((f"_cell_length_{axis}", 0.0, np.inf, " Å"), (f"_cell_angle_{angle}", 0.0, 180.0, "°"))
        for key, low, high, unit in limits:
            value = block.data.get(key)
            if value is None or value in MISSING_VALUES:
                continue
            try:
                number = str2float(value)
            except ValueError:
                continue  # pymatgen names it
            if not (np.isfinite(number) and low < number < high):
                raise CrystalRejected("bad_cell", f"{name}: {key} is {value}{unit}, outside ({low:g}, {high:g})")


def _expected_site_count(parser, block) -> int:
    """Sites the atom_site rows give after symmetry expansion (each row's orbit, as pymatgen expands it).

    Must run after the block's structure was parsed (``parser.symmetry_operations`` is the block's).
    """
    from pymatgen.io.cif import str2float

    total = 0
    occupancies = block.data.get("_atom_site_occupancy")
    for index in range(len(block.data["_atom_site_label"])):
        if occupancies is not None:
            try:
                if str2float(occupancies[index]) <= 0:
                    continue
            except ValueError:
                pass
        coord = tuple(str2float(block.data[f"_atom_site_fract_{axis}"][index]) for axis in "xyz")
        total += len(parser._unique_coords([coord])[0])
    return total


def read_cif(path: str | Path, crystal_id: str | None = None) -> Crystal:
    """Read the first data block of a CIF file and expand its symmetry.

    Type symbols that are ``?`` or ``.`` are taken from the atom labels (``C12`` → C) and the
    count is recorded as ``meta["elements_from_labels"]``.

    Args:
        path: CIF file (``.cif``; ``.mmcif`` with DDL2 tag names is translated).
        crystal_id: id of the crystal; None = the file name without its suffix.

    Returns:
        The full unit cell.

    Raises:
        CrystalRejected: ``truncated``, ``unparsable``, ``disorder``, ``unknown_element``,
        ``site_count_mismatch`` or ``bad_cell``.
    """
    path = Path(path)
    name = path.name
    block, structure, expected, from_labels = _parse_first_block(read_cif_text(path), name)
    if not structure.is_ordered:
        raise CrystalRejected("disorder", f"{name}: partially occupied sites")
    if len(structure) != expected:
        rows = len(block.data["_atom_site_label"])
        raise CrystalRejected(
            "site_count_mismatch",
            f"{name}: {rows} atom_site rows give {expected} sites after "
            f"symmetry, but {len(structure)} were parsed (coincident atoms?)",
        )
    meta = {"file": name}
    formula_sum = block.data.get("_chemical_formula_sum")
    if isinstance(formula_sum, str) and formula_sum not in MISSING_VALUES:
        meta["formula_sum"] = formula_sum
    if from_labels:
        meta["elements_from_labels"] = from_labels
    return Crystal(
        crystal_id=crystal_id if crystal_id is not None else path.stem,
        source="cod_cif",
        numbers=np.array([site.specie.Z for site in structure], dtype=np.int64),
        frac=np.array(structure.frac_coords, dtype=np.float64),
        cell=np.array(structure.lattice.matrix, dtype=np.float64),
        meta=meta,
    )


def _parse_first_block(text: str, name: str):
    """Parse the first data block with pymatgen after this module's own checks.

    Returns:
        ``(block, structure, expected_sites, elements_from_labels)``.

    Raises:
        CrystalRejected: ``unparsable`` (also for any pymatgen failure), ``disorder``,
        ``unknown_element`` or ``bad_cell``.
    """
    from pymatgen.io.cif import CifParser

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            parser = CifParser.from_str(text, occupancy_tolerance=1.0)
            blocks = list(parser._cif.data.values())
            if not blocks:
                raise CrystalRejected("unparsable", f"{name}: no CIF data block")
            block = blocks[0]
            disorder = _cif_has_disorder(block.data)
            if disorder:
                raise CrystalRejected("disorder", f"{name}: {disorder}")
            from_labels = _atom_symbols_from_labels(parser, block, name)
            _check_coordinates(block, name)
            _check_cell_parameters(block, name)
            structure = parser._get_structure(block, primitive=False, symmetrized=False, check_occu=True)
            if structure is None:
                raise CrystalRejected("unparsable", f"{name}: no structure in the first data block")
            expected = _expected_site_count(parser, block)
    except CrystalRejected:
        raise
    except Exception as error:  # noqa: BLE001 - any parser failure is a rejection
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise CrystalRejected("unparsable", f"{name}: {type(error).__name__}: {first_line}") from None
    return block, structure, expected, from_labels


def check_crystal(crystal: Crystal) -> None:
    """Reject a crystal whose atoms or cell cannot be processed.

    Raises:
        CrystalRejected: ``unparsable`` (no atoms), ``unknown_element`` (an atomic number outside
        1..118, e.g. a parser's placeholder species) or ``bad_cell`` (non-finite values, or a
        lattice plane spacing below :data:`MIN_PLANE_SPACING`).
    """
    cid = crystal.crystal_id
    numbers = np.asarray(crystal.numbers)
    if len(numbers) == 0:
        raise CrystalRejected("unparsable", f"{cid}: no atoms")
    unknown = numbers[(numbers < 1) | (numbers >= len(CHEMICAL_SYMBOLS))]
    if len(unknown):
        raise CrystalRejected("unknown_element", f"{cid}: atomic number {int(unknown[0])} is no element")
    if not (np.isfinite(crystal.cell).all() and np.isfinite(crystal.frac).all()):
        raise CrystalRejected("bad_cell", f"{cid}: non-finite cell or coordinates")
    with np.errstate(all="ignore"):
        spacing = interplanar_spacings(crystal.cell).min()
    if not spacing >= MIN_PLANE_SPACING:
        raise CrystalRejected("bad_cell", f"{cid}: lattice plane spacing {spacing:.3g} Å < {MIN_PLANE_SPACING} Å")


def crystal_from_ase(atoms, crystal_id: str, source: str, meta: dict | None = None) -> Crystal:
    """Wrap an ASE ``Atoms`` (full cell) as a :class:`Crystal`."""
    return Crystal(
        crystal_id=crystal_id,
        source=source,
        numbers=np.asarray(atoms.numbers, dtype=np.int64),
        frac=np.asarray(atoms.get_scaled_positions(wrap=True), dtype=np.float64),
        cell=np.asarray(atoms.cell[:], dtype=np.float64),
        meta=dict(meta or {}),
    )


# ------------------------------------------------------------------ molecule perception


def hill_formula(numbers: np.ndarray) -> str:
    """Hill-order formula of a set of atoms, e.g. ``"C6H6"``."""
    counts = Counter(CHEMICAL_SYMBOLS[int(z)] for z in numbers)
    order = ["C", "H"] if "C" in counts else []
    order += sorted(s for s in counts if s not in order)
    return "".join(f"{s}{counts[s] if counts[s] > 1 else ''}" for s in order)


def interplanar_spacings(cell: np.ndarray) -> np.ndarray:
    """(3,) distances between the lattice planes spanned by each pair of cell vectors (rows of ``cell``)."""
    volume = abs(np.linalg.det(cell))
    return np.array([volume / np.linalg.norm(np.cross(cell[(k + 1) % 3], cell[(k + 2) % 3])) for k in range(3)])


def _periodic_bonds(crystal: Crystal, tolerance: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bonded pairs ``(i, j, image)``: atom j in cell ``image`` is bonded to atom i in cell 0."""
    radii = COVALENT_RADII[crystal.numbers]
    cutoff = 2 * radii.max() + tolerance
    reach = [np.arange(-r, r + 1) for r in np.ceil(cutoff / interplanar_spacings(crystal.cell)).astype(int)]
    images = np.stack(np.meshgrid(*reach, indexing="ij"), -1).reshape(-1, 3)
    home = crystal.frac @ crystal.cell
    shifted = (crystal.frac[None] + images[:, None]).reshape(-1, 3) @ crystal.cell
    pairs = cKDTree(home).sparse_distance_matrix(cKDTree(shifted), cutoff, output_type="coo_matrix")
    n = len(crystal.numbers)
    i, flat_j, dist = pairs.row, pairs.col, pairs.data
    j, image_id = flat_j % n, flat_j // n
    bonded = (dist < radii[i] + radii[j] + tolerance) & (dist > 1e-3)
    i, j, dist, image_id = i[bonded], j[bonded], dist[bonded], image_id[bonded]
    # An H atom bonds to its nearest partner only, so short hydrogen bonds (O-H...O)
    # do not chain molecules together.
    nearest = np.full(n, np.inf)
    np.minimum.at(nearest, i, dist)
    is_h = crystal.numbers == 1
    keep = (~is_h[i] | (dist <= nearest[i] + 1e-6)) & (~is_h[j] | (dist <= nearest[j] + 1e-6))
    return i[keep], j[keep], images[image_id[keep]]


def _connected_molecules(
    n_atoms: int, i: np.ndarray, j: np.ndarray, image: np.ndarray, crystal_id: str
) -> tuple[list[list[int]], np.ndarray]:
    """Connected components with a consistent image shift per atom (polymer check)."""
    neighbours: list[list[tuple[int, tuple]]] = [[] for _ in range(n_atoms)]
    for a, b, img in zip(i.tolist(), j.tolist(), image.tolist()):
        neighbours[a].append((b, tuple(img)))
    shift = np.zeros((n_atoms, 3), dtype=np.int64)
    seen = np.zeros(n_atoms, dtype=bool)
    components = []
    for root in range(n_atoms):
        if seen[root]:
            continue
        seen[root] = True
        members, queue = [root], deque([root])
        while queue:
            a = queue.popleft()
            for b, img in neighbours[a]:
                expected = shift[a] + img
                if not seen[b]:
                    seen[b] = True
                    shift[b] = expected
                    members.append(b)
                    queue.append(b)
                elif not np.array_equal(shift[b], expected):
                    offset = tuple((expected - shift[b]).tolist())
                    raise CrystalRejected("polymeric", f"{crystal_id}: atom {b} is bonded to its own image {offset}")
        components.append(sorted(members))
    return components, shift


def _symmetry_classes(crystal: Crystal) -> np.ndarray | None:
    """spglib's equivalent-atom label per atom, or None when symmetry search fails."""
    import spglib

    cell = (crystal.cell, crystal.frac, crystal.numbers)
    for symprec in (0.01, 0.05, 0.1):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            dataset = spglib.get_symmetry_dataset(cell, symprec=symprec)
        if dataset is not None:
            return np.asarray(dataset.equivalent_atoms)
    return None


def _check_valence(numbers: np.ndarray, i: np.ndarray, j: np.ndarray, crystal_id: str) -> None:
    degree = np.bincount(i, minlength=len(numbers))
    for atom, (z, d) in enumerate(zip(numbers.tolist(), degree.tolist())):
        if z == 1 and d != 1:
            raise CrystalRejected("valence", f"{crystal_id}: H atom {atom} has {d} bonds")
        if d > MAX_BONDS.get(z, 6):
            symbol = CHEMICAL_SYMBOLS[z]
            raise CrystalRejected("valence", f"{crystal_id}: {symbol} atom {atom} has {d} bonds")


def check_with_rdkit(numbers: np.ndarray, positions: np.ndarray, crystal_id: str) -> str:
    """Assign bond orders with RDKit; radicals or failure mean missing H or bad atoms.

    Args:
        numbers: (n,) atomic numbers of one molecule.
        positions: (n, 3) its whole (unwrapped) coordinates, Å.
        crystal_id: for error messages.

    Returns:
        The canonical SMILES RDKit perceives.

    Raises:
        CrystalRejected: ``missing_h`` when RDKit needs radicals or cannot assign bond orders.
    """
    from rdkit import Chem, RDLogger
    from rdkit.Chem import rdDetermineBonds

    RDLogger.DisableLog("rdApp.*")
    block = f"{len(numbers)}\n\n" + "".join(
        f"{CHEMICAL_SYMBOLS[int(z)]} {x:.6f} {y:.6f} {w:.6f}\n" for z, (x, y, w) in zip(numbers, positions)
    )
    mol = Chem.MolFromXYZBlock(block)
    try:
        rdDetermineBonds.DetermineConnectivity(mol, useHueckel=False, covFactor=1.3)
        rdDetermineBonds.DetermineBondOrders(mol, charge=0, allowChargedFragments=True)
    except Exception as error:  # noqa: BLE001
        raise CrystalRejected("missing_h", f"{crystal_id}: RDKit bond orders failed ({error})") from None
    radicals = sum(atom.GetNumRadicalElectrons() for atom in mol.GetAtoms())
    if radicals:
        raise CrystalRejected("missing_h", f"{crystal_id}: {radicals} radical electrons (missing H?)")
    return Chem.MolToSmiles(Chem.RemoveHs(mol, sanitize=False))


def _check_against_smiles(formula: str, smiles: str | None, crystal_id: str) -> None:
    """Compare with the formula of the entry's own SMILES (ASE-db rows carry one)."""
    if not smiles:
        return
    from rdkit import Chem
    from rdkit.Chem.rdMolDescriptors import CalcMolFormula

    molecule = Chem.MolFromSmiles(smiles) if "." not in smiles else None  # one component only
    if molecule is None:
        return
    expected = CalcMolFormula(molecule)
    if expected != formula:
        raise CrystalRejected(
            "formula_mismatch", f"{crystal_id}: perceived {formula}, SMILES {smiles} gives {expected}"
        )


def perceive_molecules(
    crystal: Crystal,
    max_atoms_per_molecule: int = 100,
    bond_tolerance: float = BOND_TOLERANCE,
    use_rdkit: bool = True,
) -> MolecularCrystal:
    """Split a full unit cell into whole, identical molecules.

    Atoms closer than the sum of covalent radii plus ``bond_tolerance`` are bonded, across
    cell edges too. Each molecule is unwrapped and shifted so its centroid lies in the home
    cell. Atoms of a molecule are ordered by their spglib symmetry class, so symmetry copies
    list their atoms in the same order.

    Args:
        crystal: the full unit cell.
        max_atoms_per_molecule: larger molecules are rejected (``too_many_atoms``).
        bond_tolerance: Å added to the covalent-radius sum.
        use_rdkit: also check each independent molecule's bonding with RDKit.

    Returns:
        The molecules and the representatives of the symmetry-independent ones.

    Raises:
        CrystalRejected: with the first problem found.
    """
    check_crystal(crystal)
    cid = crystal.crystal_id
    _check_composition(crystal)
    components, shift, compositions = _bonded_components(crystal, max_atoms_per_molecule, bond_tolerance)
    molecules = _whole_molecules(crystal, components, shift)
    independent = _independent_representatives(molecules)
    formula = next(iter(compositions))
    if use_rdkit:
        _check_against_smiles(formula, crystal.meta.get("mol_smi"), cid)
        for index in independent:
            crystal.meta.setdefault(
                "rdkit_smiles", check_with_rdkit(molecules[index].numbers, molecules[index].positions, cid)
            )
    return MolecularCrystal(crystal, molecules, formula, independent)


def _check_composition(crystal: Crystal) -> None:
    """Refuse a crystal that is not organic (no C, other elements) or has no H atoms."""
    cid = crystal.crystal_id
    elements = set(crystal.numbers.tolist())
    if 6 not in elements or not elements <= ORGANIC_ELEMENTS:
        others = sorted(CHEMICAL_SYMBOLS[z] for z in elements - ORGANIC_ELEMENTS)
        problem = f"non-organic elements {others}" if others else "no carbon"
        raise CrystalRejected("not_organic", f"{cid}: {problem}")
    if 1 not in elements:
        stated = crystal.meta.get("formula_sum", "")
        says_h = re.search(r"(^|\s)H[\d.]*(\s|$)", stated)
        hint = f" although _chemical_formula_sum is {stated!r} (H not located, or rows lost)" if says_h else ""
        raise CrystalRejected("missing_h", f"{cid}: no H atoms{hint}")


def _bonded_components(crystal: Crystal, max_atoms: int, bond_tolerance: float):
    """Bond the cell's atoms across cell edges and group them into molecules of one kind.

    Returns:
        ``(components, shift, compositions)``: atom indices per molecule, the (n, 3) cell shift
        that makes every molecule whole, and the Hill formula counts.

    Raises:
        CrystalRejected: ``disorder`` (H-H bonds), ``polymeric``, ``multiple_molecules``,
        ``too_many_atoms`` or ``valence``.
    """
    cid = crystal.crystal_id
    numbers = crystal.numbers
    i, j, image = _periodic_bonds(crystal, bond_tolerance)
    hh = (numbers[i] == 1) & (numbers[j] == 1)
    if hh.any():
        raise CrystalRejected("disorder", f"{cid}: H atoms {i[hh][0]} and {j[hh][0]} bonded (alternative H sites)")
    components, shift = _connected_molecules(len(numbers), i, j, image, cid)
    compositions = Counter(hill_formula(numbers[c]) for c in components)
    if len(compositions) > 1:
        kinds = ", ".join(f"{n}x {f}" for f, n in compositions.most_common())
        raise CrystalRejected("multiple_molecules", f"{cid}: {kinds}")
    size = len(components[0])
    if size > max_atoms:
        raise CrystalRejected("too_many_atoms", f"{cid}: {size} atoms per molecule > {max_atoms}")
    _check_valence(numbers, i, j, cid)
    return components, shift, compositions


def _whole_molecules(crystal: Crystal, components: list[list[int]], shift: np.ndarray) -> list[Molecule]:
    """Unwrapped molecules with their centroid in the home cell, atoms ordered by symmetry class."""
    numbers = crystal.numbers
    classes = _symmetry_classes(crystal)
    if classes is None:  # treat every molecule as a copy of one (Z' = 1)
        classes = np.zeros(len(numbers), dtype=np.int64)
    unwrapped = (crystal.frac + shift) @ crystal.cell
    inverse_cell = np.linalg.inv(crystal.cell)
    molecules = []
    for atoms in components:
        atoms = np.array(sorted(atoms, key=lambda a: (classes[a], a)), dtype=np.int64)
        positions = unwrapped[atoms]
        home_shift = np.floor(positions.mean(axis=0) @ inverse_cell)
        positions = positions - home_shift @ crystal.cell
        orbit = int(classes[atoms].min())
        molecules.append(Molecule(numbers[atoms], positions, orbit, atoms))
    return molecules


def _independent_representatives(molecules: list[Molecule]) -> list[int]:
    first: dict[int, int] = {}
    for index, molecule in enumerate(molecules):
        first.setdefault(molecule.orbit, index)
    return sorted(first.values())
