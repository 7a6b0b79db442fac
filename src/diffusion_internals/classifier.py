"""A small CNN digit classifier: class accuracy of generated samples, and features for digits-FID.

Inception-v3 features (Heusel et al. 2017) mean little on 8x8 digits, so FID on digits uses the
penultimate layer (64 features) of this classifier, trained on the training split of the same
data, and its arg-max scores whether a class-conditional sample shows its class. Such numbers
compare models on the same data with the same classifier only. The committed classifiers are
``checkpoints/digits-classifier`` and ``checkpoints/colour-digits-classifier``.
"""
from __future__ import annotations

import time
from typing import Any

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config

from diffusion_internals import data
from diffusion_internals.metrics import classifier_accuracy
from diffusion_internals.models import num_parameters
from diffusion_internals.pretrained import load_model

__all__ = ["DigitsClassifier", "train_classifier", "load_classifier", "CLASSIFIERS"]

CLASSIFIERS = {"digits": "digits-classifier", "colour_digits": "colour-digits-classifier"}  # committed names


class DigitsClassifier(ModelMixin, ConfigMixin):
    """Two conv stages, 2x2 average pool, a 64-d penultimate layer, logits (cf. LeCun et al. 1998)."""

    @register_to_config
    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: int = 32, feature_dim: int = 64,
                 dropout: float = 0.2) -> None:
        """A CNN for (B, in_channels, H, W) images in [-1, 1] with H, W >= 4."""
        super().__init__()
        w = width
        self.body = torch.nn.Sequential(
            torch.nn.Conv2d(in_channels, w, 3, padding=1), torch.nn.ReLU(),
            torch.nn.Conv2d(w, w, 3, padding=1), torch.nn.ReLU(),
            torch.nn.MaxPool2d(2),  # (B, w, H/2, W/2)
            torch.nn.Conv2d(w, 2 * w, 3, padding=1), torch.nn.ReLU(),
            torch.nn.Conv2d(2 * w, 2 * w, 3, padding=1), torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(2),  # (B, 2w, 2, 2) for any input size
            torch.nn.Flatten(),  # (B, 8w)
            torch.nn.Linear(8 * w, feature_dim), torch.nn.ReLU(),
        )
        self.head = torch.nn.Sequential(torch.nn.Dropout(dropout), torch.nn.Linear(feature_dim, num_classes))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The penultimate-layer features (B, feature_dim), for digits-FID."""
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits (B, num_classes)."""
        return self.head(self.body(x))


def _shift(images: torch.Tensor, generator: torch.Generator, max_shift: int) -> torch.Tensor:
    """Translate each image by up to max_shift pixels, filling with the background value -1."""
    b, _, h, w = images.shape
    padded = torch.nn.functional.pad(images, (max_shift,) * 4, value=-1.0)  # (B, C, H + 2s, W + 2s)
    dy, dx = (torch.randint(0, 2 * max_shift + 1, (2, b), generator=generator)).tolist()
    return torch.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(b)])


def train_classifier(dataset: str = "digits", *, steps: int = 2000, batch_size: int = 128, lr: float = 2e-3,
                     seed: int = 0, max_shift: int = 1, progress: bool = False) -> tuple[DigitsClassifier, dict[str, Any]]:
    """Train DigitsClassifier with cross-entropy and random shifts; return it (eval mode) and a record with test accuracy."""
    for name, value in (("steps", steps), ("batch_size", batch_size), ("max_shift", max_shift), ("seed", seed)):
        if isinstance(value, bool) or not isinstance(value, int) or value < (0 if name in ("max_shift", "seed") else 1):
            raise ValueError(f"{name} must be an int >= {0 if name in ('max_shift', 'seed') else 1}, got {value!r}")
    if dataset not in CLASSIFIERS:
        raise ValueError(f"dataset must be one of {list(CLASSIFIERS)}, got {dataset!r}")
    # Colour digits are trained from the grey digits, recoloured at random every batch (stroke hue not
    # linked to the class): a classifier of the class-hued images alone reads the hue, not the digit.
    colour = dataset == "colour_digits"
    train_set, test_set = data.digits("train"), data.load_dataset(dataset, split="test")
    torch.manual_seed(seed)
    model = DigitsClassifier(in_channels=test_set.images.shape[1], num_classes=test_set.num_classes)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps)
    g = torch.Generator().manual_seed(seed)
    steps_iter = range(steps)
    if progress:
        from tqdm.auto import tqdm

        steps_iter = tqdm(steps_iter, desc=f"{dataset} classifier")
    start = time.perf_counter()
    model.train()
    for _ in steps_iter:
        index = torch.randint(0, len(train_set.labels), (batch_size,), generator=g)
        x, y = train_set.images[index], train_set.labels[index]  # (B, 1, 8, 8), (B,)
        x = _shift(x, g, max_shift) if max_shift else x
        if colour:
            x = data.colourise(x, *data.colour_digits_hsv(y, generator=g, class_hue=False))  # (B, 3, 16, 16)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
    model.eval().requires_grad_(False)
    record = {
        "dataset": dataset, "kind": "classifier", "steps": steps, "seed": seed, "batch_size": batch_size, "lr": lr,
        "augmentation": f"random shifts of up to {max_shift} pixels" + (", random colours" if colour else ""),
        "parameters": num_parameters(model),
        "wall_clock_s": round(time.perf_counter() - start, 1), "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "metrics": {"train_accuracy": classifier_accuracy(data.load_dataset(dataset).images, train_set.labels, model),
                    "test_accuracy": classifier_accuracy(test_set.images, test_set.labels, model)},
    }
    if colour:  # the test split with stroke hues unrelated to the class: the classifier must read shapes
        grey = data.digits("test")
        recoloured = data.colourise(grey.images, *data.colour_digits_hsv(
            grey.labels, generator=torch.Generator().manual_seed(seed + 1), class_hue=False))
        record["metrics"]["test_accuracy_random_hues"] = classifier_accuracy(recoloured, grey.labels, model)
    return model, record


def load_classifier(dataset_or_path: str = "digits") -> DigitsClassifier:
    """The committed classifier of a data set ("digits", "colour_digits"), or one saved at a path, in eval mode."""
    return load_model(CLASSIFIERS.get(dataset_or_path, dataset_or_path))[0]
