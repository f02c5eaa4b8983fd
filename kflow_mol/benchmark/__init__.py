"""The assembly benchmark: every method trained at the same budget and seeds, scored alike.

Methods are named as in :func:`kflow_mol.config.method_overrides`: ``identity`` (the start
state), ``crystalflow_lerp`` (all-atom Cartesian linear flow matching, atom head),
``rigid_K1`` (rigid flow matching), ``kflow_K<n>`` (rigid K-Flow with n graph-spectral bands),
each optionally with ``+variant`` suffixes (``+aware``, ``+noproj``, ``+fresh``, ...).

Every trained method is scored on each real test set of ``cfg.test_sets``, reported
separately and pooled: ``testdb`` (the data group's test split), ``cod`` (every cluster of the
COD CIF folder, not trained on) and ``mech`` (pyxtal's mech.db). A test set whose cluster ids carry
several collection tags (``data=real``: ``csd500.COBHUW_r0_c0``) is also reported per
collection (rows ``testdb[csd500]``, ...). Runs that validated get a table of their steps and
best step. Every test cluster comes with
``test_repeats`` start states. Against ``cfg.baseline`` the benchmark reports, per test set,
the paired per-cluster difference of PM-atom and PM-center and the ratio of means, each with
a 95% bootstrap CI (:mod:`kflow.stats`); a cluster's value is its mean over its start states
and over seeds.

Beside PM, every method gets the pose diagnostics of :mod:`kflow_mol.metrics.orientation`
(mean and median orientation error in degrees, mean centroid error in Å; a cluster's median is
over its molecules, then averaged like every per-cluster value). With ``cfg.oracles`` the oracle
reference rows of :mod:`kflow_mol.oracles` (``oracle_centroids``, ``oracle_orientations``,
``oracle_rot30``, ``oracle_rot15``: "predictions" put together from the target, not models) are
scored on every start like the identity.

Outputs in ``output_dir``: ``benchmark.md`` (the tables), ``benchmark.csv`` (one row per
method, start and test set), ``benchmark.json`` (per-cluster values of every run).

The package splits the work by job: :mod:`~kflow_mol.benchmark.plan` (test sets, shared
trainings, step budgets), :mod:`~kflow_mol.benchmark.run` (training and scoring, the loop
:func:`run_benchmark`) and :mod:`~kflow_mol.benchmark.report` (statistics and tables). The
names below are re-exported here, so ``from kflow_mol.benchmark import ...`` keeps working.
"""

from kflow_mol.benchmark.merge import merge_records, read_records
from kflow_mol.benchmark.plan import (
    PLAN_FILE,
    PROBE_STEPS,
    PROBE_WARMUP,
    SAMPLING_ONLY_KEYS,
    assembly_fields,
    budget_steps,
    equal_cpu_plan,
    is_reference,
    load_test_sets,
    measure_costs,
    step_cpu_seconds,
    training_key,
    with_planned_steps,
)
from kflow_mol.benchmark.report import (
    METRICS,
    POSE_FORMATS,
    POSE_LABELS,
    Comparison,
    cluster_key,
    compare,
    comparison_table,
    cpu_table,
    per_cluster_means,
    plan_table,
    pose_table,
    seed_mean_std,
    seed_table,
    set_sources,
    source_of,
    training_table,
    write_outputs,
)
from kflow_mol.benchmark.run import run_benchmark, run_method, score_sets

__all__ = [
    "METRICS",
    "PLAN_FILE",
    "POSE_FORMATS",
    "POSE_LABELS",
    "PROBE_STEPS",
    "PROBE_WARMUP",
    "SAMPLING_ONLY_KEYS",
    "Comparison",
    "assembly_fields",
    "budget_steps",
    "cluster_key",
    "compare",
    "comparison_table",
    "cpu_table",
    "equal_cpu_plan",
    "is_reference",
    "load_test_sets",
    "measure_costs",
    "merge_records",
    "per_cluster_means",
    "plan_table",
    "pose_table",
    "read_records",
    "run_benchmark",
    "run_method",
    "score_sets",
    "seed_mean_std",
    "seed_table",
    "set_sources",
    "source_of",
    "step_cpu_seconds",
    "training_key",
    "training_table",
    "with_planned_steps",
    "write_outputs",
]
