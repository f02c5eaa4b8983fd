"""Equivariant building blocks: radial/time embeddings, neighbour graphs, e3nn convolution.

Neighbour graphs are built in plain torch (``torch.cdist`` per cluster), so no pyg-lib /
torch-cluster is needed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from e3nn import nn as e3nn_nn
from e3nn import o3
from torch import Tensor, nn
from torch_geometric.utils import scatter, to_dense_batch


class GaussianRBF(nn.Module):
    """Gaussian radial basis on ``[0, max_radius]``.

    Args:
        num_basis: number of Gaussians.
        max_radius: centre of the last Gaussian (Å).
    """

    def __init__(self, num_basis: int, max_radius: float):
        super().__init__()
        self.register_buffer("centers", torch.linspace(0.0, max_radius, num_basis))
        self.width = max_radius / max(num_basis - 1, 1)

    def forward(self, dist: Tensor) -> Tensor:
        """Args: dist: distances, shape ``(E,)``. Returns: ``(E, num_basis)``."""
        return torch.exp(-(((dist.unsqueeze(-1) - self.centers) / self.width) ** 2))


class TimeEmbedding(nn.Module):
    """Sinusoidal embedding of the flow position ``s = k / K`` followed by an MLP.

    Args:
        dim: output width (even).
    """

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("freqs", torch.exp(torch.linspace(0.0, math.log(100.0), dim // 2)))
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, s: Tensor) -> Tensor:
        """Args: s: flow positions, shape ``(B,)``. Returns: ``(B, dim)``."""
        angle = s.unsqueeze(-1) * self.freqs
        return self.mlp(torch.cat([angle.sin(), angle.cos()], dim=-1))


@dataclass
class Edges:
    """A directed graph over atoms (messages flow ``src -> dst``).

    Attributes:
        src: source nodes, shape ``(E,)``.
        dst: destination nodes, shape ``(E,)``.
        intra: True where both atoms belong to the same molecule, shape ``(E,)``.
    """

    src: Tensor
    dst: Tensor
    intra: Tensor


def build_atom_edges(pos: Tensor, mol_index: Tensor, atom_batch: Tensor, *, mode: str = "knn",
                     k_intra: int = 8, k_inter: int = 8, radius: float = 5.0) -> Edges:
    """Intra- and inter-molecular neighbour edges, cluster by cluster.

    ``mode="knn"`` links every atom to its ``k_intra`` nearest atoms of its own molecule and
    its ``k_inter`` nearest atoms of other molecules; ``mode="radius"`` links all pairs closer
    than ``radius`` (and always the intra-molecular ``k_intra`` nearest, so no molecule falls
    apart into isolated atoms).

    Args:
        pos: atom positions, shape ``(A, 3)``.
        mol_index: global molecule index of every atom, shape ``(A,)``.
        atom_batch: cluster of every atom, shape ``(A,)``, sorted.
        mode: ``"knn"`` or ``"radius"``.
        k_intra: intra-molecular neighbours per atom.
        k_inter: inter-molecular neighbours per atom (knn mode).
        radius: cutoff in Å (radius mode).

    Returns:
        The :class:`Edges`.
    """
    if mode not in ("knn", "radius"):
        raise ValueError(f"edge mode must be 'knn' or 'radius', got {mode!r}")
    dense_pos, valid = to_dense_batch(pos, atom_batch)  # (B, N, 3), (B, N)
    dense_mol, _ = to_dense_batch(mol_index, atom_batch, fill_value=-1)
    offsets = torch.cumsum(valid.sum(1), 0) - valid.sum(1)  # first flat index of every cluster
    with torch.no_grad():
        dist = torch.cdist(dense_pos, dense_pos)  # (B, N, N)
        same_mol = dense_mol.unsqueeze(2) == dense_mol.unsqueeze(1)
        pair_ok = valid.unsqueeze(2) & valid.unsqueeze(1)
        pair_ok &= ~torch.eye(dist.shape[1], dtype=torch.bool, device=pos.device)
        inf = torch.tensor(float("inf"), dtype=dist.dtype, device=dist.device)
        intra_mask = _knn_mask(torch.where(pair_ok & same_mol, dist, inf), k_intra)
        inter_dist = torch.where(pair_ok & ~same_mol, dist, inf)
        if mode == "knn":
            inter_mask = _knn_mask(inter_dist, k_inter)
        else:
            inter_mask = inter_dist < radius
            intra_mask |= pair_ok & same_mol & (dist < radius)
    edges = []
    for mask, is_intra in ((intra_mask, True), (inter_mask, False)):
        b, dst, src = mask.nonzero(as_tuple=True)  # row = receiving atom
        edges.append((src + offsets[b], dst + offsets[b], torch.full_like(src, int(is_intra), dtype=torch.bool)))
    src, dst, intra = (torch.cat(parts) for parts in zip(*edges))
    return Edges(src=src, dst=dst, intra=intra)


def _knn_mask(dist: Tensor, k: int) -> Tensor:
    """Boolean mask of the ``k`` smallest finite entries of every row of ``dist (B, N, N)``."""
    k = min(k, dist.shape[-1])
    if k <= 0:
        return torch.zeros_like(dist, dtype=torch.bool)
    values, index = dist.topk(k, dim=-1, largest=False)
    mask = torch.zeros_like(dist, dtype=torch.bool)
    mask.scatter_(-1, index, torch.isfinite(values))
    return mask


def full_molecule_edges(mol_batch: Tensor) -> tuple[Tensor, Tensor]:
    """All ordered pairs of distinct molecules inside each cluster.

    Args:
        mol_batch: cluster of every molecule, shape ``(M,)``, sorted.

    Returns:
        ``(src, dst)``, each shape ``(E,)``.
    """
    same = mol_batch.unsqueeze(0) == mol_batch.unsqueeze(1)
    same &= ~torch.eye(len(mol_batch), dtype=torch.bool, device=mol_batch.device)
    dst, src = same.nonzero(as_tuple=True)
    return src, dst


def gated_irreps(irreps_hidden: o3.Irreps) -> tuple[o3.Irreps, e3nn_nn.Gate]:
    """The gate nonlinearity producing ``irreps_hidden`` and the irreps it expects as input."""
    scalars = o3.Irreps([(mul, ir) for mul, ir in irreps_hidden if ir.l == 0])
    gated = o3.Irreps([(mul, ir) for mul, ir in irreps_hidden if ir.l > 0])
    gates = o3.Irreps(f"{gated.num_irreps}x0e")
    gate = e3nn_nn.Gate(scalars, [nn.functional.silu] * len(scalars), gates,
                        [torch.sigmoid] * len(gates) if len(gates) else [], gated)
    return gate.irreps_in, gate


class EquivariantConv(nn.Module):
    """One residual e3nn interaction block (NequIP-style depthwise tensor product).

    Message ``src -> dst``: ``TP_uvu(h_src, Y(r_dst - r_src); w(edge_scalars))``; messages
    are averaged at ``dst``, mixed by a linear layer with a self-connection and gated.

    Args:
        irreps_hidden: node feature irreps (input == output).
        irreps_sh: spherical harmonics irreps of the edge direction.
        edge_scalar_dim: width of the invariant edge features (radial basis + edge type).
        radial_hidden: hidden width of the radial MLP.
    """

    def __init__(self, irreps_hidden: o3.Irreps, irreps_sh: o3.Irreps, edge_scalar_dim: int,
                 radial_hidden: int = 32):
        super().__init__()
        self.irreps_hidden = o3.Irreps(irreps_hidden)
        allowed = {ir for _, ir in self.irreps_hidden}
        mid, instructions = [], []
        for i, (mul, ir_in) in enumerate(self.irreps_hidden):
            for j, (_, ir_sh) in enumerate(irreps_sh):
                for ir_out in ir_in * ir_sh:
                    if ir_out in allowed:
                        instructions.append((i, j, len(mid), "uvu", True))
                        mid.append((mul, ir_out))
        irreps_mid = o3.Irreps(mid)
        self.tp = o3.TensorProduct(self.irreps_hidden, irreps_sh, irreps_mid, instructions,
                                   shared_weights=False, internal_weights=False)
        self.radial = nn.Sequential(nn.Linear(edge_scalar_dim, radial_hidden), nn.SiLU(),
                                    nn.Linear(radial_hidden, self.tp.weight_numel))
        gate_in, self.gate = gated_irreps(self.irreps_hidden)
        self.linear_msg = o3.Linear(irreps_mid, gate_in)
        self.linear_self = o3.Linear(self.irreps_hidden, gate_in)

    def forward(self, h: Tensor, src: Tensor, dst: Tensor, edge_sh: Tensor, edge_scalars: Tensor) -> Tensor:
        """Args:
            h: node features, shape ``(N, irreps_hidden.dim)``.
            src: source node per edge, shape ``(E,)``.
            dst: destination node per edge, shape ``(E,)``.
            edge_sh: spherical harmonics of the edge vectors, shape ``(E, irreps_sh.dim)``.
            edge_scalars: invariant edge features, shape ``(E, edge_scalar_dim)``.

        Returns:
            Updated node features, shape ``(N, irreps_hidden.dim)``.
        """
        msg = self.tp(h[src], edge_sh, self.radial(edge_scalars))
        agg = scatter(msg, dst, dim=0, dim_size=h.shape[0], reduce="mean")
        return h + self.gate(self.linear_self(h) + self.linear_msg(agg))
