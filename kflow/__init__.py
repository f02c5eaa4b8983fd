"""kflow: the K-Flow engine (transforms, bands, K-amplitude path, loss, samplers, training).

The core imports neither branch (``kflow_mol``, ``kflow_image``) nor Hydra.

Example:
    >>> from kflow import FourierTransform, KAmplitudePath, KFlowSampler, sample_k, flow_matching_loss
"""

from kflow.loss import flow_matching_loss, sample_k
from kflow.path import BUMPS, KAmplitudePath, PathSample
from kflow.sampling import KFlowSampler, SampleResult, allocate_steps, share_bands
from kflow.transforms import (
    FourierTransform,
    GraphSpectralTransform,
    IdentityTransform,
    KTransform,
    MatrixTransform,
    PCATransform,
    WaveletTransform,
)

__version__ = "0.1.0"

__all__ = [
    "BUMPS",
    "FourierTransform",
    "GraphSpectralTransform",
    "IdentityTransform",
    "KAmplitudePath",
    "KFlowSampler",
    "KTransform",
    "MatrixTransform",
    "PCATransform",
    "PathSample",
    "SampleResult",
    "WaveletTransform",
    "allocate_steps",
    "flow_matching_loss",
    "sample_k",
    "share_bands",
]
