"""Every transform trains a few steps and samples; noise splitting; restoration keeps observed bands."""

import pytest
import torch

from kflow.path import KAmplitudePath
from kflow.training import TrainConfig, Trainer
from kflow_image.classifier import train_classifier
from kflow_image.data import load_digits, stack_dataset
from kflow_image.evaluation import QUALITY_METRICS, evaluate_model
from kflow_image.models import DiT
from kflow_image.restoration import fm_projection_restore, kflow_restore, low_band_mask, observe, score
from kflow_image.steering import kept_and_dropped, noise_split, split_bands
from kflow_image.train import ImageFlowLoss, SamplerSpec, TransformSpec, balanced_labels, build_transform, generate

SPECS = {
    "fourier3": TransformSpec("fourier", num_bands=3),
    "fourier_per_coefficient": TransformSpec("fourier", num_bands=None),
    "wavelet": TransformSpec("wavelet", wavelet="haar", levels=2, num_bands=None),
    "pca3": TransformSpec("pca", num_bands=3),
    "none": TransformSpec("none", num_bands=1),
}


@pytest.fixture(scope="module")
def digits():
    return load_digits()


def tiny_dit(**kwargs) -> DiT:
    torch.manual_seed(0)
    return DiT(**{**dict(image_size=8, channels=1, patch=2, hidden=32, depth=1, heads=2, num_classes=10), **kwargs})


def make_path(digits, name, tmp_path=None) -> KAmplitudePath:
    transform = build_transform(SPECS[name], digits.image_shape, stack_dataset(digits.train)[0], save_dir=tmp_path)
    return KAmplitudePath(transform)


@pytest.mark.parametrize("name", list(SPECS))
def test_each_transform_trains_and_samples(digits, name, tmp_path):
    path = make_path(digits, name, tmp_path)
    expected_bands = {"fourier3": 3, "wavelet": 3, "pca3": 3, "none": 1}.get(name)
    if expected_bands:
        assert path.num_bands == expected_bands
    else:
        assert path.num_bands > 3  # one band per distinct radius
    if name == "pca3":
        assert (tmp_path / "pca_basis.pt").exists()
    mlp = "moe" if name == "fourier3" else "dense"
    cfg = TrainConfig(
        steps=4, batch_size=16, lr=1e-3, out_dir=str(tmp_path / "run"), progress=False, log_every=1, ckpt_every=100
    )
    result = Trainer(tiny_dit(mlp=mlp), ImageFlowLoss(path), digits.train, cfg).fit()
    assert result.step == 4 and all(torch.isfinite(torch.tensor(h["loss"])) for h in result.history)
    assert result.history[-1]["balance"] > 0 if mlp == "moe" else result.history[-1]["balance"] == 0
    samples = generate(
        result.model,
        path,
        6,
        digits.image_shape,
        SamplerSpec(total_steps=path.num_bands + 2),
        labels=balanced_labels(6, 10),
    )
    assert samples.images.shape == (6, 1, 8, 8) and torch.isfinite(samples.images).all()
    assert samples.nfe == max(path.num_bands + 2, path.num_bands)


def test_loss_regresses_path_velocity(digits):
    """A model that outputs the exact path velocity has zero loss: the loss uses the right target."""
    path = make_path(digits, "fourier3")
    images, labels = stack_dataset(digits.train, 8)

    class Oracle(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(()))
            self.balance_loss = torch.zeros(())

        def forward(self, x, s, y):
            return self.target + 0 * self.w

    oracle = Oracle()
    torch.manual_seed(3)
    state = torch.get_rng_state()
    x1 = images
    x0 = torch.randn_like(x1)
    from kflow.loss import sample_k

    k = sample_k(8, path.num_bands, dtype=x1.dtype)
    oracle.target = path.sample(x0, x1, k).dx_k
    torch.set_rng_state(state)
    loss, extras = ImageFlowLoss(path)(oracle, (images, labels))
    assert loss.item() == pytest.approx(0.0, abs=1e-10)


@pytest.mark.parametrize("direction", ["share_high", "share_low"])
def test_noise_splitting_shares_bands_exactly(digits, direction):
    path = make_path(digits, "fourier3")
    model = tiny_dit()
    with torch.no_grad():  # a non-zero network, so the generated bands really differ
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    shared = split_bands(path.num_bands, direction, split=1)
    sampler = SamplerSpec(total_steps=6, project_to_band=True)
    result = noise_split(
        model, path, 5, digits.image_shape, direction, 1, sampler, labels=torch.arange(5), return_trajectory=True
    )
    transform = path.transform
    band = transform.band_index
    noise_coeffs = transform.forward(result.noise)
    is_shared = torch.isin(band, torch.tensor(shared)).expand_as(noise_coeffs)
    # exact up to float32 round-off of one transform round trip
    torch.testing.assert_close(
        noise_coeffs[is_shared], noise_coeffs[:1].expand_as(noise_coeffs)[is_shared], atol=1e-6, rtol=0
    )
    assert not torch.allclose(noise_coeffs[~is_shared], noise_coeffs[:1].expand_as(noise_coeffs)[~is_shared])
    if direction == "share_high":
        # with band-projected velocities, bands >= 1 are untouched until k = 1: exactly shared there
        at_k1 = result.trajectory[:, result.ks.index(1.0)]
        coeffs = transform.forward(at_k1)
        high = (band >= 1).expand_as(coeffs)
        torch.testing.assert_close(coeffs[high], coeffs[:1].expand_as(coeffs)[high], atol=1e-5, rtol=0)
        low = (band == 0).expand_as(coeffs)
        assert not torch.allclose(coeffs[low], coeffs[:1].expand_as(coeffs)[low])
    with pytest.raises(ValueError, match="direction"):
        split_bands(3, "sideways")


