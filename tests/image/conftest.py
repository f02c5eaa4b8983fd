"""Fixtures shared by the image tests."""

import pytest
import torch


class RandomInception(torch.nn.Module):
    """Stand-in with the published file's interface: (B, 3, H, W) 0..255 -> resized to 299 -> (B, 16) features."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 16, 7, stride=4)

    def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        assert x.shape[1] == 3 and bool((x == x.round()).all()) and 0 <= x.min() and x.max() <= 255
        x = torch.nn.functional.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        return torch.relu(self.conv(x / 255.0)).mean(dim=(2, 3))


@pytest.fixture(scope="session")
def inception_file(tmp_path_factory):
    """A TorchScript file of :class:`RandomInception`, named like the published one."""
    path = tmp_path_factory.mktemp("inception") / "inception-2015-12-05.pt"
    torch.jit.script(RandomInception()).save(str(path))
    return path
