"""The course data: digits against scikit-learn, the colour-digits generator, CIFAR-10 batches, 2-D toys.

Oracles: scikit-learn's load_digits itself, colorsys for HSV, the standard CIFAR-10 pickle layout,
and the geometry each toy distribution is defined by.
"""

from __future__ import annotations

import colorsys
import math
import pickle

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from diffusion_internals.course import data


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def sorted_rows(images: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(N, D + 1) rows of flattened images with their label, in lexicographic order (a multiset)."""
    rows = np.concatenate([images.reshape(len(images), -1), labels[:, None]], axis=1)
    return rows[np.lexsort(rows.T[::-1])]


# ----------------------------------------------------------------------------- digits


def test_digits_splits_are_scikit_learns_digits_scaled_to_minus_one_one():
    bunch = load_digits()
    train, test = data.digits("train"), data.digits("test")
    assert train.images.shape == (1437, 1, 8, 8) and test.images.shape == (360, 1, 8, 8)
    assert train.images.dtype == torch.float32 and train.labels.dtype == torch.int64 and train.num_classes == 10
    images = torch.cat([train.images, test.images]).numpy()
    labels = torch.cat([train.labels, test.labels]).numpy()
    # Together the splits are exactly the 1797 images (as a multiset), with x = 2 * pixel / 16 - 1.
    np.testing.assert_array_equal(sorted_rows((images + 1) * 8, labels), sorted_rows(bunch.images, bunch.target))
    assert images.min() == -1 and images.max() == 1


def test_digits_split_is_disjoint_stratified_and_fixed():
    train, test = data.digits("train"), data.digits("test")
    train_rows = {tuple(r) for r in sorted_rows(train.images.numpy(), train.labels.numpy())}
    test_rows = {tuple(r) for r in sorted_rows(test.images.numpy(), test.labels.numpy())}
    # load_digits has a few exact duplicates; at most those may appear on both sides.
    assert len(train_rows & test_rows) <= 3
    per_class = np.bincount(load_digits().target)
    np.testing.assert_allclose(np.bincount(test.labels.numpy()), 0.2 * per_class, atol=1)  # stratified 80/20
    # The documented split: train_test_split(index, test_size=0.2, stratify=labels, random_state=0).
    bunch = load_digits()
    _, test_index = train_test_split(np.arange(1797), test_size=0.2, stratify=bunch.target, random_state=0)
    expected = torch.from_numpy(bunch.images[np.sort(test_index)]).float().unsqueeze(1) / 8 - 1
    assert torch.equal(test.images, expected)


def test_load_dataset_checks_its_arguments():
    with pytest.raises(ValueError, match="name must be one of"):
        data.load_dataset("mnist")
    with pytest.raises(ValueError, match="split must be one of"):
        data.load_dataset("digits", split="validation")
    with pytest.raises(ValueError, match="root is only used"):
        data.load_dataset("digits", root="/tmp")


# ----------------------------------------------------------------------------- colour digits


@pytest.mark.parametrize("seed", range(3))
def test_hsv_to_rgb_matches_colorsys(seed):
    hsv = torch.rand(200, 3, generator=gen(seed), dtype=torch.float64)
    expected = torch.tensor([colorsys.hsv_to_rgb(*row) for row in hsv.tolist()], dtype=torch.float64)
    torch.testing.assert_close(data.hsv_to_rgb(hsv), expected, rtol=0, atol=1e-12)


def test_colourise_paints_the_mask_with_the_stroke_and_the_rest_with_the_background():
    stroke = torch.tensor([[0.3, 0.8, 0.9]], dtype=torch.float64)
    background = torch.tensor([[0.7, 0.3, 0.2]], dtype=torch.float64)
    for grey, hsv in ((1.0, stroke), (-1.0, background)):
        out = data.colourise(torch.full((1, 1, 8, 8), grey), stroke, background)
        rgb = torch.tensor(colorsys.hsv_to_rgb(*hsv[0].tolist()), dtype=torch.float32) * 2 - 1
        torch.testing.assert_close(out, rgb.reshape(1, 3, 1, 1).expand(1, 3, 16, 16), rtol=0, atol=1e-6)


def test_colour_digits_follow_the_documented_generator():
    colour, grey = data.colour_digits("test"), data.digits("test")
    assert colour.images.shape == (360, 3, 16, 16) and torch.equal(colour.labels, grey.labels)
    assert colour.images.min() >= -1 and colour.images.max() <= 1
    # Each image is background + m * (stroke - background) per channel, m the upsampled grey mask:
    # recover stroke and background by least squares and check the documented HSV ranges.
    mask = torch.nn.functional.interpolate(
        (grey.images.double() + 1) / 2, size=(16, 16), mode="bilinear", align_corners=False
    ).reshape(360, -1)  # (N, 256)
    design = torch.stack([1 - mask, mask], dim=-1)  # (N, 256, 2)
    target = ((colour.images.double() + 1) / 2).reshape(360, 3, -1).transpose(1, 2)  # (N, 256, 3)
    solution = torch.linalg.lstsq(design, target).solution  # (N, 2, 3): background, stroke RGB
    torch.testing.assert_close(design @ solution, target, rtol=0, atol=1e-5)  # the model is exact
    for (bg, st), k in zip(solution.tolist(), colour.labels.tolist()):
        h, s, v = colorsys.rgb_to_hsv(*st)
        gap = abs((h - k / 10 + 0.5) % 1 - 0.5)  # circular hue distance
        assert gap <= 0.03 + 1e-4 and 0.75 - 1e-4 <= s <= 1 + 1e-4 and 0.85 - 1e-4 <= v <= 1 + 1e-4
        _, s_bg, v_bg = colorsys.rgb_to_hsv(*bg)
        assert 0.2 - 1e-4 <= s_bg <= 0.5 + 1e-4 and 0.1 - 1e-4 <= v_bg <= 0.35 + 1e-4
    again = data.colour_digits("test")
    assert torch.equal(again.images, colour.images)


# ----------------------------------------------------------------------------- CIFAR-10


def write_fake_cifar(folder, n=2):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": list(rng.integers(0, 10, n))}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)
        batches[name] = batch
    return batches


def test_cifar10_reads_the_standard_pickle_batches(tmp_path, monkeypatch):
    batches = write_fake_cifar(tmp_path / "cifar-10-batches-py")
    test = data.load_dataset("cifar10", split="test", root=tmp_path)  # torchvision's layout: root/cifar-10-batches-py
    raw = batches["test_batch"][b"data"].reshape(2, 3, 32, 32)  # rows are R, G, B planes of 32x32
    torch.testing.assert_close(test.images, torch.from_numpy(raw).float() / 127.5 - 1)
    assert test.labels.tolist() == batches["test_batch"][b"labels"]
    monkeypatch.setenv(data.CIFAR10_ENV, str(tmp_path / "cifar-10-batches-py"))
    assert data.cifar10("train").images.shape == (10, 3, 32, 32)


def test_cifar10_missing_says_how_to_provide_it(tmp_path, monkeypatch):
    monkeypatch.delenv(data.CIFAR10_ENV, raising=False)
    with pytest.raises(FileNotFoundError, match=data.CIFAR10_ENV):
        data.cifar10("test")
    with pytest.raises(FileNotFoundError, match="no CIFAR-10"):
        data.cifar10("test", root=tmp_path)


# ----------------------------------------------------------------------------- 2-D toys


@pytest.mark.parametrize("name", list(data.TOY_2D))
def test_toys_are_seeded_float32_points(name):
    a = data.toy_2d(name, 500, generator=gen(1))
    assert a.shape == (500, 2) and a.dtype == torch.float32
    assert torch.equal(a, data.toy_2d(name, 500, generator=gen(1)))
    assert not torch.equal(a, data.toy_2d(name, 500, generator=gen(2)))


def test_swiss_roll_without_noise_lies_on_its_spiral():
    p = data.swiss_roll(1000, generator=gen(0), noise=0.0).double()
    theta = 5 * p.norm(dim=1)  # r = theta / 5
    assert theta.min() >= 1.5 * math.pi - 1e-4 and theta.max() <= 4.5 * math.pi + 1e-4
    angle_gap = torch.remainder(torch.atan2(p[:, 1], p[:, 0]) - theta + math.pi, 2 * math.pi) - math.pi
    assert angle_gap.abs().max() < 1e-4


def test_two_moons_without_noise_lie_on_two_unit_half_circles():
    p = data.two_moons(1000, generator=gen(0), noise=0.0).double()
    upper = (p - torch.tensor([-0.5, -0.25], dtype=torch.float64)).norm(dim=1)  # scikit-learn's outer moon, centred
    lower = (p - torch.tensor([0.5, 0.25], dtype=torch.float64)).norm(dim=1)
    on_upper = (upper - 1).abs() < 1e-5
    assert bool((on_upper | ((lower - 1).abs() < 1e-5)).all())
    assert bool((p[on_upper, 1] >= -0.25 - 1e-6).all()) and bool((p[~on_upper, 1] <= 0.25 + 1e-6).all())
    assert 0.45 < on_upper.double().mean() < 0.55


def test_eight_gaussians_have_equal_weights_and_the_given_std():
    p = data.eight_gaussians(8000, generator=gen(0), radius=2.0, std=0.1).double()
    angles = torch.arange(8, dtype=torch.float64) * math.pi / 4
    means = 2 * torch.stack([angles.cos(), angles.sin()], dim=1)  # (8, 2)
    nearest = torch.cdist(p, means).argmin(1)
    counts = torch.bincount(nearest, minlength=8).double()
    assert (counts - 1000).abs().max() < 5 * math.sqrt(1000 * 7 / 8)  # 5 binomial standard deviations
    torch.testing.assert_close(
        (p - means[nearest]).std(0), torch.full((2,), 0.1, dtype=torch.float64), rtol=0.05, atol=0
    )


def test_checkerboard_fills_the_eight_dark_squares_evenly():
    p = data.checkerboard(8000, generator=gen(0)).double()
    assert p.min() >= -2 and p.max() <= 2
    cell = torch.floor(p + 2).long()  # (N, 2): column and row in 0..3
    assert bool(((cell.sum(1) % 2) == 0).all())  # (col + row) even
    counts = torch.bincount(cell[:, 0] * 4 + cell[:, 1], minlength=16).double()
    dark = counts[counts > 0]
    assert len(dark) == 8 and (dark - 1000).abs().max() < 5 * math.sqrt(1000 * 7 / 8)


def test_toy_2d_checks_its_arguments():
    with pytest.raises(ValueError, match="name must be one of"):
        data.toy_2d("spiral", 10)
    with pytest.raises(ValueError, match="n must be an int >= 1"):
        data.toy_2d("checkerboard", 0)