def test_condition_dropping_changes_only_late_part(digits):
    path = make_path(digits, "fourier3")
    model = tiny_dit()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    labels = torch.arange(4)
    kept, dropped = kept_and_dropped(model, path, labels, digits.image_shape, SamplerSpec(total_steps=6))
    assert torch.equal(kept.noise, dropped.noise)
    assert not torch.allclose(kept.images, dropped.images)
    never = generate(
        model,
        path,
        4,
        digits.image_shape,
        SamplerSpec(total_steps=6, drop_cond_after=1.0),
        labels=labels,
        noise=kept.noise,
    )
    torch.testing.assert_close(never.images, kept.images)


@pytest.mark.parametrize("kind", ["super_resolution", "deblur"])
def test_restoration_keeps_observed_bands_exactly(digits, kind):
    path = make_path(digits, "fourier3")
    model = tiny_dit()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    clean, labels = stack_dataset(digits.reference, 6)
    obs = observe(clean, kind, factor=2, sigma=0.8)
    noise = torch.randn_like(clean)
    transform = path.transform
    mask = low_band_mask(transform, 1).expand(6, 1, 8, 8)
    restored = kflow_restore(model, path, obs.estimate, 1, noise, labels, total_steps=6)
    torch.testing.assert_close(
        transform.forward(restored)[mask], transform.forward(obs.estimate)[mask], atol=1e-5, rtol=0
    )
    baseline = fm_projection_restore(model, transform, obs.estimate, 1, noise, labels, steps=4)
    torch.testing.assert_close(
        transform.forward(baseline)[mask], transform.forward(obs.estimate)[mask], atol=1e-5, rtol=0
    )
    scores = score(restored, clean)
    assert -1 <= scores.ssim <= 1 and scores.psnr > 0
    with pytest.raises(ValueError, match="num_observed_bands"):
        low_band_mask(transform, 3)


def test_super_resolution_observation_is_exact_for_haar_low_bands(digits):
    """Average pooling keeps exactly the haar approximation + coarsest details (wavelet bands 0, 1)."""
    clean, _ = stack_dataset(digits.reference, 4)
    obs = observe(clean, "super_resolution", factor=2)
    assert obs.degraded.shape == (4, 1, 4, 4) and obs.estimate.shape == (4, 1, 8, 8)
    nearest = obs.degraded.repeat_interleave(2, -1).repeat_interleave(2, -2)
    wavelet = build_transform(SPECS["wavelet"], (1, 8, 8))
    low = (wavelet.band_index < 2).expand(4, 1, 8, 8)
    torch.testing.assert_close(wavelet.forward(nearest)[low], wavelet.forward(clean)[low], atol=1e-5, rtol=0)


def test_evaluate_model_reports_all_metrics(digits, tmp_path):
    path = make_path(digits, "fourier3")
    net = train_classifier(digits, epochs=1, cache_dir=tmp_path)
    assert list(tmp_path.glob("classifier-digits-*.pt"))
    cached = train_classifier(digits, epochs=1, cache_dir=tmp_path)
    assert cached.test_accuracy == net.test_accuracy
    metrics = evaluate_model(tiny_dit(), path, digits, net, num_samples=40, sampler=SamplerSpec(total_steps=3))
    for key in (*QUALITY_METRICS, "nfe"):
        assert metrics[key] is not None and torch.isfinite(torch.tensor(float(metrics[key]))), key  # NaN fails
    assert metrics["fd_net"] == "digits-cnn" and metrics["nfe"] == 3 and metrics["inception_fid"] is None


def test_energy_aware_step_allocation(digits):
    from kflow.sampling import allocate_steps
    from kflow_image.experiment import sampler_spec

    path = make_path(digits, "fourier3")
    spec = sampler_spec({"total_steps": 30, "step_allocation": "energy"}, path, digits)
    assert len(spec.band_weights) == 3 and spec.band_weights[0] > spec.band_weights[2]
    steps = allocate_steps(30, spec.band_weights)
    assert sum(steps) == 30 and steps[0] > steps[2]
    result = generate(tiny_dit(), path, 2, digits.image_shape, spec, labels=torch.tensor([0, 1]))
    assert result.nfe == 30
    assert sampler_spec({"total_steps": 30}).band_weights is None
