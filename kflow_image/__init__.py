"""Image branch of kflow: DiT K-Flow on pixels or autoencoder latents with Fourier, wavelet and PCA bands.

Modules, each named after its idea:
  config        the typed run config (every default once; Hydra structured-config schemas)
  data          digits (embedded), MNIST test split halves, image folders; [-1, 1] tensors
  codecs        pixel identity, the in-project autoencoder, diffusers AutoencoderKL (local folder)
  autoencoder   training the in-project autoencoder (scripts/train_autoencoder.py)
  latents       memory-mapped latent store, streaming moments / energies
  editing       band (PCA) editing of samples
  models        DiT (adaLN-Zero, sin-cos positions, k-embedding, CFG label dropout), MoE MLP
  train         transform choice, the K-Flow loss for kflow.training.Trainer, generation
  classifier    the in-project feature CNN behind FD-<net> (no downloaded weights)
  metrics       FD, KID, precision/recall, accuracy, CDR, spectra, PSNR/SSIM, optional Inception FID
  evaluation    generate-and-score a trained model
  steering      noise splitting, condition dropping
  restoration   training-free super-resolution / deblurring, FM-projection baseline
  plots         PNG grids, radial spectra, band energy along k
  experiment    one run from its config (data, codec, latents, path, DiT, Trainer, evaluation, figures)
  benchmark     equal-budget comparison of transforms vs plain FM
"""

from kflow_image.models import DIT_PRESETS, DiT
from kflow_image.train import ImageFlowLoss, SamplerSpec, TransformSpec, build_transform, generate, velocity_fn_for

__all__ = [
    "DIT_PRESETS",
    "DiT",
    "ImageFlowLoss",
    "SamplerSpec",
    "TransformSpec",
    "build_transform",
    "generate",
    "velocity_fn_for",
]
