"""The typed configuration of the molecular branch: every default lives here, once.

The dataclasses are plain (no Hydra import at module level). The scripts register them as
Hydra structured configs with :func:`register_configs`, so the YAML files under
``configs/assembly/`` only pick groups and change values: an unknown key or a value of the
wrong type is refused by Hydra before any work, and :func:`to_config` turns the composed
config into these dataclasses, whose ``__post_init__`` checks the choices.

Values that a library constructor checks itself (``K`` by :class:`~kflow_mol.flow.AssemblyFlow`,
the preset by :func:`~kflow_mol.models.build_model`, the train group by
:class:`~kflow.training.TrainConfig`) are not checked here again: :func:`kflow_mol.experiment.validate`
builds those objects before any data is loaded.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

from kflow.training import ConfigError, TrainConfig
from kflow.training.config import (
    check_choice,
    check_range,
    check_run_level_keys,
    from_dict,
    run_train_config,
)

DATA_SOURCES = ("pyxtal", "cif", "prepared", "pyxtal_random", "cod_cluster17", "pyxtal_mech", "real", "ase")
START_PRESETS = ("local", "scrambled", "sites")
"""Start-state presets (:data:`kflow_mol.data.start_states.START_PRESETS`); ``sites`` is the
orientation-only diagnostic (centroids on their crystal sites), not a benchmark default."""
BENCHMARK_STARTS = ("local", "scrambled")
SAMPLE_METHODS = ("euler", "heun", "rk4", "dopri5", "pc", "ode")  # pc / ode: the score-based systems
EDGE_MODES = ("knn", "radius")
TEST_SETS = ("testdb", "cod", "mech")
VAL_METRICS = ("pm_atom", "pm_center", "orientation_median_deg")  # kflow_mol.validation
METHOD_VARIANTS: dict[str, dict[str, Any]] = {
    "aware": {"model.start_aware": True},
    "full": {"model.start_aware": True, "flow.start_motion": "full"},
    "proj": {"flow.project": True},
    "noproj": {"flow.project": False},
    "cb": {"flow.loss_current_band": True},
    "fresh": {"data.fresh_starts": True},
    "sym": {"flow.symmetric_targets": True},
    "sc": {"model.self_condition": True},
    "lab": {"flow.rotation_frame": "lab"},
    "pose": {"flow.parametrization": "endpose", "model.head": "pose"},
    "tfirst": {"flow.pose_order": "translation_first"},
    "l4": {"model.sh_lmax": 4},
    "deep": {"model.mol_layers": 4},
    "canon": {"flow.start_frame": "canonical"},
}
"""Suffixes of a method name (``kflow_K3+aware+fresh``) and the config changes they make."""


@dataclass
class DataConfig:
    """Where the clusters come from.

    Attributes:
        source: one of ``DATA_SOURCES`` (``pyxtal``: the embedded test.db crystals).
        input: raw input folder (``cif`` and ``cod_cluster17`` sources), file or folder (``ase``).
        root: data root of ``real`` (every real crystal, :mod:`kflow_mol.data.real`); ``None``:
            ``<repo>/../shared/data``. Used as ``input`` when that is unset.
        folder: processed folder (``prepared``), or where to build (``None``: the cache).
        start: start-state preset when building (``None``: fixed by a prepared dataset).
        repeats: start states per cluster centre when building.
        max_train: cap on training clusters (``None``: all).
        subset_seed: with ``max_train``, keep a seeded random subset of the training clusters
            (the first ``max_train`` of one fixed permutation, so smaller subsets are nested in
            larger ones: scaling curves); ``None`` keeps the first ``max_train`` in split order.
        max_test: cap on test clusters (``None``: all).
        fresh_starts: draw a new start state every time a training cluster is drawn (sources
            whose start scheme is ours; the published CSV layout keeps its starts), seeded
            through the Trainer's ``StepDraws`` (:mod:`kflow_mol.data.fresh_starts`).
    """

    source: str = "pyxtal"
    input: str | None = None
    root: str | None = None
    folder: str | None = None
    start: str | None = "local"
    repeats: int | None = 1
    max_train: int | None = None
    max_test: int | None = None
    subset_seed: int | None = None
    fresh_starts: bool = False

    def __post_init__(self):
        check_choice("data.source", self.source, DATA_SOURCES)
        if self.root is not None:
            if self.input not in (None, self.root):
                raise ConfigError(f"data.root={self.root!r} and data.input={self.input!r}: set only one")
            self.input = self.root
        if self.source == "ase" and not self.input:
            raise ConfigError("data.source=ase needs data.input=<structure file or folder>")
        if self.start is not None:
            check_choice("data.start", self.start, START_PRESETS)
        for name in ("repeats", "max_train", "max_test"):
            if getattr(self, name) is not None:
                check_range(f"data.{name}", getattr(self, name), minimum=1)


@dataclass
class ModelConfig:
    """The AssemblyGNN: a size preset and the overrides of it (``None`` keeps the preset's value).

    Attributes:
        preset: ``S``, ``M`` or ``L`` (``kflow_mol.models.PRESETS``).
        head: ``rigid`` (per-molecule translation + rotation), ``atom`` (per-atom velocity) or
            ``pose`` (the crystal pose, for ``flow.parametrization=endpose``).
        edge_mode: ``knn`` or ``radius`` atom-level edges.
        k_intra: intra-molecular neighbours per atom.
        k_inter: inter-molecular neighbours per atom.
        radius: cutoff (Å) in radius mode.
        start_aware: give the network each molecule's band weights and its motion from the
            start (``AssemblyGNN(start_aware=True)``); ``False`` is the blind network.
        irreps_hidden: hidden irreps (``None``: the preset's).
        mol_layers: molecule-level layers over the whole cluster (``None``: the preset's).
        sh_lmax: degree of the spherical harmonics encoding orientations (``None``: 2).
        self_condition: feed the network its own previous velocity (``AssemblyGNN(self_condition=True)``).
    """

    preset: str = "S"
    head: str = "rigid"
    edge_mode: str = "knn"
    k_intra: int | None = None
    k_inter: int | None = None
    radius: float = 5.0
    start_aware: bool = False
    irreps_hidden: str | None = None
    mol_layers: int | None = None
    sh_lmax: int | None = None
    self_condition: bool = False

    def __post_init__(self):
        check_choice("model.edge_mode", self.edge_mode, EDGE_MODES)

    def build_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :func:`kflow_mol.models.build_model` (``None`` entries dropped)."""
        return {key: value for key, value in dataclasses.asdict(self).items() if value is not None}


@dataclass
class FlowConfig:
    """The rigid K-Flow path.

    Attributes:
        mode: ``rigid`` (per-molecule translation + rotation) or ``cartesian`` (all-atom
            linear flow matching, CrystalFlow-LERP; needs ``K = 1`` and ``model.head = atom``).
        kernel_width: graph kernel width over the START centroids, in Å, or ``"median"``.
        grouping: ``equal_count`` or ``equal_radius`` grouping of graph eigenvalues into bands.
        reverse: move local (high) bands first.
        project: project the predicted velocity onto the moving band at sampling
            (``None``: on for K > 1).
        loss_current_band: regress only the moving band's velocity coefficients.
        start_motion: what a start-aware network sees of each molecule's motion from the
            start: ``settled`` (finished bands only) or ``full``.
        symmetric_targets: train on the minimal-angle symmetry-equivalent rotation of every
            molecule (:mod:`kflow_mol.body_symmetry`), not the file atom order's.
        rotation_frame: ``log`` (the network predicts the rate of the accumulated rotation
            vector) or ``lab`` (it predicts each molecule's angular velocity now; see
            :class:`~kflow_mol.flow.AssemblyFlow`).
        parametrization: ``velocity`` (the network predicts the velocity) or ``endpose`` (it
            predicts the crystal pose; needs ``model.head=pose``).
        pose_order: ``joint`` or ``translation_first`` (all translation bands, then all
            rotation bands: ``2K`` bands).
        start_frame: ``given`` (the start orientations of the data) or ``canonical`` (every
            start molecule first turned to its cluster's principal axes, :mod:`kflow_mol.systems.canonical`).
    """

    mode: str = "rigid"
    kernel_width: float | str = "median"
    grouping: str = "equal_count"
    reverse: bool = False
    project: bool | None = None
    loss_current_band: bool = False
    start_motion: str = "settled"
    symmetric_targets: bool = False
    rotation_frame: str = "log"
    parametrization: str = "velocity"
    pose_order: str = "joint"
    start_frame: str = "given"


@dataclass
class SampleConfig:
    """Sampling of the trained flow.

    Attributes:
        method: ``euler``, ``heun``, ``rk4`` or ``dopri5``.
        steps: fixed steps in total, split over the K bands by :func:`kflow.sampling.allocate_steps`.
        batch_size: clusters per sampling batch.
        export: test clusters written as XYZ trajectories and CIFs (-1: all).
        samples: samples per cluster of a stochastic system (PM is reported as the minimum over
            them, and as their mean).
    """

    method: str = "euler"
    steps: int = 12
    batch_size: int = 8
    export: int = 4
    samples: int = 5

    def __post_init__(self):
        check_choice("sample.method", self.method, SAMPLE_METHODS)
        check_range("sample.steps", self.steps, minimum=1)
        check_range("sample.batch_size", self.batch_size, minimum=1)
        check_range("sample.samples", self.samples, minimum=1)


@dataclass
class EvalConfig:
    """Scoring, and the validation during training (on with ``train.val_every``).

    Attributes:
        rmsd: also compute RMSD_17 (the slowest metric).
        val_clusters: val-split clusters sampled at each validation (a fixed subset spread
            over the split, :func:`kflow_mol.validation.fixed_subset`).
        val_metric: the validation metric minimised for ``checkpoints/best.pt`` and early
            stopping: ``pm_atom``, ``pm_center`` or ``orientation_median_deg``.
        use_best: when validation ran, score the test split with the weights of
            ``checkpoints/best.pt`` (else the last step's).
    """

    rmsd: bool = True
    val_clusters: int = 32
    val_metric: str = "pm_atom"
    use_best: bool = True

    def __post_init__(self):
        check_range("eval.val_clusters", self.val_clusters, minimum=1)
        check_choice("eval.val_metric", self.val_metric, VAL_METRICS)


def assembly_train_defaults() -> TrainConfig:
    """The assembly branch's optimisation defaults (``out_dir``, ``device``, ``resume`` come
    from the top-level ``output_dir``, ``device`` and ``resume``)."""
    return TrainConfig(steps=800, batch_size=8, lr=2e-3, warmup_steps=20, grad_clip=1.0, log_every=10, ckpt_every=100)


@dataclass
class AssemblyConfig:
    """One training run of ``scripts/train_assembly.py`` (``make demo`` = the defaults).

    Attributes:
        K: number of graph-spectral bands (1: plain rigid flow matching).
        system: ``kflow`` (the rigid graph-spectral K-Flow of :class:`~kflow_mol.flow.AssemblyFlow`,
            or all-atom linear FM with ``flow.mode=cartesian``), or a Table-5 system of
            :mod:`kflow_mol.systems` (``gnn_md``, ``crystalsde_ve``, ``crystalsde_vp``,
            ``crystalflow_ve``, ``crystalflow_vp``, ``assembleflow``, ``kflow_assembleflow``
            with ``K`` bands).
        bump: ``linear``, ``smoothstep`` or ``cosine`` (``kflow.path.BUMPS``).
        device: ``cpu``, ``cuda`` or ``cuda:N``.
        cpu_threads: torch threads on CPU (``None``: torch's default); 1 was fastest for
            preset S on a busy 2-core machine.
        resume: continue from ``<output_dir>/checkpoints/last.pt``.
        output_dir: the run folder.
    """

    K: int = 2
    system: str = "kflow"
    bump: str = "linear"
    device: str = "cpu"
    cpu_threads: int | None = 1
    resume: bool = False
    output_dir: str = "outputs/assembly_demo"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    flow: FlowConfig = field(default_factory=FlowConfig)
    train: TrainConfig = field(default_factory=assembly_train_defaults)
    sample: SampleConfig = field(default_factory=SampleConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self):
        if self.cpu_threads is not None:
            check_range("cpu_threads", self.cpu_threads, minimum=1)
        check_run_level_keys(self.train, assembly_train_defaults())

    def train_config(self) -> TrainConfig:
        """The Trainer's config: the train group plus the run's folder, device and resume flag."""
        return run_train_config(self.train, self.output_dir, self.device, self.resume)


@dataclass
class BenchmarkConfig(AssemblyConfig):
    """``scripts/benchmark_assembly.py``: every method at the same budget and seeds.

    Attributes:
        methods: method names (see :func:`method_overrides`).
        starts: start-state presets of built data (ignored for ``data.source = prepared``).
        seeds: training seeds of every trained method.
        test_sets: real test sets, each reported on its own (:data:`TEST_SETS`): ``testdb``
            (the test split of the data group), ``cod`` (every cluster of ``cod_input``, never
            trained on), ``mech`` (pyxtal's mech.db, evaluation-only).
        test_repeats: start states per test cluster (R).
        cod_input: CIF folder of the ``cod`` test set.
        baseline: the method every other one is compared with (paired per-cluster CIs).
        bootstrap_resamples: resamples of the bootstrap CIs.
        budget_cpu_minutes: when set, ``train.steps`` is lowered (never raised) so that the
            whole benchmark's estimated process CPU time fits this budget (training and
            sampling cost are measured on the data first).
        train_cpu_seconds: when set, every trained method gets the same training budget in
            process CPU seconds per run: its CPU seconds per optimizer step are measured on the
            first start's training set and its ``train.steps`` becomes ``floor(budget / cost)``
            (at least 1), so runs stay deterministic and resumable (the plan is kept in
            ``<output_dir>/train_steps.json``). Replaces ``train.steps``; not combined with
            ``budget_cpu_minutes``.
        oracles: also score the oracle reference rows of :mod:`kflow_mol.oracles` on every
            start (not models: "predictions" put together from the target).
        merge: benchmark output folders (or their ``benchmark.json``) to table together instead
            of training anything, e.g. seeds or methods run as separate jobs on the same test
            instances (:func:`kflow_mol.benchmark.merge_records`). The other options describe
            the runs (give the ones they were run with); ``methods`` picks and orders the rows.
    """

    methods: list[str] = field(
        default_factory=lambda: ["identity", "crystalflow_lerp", "rigid_K1", "kflow_K2", "kflow_K3"]
    )
    starts: list[str] = field(default_factory=lambda: list(BENCHMARK_STARTS))
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    test_sets: list[str] = field(default_factory=lambda: list(TEST_SETS))
    test_repeats: int = 4
    cod_input: str = "../shared/data/cod_organic"
    baseline: str = "rigid_K1"
    bootstrap_resamples: int = 10000
    budget_cpu_minutes: float | None = None
    train_cpu_seconds: float | None = None
    oracles: bool = True
    merge: list[str] = field(default_factory=list)
    output_dir: str = "outputs/assembly_benchmark"
    train: TrainConfig = field(
        default_factory=lambda: dataclasses.replace(
            assembly_train_defaults(), steps=150, progress=False, ckpt_every=100000
        )
    )
    sample: SampleConfig = field(default_factory=lambda: SampleConfig(export=0))

    def __post_init__(self):
        super().__post_init__()
        for start in self.starts:
            check_choice("starts", start, START_PRESETS)
        for method in self.methods:
            if parse_method(method).reference and method != "identity":
                raise ConfigError(f"methods: {method!r} is an oracle row; oracles=true adds every oracle row")
        for name in self.test_sets:
            check_choice("test_sets", name, TEST_SETS)
        check_range("test_repeats", self.test_repeats, minimum=1)
        check_range("bootstrap_resamples", self.bootstrap_resamples, minimum=100)
        if self.budget_cpu_minutes is not None and not self.budget_cpu_minutes > 0:
            raise ConfigError(f"budget_cpu_minutes must be > 0, got {self.budget_cpu_minutes}")
        if self.train_cpu_seconds is not None:
            if not self.train_cpu_seconds > 0:
                raise ConfigError(f"train_cpu_seconds must be > 0, got {self.train_cpu_seconds}")
            if self.budget_cpu_minutes is not None:
                raise ConfigError("train_cpu_seconds and budget_cpu_minutes both set the training steps: set one")


@dataclass
class EvaluateSampleConfig:
    """Sampling overrides of an evaluation (``None``: as trained)."""

    method: str | None = None
    steps: int | None = None
    batch_size: int = 8

    def __post_init__(self):
        if self.method is not None:
            check_choice("sample.method", self.method, SAMPLE_METHODS)
        if self.steps is not None:
            check_range("sample.steps", self.steps, minimum=1)
        check_range("sample.batch_size", self.batch_size, minimum=1)


@dataclass
class EvaluateConfig:
    """``scripts/evaluate_assembly.py``: score a saved model on any dataset's split.

    Attributes:
        checkpoint: ``<run>/checkpoints/last.pt``, or ``best.pt`` of a run that validated
            (``train.val_every``); the default output is then ``eval_<split>_best.json``.
        use_run_data: score the data group saved in the checkpoint (else the one given here);
            ``data=<group>`` on the command line turns it off (:func:`kflow_mol.cli.evaluate_overrides`).
        split: ``train``, ``val``, ``test`` (or ``all`` for a folder built as one set).
        device: where to sample.
        output: metrics JSON path (``None``: ``<checkpoint dir>/../eval_<split>.json``).
        oracles: also score the oracle reference rows (:mod:`kflow_mol.oracles`).

    ``checkpoint=null`` scores only the identity and the oracle rows on ``data`` (no model).
    """

    checkpoint: str | None = "???"
    use_run_data: bool = True
    split: str = "test"
    device: str = "cpu"
    output: str | None = None
    oracles: bool = True
    data: DataConfig = field(default_factory=DataConfig)
    sample: EvaluateSampleConfig = field(default_factory=EvaluateSampleConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


SCHEMAS: dict[str, type] = {
    "assembly_schema": AssemblyConfig,
    "benchmark_assembly_schema": BenchmarkConfig,
    "evaluate_assembly_schema": EvaluateConfig,
}
"""Structured-config names (used in the ``defaults`` of ``configs/assembly/*.yaml``) of each schema."""


def to_config(cfg: Any, schema: type = AssemblyConfig):
    """The dataclass config of a composed Hydra/OmegaConf config or a plain dict.

    Built by :func:`kflow.training.config.from_dict`, the typed-config builder of both branches.

    Raises:
        ConfigError: one line naming the first unknown key or bad value.
    """
    if not isinstance(cfg, dict):  # a composed OmegaConf config
        from omegaconf import OmegaConf

        try:
            cfg = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
        except Exception as error:  # omegaconf's missing-value and interpolation errors: their first line
            raise ConfigError(str(error).splitlines()[0]) from None
    return from_dict(schema, cfg)


# ----- systems and method names ---------------------------------------------------------------
CONFIGURED_SYSTEMS = ("kflow",)
"""Systems whose constructor options the config sets: the ``flow`` group, ``bump`` and
``sample.steps`` (their ``default_steps``). The Table-5 systems keep their published settings."""

METHOD_BASE = re.compile(r"(?P<base>[a-z0-9_]+?)(?:_K(?P<K>\d+))?")
"""A method name without its ``+variant`` suffixes: a base and an optional ``_K<n>`` band count."""

LERP_ALIASES = ("crystalflow_lerp", "allatom_lerp")
"""Method names of the all-atom linear FM arm of ``kflow`` (``flow.mode=cartesian``, atom head)."""


FLOW_KEYS_OF_SYSTEMS: dict[str, tuple[str, ...]] = {
    "assembleflow": ("symmetric_targets",),
    "kflow_assembleflow": ("symmetric_targets", "loss_current_band"),
}
"""Table-5 systems that take single keys of the ``flow`` group (variants ``+sym``, ``+cb``), nothing else of it."""


def system_options(cfg: AssemblyConfig) -> dict[str, Any]:
    """Constructor options of ``cfg.system`` that the config sets: everything for
    :data:`CONFIGURED_SYSTEMS`, the keys of :data:`FLOW_KEYS_OF_SYSTEMS` for those, else ``{}``."""
    if cfg.system in CONFIGURED_SYSTEMS:
        return {"bump": cfg.bump, "default_steps": cfg.sample.steps, **dataclasses.asdict(cfg.flow)}
    return {key: getattr(cfg.flow, key) for key in FLOW_KEYS_OF_SYSTEMS.get(cfg.system, ())}


@dataclass(frozen=True)
class MethodSpec:
    """A method of the benchmark, parsed from its name once (:func:`parse_method`).

    Attributes:
        system: the :data:`kflow_mol.systems.SYSTEMS` name it trains; ``None`` for a reference
            row scored without training (``identity``, the oracles of :mod:`kflow_mol.oracles`).
        K: number of bands.
        cartesian: the all-atom linear FM arm of ``kflow`` (``crystalflow_lerp``).
        variants: the ``+variant`` suffixes, in order (:data:`METHOD_VARIANTS`).
        reference_name: the name of a reference row.
    """

    system: str | None
    K: int = 1
    cartesian: bool = False
    variants: tuple[str, ...] = ()
    reference_name: str | None = None

    @property
    def reference(self) -> bool:
        """Whether the method is scored without training (identity or an oracle)."""
        return self.system is None

    @property
    def base_name(self) -> str:
        """The method's name without variants: ``rigid_K1``, ``kflow_K3``, ``kflow_assembleflow_K2``, ``gnn_md``..."""
        from kflow_mol.systems import takes_bands

        if self.system is None:
            return str(self.reference_name)
        if self.system == "kflow":  # the project's own arms keep their historical names
            return "crystalflow_lerp" if self.cartesian else ("rigid_K1" if self.K == 1 else f"kflow_K{self.K}")
        return f"{self.system}_K{self.K}" if takes_bands(self.system) else self.system

    @property
    def name(self) -> str:
        """The full method name, ``base_name`` plus ``+variant`` suffixes."""
        return "+".join([self.base_name, *self.variants])

    def overrides(self) -> dict[str, Any]:
        """Config changes that make a run of this method (dotted keys, e.g. ``model.head``)."""
        from kflow_mol.systems import build_system

        if self.system is None:
            overrides: dict[str, Any] = {}
        elif self.cartesian:
            overrides = {"K": 1, "flow.mode": "cartesian", "model.head": "atom"}
        elif self.system == "kflow":
            overrides = {"K": self.K}
        else:
            head = build_system(self.system, translation_scale=1.0, K=self.K).head
            overrides = {"system": self.system, "K": self.K, "model.head": head}
        for variant in self.variants:
            overrides.update(METHOD_VARIANTS[variant])
        return overrides


def parse_method(method: str) -> MethodSpec:
    """The :class:`MethodSpec` of a method name: ``identity``, an oracle, ``crystalflow_lerp``,
    ``rigid_K1``, ``kflow_K<n>``, ``<system>_K<n>`` of a system with bands, or another system's
    name, each optionally with ``+variant`` suffixes (``kflow_K3+aware+fresh``).

    Raises:
        ConfigError: for an unknown name or variant.
    """
    from kflow_mol.oracles import ORACLES
    from kflow_mol.systems import SYSTEMS, takes_bands

    base, *variants = method.split("+")
    for variant in variants:
        if variant not in METHOD_VARIANTS:
            raise ConfigError(f"unknown method variant {variant!r} in {method!r}; use {sorted(METHOD_VARIANTS)}")
    if base == "identity" or base in ORACLES:
        return MethodSpec(system=None, variants=tuple(variants), reference_name=base)
    if base in LERP_ALIASES:
        return MethodSpec(system="kflow", cartesian=True, variants=tuple(variants))
    match = METHOD_BASE.fullmatch(base)
    system, bands = (match.group("base"), match.group("K")) if match else (base, None)
    system = "kflow" if system == "rigid" and bands == "1" else system
    if system in SYSTEMS and (bands is not None) == takes_bands(system) and (bands is None or int(bands) >= 1):
        return MethodSpec(system=system, K=int(bands or 1), variants=tuple(variants))
    raise ConfigError(
        f"unknown method {method!r}; use identity, crystalflow_lerp, rigid_K1, kflow_K<n>, "
        f"kflow_assembleflow_K<n> or a system of kflow_mol.systems.system_names()"
    )


def run_name(cfg: AssemblyConfig) -> str:
    """The one name of a run's method: ``rigid_K1``, ``kflow_K<n>``, ``crystalflow_lerp``, ``gnn_md``..."""
    return MethodSpec(system=cfg.system, K=cfg.K, cartesian=cfg.flow.mode == "cartesian").base_name


def method_overrides(method: str) -> dict[str, Any]:
    """Config changes that make a run of ``method`` (the inverse of :func:`run_name`; :func:`parse_method`).

    Raises:
        ConfigError: for an unknown method name.
    """
    return parse_method(method).overrides()


def with_method(cfg: AssemblyConfig, method: str, seed: int | None = None) -> AssemblyConfig:
    """A copy of ``cfg`` set up for ``method`` (and the training ``seed``)."""
    run = dataclasses.replace(
        cfg,
        data=dataclasses.replace(cfg.data),
        model=dataclasses.replace(cfg.model),
        flow=dataclasses.replace(cfg.flow),
        train=dataclasses.replace(cfg.train),
    )
    for key, value in method_overrides(method).items():
        group, _, name = key.rpartition(".")
        setattr(getattr(run, group) if group else run, name, value)
    if seed is not None:
        run.train.seed = seed
    return run
