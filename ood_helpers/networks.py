"""The paper's networks (section 3.1): the ResNet-18 autoencoder (E, D) and the binary classifier with z input.

All three networks are four stages of two ``torchvision.models.resnet.BasicBlock`` each, with
stage widths (w, 2w, 4w, 8w); ``width=64`` gives torchvision's resnet18 widths. Two stems:
``"imagenet"`` (7x7 stride-2 convolution + max-pool, as in torchvision: 4x cheaper, what a CPU
can train in minutes) and ``"cifar"`` (3x3 stride 1, no pool: the usual choice for 32x32 images
when a GPU is available).

Under bfloat16 autocast (:mod:`ood_helpers.runtime`) the last layer of each network still computes
in float32, so z, the reconstruction and the logit keep float32 precision.
"""
from __future__ import annotations

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, conv1x1

STEMS = ("imagenet", "cifar")
IMAGE_SIZE = 32   # every network here takes 32x32 images (MNIST is padded from 28x28)


def _float32(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``layer(x)`` in float32, also inside an autocast region (outside one: exactly ``layer(x)``)."""
    if x.device.type not in ("cuda", "cpu"):
        return layer(x)
    with torch.autocast(device_type=x.device.type, enabled=False):
        return layer(x.float())


def _stage(in_planes: int, planes: int, stride: int) -> nn.Sequential:
    downsample = None
    if stride != 1 or in_planes != planes:
        downsample = nn.Sequential(conv1x1(in_planes, planes, stride), nn.BatchNorm2d(planes))
    return nn.Sequential(BasicBlock(in_planes, planes, stride, downsample), BasicBlock(planes, planes))


def _stem(in_channels: int, width: int, stem: str) -> nn.Sequential:
    if stem == "imagenet":
        return nn.Sequential(nn.Conv2d(in_channels, width, 7, 2, 3, bias=False), nn.BatchNorm2d(width),
                             nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
    if stem == "cifar":
        return nn.Sequential(nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width),
                             nn.ReLU(inplace=True))
    raise ValueError(f"stem: unknown value {stem!r}; choose one of {STEMS}.")


class ResNetTrunk(nn.Module):
    """Stem and the four ResNet-18 stages; returns the (N, 8w) globally pooled features.

    ``inject_stage`` in 1..4 adds a per-channel bias computed from an auxiliary vector after
    that stage (how the classifier receives the latent z); ``None`` disables it.
    """

    def __init__(self, in_channels: int, width: int, stem: str, aux_dim: int = 0, inject_stage: int | None = None):
        super().__init__()
        self.stem = _stem(in_channels, width, stem)
        widths = [width, 2 * width, 4 * width, 8 * width]
        self.stages = nn.ModuleList([_stage(width, widths[0], 1)] +
                                    [_stage(widths[i - 1], widths[i], 2) for i in range(1, 4)])
        self.inject_stage = inject_stage
        if inject_stage is not None:
            if inject_stage not in (1, 2, 3, 4):
                raise ValueError(f"inject_stage: expected 1, 2, 3 or 4, got {inject_stage!r}.")
            # z enters as a learned per-channel shift of the feature map: cheap, and it lets the
            # classifier condition every later filter on where the image sits in latent space
            self.inject = nn.Sequential(nn.Linear(aux_dim, widths[inject_stage - 1]), nn.ReLU(inplace=True),
                                        nn.Linear(widths[inject_stage - 1], widths[inject_stage - 1]))
        self.out_features = widths[-1]

    def forward(self, x: torch.Tensor, aux: torch.Tensor | None = None) -> torch.Tensor:
        """(N, C, 32, 32) images (and, with ``inject_stage``, aux (N, aux_dim)) -> features (N, 8w)."""
        x = self.stem(x)
        for index, stage in enumerate(self.stages, start=1):
            x = stage(x)
            if index == self.inject_stage:
                x = x + self.inject(aux)[:, :, None, None]
        return torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)


class Encoder(nn.Module):
    """E: image (N, C, 32, 32) in [0, 1] -> latent z (N, latent_dim).

    ``linear_path=True`` (ours, the classroom preset) adds a linear map of the flattened image to
    z: the ResNet path then only has to learn what a linear (PCA-like) code misses, which a CPU
    budget of a few epochs can reach (mean PSNR >= 20 dB on CIFAR-10). The paper has no such path.
    """

    def __init__(self, in_channels: int, width: int = 64, latent_dim: int = 128, stem: str = "cifar",
                 linear_path: bool = False):
        super().__init__()
        self.trunk = ResNetTrunk(in_channels, width, stem)
        self.fc = nn.Linear(self.trunk.out_features, latent_dim)
        self.linear = nn.Linear(in_channels * IMAGE_SIZE * IMAGE_SIZE, latent_dim) if linear_path else None

    def forward(self, x):
        """Images (N, C, 32, 32) in [0, 1] -> latent z (N, latent_dim)."""
        z = _float32(self.fc, self.trunk(x))
        if self.linear is not None:
            z = z + _float32(self.linear, x.flatten(1))
        return z


class Decoder(nn.Module):
    """D: latent z (N, latent_dim) -> image (N, C, 32, 32) in [0, 1].

    The encoder's topology in reverse: z is mapped to an (8w, 2, 2) map, then four stages of two
    BasicBlocks, each stage doubling the resolution (nearest upsampling) and halving the width.
    ``linear_path=True`` (ours, see :class:`Encoder`) adds a linear map of z to the output's logits.
    """

    def __init__(self, out_channels: int, width: int = 64, latent_dim: int = 128, linear_path: bool = False):
        super().__init__()
        self.width = width
        self.out_channels = out_channels
        self.fc = nn.Linear(latent_dim, 8 * width * 4)
        widths = [8 * width, 4 * width, 2 * width, width, width]
        self.stages = nn.ModuleList(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                                  _stage(widths[i], widths[i + 1], 1)) for i in range(4))
        self.head = nn.Conv2d(width, out_channels, 3, 1, 1)
        self.linear = nn.Linear(latent_dim, out_channels * IMAGE_SIZE * IMAGE_SIZE) if linear_path else None

    def forward(self, z):
        """Latent z (N, latent_dim) -> reconstruction (N, C, 32, 32) in [0, 1] (a sigmoid output)."""
        x = self.fc(z).view(-1, 8 * self.width, 2, 2)
        for stage in self.stages:
            x = stage(x)

        def output(h):
            logits = self.head(h)
            if self.linear is not None:
                logits = logits + self.linear(z.float()).view(-1, self.out_channels, IMAGE_SIZE, IMAGE_SIZE)
            return torch.sigmoid(logits)

        return _float32(output, x)


class AutoEncoder(nn.Module):
    """E and D together; ``forward`` returns (reconstruction, z)."""

    def __init__(self, in_channels: int, width: int = 64, latent_dim: int = 128, stem: str = "cifar",
                 linear_path: bool = False):
        super().__init__()
        self.encoder = Encoder(in_channels, width, latent_dim, stem, linear_path)
        self.decoder = Decoder(in_channels, width, latent_dim, linear_path)

    def forward(self, x):
        """Images (N, C, 32, 32) in [0, 1] -> (reconstruction D(E(x)) (N, C, 32, 32), z = E(x) (N, latent_dim))."""
        z = self.encoder(x)
        return self.decoder(z), z


class DifferenceClassifier(nn.Module):
    """Binary in/out classifier on the difference image, z injected after ``inject_stage``.

    ``forward(difference, z)`` returns one logit per image (N,): higher = more out-of-distribution.
    A single logit with a sigmoid is the two-class cross-entropy of the paper in one output.
    ``latent_input=False`` is the paper's ablation: z is ignored.
    """

    def __init__(self, in_channels: int, width: int = 64, latent_dim: int = 128, stem: str = "cifar",
                 latent_input: bool = True, inject_stage: int = 2):
        super().__init__()
        self.latent_input = latent_input
        self.trunk = ResNetTrunk(in_channels, width, stem, latent_dim, inject_stage if latent_input else None)
        self.fc = nn.Linear(self.trunk.out_features, 1)

    def forward(self, difference, z=None):
        """Difference images (N, C, 32, 32) and z (N, latent_dim) -> logits (N,), higher = more OOD.

        Raises
        ------
        ValueError
            When the classifier was built with ``latent_input=True`` and ``z`` is None.
        """
        if self.latent_input and z is None:
            raise ValueError("z: this classifier was built with latent_input=True and needs the latent z.")
        return _float32(self.fc, self.trunk(difference, z if self.latent_input else None)).squeeze(1)


def new_autoencoder(in_channels: int, preset) -> AutoEncoder:
    """An untrained autoencoder of ``preset``'s size (weights from torch's global generator)."""
    return AutoEncoder(in_channels, preset.width, preset.latent_dim, preset.stem, preset.ae_linear_path)


def new_classifier(in_channels: int, preset, latent_input: bool, inject_stage: int) -> DifferenceClassifier:
    """An untrained classifier of ``preset``'s size, z injected after ``inject_stage`` when ``latent_input``."""
    return DifferenceClassifier(in_channels, preset.width, preset.latent_dim, preset.stem, bool(latent_input),
                                inject_stage)


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def layer_table(module: nn.Module, in_channels: int = 3) -> list[tuple[str, str, int]]:
    """(name, output shape, parameters) of each top-level block for a 32x32 input, for teaching."""
    rows = []
    x = torch.zeros(1, in_channels, 32, 32)
    trunk = module.trunk if hasattr(module, "trunk") else module
    with torch.no_grad():
        was_training = trunk.training
        trunk.eval()
        x = trunk.stem(x)
        rows.append(("stem", str(tuple(x.shape[1:])), count_parameters(trunk.stem)))
        for index, stage in enumerate(trunk.stages, start=1):
            x = stage(x)
            rows.append((f"stage{index}", str(tuple(x.shape[1:])), count_parameters(stage)))
        trunk.train(was_training)
    return rows
