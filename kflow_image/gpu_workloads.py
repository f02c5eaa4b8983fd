"""Workload of the GPU check (``scripts/gpu_check.py``) for the image model: a DiT training step.

The timing and reporting around it is :mod:`kflow.benchmarking`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def dit_step_maker(preset: str, batch_size: int, device: torch.device, info: dict) -> Callable[[bool], Callable]:
    """``make_step(compile_model)``: a fresh class-conditional DiT (seed 0, 1000 classes) on
    (``batch_size``, 4, 32, 32) latents and its AdamW step in bf16 autocast (fp32 weights).

    Fixed random inputs and targets are drawn once; ``info["parameters"]`` is set to the model's
    parameter count whenever a model is built.
    """
    from kflow_image.models.dit import DiT

    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch_size, 4, 32, 32, generator=g).to(device)
    target = torch.randn(batch_size, 4, 32, 32, generator=g).to(device)
    s = torch.rand(batch_size, generator=g).to(device)
    y = torch.randint(0, 1000, (batch_size,), generator=g).to(device)

    def make_step(compile_model: bool):
        torch.manual_seed(0)
        model = DiT.from_preset(preset, image_size=32, channels=4, num_classes=1000).to(device)
        runner = torch.compile(model) if compile_model else model
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")

        def step():
            with torch.autocast(device.type, dtype=torch.bfloat16):
                loss = (runner(x, s, y).float() - target).square().mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        info["parameters"] = sum(p.numel() for p in model.parameters())
        return step

    return make_step
