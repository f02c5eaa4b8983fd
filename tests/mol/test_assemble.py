"""kflow_mol.assemble: SMILES / molecule / crystal -> predicted cluster, reports, model loading, bad input.

A tiny random-weight network in the training script's checkpoint format stands in for a trained
one (the code path is the same; only the quality differs), so every test runs in seconds.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from _tiny_assembly import tiny_checkpoint

from kflow.training.checkpoint import FORMAT_VERSION, save_checkpoint
from kflow_mol import assemble as assemble_module
from kflow_mol.assemble import (
    DEFAULT_MODEL,
    EXPECTED_DEFAULT,
    AssembleError,
    AssemblyResult,
    best_draw,
    export_model,
    fcc_sites,
    load_model,
    packing_estimate,
    read_input,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures"
GOOD_CIF = FIXTURES / "good" / "2000334.cif"
ASPIRIN = "CC(=O)Oc1ccccc1C(=O)O"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "last.pt")


def _check_result(result: AssemblyResult, num_mols: int, atoms: int):
    assert result.species.shape == (num_mols * atoms,)
    assert result.positions.shape == (num_mols * atoms, 3) and np.isfinite(result.positions).all()
    assert result.mol_index.shape == result.species.shape and result.mol_index.max() == num_mols - 1
    assert result.trajectory.shape[1:] == result.positions.shape and len(result.ks) == len(result.trajectory)
    np.testing.assert_allclose(result.trajectory[-1], result.positions, atol=1e-6)
    np.testing.assert_allclose(result.trajectory[0], result.start, atol=1e-4)
    # rigid copies: every molecule keeps the conformer's internal distances
    pos = result.positions.reshape(num_mols, atoms, 3)
    d0 = np.linalg.norm(pos[0, :, None] - pos[0, None], axis=-1)
    for m in range(1, num_mols):
        np.testing.assert_allclose(np.linalg.norm(pos[m, :, None] - pos[m, None], axis=-1), d0, atol=1e-3)


def test_smiles_to_cluster_with_every_output(tiny, tmp_path):
    result = assemble_module.assemble(ASPIRIN, num_mols=5, model=tiny, seed=0)
    _check_result(result, 5, 21)
    report = result.report
    assert report["formula"] == "C9H8O4" and report["kind"] == "smiles" and report["num_mols"] == 5
    assert report["start_state"]["kind"] == "virtual_fcc" and report["start_state"]["box_half_width_A"] > 0
    prediction = report["prediction"]
    for key in ("closest_contact_A", "collision_pct", "separation_pct", "packing"):
        assert key in prediction
    assert "pm_atom" not in prediction  # no reference for a lone molecule
    assert prediction["packing"]["density_g_cm3"] > 0
    paths = result.write(tmp_path / "out")
    names = {p.name for p in paths}
    assert {"smiles_predicted.cif", "smiles_predicted.xyz", "smiles_predicted.pdb", "report.json"} <= names
    assert {"smiles_trajectory.xyz", "smiles.png"} <= names
    from ase.io import read

    for name in ("smiles_predicted.cif", "smiles_predicted.xyz", "smiles_predicted.pdb"):
        atoms = read(tmp_path / "out" / name)
        assert len(atoms) == 5 * 21
    frames = read(tmp_path / "out" / "smiles_trajectory.xyz", index=":")
    assert len(frames) == len(result.ks) and frames[-1].info["k"] == pytest.approx(2.0)
    assert json.loads((tmp_path / "out" / "report.json").read_text())["formula"] == "C9H8O4"


def test_kflow_mol_assemble_is_callable(tiny):
    import kflow_mol

    result = kflow_mol.assemble("CCO", num_mols=3, model=tiny)
    assert result.positions.shape == (27, 3)


def test_crystal_to_cluster_with_pm(tiny):
    result = assemble_module.assemble(str(GOOD_CIF), start="local", model=tiny, seed=1)
    _check_result(result, 17, 52)
    prediction = result.report["prediction"]
    assert prediction["pm_atom"] > 0 and prediction["pm_center"] > 0
    assert prediction["identity_pm_atom"] > 0
    assert result.reference is not None and result.report["reference"]["collision_pct"] == 0
    # the real cluster's density estimate is that of the crystal (Voronoi cell of the centre)
    assert 1.0 < result.report["reference"]["packing"]["density_g_cm3"] < 1.6


def test_same_seed_same_output_other_seed_other_start(tiny):
    first = assemble_module.assemble(ASPIRIN, num_mols=4, model=tiny, seed=3)
    again = assemble_module.assemble(ASPIRIN, num_mols=4, model=tiny, seed=3)
    other = assemble_module.assemble(ASPIRIN, num_mols=4, model=tiny, seed=4)
    np.testing.assert_array_equal(first.positions, again.positions)
    assert first.report["prediction"] == again.report["prediction"]
    assert not np.allclose(first.start, other.start)


def test_samples_keep_the_physically_best_and_report_every_draw(tiny):
    result = assemble_module.assemble(ASPIRIN, num_mols=4, model=tiny, samples=3, seed=0)
    draws = result.report["draws"]
    assert [d["sample"] for d in draws] == [0, 1, 2]
    assert result.report["chosen_sample"] == best_draw(draws)
    assert result.report["prediction"] == draws[result.report["chosen_sample"]]
    # the first draw of samples=3 is the draw of samples=1 with the same seed
    single = assemble_module.assemble(ASPIRIN, num_mols=4, model=tiny, samples=1, seed=0)
    assert single.report["draws"][0]["closest_contact_A"] == pytest.approx(draws[0]["closest_contact_A"], abs=1e-3)


def test_best_draw_prefers_fewer_collisions_then_typical_contacts():
    draws = [
        {"colliding_pairs": 2, "contact_score": 0.0},
        {"colliding_pairs": 0, "contact_score": 0.3},
        {"colliding_pairs": 0, "contact_score": 0.1},
    ]
    assert best_draw(draws) == 2


def test_molecule_files(tiny, tmp_path):
    from ase.io import write
    from rdkit import Chem
    from rdkit.Chem import AllChem

    mol = Chem.AddHs(Chem.MolFromSmiles("c1ccccc1O"))
    AllChem.EmbedMolecule(mol, randomSeed=1)
    Chem.MolToMolFile(mol, str(tmp_path / "phenol.mol"))
    writer = Chem.SDWriter(str(tmp_path / "phenol.sdf"))
    writer.write(mol)
    writer.close()
    from ase import Atoms

    atoms = Atoms(numbers=[a.GetAtomicNum() for a in mol.GetAtoms()], positions=mol.GetConformer().GetPositions())
    write(tmp_path / "phenol.xyz", atoms)
    write(tmp_path / "phenol.pdb", atoms)
    for name in ("phenol.mol", "phenol.sdf", "phenol.xyz", "phenol.pdb"):
        molecule = read_input(tmp_path / name)
        assert molecule.kind == "molecule" and molecule.formula == "C6H6O", name
    result = assemble_module.assemble(tmp_path / "phenol.sdf", num_mols=3, model=tiny)
    assert result.positions.shape == (39, 3)


def test_fcc_start_box_has_the_density_of_a_real_cluster():
    sites = fcc_sites(17, 200.0)
    radius = np.linalg.norm(sites - sites.mean(0), axis=1).max()
    assert radius / 200.0 ** (1 / 3) == pytest.approx(1.5929, abs=1e-3)
    numbers = np.full((17, 1), 6)
    estimate = packing_estimate(numbers, sites[:, None, :])
    assert estimate["method"] == "voronoi" and estimate["volume_per_molecule_A3"] == pytest.approx(200.0, rel=1e-6)


# ----- bad input: one line each ------------------------------------------------------------------
def _one_line(error: pytest.ExceptionInfo) -> str:
    text = str(error.value)
    assert "\n" not in text
    return text


@pytest.mark.parametrize(
    "source, match",
    [
        ("C1CC(", "SMILES"),
        ("not-a-molecule!!", "SMILES"),
        ("[Na+].[Cl-]", "components"),
        ("missing_file.sdf", "does not exist"),
    ],
)
def test_bad_smiles_and_missing_files(tiny, source, match):
    with pytest.raises(AssembleError, match=match) as error:
        assemble_module.assemble(source, model=tiny)
    _one_line(error)


def test_inorganic_and_polymeric_structures(tiny, tmp_path):
    with pytest.raises(AssembleError, match="not_organic") as error:
        assemble_module.assemble(str(FIXTURES / "broken" / "nacl.cif"), model=tiny)
    _one_line(error)
    with pytest.raises(AssembleError, match="polymeric") as error:
        assemble_module.assemble(str(polyethylene(tmp_path / "pe.xyz")), model=tiny)
    _one_line(error)


def polyethylene(path: Path) -> Path:
    """A periodic polyethylene chain (extended XYZ with a cell): a molecule bonded to its own image."""
    from ase import Atoms
    from ase.io import write

    a = 2.55
    positions = [
        (0.0, 0.0, 0.0),
        (a / 2, 0.86, 0.0),
        (0.0, -0.55, 0.88),
        (0.0, -0.55, -0.88),
        (a / 2, 1.41, 0.88),
        (a / 2, 1.41, -0.88),
    ]
    atoms = Atoms("C2H4", positions=positions, cell=[a, 6.0, 6.0], pbc=True)
    atoms.center(axis=(1, 2))
    write(path, atoms, format="extxyz")
    return path


def test_molecule_over_the_atom_limit(tiny):
    long_chain = "C" * 40  # C40H82: 122 atoms > 100
    with pytest.raises(AssembleError, match="too_many_atoms") as error:
        assemble_module.assemble(long_chain, model=tiny)
    assert "limit" in _one_line(error)


def test_missing_checkpoint_and_other_system_or_version(tiny, tmp_path):
    with pytest.raises(AssembleError, match="does not exist"):
        load_model(tmp_path / "nope.pt")
    image = tmp_path / "image.pt"
    save_checkpoint(image, {"format_version": FORMAT_VERSION, "model": {}, "run_config": {"transform": "wavelet"}})
    with pytest.raises(AssembleError, match="not a molecular-assembly checkpoint") as error:
        load_model(image)
    _one_line(error)
    old = tmp_path / "old_format.pt"
    save_checkpoint(old, {"format_version": FORMAT_VERSION + 1, "model": {}})
    with pytest.raises(AssembleError, match="format_version") as error:
        load_model(old)
    _one_line(error)
    renamed = tiny_checkpoint(tmp_path / "renamed.pt", colour="red")  # a key this code does not know
    with pytest.raises(AssembleError, match="another version") as error:
        load_model(renamed)
    _one_line(error)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(AssembleError, match="cannot be read"):
        load_model(garbage)


def test_weights_that_do_not_fit_the_network_are_refused(tmp_path):
    path = tiny_checkpoint(tmp_path / "tiny.pt")
    state = torch.load(path, weights_only=True)
    state["run_config"]["model"]["irreps_hidden"] = "16x0e+2x1o+2x1e"
    save_checkpoint(path, state)
    with pytest.raises(AssembleError, match="another version"):
        load_model(path)


def test_output_folder_that_cannot_be_written(tiny, tmp_path):
    result = assemble_module.assemble("CCO", num_mols=3, model=tiny)
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(AssembleError, match="cannot be written") as error:
        result.write(blocker / "out")
    _one_line(error)
    assert blocker.read_text() == "x"


def test_export_writes_a_small_self_describing_model(tiny, tmp_path):
    out = export_model(tiny, tmp_path / "shipped.pt")
    assert out.stat().st_size < 5e6
    state = torch.load(out, weights_only=True)
    assert "optimizer" not in state
    info = state["kflow_mol_assemble"]
    assert info["K"] == 2 and info["preset"] == "S" and info["start"] == "local" and info["train_steps"] == 7
    loaded = load_model(out)
    assert loaded.info["format"] == 1 and loaded.trained_start == "local"


def test_a_package_file_that_disagrees_with_itself_is_refused(tiny, tmp_path):
    out = export_model(tiny, tmp_path / "shipped.pt")
    state = torch.load(out, weights_only=True)
    state["kflow_mol_assemble"]["K"] = 3
    save_checkpoint(out, state)
    with pytest.raises(AssembleError, match="says K=3"):
        load_model(out)


@pytest.mark.parametrize("start", ["local", "scrambled"])
def test_the_shipped_models_match_what_the_code_expects(start):
    from kflow_mol.assemble import resolve_model_path

    path = resolve_model_path("default", start)
    if not path.is_file():
        pytest.skip("no shipped model in this checkout")
    assert path.stat().st_size <= 5e6
    loaded = load_model("default", start=start)
    assert loaded.path == path
    for key in ("K", "preset", "system"):
        assert loaded.info[key] == EXPECTED_DEFAULT[key]
    assert loaded.info["start"] == (start if path != DEFAULT_MODEL else "local")


def test_relax_clashes_moves_molecules_rigidly_until_no_clash_is_left():
    from kflow_mol.assemble import contact_ratios, relax_clashes

    rng = np.random.default_rng(0)
    molecule = rng.normal(scale=0.8, size=(6, 3))
    numbers = np.array([[6, 6, 8, 1, 1, 1]] * 4)
    positions = np.stack([molecule + shift for shift in ([0, 0, 0], [0.5, 0, 0], [0, 0.6, 0], [9, 0, 0])])
    relaxed, info = relax_clashes(numbers, positions)
    assert not info["clashes_left"] and info["iterations"] > 0
    assert contact_ratios(numbers, relaxed)[1].min() >= 0.7 - 1e-9
    offsets = relaxed - positions  # one translation per molecule
    np.testing.assert_allclose(offsets, np.broadcast_to(offsets[:, :1], offsets.shape), atol=1e-12)
    again, info = relax_clashes(numbers, relaxed)
    np.testing.assert_array_equal(again, relaxed)
    assert info["iterations"] == 0


def test_relaxed_prediction_keeps_the_raw_scores(tiny):
    result = assemble_module.assemble(str(GOOD_CIF), start="local", model=tiny, seed=0)
    prediction = result.report["prediction"]
    assert prediction["collision_pct"] == 0 and prediction["relaxation"]["clashes_left"] is False
    assert {"pm_atom", "collision_pct", "closest_contact_A"} <= set(prediction["raw"])
    raw = assemble_module.assemble(str(GOOD_CIF), start="local", model=tiny, seed=0, relax=False)
    assert raw.report["prediction"]["pm_atom"] == pytest.approx(prediction["raw"]["pm_atom"])
    assert "raw" not in raw.report["prediction"]


def test_the_readme_quick_start_runs(tmp_path, monkeypatch):
    """The Python block of README's "Pack a molecule" section, as written (shipped model, 8 draws)."""
    from kflow_mol.assemble import resolve_model_path

    if not resolve_model_path("default", "scrambled").is_file():
        pytest.skip("no shipped model in this checkout")
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme[readme.index("## Pack a molecule") :]
    code = section[section.index("```python") + len("```python") : section.index("```", section.index("```python") + 9)]
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    result = namespace["result"]
    assert result.positions.shape == (357, 3) and result.report["samples"] == 8
    assert (tmp_path / "outputs" / "aspirin" / "report.json").is_file()
