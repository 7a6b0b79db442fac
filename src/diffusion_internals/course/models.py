"""The course's small networks: a class-conditional diffusers U-Net for images, an MLP for 2-D points, a classifier.

The two diffusion networks are called as ``model(x_t, t, class_labels=y)`` and predict eps, v or x0 (whichever they were
trained on) with the shape of ``x_t``; :class:`diffusion_internals.denoisers.DiscreteDenoiser` turns
either into a denoiser. Class conditioning follows classifier-free guidance (Ho & Salimans 2021):
labels ``0 .. K-1`` are the classes and the extra label ``K`` (:func:`null_label`) is "no class",
seen in training when a label is dropped. All three are diffusers ``ModelMixin``s, so ``save_pretrained``
and ``from_pretrained`` work for each.

:class:`DigitsClassifier` is the small CNN that scores samples: its arg-max gives the class accuracy of
generated digits, its penultimate layer (64 features) the features of digits-FID (Inception-v3
features, Heusel et al. 2017, mean little on 8x8 digits). Such numbers compare models on the same data
with the same classifier only.
"""

from __future__ import annotations

import torch
from diffusers import ConfigMixin, ModelMixin, UNet2DModel
from diffusers.configuration_utils import register_to_config
from diffusers.models.embeddings import TimestepEmbedding, Timesteps

from diffusion_internals.validation import check_int

__all__ = ["class_conditional_unet", "TimestepMLP", "DigitsClassifier", "null_label", "num_parameters"]


def class_conditional_unet(
    *,
    in_channels: int = 1,
    sample_size: int = 8,
    num_classes: int = 10,
    block_out_channels: tuple[int, ...] = (32, 64),
    layers_per_block: int = 1,
    norm_num_groups: int = 8,
) -> UNet2DModel:
    """A small UNet2DModel with num_classes + 1 class embeddings, the last the null class (Ho & Salimans 2021)."""
    for name, value in (
        ("in_channels", in_channels),
        ("sample_size", sample_size),
        ("num_classes", num_classes),
        ("layers_per_block", layers_per_block),
        ("norm_num_groups", norm_num_groups),
    ):
        check_int(name, value, minimum=1)
    levels = len(block_out_channels)
    if levels < 1 or sample_size % 2 ** (levels - 1):
        raise ValueError(
            f"block_out_channels must have 1 to log2(sample_size) + 1 levels so that sample_size "
            f"({sample_size}) halves evenly, got {block_out_channels}"
        )
    if any(c % norm_num_groups for c in block_out_channels):
        raise ValueError(
            f"block_out_channels must be multiples of norm_num_groups ({norm_num_groups}), got {block_out_channels}"
        )
    return UNet2DModel(
        sample_size=sample_size,
        in_channels=in_channels,
        out_channels=in_channels,
        block_out_channels=tuple(block_out_channels),
        layers_per_block=layers_per_block,
        down_block_types=("DownBlock2D",) * levels,
        up_block_types=("UpBlock2D",) * levels,
        norm_num_groups=norm_num_groups,
        num_class_embeds=num_classes + 1,  # label num_classes = "no class" (the CFG null label)
    )


class TimestepMLP(ModelMixin, ConfigMixin):
    """An MLP eps/v/x0 network for 2-D points, sinusoidal time embedding (Vaswani et al. 2017; Ho et al. 2020)."""

    @register_to_config
    def __init__(self, dim: int = 2, hidden: int = 128, depth: int = 3, num_class_embeds: int | None = None) -> None:
        """An MLP of `depth` hidden layers of width `hidden`; num_class_embeds > 0 adds a label embedding."""
        super().__init__()
        for name, value in (("dim", dim), ("hidden", hidden), ("depth", depth)):
            check_int(name, value, minimum=1)
        if num_class_embeds is not None:
            check_int("num_class_embeds", num_class_embeds, minimum=1)
        self.time_proj = Timesteps(hidden, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embedding = TimestepEmbedding(hidden, hidden)
        self.class_embedding = None if num_class_embeds is None else torch.nn.Embedding(num_class_embeds, hidden)
        self.input = torch.nn.Linear(dim, hidden)
        self.blocks = torch.nn.ModuleList(torch.nn.Linear(hidden, hidden) for _ in range(depth))
        self.output = torch.nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor, t: torch.Tensor, class_labels: torch.Tensor | None = None) -> torch.Tensor:
        """The prediction (B, dim) for points x (B, dim) at timesteps t, a scalar or (B,)."""
        t = torch.as_tensor(t, device=x.device).reshape(-1).expand(x.shape[0])  # (B,)
        emb = self.time_embedding(self.time_proj(t).to(x.dtype))  # (B, hidden)
        if self.class_embedding is not None:
            if class_labels is None:
                raise ValueError(
                    "class_labels must be given to a class-conditional TimestepMLP (use the null label "
                    f"{self.config.num_class_embeds - 1} for no class)"
                )
            emb = emb + self.class_embedding(class_labels)
        elif class_labels is not None:
            raise ValueError("class_labels were given to an unconditional TimestepMLP (num_class_embeds=None)")
        h = self.input(x)
        for block in self.blocks:
            h = h + block(torch.nn.functional.silu(h + emb))  # residual, the time embedding added per layer
        return self.output(torch.nn.functional.silu(h))


class DigitsClassifier(ModelMixin, ConfigMixin):
    """Two conv stages, 2x2 average pool, a 64-d penultimate layer, logits (cf. LeCun et al. 1998)."""

    @register_to_config
    def __init__(
        self, in_channels: int = 1, num_classes: int = 10, width: int = 32, feature_dim: int = 64, dropout: float = 0.2
    ) -> None:
        """A CNN for (B, in_channels, H, W) images in [-1, 1] with H, W >= 4."""
        super().__init__()
        w = width
        self.body = torch.nn.Sequential(
            torch.nn.Conv2d(in_channels, w, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.Conv2d(w, w, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.MaxPool2d(2),  # (B, w, H/2, W/2)
            torch.nn.Conv2d(w, 2 * w, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.Conv2d(2 * w, 2 * w, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(2),  # (B, 2w, 2, 2) for any input size
            torch.nn.Flatten(),  # (B, 8w)
            torch.nn.Linear(8 * w, feature_dim),
            torch.nn.ReLU(),
        )
        self.head = torch.nn.Sequential(torch.nn.Dropout(dropout), torch.nn.Linear(feature_dim, num_classes))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The penultimate-layer features (B, feature_dim), for digits-FID."""
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits (B, num_classes)."""
        return self.head(self.body(x))


def null_label(model: torch.nn.Module) -> int | None:
    """The "no class" label of a class-conditional model (num_class_embeds - 1), None if it is unconditional."""
    count = getattr(getattr(model, "config", None), "num_class_embeds", None)
    return None if count is None else int(count) - 1


def num_parameters(model: torch.nn.Module) -> int:
    """The number of parameters (weights and biases), trainable or frozen."""
    return sum(p.numel() for p in model.parameters())
