r"""The assembled pix2pix model: generator, discriminator and objective (paper section 3).

$G^* = \arg\min_G \max_D \mathcal{L}_{cGAN}(G, D) + \lambda \mathcal{L}_{L1}(G)$, with
$\lambda = 100$, the discriminator's objective halved, and the generator trained with the
non-saturating loss. Named configurations reproduce the paper's ablations (Tables 1-3).

Beyond the paper, a perceptual term $\lambda_{perc} \mathcal{L}_{perc}(G)$ can be added to the
generator's objective (see [imgtrans.losses.perceptual][]); it is off unless configured.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn

from imgtrans import inference
from imgtrans.losses import GANLoss, gradient_penalty, l1_loss
from imgtrans.losses.gan import GANMode
from imgtrans.registry import Published, entry, register


class Pix2Pix(nn.Module):
    """A generator, an optional discriminator, and the pix2pix objective.

    Args:
        generator: maps an input image to an output image.
        discriminator: classifies patches; sees input and output concatenated when
            ``conditional``, the output alone otherwise. ``None`` trains with L1 only.
        gan_mode: adversarial loss, see [GANLoss][imgtrans.losses.GANLoss].
        lambda_l1: weight of the L1 term (100 in the paper; 0 for a GAN-only objective).
        conditional: whether the discriminator sees the input (cGAN) or not (GAN).
        perceptual: an optional extra term of the generator's objective, called as
            ``perceptual(fake, y)``, e.g. a [PerceptualLoss][imgtrans.losses.PerceptualLoss]; not in the paper.
        lambda_perceptual: weight of the perceptual term (10, as pix2pixHD weights its VGG loss).

    One training step ([training_step][imgtrans.models.pix2pix.Pix2Pix.training_step]) is
    ``fake = model(x)``, an update of D on
    [discriminator_loss][imgtrans.models.pix2pix.Pix2Pix.discriminator_loss], then an update of G on
    [generator_loss][imgtrans.models.pix2pix.Pix2Pix.generator_loss].
    """

    progress_terms = ("d_loss", "g_gan", "g_l1")
    """The loss terms the trainer's progress bar shows."""

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module | None = None,
        *,
        gan_mode: GANMode = "vanilla",
        lambda_l1: float = 100.0,
        conditional: bool = True,
        perceptual: nn.Module | None = None,
        lambda_perceptual: float = 10.0,
    ) -> None:
        super().__init__()
        if discriminator is None and lambda_l1 <= 0 and (perceptual is None or lambda_perceptual <= 0):
            raise ValueError(
                "a pix2pix model without a discriminator needs lambda_l1 > 0 (or a perceptual term), "
                "or it has no objective"
            )
        self.generator = generator
        self.discriminator = discriminator
        self.gan_loss = GANLoss(gan_mode)
        self.lambda_l1 = lambda_l1
        self.conditional = conditional
        self.perceptual = perceptual
        self.lambda_perceptual = lambda_perceptual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The generator's output ``G(x)`` (in the module's current train/eval mode)."""
        inference.check_batch(x, "Pix2Pix", inference.weights_dtype(self.generator))  # free checks: no value pass
        return self.generator(x)

    # ------------------------------------------------------- the training seam (imgtrans.train.objective)
    def networks(self) -> dict[str, nn.Module]:
        """The trainable networks by attribute: ``generator`` and, when there is one, ``discriminator``."""
        nets = {"generator": self.generator}
        if self.discriminator is not None:
            nets["discriminator"] = self.discriminator
        return nets

    def optimizer_parameters(self) -> dict[str, Any]:
        """One optimiser for G (``"g"``) and one for D (``"d"``, when there is a D), as in section 3.3."""
        groups: dict[str, Any] = {"g": self.generator.parameters()}
        if self.discriminator is not None:
            groups["d"] = self.discriminator.parameters()
        return groups

    def training_step(self, batch: dict, step) -> dict[str, torch.Tensor]:
        """One D update then one G update on ``batch`` (section 3.3); returns the loss terms to log.

        ``fake = G(x)`` is computed once: D's loss sees it detached, G's through D, whose
        parameters take no gradient in G's update. ``step`` is a
        [StepContext][imgtrans.train.objective.StepContext].
        """
        x, y = step.to_device(batch["input"]), step.to_device(batch["target"])
        with step.autocast():
            fake = self(x)
        terms: dict[str, torch.Tensor] = {}
        d_net = self.discriminator
        if d_net is not None:
            with step.autocast():
                d = self.discriminator_loss(x, y, fake)
            step.update("d", d["loss"])
            terms.update(d_loss=d["loss"], d_real=d["real"], d_fake=d["fake"])
            d_net.requires_grad_(False)  # G's step needs no gradients of D
        with step.autocast(), step.no_sync(d_net) if d_net is not None else contextlib.nullcontext():
            g = self.generator_loss(x, y, fake)
        step.update("g", g["loss"])
        if d_net is not None:
            d_net.requires_grad_(True)
        terms.update({f"g_{k}" if k != "loss" else "g_loss": v for k, v in g.items()})
        return terms

    def freeze_encoder(self, frozen: bool) -> None:
        """Freeze (or release) ``generator.encoder``: no gradients, and fixed BatchNorm statistics.

        For generators with a pretrained encoder (``freeze_encoder_steps`` of the trainer).
        """
        encoder = getattr(self.generator, "encoder", None)
        if not isinstance(encoder, nn.Module):
            raise ValueError(
                f"freeze_encoder_steps needs a generator with an `encoder` submodule; "
                f"{type(self.generator).__name__} has none"
            )
        encoder.requires_grad_(not frozen)
        encoder.train(not frozen)

    def discriminator_input(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """What the discriminator sees for the pair ``(x, y)``: both concatenated, or ``y``."""
        return torch.cat([x, y], dim=1) if self.conditional else y

    def discriminator_loss(self, x: torch.Tensor, y: torch.Tensor, fake: torch.Tensor) -> dict[str, torch.Tensor]:
        """Half the adversarial loss of D on a real pair ``(x, y)`` and a fake pair ``(x, fake)``.

        ``fake`` is detached: this loss only trains the discriminator. Returns ``loss`` (to
        back-propagate) and the mean logits on ``real`` and ``fake`` pairs (for logging).
        """
        if self.discriminator is None:
            raise RuntimeError("this pix2pix model has no discriminator (an L1-only objective); skip its update")
        real_in = self.discriminator_input(x, y)
        fake_in = self.discriminator_input(x, fake.detach())
        # Losses in fp32 even when the networks run under autocast (bf16/fp16 logits).
        real_pred, fake_pred = self.discriminator(real_in).float(), self.discriminator(fake_in).float()
        loss = 0.5 * self.gan_loss.discriminator(real_pred, fake_pred)
        if self.gan_loss.mode == "wgan":
            loss = loss + gradient_penalty(self.discriminator, real_in, fake_in)
        return {"loss": loss, "real": real_pred.detach().mean(), "fake": fake_pred.detach().mean()}

    def generator_loss(self, x: torch.Tensor, y: torch.Tensor, fake: torch.Tensor) -> dict[str, torch.Tensor]:
        """``gan + lambda_l1 * l1`` for the generator's output ``fake = G(x)`` and target ``y``.

        With a perceptual term, ``+ lambda_perceptual * perceptual``. Returns ``loss`` (to
        back-propagate) and its terms ``gan``, ``l1`` and ``perceptual`` (unweighted).
        """
        l1 = l1_loss(fake.float(), y.float())
        loss = self.lambda_l1 * l1
        terms = {"l1": l1.detach()}
        if self.discriminator is not None:
            gan = self.gan_loss.generator(self.discriminator(self.discriminator_input(x, fake)).float())
            loss = loss + gan
            terms["gan"] = gan.detach()
        if self.perceptual is not None:
            perceptual = self.perceptual(fake, y).float()
            loss = loss + self.lambda_perceptual * perceptual
            terms["perceptual"] = perceptual.detach()
        return {"loss": loss, **terms}

    @torch.no_grad()
    def translate(self, x: torch.Tensor, *, paper_test_mode: bool = False) -> torch.Tensor:
        """Translate a batch of images in [-1, 1], without gradients.

        By default in eval mode (no dropout, BatchNorm running statistics). With
        ``paper_test_mode=True`` as the paper does at test time: dropout on and each image's
        own statistics, one image at a time (the model's state is left unchanged either way).
        """
        return inference.translate(self.generator, x, paper_test_mode=paper_test_mode)


def pix2pix(
    generator: str = "unet256",
    discriminator: str | None = "patchgan70",
    in_channels: int = 3,
    out_channels: int = 3,
    generator_args: dict[str, Any] | None = None,
    discriminator_args: dict[str, Any] | None = None,
    gan_mode: GANMode = "vanilla",
    lambda_l1: float = 100.0,
    conditional: bool = True,
    perceptual: str | None = None,
    perceptual_args: dict[str, Any] | None = None,
    lambda_perceptual: float = 10.0,
) -> Pix2Pix:
    """Assemble a [Pix2Pix][imgtrans.models.pix2pix.Pix2Pix] model from registered parts.

    Args:
        generator: registered generator name (``unet256``, ``encoder-decoder256``, ``resnet9``...).
        discriminator: registered discriminator name (``patchgan70``, ``pixelgan``...), or
            ``None`` for the L1-only objective.
        in_channels: channels of the input images.
        out_channels: channels of the output images.
        generator_args: further arguments of the generator (``base_channels``, ``norm``...).
        discriminator_args: further arguments of the discriminator.
        gan_mode: adversarial loss (``vanilla`` in the paper).
        lambda_l1: weight of the L1 term.
        conditional: whether the discriminator sees the input as well as the output.
        perceptual: registered name of a perceptual loss (``perceptual-vgg16``,
            ``perceptual-timm``) to add to the generator's objective, or ``None`` (the paper).
        perceptual_args: further arguments of the perceptual loss (``backbone``, ``layers``,
            ``layer_weights``, ``pretrained_backbone``...).
        lambda_perceptual: weight of the perceptual term.
    """
    g = part(generator, generator_args, in_channels=in_channels, out_channels=out_channels)
    d = None
    if discriminator is not None:
        d = part(discriminator, discriminator_args, in_channels=in_channels + out_channels if conditional else out_channels)
    p = None if perceptual is None else part(perceptual, perceptual_args, in_channels=out_channels)
    return Pix2Pix(
        g,
        d,
        gan_mode=gan_mode,
        lambda_l1=lambda_l1,
        conditional=conditional,
        perceptual=p,
        lambda_perceptual=lambda_perceptual,
    )


# Which arguments configure which registered part (see imgtrans.registry).
pix2pix.part_arguments = {
    "generator_args": "generator",
    "discriminator_args": "discriminator",
    "perceptual_args": "perceptual",
}


def part(name: str, arguments: dict[str, Any] | None, **wiring: Any) -> nn.Module:
    """Build the registered part ``name`` with ``arguments`` (checked with the whole model's configuration)."""
    item = entry(name)
    return item.target(**item.arguments({**wiring, **(arguments or {})}))


# The models published with the reference implementation (section 4, appendix 6.2): U-Net 256 with
# the reference's dropout layout and a 70x70 PatchGAN, L1 + cGAN, each trained on its own data.
# Their checkpoints hold the generator only: the discriminator of a pretrained model is initialised.
# Each is described once, here: adding a published model is one more entry.
PUBLISHED: dict[str, tuple[str, Published]] = {
    "pix2pix-facades": (
        "BtoA",
        Published(
            task="architectural labels -> photo",
            dataset="CMP Facades (Tylecek and Sara, 2013): 400 training pairs",
            reference_file="facades_label2photo.pth",
        ),
    ),
    "pix2pix-edges2shoes": (
        "AtoB",
        Published(
            task="edges -> shoe photo",
            dataset="edges2shoes: 50k photos from UT Zappos50K (Yu and Grauman, 2014), edges by HED",
            reference_file="edges2shoes.pth",
        ),
    ),
    "pix2pix-sat2map": (
        "AtoB",
        Published(
            task="aerial photo -> map",
            dataset="maps: 1096 training pairs scraped from Google Maps, in and around New York City",
            reference_file="sat2map.pth",
        ),
    ),
    "pix2pix-map2sat": (
        "BtoA",
        Published(
            task="map -> aerial photo",
            dataset="maps: 1096 training pairs scraped from Google Maps, in and around New York City",
            reference_file="map2sat.pth",
        ),
    ),
    "pix2pix-day2night": (
        "BtoA",
        Published(
            task="day photo -> night photo",
            dataset="night2day: about 20k webcam images from Transient Attributes (Laffont et al., 2014)",
            reference_file="day2night.pth",
        ),
    ),
}
"""The published models: ``name -> (direction, weights)``; the facades one is also the paper's facades recipe."""

for _name, (_direction, _published) in PUBLISHED.items():
    register(
        _name,
        pix2pix,
        generator="unet256-reference",
        direction=_direction,
        published=_published,
        description=f"pix2pix, {_published.task} ({_direction}): U-Net 256, 70x70 PatchGAN, L1+cGAN; published weights",
    )

CONFIGURATIONS: dict[str, tuple[str, dict[str, Any]]] = {
    # Table 1: the objective.
    "pix2pix-l1": ("Table 1 ablation: L1 only (no discriminator)", {"discriminator": None}),
    "pix2pix-gan": ("Table 1 ablation: GAN only, unconditional D", {"lambda_l1": 0.0, "conditional": False}),
    "pix2pix-cgan": ("Table 1 ablation: cGAN only", {"lambda_l1": 0.0}),
    "pix2pix-l1-gan": ("Table 1 ablation: L1 + unconditional GAN", {"conditional": False}),
    "pix2pix-l1-cgan": ("Table 1 ablation: L1 + cGAN, the paper's objective", {}),
    # Table 2: the generator.
    "pix2pix-encoder-decoder-l1": (
        "Table 2 ablation: encoder-decoder (no skips), L1 only",
        {"generator": "encoder-decoder256", "discriminator": None},
    ),
    "pix2pix-encoder-decoder-l1-cgan": (
        "Table 2 ablation: encoder-decoder (no skips), L1 + cGAN",
        {"generator": "encoder-decoder256"},
    ),
    # Table 3: the discriminator's receptive field.
    "pix2pix-pixelgan": ("Table 3 ablation: 1x1 PixelGAN discriminator", {"discriminator": "pixelgan"}),
    "pix2pix-patchgan16": ("Table 3 ablation: 16x16 PatchGAN discriminator", {"discriminator": "patchgan16"}),
    "pix2pix-patchgan70": ("Table 3 ablation: 70x70 PatchGAN discriminator", {"discriminator": "patchgan70"}),
    "pix2pix-patchgan286": ("Table 3 ablation: 286x286 ImageGAN discriminator", {"discriminator": "patchgan286"}),
}

for _name, (_description, _defaults) in CONFIGURATIONS.items():
    register(_name, pix2pix, description=_description, **_defaults)
