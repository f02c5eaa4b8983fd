"""Fréchet distances through torchmetrics, streamed statistics, .npz reference statistics, Inception files.

The Inception network is stood in for by a small randomly initialised TorchScript CNN saved to a
temporary file in the published file's calling convention (uint8-range ``(B, 3, 299, 299)`` input,
``return_features=True``): the loading, preprocessing, statistics and Fréchet maths are the real ones.
"""

from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch
from _scripts import load_script
from PIL import Image

from kflow_image.fid import (
    FrechetScorer,
    InceptionFeatures,
    ReferenceStats,
    check_fid_files,
    load_inception,
    reference_stats,
    save_folder_reference_stats,
    to_inception_input,
)
from kflow_image.metrics import frechet_distance


def features(n, d, seed, scale=1.0, shift=0.0):
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(d, d, generator=g, dtype=torch.float64)
    return torch.randn(n, d, generator=g, dtype=torch.float64) @ mix * scale + shift


def scipy_frechet(a: np.ndarray, b: np.ndarray) -> float:
    """The textbook formula with scipy's matrix square root (pytorch-fid's computation)."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(cov_a @ cov_b).real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * covmean))


def scorer_of(real, fake, batch=37):
    scorer = FrechetScorer(real.shape[1])
    for i in range(0, len(real), batch):
        scorer.add_reference(real[i : i + batch])
    for i in range(0, len(fake), batch):
        scorer.add_samples(fake[i : i + batch])
    return scorer


def test_streamed_frechet_matches_scipy_sqrtm():
    real, fake = features(500, 8, 0), features(300, 8, 1, scale=0.7, shift=0.5)
    expected = scipy_frechet(real.numpy(), fake.numpy())
    assert expected > 1.0
    assert scorer_of(real, fake).compute() == pytest.approx(expected, abs=1e-6)
    assert frechet_distance(real, fake) == pytest.approx(expected, abs=1e-6)
    assert scorer_of(real, real.clone()).compute() == pytest.approx(0.0, abs=1e-6)


def test_streamed_statistics_equal_batch_statistics():
    real, fake = features(203, 5, 2), features(64, 5, 3, shift=1.0)
    scorer = scorer_of(real, fake, batch=10)
    for stats, data in ((scorer.reference_stats(), real), (scorer.sample_stats(), fake)):
        assert stats.num_samples == len(data)
        np.testing.assert_allclose(stats.mu, data.mean(0).numpy(), rtol=0, atol=1e-12)
        np.testing.assert_allclose(stats.sigma, torch.cov(data.T).numpy(), rtol=0, atol=1e-10)
    one_batch = scorer_of(real, fake, batch=1000)
    np.testing.assert_allclose(scorer.reference_stats().sigma, one_batch.reference_stats().sigma, rtol=0, atol=1e-10)


def test_scorer_rejects_wrong_shapes_and_too_few_samples():
    scorer = FrechetScorer(4)
    with pytest.raises(ValueError, match=r"\(B, 4\)"):
        scorer.add_samples(torch.zeros(3, 5))
    scorer.add_reference(torch.randn(3, 4))
    scorer.add_samples(torch.randn(1, 4))
    with pytest.raises(ValueError, match="need >= 2"):
        scorer.compute()


def test_reference_stats_npz_round_trip_gives_the_same_distance(tmp_path):
    real, fake = features(400, 6, 4), features(150, 6, 5, shift=0.3)
    stats = reference_stats(real, lambda x: x, name="identity", batch_size=64, keep_features=100)
    assert stats.features.shape == (100, 6) and stats.features.dtype == np.float32
    np.testing.assert_array_equal(stats.features, real[:100].float().numpy())
    path = stats.save(tmp_path / "ref.npz")
    loaded = ReferenceStats.load(path)
    assert (loaded.num_samples, loaded.feature_net) == (400, "identity")
    scorer = FrechetScorer(6)
    scorer.load_reference(loaded)
    for i in range(0, len(fake), 50):
        scorer.add_samples(fake[i : i + 50])
    assert scorer.compute() == pytest.approx(scipy_frechet(real.numpy(), fake.numpy()), abs=1e-6)
    np.savez(tmp_path / "pytorch_fid_style.npz", mu=stats.mu, sigma=stats.sigma)  # keys of pytorch-fid files
    assert ReferenceStats.load(tmp_path / "pytorch_fid_style.npz").features is None
    with pytest.raises(FileNotFoundError, match="missing.npz: reference statistics file not found"):
        ReferenceStats.load(tmp_path / "missing.npz")
    np.savez(tmp_path / "bad.npz", mu=stats.mu)
    with pytest.raises(ValueError, match=r"bad.npz: reference statistics lack \['sigma'\]"):
        ReferenceStats.load(tmp_path / "bad.npz")
    with pytest.raises(ValueError, match="D=6"):
        FrechetScorer(5).load_reference(loaded)


def test_inception_input_is_quantised_three_channel():
    grey = torch.linspace(-1, 1, 16).reshape(1, 1, 4, 4)
    x = to_inception_input(grey)
    assert x.shape == (1, 3, 4, 4) and x.min() == 0 and x.max() == 255
    assert torch.equal(x[:, 0], x[:, 2]) and torch.equal(x, x.round())
    constant = to_inception_input(torch.full((2, 3, 8, 8), 0.1))
    assert torch.all(constant == round(1.1 * 127.5))  # quantised to 8 bits like a saved PNG
    with pytest.raises(ValueError, match="1 or 3 channels"):
        to_inception_input(torch.zeros(1, 2, 4, 4))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_inception_features_from_a_local_torchscript_file(inception_file):
    inception = InceptionFeatures(inception_file, batch_size=3)
    images = torch.rand(7, 1, 8, 8) * 2 - 1
    feats = inception(images)
    assert feats.shape == (7, 16) and feats.dtype == torch.float64
    direct = torch.jit.load(str(inception_file))(to_inception_input(images)).double()
    torch.testing.assert_close(feats, direct, rtol=1e-5, atol=1e-6)
    scorer = FrechetScorer(16)
    scorer.add_reference(inception(images))
    scorer.add_samples(inception(images))
    assert scorer.compute() == pytest.approx(0.0, abs=1e-6)


def test_inception_file_errors_are_one_clear_line(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pt: Inception weights file not found"):
        load_inception(tmp_path / "missing.pt", torch.device("cpu"))
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a network")
    with pytest.raises(ValueError, match="junk.pt: not a TorchScript Inception file"):
        load_inception(junk, torch.device("cpu"))
    pth = tmp_path / "weights-inception-2015-12-05-6726825d.pth"
    pth.write_bytes(b"")
    try:
        import torch_fidelity  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="needs torch-fidelity installed"):
            load_inception(pth, torch.device("cpu"))


def test_configured_files_are_checked_before_any_work(tmp_path, inception_file):
    check_fid_files(None)
    check_fid_files(inception_file)
    with pytest.raises(FileNotFoundError, match="nope.pt: Inception weights file not found"):
        check_fid_files(tmp_path / "nope.pt")
    with pytest.raises(FileNotFoundError, match="nope.npz: reference statistics file not found"):
        check_fid_files(inception_file, tmp_path / "nope.npz")
    with pytest.raises(ValueError, match="needs eval.inception_weights"):
        check_fid_files(None, tmp_path / "nope.npz")


def write_pngs(folder: Path, count: int, size: int = 10) -> None:
    rng = np.random.default_rng(0)
    for i in range(count):
        sub = folder / ("a" if i % 2 else "b")
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (size, size + 2, 3), dtype=np.uint8)).save(sub / f"{i}.png")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_folder_reference_stats_and_their_script(tmp_path, inception_file, capsys):
    write_pngs(tmp_path / "images", 6)
    stats = save_folder_reference_stats(
        tmp_path / "images", tmp_path / "ref.npz", inception_file, size=8, batch_size=4, keep_features=5
    )
    loaded = ReferenceStats.load(tmp_path / "ref.npz")
    assert (loaded.num_samples, loaded.feature_net, loaded.features.shape) == (6, "inception-2048", (5, 16))
    np.testing.assert_allclose(loaded.sigma, stats.sigma)
    cli = load_script("fid_stats")
    cli.main(
        [
            str(tmp_path / "images"),
            "--out",
            str(tmp_path / "cli.npz"),
            "--inception-weights",
            str(inception_file),
            "--size",
            "8",
            "--keep-features",
            "5",
        ]
    )
    np.testing.assert_allclose(ReferenceStats.load(tmp_path / "cli.npz").mu, stats.mu, rtol=1e-6)
    assert "6/6" in capsys.readouterr().err  # a progress bar over the images
    with pytest.raises(SystemExit) as exit_info:
        cli.main(
            [
                str(tmp_path / "images"),
                "--out",
                str(tmp_path / "x.npz"),
                "--inception-weights",
                str(tmp_path / "none.pt"),
            ]
        )
    assert exit_info.value.code == 2 and not (tmp_path / "x.npz").exists()
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"fid_stats: error: {tmp_path / 'none.pt'}: Inception weights file not found "
        "(nothing is downloaded; give a local inception-2015-12-05.pt)"
    )


class NotInception(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:  # no return_features: another network's file
        return x.mean()


def test_corrupt_or_foreign_inception_file_is_refused_before_any_work(tmp_path, inception_file):
    truncated = tmp_path / "inception-2015-12-05.pt"
    truncated.write_bytes(inception_file.read_bytes()[:300])
    with pytest.raises(ValueError, match="inception-2015-12-05.pt: not a TorchScript Inception file") as info:
        check_fid_files(truncated)
    assert "\n" not in str(info.value)
    other = tmp_path / "other.pt"
    torch.jit.script(NotInception()).save(str(other))
    with pytest.raises(ValueError, match="other.pt: not an Inception network"):
        check_fid_files(other)
    stats = tmp_path / "stats.npz"
    stats.write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(ValueError, match="stats.npz: not a reference statistics file"):
        check_fid_files(inception_file, stats)
    np.savez(stats, mu=np.zeros(3), sigma=np.eye(3))
    with pytest.raises(ValueError, match="statistics of 3-d features"):
        check_fid_files(inception_file, stats)
