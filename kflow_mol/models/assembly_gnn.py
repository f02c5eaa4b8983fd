"""SE(3)-equivariant velocity network for rigid molecular assembly.

Two levels of message passing:

1. **atoms** — each atom starts from its type embedding, the flow position and the
   spherical harmonics of its offset from its molecule's centroid (which encodes the
   molecule's orientation); e3nn convolutions then run over intra-molecular and
   inter-molecular k-nearest (or radius) edges, so close contacts are seen atom by atom;
2. **molecules** — atom features are averaged per molecule and refined on the complete
   graph of the cluster's molecules (17 nodes, cheap), with the centroid offsets as edges.

Heads (all ``l = 1``): per molecule a translation velocity (``1o``) and an angular velocity
(``1e``), each the sum of a direct molecule-level vector and the pooled per-atom forces
``f_a`` (translation) and torques ``r_a x f_a`` about the centroid, divided by the mean
squared radius (a scalar moment of inertia). The Cartesian baseline head outputs one free
``1o`` velocity per atom instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from e3nn import o3
from torch import Tensor, nn
from torch_geometric.utils import scatter

from kflow_mol.models.layers import (
    EquivariantConv,
    GaussianRBF,
    TimeEmbedding,
    atom_conv_layer,
    build_atom_edges,
    full_molecule_edges,
)


def _preset(irreps_hidden: str, layers: tuple, width: int, radial: tuple, neighbours: tuple, **extra) -> dict:
    """The :class:`AssemblyGNN` keywords of one preset.

    Args:
        irreps_hidden: hidden irreps.
        layers: ``(atom_layers, mol_layers)``.
        width: width of the atom-type and of the ``s`` embeddings (``z_dim = time_dim``).
        radial: ``(num_radial, radial_hidden)``: Gaussians of the radial bases, radial MLP width.
        neighbours: ``(k_intra, k_inter)`` neighbours per atom.
        **extra: further keywords (``atom_channels``, ``readout_irreps``). The atom block is ``contact``.
    """
    (atom_layers, mol_layers), (num_radial, radial_hidden), (k_intra, k_inter) = layers, radial, neighbours
    sizes = dict(irreps_hidden=irreps_hidden, atom_layers=atom_layers, mol_layers=mol_layers, z_dim=width)
    edges = dict(num_radial=num_radial, radial_hidden=radial_hidden, k_intra=k_intra, k_inter=k_inter)
    return {**sizes, "time_dim": width, **edges, "atom_conv": "contact", **extra}


PRESETS: dict[str, dict] = {
    "S": _preset("32x0e+8x1o+8x1e+4x2e", layers=(0, 2), width=16, radial=(12, 32), neighbours=(6, 6)),
    "M": _preset(
        "64x0e+16x1o+16x1e+8x2e", layers=(1, 2), width=32, radial=(16, 16), neighbours=(4, 8), atom_channels=16
    ),
    "L": _preset(
        "128x0e+32x1o+32x1e+16x2e",
        layers=(2, 6),
        width=64,
        radial=(16, 64),
        neighbours=(4, 12),
        atom_channels=32,
        readout_irreps="80x0e+40x1o+40x1e",
    ),
}
"""Size presets for :class:`AssemblyGNN`.

