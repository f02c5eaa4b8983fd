"""Sample labelled PNG grids from a trained image run (pixel or latent), with the paper's steering modes.

    python scripts/sample_image.py run_dir=outputs/image/digits-pixel-fourier mode=grid
    python scripts/sample_image.py run_dir=... mode=noise_split noise_split.direction=share_low
    python scripts/sample_image.py run_dir=... mode=drop_cond
    python scripts/sample_image.py run_dir=... mode=restore restore.kind=deblur restore.fm_run_dir=...
    python scripts/sample_image.py run_dir=... mode=trajectory
    python scripts/sample_image.py run_dir=... mode=edit edit.bands=[0] edit.amounts=[-1,0,1]

Every mode prints its NFE (and PSNR/SSIM for restore) and writes <out_dir>/<mode>.png; the modes are
kflow_image/sampling_modes.py (SAMPLING_MODES). Keys and defaults: kflow_image/config.py
(SampleRunConfig); ``sample.*`` left null keep the run's values.
"""

from __future__ import annotations

import json

from kflow_image.cli import main
from kflow_image.config import SampleRunConfig
from kflow_image.sampling_modes import run_sampling_mode


def sample(cfg: SampleRunConfig) -> None:
    print(json.dumps(run_sampling_mode(cfg), indent=2))


if __name__ == "__main__":
    main("sample_image", "sample_image", SampleRunConfig, sample)
