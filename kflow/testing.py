"""Reusable assertions for K-Flow components, for the branches' test suites.

Transform checks (round trip, orthonormality, band coverage) and geometric helpers (random
rotations, a generic equivariance check). Every assertion raises ``AssertionError`` with a
message that names the transform and what went wrong.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch


def _default_atol(dtype: torch.dtype) -> float:
    return 1e-10 if dtype == torch.float64 else 1e-4


def _name(transform: Any) -> str:
    return type(transform).__name__


def assert_round_trip(transform: Any, x: torch.Tensor, context: Any = None, atol: float | None = None) -> None:
    """``inverse(forward(x)) == x`` with matching shape, dtype and device.

    Args:
        transform: a ``KTransform``.
        x: data, ``(B, *data_shape)``.
        context: per-batch basis information, if the transform needs it.
        atol: absolute tolerance (default 1e-10 for float64, 1e-4 otherwise).
    """
    atol = _default_atol(x.dtype) if atol is None else atol
    coeffs = transform.forward(x, context)
    assert coeffs.dtype == x.dtype, f"{_name(transform)}.forward changed dtype {x.dtype} -> {coeffs.dtype}"
    assert coeffs.device == x.device, f"{_name(transform)}.forward moved data {x.device} -> {coeffs.device}"
    back = transform.inverse(coeffs, context)
    assert back.shape == x.shape, f"{_name(transform)} round trip changed shape {tuple(x.shape)} -> {tuple(back.shape)}"
    torch.testing.assert_close(
        back,
        x,
        atol=atol,
        rtol=0,
        msg=lambda m: f"{_name(transform)}: inverse(forward(x)) != x\n{m}",
    )


def assert_orthonormal(
    transform: Any,
    x: torch.Tensor | Sequence[int],
    context: Any = None,
    atol: float | None = None,
    full_matrix_max_dim: int = 1024,
    generator: torch.Generator | None = None,
) -> None:
    """The transform preserves norms and inner products (it is an orthonormal map).

    Compares ``<F x, F y>`` with ``<x, y>`` and ``|F x|`` with ``|x|`` per sample, where ``y``
    is fresh Gaussian noise shaped like ``x`` (same context, so per-sample bases work). For a
    fixed basis (``context is None``) with ``prod(data_shape) <= full_matrix_max_dim`` it also
    builds the full matrix and checks ``M M^T = I``.

    Args:
        transform: a ``KTransform``.
        x: data ``(B, *data_shape)``, or a shape ``(B, *data_shape)`` for float64 Gaussian data.
        context: per-batch basis information, if the transform needs it.
        atol: absolute tolerance, relative to the squared norm scale (default by dtype).
        full_matrix_max_dim: largest data dimension for the full-matrix check.
        generator: RNG for ``y``.
    """
    if not isinstance(x, torch.Tensor):
        x = torch.randn(tuple(x), dtype=torch.float64, generator=generator)
    atol = _default_atol(x.dtype) if atol is None else atol
    y = torch.randn(x.shape, dtype=x.dtype, device=x.device, generator=generator)
    fx, fy = transform.forward(x, context), transform.forward(y, context)
    scale = x.flatten(1).norm(dim=1) * y.flatten(1).norm(dim=1)

    def inner(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a.flatten(1) * b.flatten(1)).sum(1)

    torch.testing.assert_close(
        inner(fx, fy) / scale,
        inner(x, y) / scale,
        atol=atol,
        rtol=0,
        msg=lambda m: f"{_name(transform)} does not preserve inner products\n{m}",
    )
    torch.testing.assert_close(
        fx.flatten(1).norm(dim=1),
        x.flatten(1).norm(dim=1),
        atol=atol * 10,
        rtol=atol,
        msg=lambda m: f"{_name(transform)} does not preserve norms\n{m}",
    )
    dim = x[0].numel()
    if context is None and dim <= full_matrix_max_dim:
        eye = torch.eye(dim, dtype=x.dtype, device=x.device)
        matrix = transform.forward(eye.reshape(dim, *x.shape[1:])).reshape(dim, -1)
        torch.testing.assert_close(
            matrix @ matrix.T,
            eye,
            atol=atol,
            rtol=0,
            msg=lambda m: f"{_name(transform)}: basis matrix M has M M^T != I\n{m}",
        )


def assert_band_index_covers(transform: Any, context: Any = None, coeff_shape: tuple[int, ...] | None = None) -> None:
    """Every coefficient has a band in ``0 .. num_bands-1`` and every band is used.

    For per-sample bands (``band_index_for(context)`` with a batch axis), every sample must use
    every band.

    Args:
        transform: a ``KTransform``.
        context: per-batch basis information, if the transform needs it.
        coeff_shape: if given, the band index must broadcast to ``(B, *coeff_shape)``.
    """
    name = _name(transform)
    bands = transform.band_index_for(context)
    assert bands.dtype == torch.long, f"{name}: band index dtype is {bands.dtype}, expected torch.long"
    num_bands = transform.num_bands
    assert bands.numel() > 0, f"{name}: band index is empty"
    low, high = int(bands.min()), int(bands.max())
    assert low >= 0 and high < num_bands, f"{name}: band index spans {low}..{high}, outside 0..{num_bands - 1}"
    if coeff_shape is not None:
        try:
            torch.broadcast_shapes(bands.shape, (1, *coeff_shape))
        except RuntimeError as err:
            raise AssertionError(
                f"{name}: band index shape {tuple(bands.shape)} does not broadcast to (B, *{coeff_shape})"
            ) from err
    per_sample = bands.reshape(bands.shape[0], -1) if context is not None else bands.reshape(1, -1)
    for sample, row in enumerate(per_sample):
        counts = torch.bincount(row, minlength=num_bands)
        empty = (counts == 0).nonzero().flatten().tolist()
        assert not empty, f"{name}: bands {empty} are empty (sample {sample}); counts {counts.tolist()}"


def random_rotations(
    count: int,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Uniformly random (Haar) proper rotation matrices (det +1), ``(count, 3, 3)``.

    Args:
        count: how many.
        dtype: output dtype.
        device: output device.
        generator: RNG (on CPU) for reproducibility.
    """
    gaussian = torch.randn(count, 3, 3, dtype=torch.float64, generator=generator)
    q, r = torch.linalg.qr(gaussian)
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1)).unsqueeze(-2)  # Haar-uniform orthogonal
    q[torch.linalg.det(q) < 0, :, 0] *= -1
    return q.to(dtype=dtype, device=device)


