"""The contract every assembly system fulfils, checked when a system is built.

A system (:class:`AssemblySystem`) is a flow or a regression on cluster batches. It declares

* ``head``: the :func:`kflow_mol.models.build_model` head it needs (:data:`HEADS`);
* ``default_steps``: its total sampling steps when ``steps_per_band`` is ``None``;
* ``stochastic``: whether its samples depend on a generator (scored over several draws);
* ``num_bands``: K (1 unless it has graph-spectral bands);

and implements ``loss(model, batch, generator=None, draws=None) -> (loss, {name: float})`` and
``_sample(model, batch, method, steps_per_band, return_trajectory, generator)``, which the
public :meth:`AssemblySystem.sample` calls. Building a system whose class misses one of these
raises ``TypeError`` naming what is missing, before the system is used.

Also here: the batch bookkeeping every system reads (:class:`ClusterLayout`,
:func:`cluster_layout`), the sample type (:class:`AssemblySample`) and the scale check
(:func:`positive_scale`).
"""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch_geometric.utils import scatter

from kflow.training import StepDraws
from kflow_mol.rigid import centroids

HEADS = ("rigid", "atom", "pose")
"""Network heads a system may need (:func:`kflow_mol.models.build_model`)."""

BAND_EDGE_TOLERANCE = 1e-6
"""Added to ``k = s K`` before taking its band at sampling: ``s`` is rounded to the state's dtype,
which may put the first evaluation of a band a rounding error below its left edge. Smaller than
the sampler's ``edge_eps`` (1e-5), so the last evaluation of a band never reaches the next."""

CONTRACT = "head, default_steps, stochastic, num_bands, loss() and _sample()"


@dataclass
class ClusterLayout:
    """Index bookkeeping of a batch of clusters.

    Attributes:
        atom_batch: cluster of every atom, shape ``(A,)``.
        mol_batch: cluster of every molecule, shape ``(M,)``.
        num_clusters: ``B``.
        mols_per_cluster: molecules per cluster (the same for all clusters).
        centroid_start: start centroids, shape ``(M, 3)``.
    """

    atom_batch: Tensor
    mol_batch: Tensor
    num_clusters: int
    mols_per_cluster: int
    centroid_start: Tensor


def cluster_layout(batch: Any) -> ClusterLayout:
    """Molecule/cluster bookkeeping of a batch (every cluster must have the same molecule count)."""
    atom_batch = batch.batch if getattr(batch, "batch", None) is not None else torch.zeros_like(batch.z)
    num_mols = int(batch.mol_index.max()) + 1
    mol_batch = scatter(atom_batch, batch.mol_index, dim=0, dim_size=num_mols, reduce="max")
    num_clusters = int(atom_batch.max()) + 1
    counts = torch.bincount(mol_batch, minlength=num_clusters)
    if not bool((counts == counts[0]).all()):
        raise ValueError(f"all clusters of a batch must have the same number of molecules, got {counts.tolist()}")
    return ClusterLayout(
        atom_batch=atom_batch,
        mol_batch=mol_batch,
        num_clusters=num_clusters,
        mols_per_cluster=int(counts[0]),
        centroid_start=centroids(batch.pos_start, batch.mol_index, num_mols),
    )


@dataclass
class AssemblySample:
    """Sampled clusters.

    Attributes:
        pos: predicted atom positions at ``k = K``, shape ``(A, 3)``.
        nfe: network evaluations used.
        trajectory: atom positions along the flow, each ``(A, 3)`` (``None`` unless asked).
        ks: the ``k`` of every trajectory frame.
    """

    pos: Tensor
    nfe: int
    trajectory: list[Tensor] | None = None
    ks: list[float] | None = None


def positive_scale(translation_scale: float) -> float:
    """``translation_scale`` as a float, refused unless it is > 0 (every system checks it here)."""
    if not translation_scale > 0:
        raise ValueError(f"translation_scale must be > 0, got {translation_scale}")
    return float(translation_scale)


def check_contract(system: Any) -> None:
    """Raise ``TypeError`` naming the first attribute of the contract that ``system`` lacks or gets wrong."""
    name = type(system).__name__
    head = getattr(system, "head", None)
    if head not in HEADS:
        raise TypeError(f"system {name} must set head to one of {HEADS}, got {head!r} (contract: {CONTRACT})")
    for attribute in ("default_steps", "num_bands"):
        value = getattr(system, attribute, None)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise TypeError(f"system {name} must set {attribute} to an int >= 1, got {value!r} (contract: {CONTRACT})")
    if not isinstance(getattr(system, "stochastic", None), bool):
        raise TypeError(f"system {name} must set stochastic to True or False (contract: {CONTRACT})")


class ContractMeta(ABCMeta):
    """Checks every new system against the contract once its ``__init__`` has run."""

    def __call__(cls, *args, **kwargs):
        missing = sorted(getattr(cls, "__abstractmethods__", ()))
        if missing:
            raise TypeError(f"system {cls.__name__} must implement {', '.join(missing)} (contract: {CONTRACT})")
        system = super().__call__(*args, **kwargs)
        check_contract(system)
        return system


class AssemblySystem(metaclass=ContractMeta):
    """What every assembly flow and Table-5 system shares: the contract and the public ``sample``.

    Subclasses set the attributes (on the class, or in ``__init__``) and implement ``loss`` and
    ``_sample`` (the actual sampler); building one that does not raises ``TypeError``.

    Attributes:
        head: the :func:`kflow_mol.models.build_model` head it needs (:data:`HEADS`).
        stochastic: whether samples depend on ``generator`` (score several per cluster).
        num_bands: K, the number of bands.
        default_steps: total sampling steps when ``steps_per_band`` is ``None``.
    """

    head: str
    stochastic: bool
    num_bands: int = 1
    default_steps: int

    @abstractmethod
    def loss(
        self, model: nn.Module, batch: Any, generator: torch.Generator | None = None, draws: StepDraws | None = None
    ) -> tuple[Tensor, dict[str, float]]:
        """The training loss of one batch (the Trainer's ``loss_fn``) and its logged parts.

        Args:
            model: the network (with :attr:`head`).
            batch: a batch of clusters.
            generator: RNG of the loss's draws when ``draws`` is ``None``.
            draws: the Trainer's per-step draws (DDP-exact), used when given.

        Returns:
            The scalar loss and ``{name: float}`` of logged values.
        """

    @torch.no_grad()
    def sample(
        self,
        model: nn.Module,
        batch: Any,
        *,
        method: str = "euler",
        steps_per_band: int | Sequence[int] | None = None,
        return_trajectory: bool = False,
        generator: torch.Generator | None = None,
    ) -> AssemblySample:
        """Sample the crystal pose of every cluster of ``batch`` with the trained ``model``.

        Args:
            model: the network (with :attr:`head`).
            batch: a batch of clusters.
            method: the system's sampling method (``"euler"`` for all; see the system's ``_sample``).
            steps_per_band: steps per band (an int, or one per band id); ``None``: the system's default.
            return_trajectory: keep the atom positions along the way.
            generator: RNG of a stochastic system's draws (deterministic systems ignore it).

        Returns:
            :class:`AssemblySample` (atom positions ``(A, 3)``, network evaluations, trajectory).
        """
        return self._sample(model, batch, method, steps_per_band, return_trajectory, generator)

    @abstractmethod
    def _sample(
        self,
        model: nn.Module,
        batch: Any,
        method: str,
        steps_per_band: int | Sequence[int] | None,
        return_trajectory: bool,
        generator: torch.Generator | None,
    ) -> AssemblySample:
        """The system's sampler (arguments as :meth:`sample`)."""
