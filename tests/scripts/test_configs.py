"""Every config file composes into its schema, and the scripts stay thin edges."""

import ast
from pathlib import Path

import pytest

from kflow_mol.cli import CONFIG_DIR, compose
from kflow_mol.config import AssemblyConfig, BenchmarkConfig, EvaluateConfig
from kflow_mol.experiment import build_flow, validate
from kflow_mol.models import build_model

ROOT = Path(__file__).resolve().parents[2]
ASSEMBLY_SCHEMAS = {
    "train_assembly": AssemblyConfig,
    "benchmark_assembly": BenchmarkConfig,
    "evaluate_assembly": EvaluateConfig,
}
DATA_GROUPS = sorted(p.stem for p in (CONFIG_DIR / "data").glob("*.yaml"))
MODEL_GROUPS = sorted(p.stem for p in (CONFIG_DIR / "model").glob("*.yaml"))


def test_every_assembly_config_file_has_a_schema():
    assert {p.stem for p in CONFIG_DIR.glob("*.yaml")} == set(ASSEMBLY_SCHEMAS)


@pytest.mark.parametrize("name", sorted(ASSEMBLY_SCHEMAS))
@pytest.mark.parametrize("data", DATA_GROUPS)
def test_assembly_configs_compose_with_every_data_group(name, data):
    extra = ["checkpoint=run/checkpoints/last.pt"] if name == "evaluate_assembly" else []
    cfg = compose(name, [f"data={data}", *extra], ASSEMBLY_SCHEMAS[name])
    assert isinstance(cfg, ASSEMBLY_SCHEMAS[name])
    assert cfg.data.source in ("pyxtal", "cif", "prepared", "real")


@pytest.mark.parametrize("model", MODEL_GROUPS)
def test_every_model_group_instantiates(model):
    cfg = compose("train_assembly", [f"model={model}"], AssemblyConfig)
    assert cfg.model.preset == model
    validate(cfg)  # builds the flow and the network
    network = build_model(**cfg.model.build_kwargs())
    assert sum(p.numel() for p in network.parameters()) > 0
    assert build_flow(cfg).num_bands == cfg.K


def test_benchmark_methods_are_checked_by_the_schema():
    from kflow.training import ConfigError

    with pytest.raises(ConfigError, match="unknown method 'nope'"):
        compose("benchmark_assembly", ["methods=[identity,nope]"], BenchmarkConfig)


def _imports(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module.split(".")[0])
    return modules


def test_no_script_imports_another_script_or_edits_sys_path():
    scripts = sorted((ROOT / "scripts").glob("*.py"))
    names = {p.stem for p in scripts}
    for path in scripts:
        assert not (_imports(path) & names), f"{path.name} imports a script: {_imports(path) & names}"
        assert "sys.path.insert" not in path.read_text(), f"{path.name} edits sys.path"


@pytest.mark.parametrize(
    "method, head",
    [
        ("gnn_md", "rigid"),
        ("crystalsde_vp", "atom"),
        ("crystalflow_ve", "atom"),
        ("assembleflow", "rigid"),
        ("kflow_assembleflow_K3", "rigid"),
    ],
)
def test_every_table5_system_is_a_config_of_the_same_engine(method, head):
    from kflow_mol.config import run_name, with_method

    cfg = with_method(compose("benchmark_assembly", [], BenchmarkConfig), method)
    assert cfg.model.head == head and run_name(cfg) == method
    validate(cfg)
    assert build_flow(cfg).head == head