def random_rotation(
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """A uniformly random proper rotation matrix (det +1), ``(3, 3)``; see :func:`random_rotations`."""
    return random_rotations(1, dtype=dtype, device=device, generator=generator)[0]


def assert_equivariant(
    fn: Callable[..., Any],
    inputs: Any,
    rotate_in: Callable[[Any], Any],
    rotate_out: Callable[[Any], Any],
    atol: float = 1e-5,
    rtol: float = 1e-5,
) -> None:
    """``fn(rotate_in(inputs)) == rotate_out(fn(inputs))``.

    ``inputs`` is passed as ``fn(*inputs)`` if it is a tuple, else ``fn(inputs)``;
    ``rotate_in`` receives and returns the whole ``inputs``. Outputs may be tensors or
    (nested) sequences / mappings of tensors. For invariance use ``rotate_out=lambda y: y``.

    Args:
        fn: the function under test.
        inputs: its input(s).
        rotate_in: transforms the inputs (e.g. rotates positions, leaves atom types).
        rotate_out: the matching transformation of the outputs.
        atol: absolute tolerance.
        rtol: relative tolerance.
    """

    def call(args: Any) -> Any:
        return fn(*args) if isinstance(args, tuple) else fn(args)

    expected = rotate_out(call(inputs))
    actual = call(rotate_in(inputs))
    torch.testing.assert_close(
        actual,
        expected,
        atol=atol,
        rtol=rtol,
        msg=lambda m: f"{getattr(fn, '__name__', fn)} is not equivariant: f(g x) != g f(x)\n{m}",
    )


# --------------------------------------------------------------------------- path assertions


def assert_path_endpoints(
    path: Any, x0: torch.Tensor, x1: torch.Tensor, context: Any = None, atol: float | None = None
) -> None:
    """Assert ``Psi_0 = x0`` and ``Psi_K = x1`` for a :class:`~kflow.path.KAmplitudePath`.

    Args:
        path: the path under test.
        x0: source, shape ``(B, *data_shape)``.
        x1: target, shape ``(B, *data_shape)``.
        context: transform context, for per-sample bases.
        atol: tolerance (defaults by dtype).
    """
    atol = _default_atol(x0.dtype) if atol is None else atol
    batch = x0.shape[0]
    for k_value, expected, name in ((0.0, x0, "x0 at k=0"), (float(path.num_bands), x1, "x1 at k=K")):
        k = torch.full((batch,), k_value, dtype=x0.dtype, device=x0.device)
        got = path.sample(x0, x1, k, context).x_k
        torch.testing.assert_close(
            got, expected, atol=atol, rtol=0, msg=lambda m, name=name: f"path must give {name}: {m}"
        )


def assert_velocity_matches_finite_difference(
    path: Any,
    x0: torch.Tensor,
    x1: torch.Tensor,
    k: torch.Tensor,
    context: Any = None,
    h: float = 1e-6,
    atol: float = 1e-6,
) -> None:
    """Assert ``dx_k`` equals the central difference of ``x_k`` in ``k`` (use float64, k away from edges).

    Args:
        path, x0, x1, context: as in :func:`assert_path_endpoints`.
        k: amplitudes, shape ``(B,)``, at least ``h`` away from every integer.
        h: finite-difference half-step.
        atol: tolerance.
    """
    if (torch.abs(k - torch.round(k)) <= h).any():
        raise ValueError("finite differences need k away from band edges")
    forward = path.sample(x0, x1, k + h, context).x_k
    backward = path.sample(x0, x1, k - h, context).x_k
    got = path.sample(x0, x1, k, context).dx_k
    torch.testing.assert_close(
        got,
        (forward - backward) / (2 * h),
        atol=atol,
        rtol=0,
        msg=lambda m: f"dx_k differs from the finite difference of x_k: {m}",
    )


def assert_velocity_on_current_band(
    path: Any, x0: torch.Tensor, x1: torch.Tensor, k: torch.Tensor, context: Any = None, atol: float = 1e-10
) -> None:
    """Assert the path velocity has no component outside the band moving at ``k``.

    Args:
        path, x0, x1, context: as in :func:`assert_path_endpoints`.
        k: amplitudes, shape ``(B,)``, in ``[0, K)``.
        atol: largest allowed off-band coefficient.
    """
    sample = path.sample(x0, x1, k, context)
    coeffs = path.transform.forward(sample.dx_k, context)
    off_band = coeffs * (1 - path.band_mask(k, context, like=coeffs))
    worst = float(off_band.abs().max())
    assert worst <= atol, f"velocity leaks {worst:.3g} outside the current band (allowed {atol:.3g})"


def assert_sampler_reaches_target(
    path: Any,
    x0: torch.Tensor,
    x1: torch.Tensor,
    context: Any = None,
    method: str = "rk4",
    steps_per_band: int = 20,
    atol: float = 1e-4,
) -> None:
    """Assert the sampler driven by the exact conditional velocity of one pair carries x0 to x1.

    Args:
        path, x0, x1, context: as in :func:`assert_path_endpoints`.
        method: sampler method.
        steps_per_band: fixed steps per band.
        atol: tolerance on the final state.
    """
    from kflow.sampling import KFlowSampler

    def exact_velocity(x: torch.Tensor, s: torch.Tensor, cond: Any) -> torch.Tensor:
        return path.sample(x0, x1, s * path.num_bands, context).dx_k

    result = KFlowSampler(path).sample(exact_velocity, x0, method=method, steps_per_band=steps_per_band)
    torch.testing.assert_close(
        result.x, x1, atol=atol, rtol=0, msg=lambda m: f"sampler with the exact velocity missed x1: {m}"
    )
