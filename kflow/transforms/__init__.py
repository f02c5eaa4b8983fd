"""Invertible linear transforms with scale bands (the ``F`` of K-Flow)."""

from kflow.transforms.bands import GROUPING_MODES, band_energy, coefficient_energy, group_bands
from kflow.transforms.base import KTransform
from kflow.transforms.fourier import FourierTransform, radial_frequency
from kflow.transforms.graph_spectral import GraphBasis, GraphSpectralTransform
from kflow.transforms.matrix import IdentityTransform, MatrixTransform
from kflow.transforms.pca import PCATransform
from kflow.transforms.wavelet import WaveletTransform

__all__ = [
    "GROUPING_MODES",
    "FourierTransform",
    "GraphBasis",
    "GraphSpectralTransform",
    "IdentityTransform",
    "KTransform",
    "MatrixTransform",
    "PCATransform",
    "WaveletTransform",
    "band_energy",
    "coefficient_energy",
    "group_bands",
    "radial_frequency",
]