S (the CPU demo) has no atom-level convolution: atoms only encode each molecule's shape and
orientation, and messages run between molecules. M and L add atom-level contact messages
(k-nearest intra/inter-molecular edges) through the cheap ``l <= 1``
:class:`~kflow_mol.models.layers.ContactConv` block; M trains about 10x faster than the
original M (one full ``l <= 2`` e3nn atom layer, 3 molecule layers), and L (3.4 M parameters,
most of them in the molecule-level self product ``mol_self``) about 2 clusters per CPU-second.
The original presets are kept in ``scripts/bench_assembly.py`` (``REFERENCE_PRESETS``) for
side-by-side timings; ``docs/performance.md`` has the numbers and the trade-offs.
"""


HEADS = ("rigid", "atom", "pose")
"""``rigid``: per-molecule translation and angular velocity; ``atom``: a free velocity per atom;
``pose``: the crystal pose itself (end-pose prediction), as a centroid displacement per
molecule and each atom's offset from its molecule's centroid in the crystal."""

START_SCALARS = 3
"""Invariant start features per molecule: its weight in the moving, the settled and the pending bands."""
START_IRREPS = o3.Irreps(f"{START_SCALARS + 2}x0e+1x1o+1x1e")
SELF_CONDITION_IRREPS = o3.Irreps("2x0e+1x1o+1x1e")
"""What a self-conditioned network adds to every molecule: its own previous velocity
(translation ``1o``, rotation ``1e``) and their two norms."""
"""What a start-aware network adds to every molecule: the band weights, the two vector norms
and the displacement (``1o``) and rotation vector (``1e``) from the start."""


@dataclass
class StartFeatures:
    """What a start-aware network knows about each molecule's start state (see :mod:`kflow_mol.flow`).

    Attributes:
        scalars: invariant band coordinates, shape ``(M, START_SCALARS)``: the diagonal entry of
            the projector onto the moving band, onto the settled (finished) bands and onto the
            pending bands of the graph-spectral basis of the START centroids. Projector
            diagonals ``sum_{j in band} U_ij^2`` do not depend on eigenvector signs or on the
            choice of basis inside a degenerate eigenspace.
        vectors: displacement of the centroid from its start (Å, ``1o``) and rotation vector
            from the start orientation (rad, ``1e``), shape ``(M, 6)``.
    """

    scalars: Tensor
    vectors: Tensor


@dataclass
class AssemblyVelocity:
    """Network output.

    Attributes:
        translation: centroid velocity per molecule, shape ``(M, 3)`` (``None`` for the atom head);
            for the pose head, the displacement of each centroid to its crystal position.
        rotation: angular velocity (rotation-vector rate) per molecule, shape ``(M, 3)``
            (rigid head only).
        atom: free per-atom velocity, shape ``(A, 3)`` (atom head only).
        atom_offset: each atom's offset from its molecule's centroid in the predicted crystal,
            shape ``(A, 3)`` (pose head only).
    """

    translation: Tensor | None
    rotation: Tensor | None
    atom: Tensor | None
    atom_offset: Tensor | None = None


def _check_options(head: str, sh_lmax: int) -> None:
    """Refuse an unknown head or spherical harmonics below degree 1."""
    if sh_lmax < 1:
        raise ValueError(f"sh_lmax must be >= 1, got {sh_lmax}")
    if head not in HEADS:
        raise ValueError(f"head must be one of {HEADS}, got {head!r}")


class AssemblyGNN(nn.Module):
    """Equivariant two-level GNN mapping a cluster state and ``s = k/K`` to velocities.

    Args:
        head: ``"rigid"`` (per-molecule translation + angular velocity) or ``"atom"``
            (per-atom Cartesian velocity, the all-atom baseline).
        irreps_hidden: hidden feature irreps, e.g. ``"32x0e+8x1o+8x1e"``.
        atom_layers: atom-level convolutions.
        mol_layers: molecule-level convolutions.
        z_dim: atom-type embedding width.
        time_dim: width of the embedding of ``s``.
        num_radial: Gaussians in each radial basis.
        radial_hidden: hidden width of the radial MLPs.
        k_intra: intra-molecular neighbours per atom.
        k_inter: inter-molecular neighbours per atom.
        edge_mode: ``"knn"`` or ``"radius"``.
        radius: cutoff (Å) in radius mode.
        max_atom_radius: range (Å) of the atom-level radial basis.
        max_mol_radius: range (Å) of the molecule-level radial basis.
        max_z: largest atomic number embedded.
        readout_irreps: irreps of the molecule self tensor product feeding the rigid head.
        start_aware: also take :class:`StartFeatures` (band coordinates of every molecule and
            its displacement / rotation from the start) at the molecule level. ``False`` keeps
            the blind network (current positions and ``s`` only) for ablations.
        atom_conv: atom-level block, ``"contact"`` (:class:`~kflow_mol.models.layers.ContactConv`,
            ``l <= 1`` messages, fast) or ``"e3nn"`` (full ``l <= 2`` tensor product, the original).
        atom_channels: message channels of the ``"contact"`` block.
        sh_lmax: highest degree of the spherical harmonics that encode each molecule's
            orientation (atom offsets from the centroid) and the molecule-level edges. Degree 2
            cannot tell a benzene ring's in-plane turn; higher degrees can.
        self_condition: also take the network's own previous velocity per molecule
            (``self_condition=`` of :meth:`forward`; zeros on the first call), so it can refine
            its estimate of each molecule's turn from one evaluation to the next.

    The blind network sees the current positions and ``s`` only, never the start state or the flow
    state ``x``: with the start known, ``x_k / k`` would reveal the target (the conditional
    path is deterministic), a shortcut that fits the loss at ``k > 0`` and leaves the velocity
    at ``k = 0`` untrained.
    """

    def __init__(
        self,
        head: str = "rigid",
        irreps_hidden: str = "32x0e+8x1o+8x1e",
        atom_layers: int = 1,
        mol_layers: int = 2,
        z_dim: int = 16,
        time_dim: int = 16,
        num_radial: int = 12,
        radial_hidden: int = 32,
        k_intra: int = 6,
        k_inter: int = 6,
        edge_mode: str = "knn",
        radius: float = 5.0,
        max_atom_radius: float = 10.0,
        max_mol_radius: float = 30.0,
        max_z: int = 100,
        readout_irreps: str = "8x0e+8x1o+8x1e",
        start_aware: bool = False,
        atom_conv: str = "e3nn",
        atom_channels: int = 16,
        sh_lmax: int = 2,
        self_condition: bool = False,
    ):
        super().__init__()
        _check_options(head, sh_lmax)
        self.head = head
        self.start_aware = bool(start_aware)
        self.self_condition = bool(self_condition)
        self.edge_kwargs = dict(mode=edge_mode, k_intra=k_intra, k_inter=k_inter, radius=radius)
        hidden = o3.Irreps(irreps_hidden)
        self.irreps_sh = o3.Irreps.spherical_harmonics(sh_lmax)
        self.z_embed = nn.Embedding(max_z + 1, z_dim)
        self.time_embed = TimeEmbedding(time_dim)
        self.atom_rbf = GaussianRBF(num_radial, max_atom_radius)
        self.mol_rbf = GaussianRBF(num_radial, max_mol_radius)
        init_scalars = o3.Irreps(f"{z_dim + num_radial + time_dim}x0e")
        self.atom_init = o3.FullyConnectedTensorProduct(init_scalars, self.irreps_sh, hidden)
        self.atom_convs = nn.ModuleList(
            atom_conv_layer(atom_conv, hidden, self.irreps_sh, num_radial + 2, radial_hidden, atom_channels)
            for _ in range(atom_layers)
        )
        mol_in = hidden + o3.Irreps(f"{time_dim}x0e") + (START_IRREPS if self.start_aware else o3.Irreps(""))
        mol_in = mol_in + (SELF_CONDITION_IRREPS if self.self_condition else o3.Irreps(""))
        self.mol_init = o3.Linear(mol_in, hidden)
        self.mol_convs = nn.ModuleList(
            EquivariantConv(hidden, self.irreps_sh, num_radial, radial_hidden) for _ in range(mol_layers)
        )
        self._build_heads(head, hidden, readout_irreps)

    def _build_heads(self, head: str, hidden: o3.Irreps, readout_irreps: str) -> None:
        """The molecule-level readouts of the rigid and pose heads (the atom head is always built)."""
        # Products of a molecule's own features (e.g. cross products of its 1o vectors give 1e):
        # message passing alone pairs features only with edge directions.
        if head in ("rigid", "pose"):
            self.mol_self = o3.FullyConnectedTensorProduct(hidden, hidden, readout_irreps)
            self.mol_head = o3.Linear(hidden + self.mol_self.irreps_out, "1x1o+1x1e")
        if head == "pose":
            # bilinear in the molecule's features and the atom's offset r: c r + s n x r + (n.r) n
            # (0e, 1e and 2e features times 1o) spans every rotation applied to r
            self.pose_head = o3.FullyConnectedTensorProduct(hidden + self.mol_self.irreps_out, "1x1o", "1x1o")
        self.atom_head = o3.Linear(hidden + hidden, "1x1o")

    def forward(
        self,
        z: Tensor,
        pos: Tensor,
        mol_index: Tensor,
        atom_batch: Tensor,
        mol_batch: Tensor,
        s: Tensor,
        start: StartFeatures | None = None,
        self_condition: Tensor | None = None,
    ) -> AssemblyVelocity:
        """Velocities of a batch of clusters.

        Args:
            z: atomic numbers, shape ``(A,)``.
            pos: current atom positions (Å), shape ``(A, 3)``.
            mol_index: global molecule of every atom, shape ``(A,)``.
            atom_batch: cluster of every atom, shape ``(A,)``.
            mol_batch: cluster of every molecule, shape ``(M,)``.
            s: flow position ``k / K`` per cluster, shape ``(B,)``.
            start: per-molecule :class:`StartFeatures`; required iff the network is start-aware.
            self_condition: the previous velocity per molecule, translation and rotation,
                shape ``(M, 6)``; ``None`` means zeros (only for a self-conditioned network).

        Returns:
            :class:`AssemblyVelocity`.
        """
        num_mols = mol_batch.shape[0]
        centroid = scatter(pos, mol_index, dim=0, dim_size=num_mols, reduce="mean")
        rel = pos - centroid[mol_index]
        time = self.time_embed(s.to(pos.dtype))

        scalars = torch.cat([self.z_embed(z), self.atom_rbf(rel.norm(dim=-1)), time[atom_batch]], dim=-1)
        h = self.atom_init(scalars, self._sh(rel))
        if len(self.atom_convs):
            h = self._atom_messages(h, pos, mol_index, atom_batch)

        mol_parts = [scatter(h, mol_index, dim=0, dim_size=num_mols, reduce="mean"), time[mol_batch]]
        if self.start_aware:
            mol_parts.append(self._start_inputs(start, num_mols, pos.dtype))
        elif start is not None:
            raise ValueError("AssemblyGNN: start features given to a blind network (build it with start_aware=True)")
        if self.self_condition:
            mol_parts.append(self._self_condition_inputs(self_condition, num_mols, pos))
        elif self_condition is not None:
            raise ValueError("AssemblyGNN: self_condition given to a network built with self_condition=False")
        g = self.mol_init(torch.cat(mol_parts, dim=-1))
        src, dst = full_molecule_edges(mol_batch)
        mol_vec = centroid[dst] - centroid[src]
        mol_sh, mol_scalars = self._sh(mol_vec), self.mol_rbf(mol_vec.norm(dim=-1))
        for conv in self.mol_convs:
            g = conv(g, src, dst, mol_sh, mol_scalars)

        return self._readout(h.to(pos.dtype), g.to(pos.dtype), rel, mol_index, num_mols)

    def _readout(self, h: Tensor, g: Tensor, rel: Tensor, mol_index: Tensor, num_mols: int) -> AssemblyVelocity:
        """Heads in the positions' dtype, outside autocast: under bf16 the tensor products and the
        torque cross product would otherwise mix dtypes (and lose the small torques)."""
        with torch.autocast(device_type=rel.device.type, enabled=False):
            return self._heads(h, g, rel, mol_index, num_mols)

    def _heads(self, h: Tensor, g: Tensor, rel: Tensor, mol_index: Tensor, num_mols: int) -> AssemblyVelocity:
        force = self.atom_head(torch.cat([h, g[mol_index]], dim=-1))  # (A, 3), 1o
        if self.head == "atom":
            return AssemblyVelocity(translation=None, rotation=None, atom=force)
        features = torch.cat([g, self.mol_self(g, g)], dim=-1)
        direct = self.mol_head(features)
        if self.head == "pose":
            translation = direct[:, :3] + scatter(force, mol_index, dim=0, dim_size=num_mols, reduce="mean")
            offset = self.pose_head(features[mol_index], rel)
            return AssemblyVelocity(translation=translation, rotation=None, atom=None, atom_offset=offset)
        torque = scatter(torch.linalg.cross(rel, force), mol_index, dim=0, dim_size=num_mols, reduce="mean")
        inertia = scatter((rel * rel).sum(-1), mol_index, dim=0, dim_size=num_mols, reduce="mean")
        translation = direct[:, :3] + scatter(force, mol_index, dim=0, dim_size=num_mols, reduce="mean")
        rotation = direct[:, 3:] + torque / (inertia.unsqueeze(-1) + 1.0)
        return AssemblyVelocity(translation=translation, rotation=rotation, atom=None)

    @staticmethod
    def _start_inputs(start: StartFeatures | None, num_mols: int, dtype: torch.dtype) -> Tensor:
        """``(M, START_IRREPS.dim)``: band weights, vector norms, displacement (1o), rotation (1e)."""
        if start is None:
            raise ValueError("AssemblyGNN: a start-aware network needs start=StartFeatures(...)")
        if start.scalars.shape != (num_mols, START_SCALARS) or start.vectors.shape != (num_mols, 6):
            raise ValueError(
                f"AssemblyGNN: start features must be ({num_mols}, {START_SCALARS}) and "
                f"({num_mols}, 6), got {tuple(start.scalars.shape)} and {tuple(start.vectors.shape)}"
            )
        vectors = start.vectors.to(dtype)
        norms = torch.stack([vectors[:, :3].norm(dim=-1), vectors[:, 3:].norm(dim=-1)], dim=-1)
        return torch.cat([start.scalars.to(dtype), norms, vectors], dim=-1)

    @staticmethod
    def _self_condition_inputs(previous: Tensor | None, num_mols: int, pos: Tensor) -> Tensor:
        """``(M, SELF_CONDITION_IRREPS.dim)``: the two norms, then translation (1o) and rotation (1e)."""
        if previous is None:
            previous = pos.new_zeros(num_mols, 6)
        if previous.shape != (num_mols, 6):
            raise ValueError(f"AssemblyGNN: self_condition must be ({num_mols}, 6), got {tuple(previous.shape)}")
        previous = previous.to(pos.dtype)
        norms = torch.stack([previous[:, :3].norm(dim=-1), previous[:, 3:].norm(dim=-1)], dim=-1)
        return torch.cat([norms, previous], dim=-1)

    def _atom_messages(self, h: Tensor, pos: Tensor, mol_index: Tensor, atom_batch: Tensor) -> Tensor:
        edges = build_atom_edges(pos, mol_index, atom_batch, **self.edge_kwargs)
        vec = pos[edges.dst] - pos[edges.src]
        edge_sh = self._sh(vec)
        edge_scalars = torch.cat(
            [self.atom_rbf(vec.norm(dim=-1)), nn.functional.one_hot(edges.intra.long(), 2).to(pos.dtype)], dim=-1
        )
        for conv in self.atom_convs:
            h = conv(h, edges.src, edges.dst, edge_sh, edge_scalars)
        return h

    def _sh(self, vec: Tensor) -> Tensor:
        return o3.spherical_harmonics(self.irreps_sh, vec, normalize=True, normalization="component")


def build_model(preset: str = "S", head: str = "rigid", **overrides) -> AssemblyGNN:
    """An :class:`AssemblyGNN` from a size preset (``PRESETS``) with keyword overrides."""
    if preset not in PRESETS:
        raise ValueError(f"unknown model preset {preset!r}; choose one of {sorted(PRESETS)}")
    return AssemblyGNN(head=head, **{**PRESETS[preset], **overrides})
