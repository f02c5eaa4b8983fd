"""Workloads of the GPU check (``scripts/gpu_check.py``) for the assembly model.

Synthetic rigid clusters that need no chemistry package, batches of the training clusters
(synthetic when those do not load), one timed training step of a preset, and a short training
run whose loss curve is compared with the CPU reference ``scripts/gpu_check_cpu_reference.json``.
The timing and reporting around them is :mod:`kflow.benchmarking`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch


def synthetic_clusters(count: int, molecules: int = 17, atoms: int = 40, seed: int = 0) -> list:
    """Rigid-molecule clusters without any chemistry package (shapes and sizes like pyxtal's).

    Each cluster: ``molecules`` copies of one random rigid molecule of ``atoms`` atoms on a
    jittered 7 Å grid in random orientations (the crystal) and a start state moved by a
    random rotation (about 0.5 rad) and shift (about 1.5 Å) per molecule.
    """
    import numpy as np

    from kflow_mol.data.dataset import META_FIELDS, rigid_cluster_data

    rng = np.random.default_rng(seed)

    def rotations(n: int, scale: float | None = None) -> np.ndarray:
        if scale is None:
            q, r = np.linalg.qr(rng.normal(size=(n, 3, 3)))
            q = q * np.sign(np.diagonal(r, axis1=1, axis2=2))[:, None, :]
        else:
            from scipy.spatial.transform import Rotation

            q = Rotation.from_rotvec(scale * rng.normal(size=(n, 3))).as_matrix()
        q[np.linalg.det(q) < 0, :, 0] *= -1
        return q

    grid = np.stack(np.meshgrid(*[np.arange(3.0)] * 3, indexing="ij"), -1).reshape(-1, 3)[:molecules] * 7.0
    clusters = []
    for index in range(count):
        body = rng.normal(size=(atoms, 3)) * np.array([2.2, 1.4, 0.6])
        body -= body.mean(0)
        numbers = rng.choice([1, 6, 7, 8], size=atoms, p=[0.45, 0.4, 0.08, 0.07])
        rot_target = rotations(molecules)
        trans_target = grid + 0.5 * rng.normal(size=grid.shape)
        rot_start = rotations(molecules, scale=0.5) @ rot_target
        trans_start = trans_target + 1.5 * rng.normal(size=grid.shape)
        meta = {key: f"gpu_check_{index}" for key in META_FIELDS}
        meta.update(synthetic=True, start_scheme="local", cluster_id=f"gpu_check_r0_c{index}")
        clusters.append(
            rigid_cluster_data(
                np.repeat(numbers[None], molecules, 0),
                np.repeat(body[None], molecules, 0),
                rot_start,
                trans_start,
                rot_target,
                trans_target,
                meta,
            )
        )
    return clusters


def assembly_batches(batch_size: int, count: int) -> tuple[list, list, str]:
    """Batches of the embedded pyxtal training clusters when they load, else synthetic ones."""
    from torch_geometric.data import Batch

    try:
        from kflow_mol.config import DataConfig
        from kflow_mol.experiment import load_split

        clusters, source = load_split(DataConfig(), "train"), "pyxtal"
    except Exception as error:  # pyxtal / rdkit missing on the GPU image, or no cache
        print(
            f"[gpu_check] pyxtal clusters unavailable ({type(error).__name__}); synthetic clusters instead", flush=True
        )
        clusters, source = synthetic_clusters(count), "synthetic"
    batches = [
        Batch.from_data_list(clusters[i : i + batch_size]) for i in range(0, len(clusters) - batch_size + 1, batch_size)
    ]
    return batches, clusters, source


def bf16_autocast_error(flow, batch, device: torch.device) -> str | None:
    """None when the preset-S loss runs under bf16 autocast on ``device``, else the error.

    e3nn tensor products mix float32 constants with autocast's bf16 outputs, which some
    versions refuse.
    """
    from kflow_mol.models import build_model

    try:
        with torch.autocast(device.type, dtype=torch.bfloat16):
            flow.loss(build_model("S").to(device), batch)
    except RuntimeError as error:
        return f"{type(error).__name__}: {error}"
    return None


def assembly_step_maker(preset: str, flow, batch, device: torch.device, amp: bool) -> Callable[[bool], Callable]:
    """``make_step(compile_model)``: a fresh preset model (seed 0) and its AdamW training step
    (forward in bf16 autocast when ``amp``, backward, optimizer step) on ``batch``."""
    from kflow_mol.models import build_model

    def make_step(compile_model: bool):
        torch.manual_seed(0)
        model = build_model(preset).to(device)
        runner = torch.compile(model) if compile_model else model
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

        def step():
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                loss, _ = flow.loss(runner, batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        return step

    return make_step


def train_curve(device: torch.device, steps: int, seconds: float | None, seed: int = 0) -> dict:
    """Preset-S training on synthetic clusters with device-independent draws; loss per step."""
    from torch_geometric.data import Batch

    from kflow.training import StepDraws
    from kflow_mol.flow import AssemblyFlow, translation_scale_of
    from kflow_mol.models import build_model

    clusters = synthetic_clusters(64, atoms=24, seed=seed)
    batches = [Batch.from_data_list(clusters[i : i + 8]).to(device) for i in range(0, 64, 8)]
    flow = AssemblyFlow(num_bands=2, translation_scale=translation_scale_of(clusters))
    torch.manual_seed(seed)
    model = build_model("S").to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    losses, tic = [], time.perf_counter()
    for step in range(1, steps + 1):
        loss, _ = flow.loss(model, batches[(step - 1) % len(batches)], draws=StepDraws(seed=seed, step=step))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(float(loss.detach()))
        if seconds is not None and time.perf_counter() - tic > seconds:
            break
    return {"steps": len(losses), "seconds": time.perf_counter() - tic, "losses": losses}
