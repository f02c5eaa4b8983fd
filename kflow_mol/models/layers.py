"""Equivariant building blocks: radial/time embeddings, neighbour graphs, e3nn convolution.

Neighbour graphs are built in plain torch (``torch.cdist`` per molecule and per cluster), so
no pyg-lib / torch-cluster is needed.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch
from e3nn import nn as e3nn_nn
from e3nn import o3
from torch import Tensor, nn
from torch_geometric.utils import scatter, to_dense_batch


def float32_block(*tensors: Tensor) -> tuple[contextlib.AbstractContextManager, tuple[Tensor, ...]]:
    """Autocast off for an e3nn block, and its float inputs in float32 if autocast was on.

    e3nn's tensor products mix their float32 constants with the inputs, which bf16 autocast
    turns into a dtype mismatch; these blocks therefore run in float32 inside an autocast
    region (the surrounding linear layers still use bf16). Outside autocast nothing changes
    (float64 stays float64).

    Returns:
        ``(context, tensors)``: enter the context and use the returned tensors.
    """
    device_type = tensors[0].device.type
    if not torch.is_autocast_enabled(device_type):
        return contextlib.nullcontext(), tensors
    return torch.autocast(device_type, enabled=False), tuple(t.float() for t in tensors)


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


def build_atom_edges(
    pos: Tensor,
    mol_index: Tensor,
    atom_batch: Tensor,
    *,
    mode: str = "knn",
    k_intra: int = 8,
    k_inter: int = 8,
    radius: float = 5.0,
    dense: bool | None = None,
) -> Edges:
    """Intra- and inter-molecular neighbour edges.

    ``mode="knn"`` links every atom to its ``k_intra`` nearest atoms of its own molecule and
    its ``k_inter`` nearest atoms of other molecules; ``mode="radius"`` links all pairs closer
    than ``radius`` (and always the intra-molecular ``k_intra`` nearest, so no molecule falls
    apart into isolated atoms).

    Intra-molecular neighbours are searched molecule by molecule (one padded
    ``(M, T_max, T_max)`` distance tensor), inter-molecular ones on each cluster's own
    ``(N_b, N_b)`` distances; on CUDA the clusters are padded into one ``(B, N_max, N_max)``
    tensor instead (``dense``, same edges, the original search) to avoid a Python loop of small
    kernels. Edges come out grouped by kind, not in a fixed order.

    Args:
        pos: atom positions, shape ``(A, 3)``.
        mol_index: global molecule index of every atom, shape ``(A,)``.
        atom_batch: cluster of every atom, shape ``(A,)``, sorted.
        mode: ``"knn"`` or ``"radius"``.
        k_intra: intra-molecular neighbours per atom.
        k_inter: inter-molecular neighbours per atom (knn mode).
        radius: cutoff in Å (radius mode).
        dense: search on padded ``(B, N_max, N_max)`` distance matrices (cost ``B * N_max^2``
            for both edge kinds); ``None`` chooses it on CUDA only. Tests use it as the reference.

    Returns:
        The :class:`Edges`.
    """
    if mode not in ("knn", "radius"):
        raise ValueError(f"edge mode must be 'knn' or 'radius', got {mode!r}")
    if pos.device.type == "cuda" if dense is None else dense:
        return _dense_atom_edges(pos, mol_index, atom_batch, mode, k_intra, k_inter, radius)
    with torch.no_grad():
        intra = _intra_molecular_edges(pos, mol_index, mode, k_intra, radius)
        inter = _inter_molecular_edges(pos, mol_index, atom_batch, mode, k_inter, radius)
    src, dst = (torch.cat(parts) for parts in zip(intra, inter))
    intra_flag = torch.zeros_like(src, dtype=torch.bool)
    intra_flag[: intra[0].shape[0]] = True
    return Edges(src=src, dst=dst, intra=intra_flag)


def _intra_molecular_edges(
    pos: Tensor, mol_index: Tensor, mode: str, k_intra: int, radius: float
) -> tuple[Tensor, Tensor]:
    """``(src, dst)`` within molecules, from one padded ``(M, T_max, T_max)`` distance tensor."""
    order = torch.argsort(mol_index, stable=True)
    sorted_mol = mol_index[order]
    dense_pos, valid = to_dense_batch(pos[order], sorted_mol)  # (M, T, 3)
    counts = valid.sum(1)
    offsets = torch.cumsum(counts, 0) - counts
    dist = torch.cdist(dense_pos, dense_pos)
    pair_ok = valid.unsqueeze(2) & valid.unsqueeze(1)
    pair_ok &= ~torch.eye(dist.shape[1], dtype=torch.bool, device=pos.device)
    dist = dist.masked_fill(~pair_ok, float("inf"))
    mask = _knn_mask(dist, k_intra)
    if mode == "radius":
        mask |= dist < radius
    m, dst, src = mask.nonzero(as_tuple=True)  # row = receiving atom
    return order[src + offsets[m]], order[dst + offsets[m]]


def _inter_molecular_edges(
    pos: Tensor, mol_index: Tensor, atom_batch: Tensor, mode: str, k_inter: int, radius: float
) -> tuple[Tensor, Tensor]:
    """``(src, dst)`` between molecules of the same cluster, cluster by cluster."""
    counts = torch.bincount(atom_batch).tolist()
    srcs, dsts, start = [], [], 0
    for count in counts:
        if count == 0:
            continue
        part_pos, part_mol = pos[start : start + count], mol_index[start : start + count]
        dist = torch.cdist(part_pos, part_pos).masked_fill_(
            part_mol.unsqueeze(1) == part_mol.unsqueeze(0), float("inf")
        )
        if mode == "knn":
            k = min(k_inter, count)
            values, index = dist.topk(k, dim=-1, largest=False)
            keep = torch.isfinite(values)
            dst = torch.arange(count, device=pos.device).unsqueeze(1).expand_as(index)[keep]
            src = index[keep]
        else:
            dst, src = (dist < radius).nonzero(as_tuple=True)
        srcs.append(src + start)
        dsts.append(dst + start)
        start += count
    empty = torch.zeros(0, dtype=torch.long, device=pos.device)
    return (torch.cat(srcs) if srcs else empty), (torch.cat(dsts) if dsts else empty)


def _dense_atom_edges(
    pos: Tensor, mol_index: Tensor, atom_batch: Tensor, mode: str, k_intra: int, k_inter: int, radius: float
) -> Edges:
    """:func:`build_atom_edges` with ``dense=True``: the original padded search."""
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
    gate = e3nn_nn.Gate(
        scalars, [nn.functional.silu] * len(scalars), gates, [torch.sigmoid] * len(gates) if len(gates) else [], gated
    )
    return gate.irreps_in, gate


class _GatedConv(nn.Module):
    """Residual gated update shared by the interaction blocks.

    Subclasses build their message irreps, call :meth:`_init_update` and implement
    :meth:`aggregate`; the update is ``h + gate(linear_self(h) + linear_msg(aggregate(...)))``,
    run in float32 inside an autocast region (:func:`float32_block`).
    """

    def _init_update(self, irreps_msg: o3.Irreps) -> None:
        gate_in, self.gate = gated_irreps(self.irreps_hidden)
        self.linear_msg = o3.Linear(irreps_msg, gate_in)
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
        context, (h, edge_sh, edge_scalars) = float32_block(h, edge_sh, edge_scalars)
        with context:
            agg = self.aggregate(h, src, dst, edge_sh, edge_scalars)
            return h + self.gate(self.linear_self(h) + self.linear_msg(agg))

    def aggregate(self, h: Tensor, src: Tensor, dst: Tensor, edge_sh: Tensor, edge_scalars: Tensor) -> Tensor:
        """Mean of the messages at every node, shape ``(N, irreps_msg.dim)`` (arguments: :meth:`forward`)."""
        raise NotImplementedError


class EquivariantConv(_GatedConv):
    """One residual e3nn interaction block (NequIP-style depthwise tensor product).

    Message ``src -> dst``: ``TP_uvu(h_src, Y(r_dst - r_src); w(edge_scalars))``; messages
    are averaged at ``dst``, mixed by a linear layer with a self-connection and gated.

    Args:
        irreps_hidden: node feature irreps (input == output).
        irreps_sh: spherical harmonics irreps of the edge direction.
        edge_scalar_dim: width of the invariant edge features (radial basis + edge type).
        radial_hidden: hidden width of the radial MLP.
    """

    def __init__(self, irreps_hidden: o3.Irreps, irreps_sh: o3.Irreps, edge_scalar_dim: int, radial_hidden: int = 32):
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
        self.tp = o3.TensorProduct(
            self.irreps_hidden, irreps_sh, irreps_mid, instructions, shared_weights=False, internal_weights=False
        )
        self.radial = nn.Sequential(
            nn.Linear(edge_scalar_dim, radial_hidden), nn.SiLU(), nn.Linear(radial_hidden, self.tp.weight_numel)
        )
        self._init_update(irreps_mid)

    def aggregate(self, h: Tensor, src: Tensor, dst: Tensor, edge_sh: Tensor, edge_scalars: Tensor) -> Tensor:
        """Mean tensor-product message at every node, shape ``(N, irreps_mid.dim)``."""
        msg = self.tp(h[src], edge_sh, self.radial(edge_scalars))
        return scatter(msg, dst, dim=0, dim_size=h.shape[0], reduce="mean")


class ContactConv(_GatedConv):
    """A cheap equivariant atom-level interaction on scalar (0e) and vector (1o) channels.

    The hidden features are first projected per node onto ``channels`` scalars ``s`` and
    vectors ``v``. Along every edge with unit direction ``u`` (the ``l = 1`` spherical
    harmonic) and per-edge, per-channel radial weights ``w_0..w_3``, the message is the
    depthwise tensor product restricted to ``0e + 1o`` inputs and outputs and ``l <= 1``
    directions::

        0e: w0 s + w1 (v . u)
        1o: w2 s u + w3 v

    Messages are averaged at ``dst``, projected back to the hidden irreps, added to a
    self-connection and gated, as in :class:`EquivariantConv`. Compared with that block's
    general e3nn tensor product (every ``l <= 2`` path, one weight per path and channel of the
    full hidden width, i.e. hundreds of radial outputs per edge), the per-edge work is a few
    element-wise products on ``4 * channels`` numbers (``docs/performance.md``). ``1e`` and
    ``2e`` hidden features are updated at atoms through the self-connection and the message
    projection only.

    Args:
        irreps_hidden: node feature irreps (input == output).
        irreps_sh: spherical harmonics irreps of the edge direction; must start ``1x0e+1x1o``
            with ``"component"`` normalisation.
        edge_scalar_dim: width of the invariant edge features.
        radial_hidden: hidden width of the radial MLP.
        channels: scalar and vector channels of the messages.
    """

    num_paths = 4

    def __init__(
        self,
        irreps_hidden: o3.Irreps,
        irreps_sh: o3.Irreps,
        edge_scalar_dim: int,
        radial_hidden: int = 16,
        channels: int = 16,
    ):
        super().__init__()
        irreps_sh = o3.Irreps(irreps_sh)
        if len(irreps_sh) < 2 or irreps_sh[0] != (1, o3.Irrep("0e")) or irreps_sh[1] != (1, o3.Irrep("1o")):
            raise ValueError(f"ContactConv needs spherical harmonics starting 1x0e+1x1o, got {irreps_sh}")
        self.irreps_hidden = o3.Irreps(irreps_hidden)
        self.channels = channels
        irreps_msg = o3.Irreps(f"{channels}x0e+{channels}x1o")
        self.down = o3.Linear(self.irreps_hidden, irreps_msg)
        self.radial = nn.Sequential(
            nn.Linear(edge_scalar_dim, radial_hidden), nn.SiLU(), nn.Linear(radial_hidden, self.num_paths * channels)
        )
        self._init_update(irreps_msg)

    def aggregate(self, h: Tensor, src: Tensor, dst: Tensor, edge_sh: Tensor, edge_scalars: Tensor) -> Tensor:
        """Mean ``0e + 1o`` message at every node, shape ``(N, 4 * channels)`` in e3nn's layout."""
        c, num_nodes = self.channels, h.shape[0]
        # Vectors are held as (., 3, c) so that every broadcast runs along the channels.
        unit = (edge_sh[:, 1:4] * (1.0 / math.sqrt(3.0))).unsqueeze(-1)  # (E, 3, 1)
        s, v = self.down(h).split([c, 3 * c], dim=-1)  # per node: (N, c), (N, 3c) as [channel, xyz]
        v = v.view(num_nodes, c, 3).transpose(1, 2).reshape(num_nodes, 3 * c)
        s, v = s.index_select(0, src), v.index_select(0, src).view(-1, 3, c)  # gather per edge
        w_s, w_vu, w_su, w_v = self.radial(edge_scalars).view(-1, self.num_paths, c).unbind(1)
        msg_s = w_s * s + w_vu * (v * unit).sum(1)  # (E, c)
        msg_v = unit * (w_su * s).unsqueeze(1) + w_v.unsqueeze(1) * v  # (E, 3, c)
        agg = scatter(torch.cat([msg_s, msg_v.flatten(1)], dim=-1), dst, dim=0, dim_size=num_nodes, reduce="mean")
        agg_s, agg_v = agg.split([c, 3 * c], dim=-1)
        return torch.cat([agg_s, agg_v.view(num_nodes, 3, c).transpose(1, 2).reshape(num_nodes, 3 * c)], dim=-1)


ATOM_CONVS = ("e3nn", "contact")


def atom_conv_layer(
    kind: str, irreps_hidden: o3.Irreps, irreps_sh: o3.Irreps, edge_scalar_dim: int, radial_hidden: int, channels: int
) -> nn.Module:
    """One atom-level interaction block.

    Args:
        kind: ``"contact"`` (:class:`ContactConv`, the fast default of presets M and L) or
            ``"e3nn"`` (:class:`EquivariantConv`, all ``l <= 2`` paths; the original M/L layer).
        irreps_hidden, irreps_sh, edge_scalar_dim, radial_hidden: see the block classes.
        channels: message channels of :class:`ContactConv` (ignored by ``"e3nn"``).
    """
    if kind == "contact":
        return ContactConv(irreps_hidden, irreps_sh, edge_scalar_dim, radial_hidden, channels)
    if kind == "e3nn":
        return EquivariantConv(irreps_hidden, irreps_sh, edge_scalar_dim, radial_hidden)
    raise ValueError(f"atom_conv must be one of {ATOM_CONVS}, got {kind!r}")
