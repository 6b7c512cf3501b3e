r"""CycleGAN: two generators, two discriminators, cycle consistency (Zhu, Park, Isola, Efros, ICCV 2017).

$G: X \to Y$ (``generator_a``, the reference's ``netG_A``) and $F: Y \to X$ (``generator_b``,
``netG_B``) are trained on unpaired images of the domains A = X and B = Y with (section 3)

$$\mathcal{L}(G, F, D_X, D_Y) = \mathcal{L}_{GAN}(G, D_Y) + \mathcal{L}_{GAN}(F, D_X)
+ \lambda \mathcal{L}_{cyc}(G, F) + \lambda_{idt} \mathcal{L}_{identity}(G, F),$$

where $D_Y$ (``discriminator_a``, ``netD_A``: it judges $G$'s outputs, images of B) and $D_X$
(``discriminator_b``, ``netD_B``) are 70x70 PatchGANs, the GAN loss is least squares (section 4),
$\mathcal{L}_{cyc} = \lVert F(G(x)) - x \rVert_1 + \lVert G(F(y)) - y \rVert_1$ with
$\lambda = 10$ for each half, and the identity term (section 5.2, "photo generation from
paintings") is $\lVert G(y) - y \rVert_1 + \lVert F(x) - x \rVert_1$ with weight
$0.5 \lambda$. Each discriminator sees a history of 50 earlier fakes
([ImagePool][imgtrans.models.pool.ImagePool]) and its loss is halved.

The step is the reference's ``cycle_gan_model.py`` ``optimize_parameters``: the four translations
once, one update of both generators with the discriminators frozen, then one update of both
discriminators on pooled fakes. The published generators (``imgtrans zoo``) are registered below.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from imgtrans import inference
from imgtrans.losses import GANLoss, gradient_penalty, l1_loss
from imgtrans.losses.gan import GANMode
from imgtrans.models.pix2pix import part
from imgtrans.models.pool import ImagePool
from imgtrans.registry import Direction, Published, check_direction, entry, register

PAPER = (
    "Zhu, Park, Isola, Efros, *Unpaired Image-to-Image Translation using Cycle-Consistent Adversarial Networks*, "
    "ICCV 2017 ([arXiv:1703.10593](https://arxiv.org/abs/1703.10593))"
)
GENERATORS: dict[str, str] = {"AtoB": "generator_a", "BtoA": "generator_b"}
"""The generator that translates in each direction: G_A maps A to B, G_B maps B to A."""


class CycleGAN(nn.Module):
    """Generators ``generator_a`` (A -> B) and ``generator_b`` (B -> A), discriminators of B and A, the objective.

    Args:
        generator_a: translates images of A into B ($G$).
        generator_b: translates images of B into A ($F$).
        discriminator_a: judges images of B: real ones against ``generator_a``'s ($D_Y$, the reference's ``netD_A``).
        discriminator_b: judges images of A against ``generator_b``'s ($D_X$, ``netD_B``).
        gan_mode: adversarial loss, see [GANLoss][imgtrans.losses.GANLoss] (``lsgan`` in the paper).
        lambda_a: weight of the cycle ``A -> B -> A`` ($\\lambda$ = 10).
        lambda_b: weight of the cycle ``B -> A -> B`` (10).
        lambda_identity: the identity term's weight relative to the cycles' (0.5): ``G_A(b)`` is
            compared with ``b`` with weight ``lambda_b * lambda_identity``, ``G_B(a)`` with ``a`` with
            ``lambda_a * lambda_identity``, as the reference does; 0 turns it off.
        pool_size: earlier fakes each discriminator also sees (50); 0 shows it the latest only.

    The trainer reads unpaired data for it (``data_layout``): batches hold ``input`` (images of A)
    and ``target`` (images of B, drawn independently).
    """

    data_layout = "unpaired"
    """What the trainer reads for this model: an unpaired dataset (trainA/, trainB/), see [imgtrans.data.unpaired][]."""
    progress_terms = ("d_a", "g_a", "cycle_a")
    """The loss terms the trainer's progress bar shows."""

    def __init__(
        self,
        generator_a: nn.Module,
        generator_b: nn.Module,
        discriminator_a: nn.Module,
        discriminator_b: nn.Module,
        *,
        gan_mode: GANMode = "lsgan",
        lambda_a: float = 10.0,
        lambda_b: float = 10.0,
        lambda_identity: float = 0.5,
        pool_size: int = 50,
    ) -> None:
        super().__init__()
        self.generator_a, self.generator_b = generator_a, generator_b
        self.discriminator_a, self.discriminator_b = discriminator_a, discriminator_b
        self.gan_loss = GANLoss(gan_mode)
        self.lambda_a, self.lambda_b, self.lambda_identity = lambda_a, lambda_b, lambda_identity
        # Drawn after the networks' initial weights, from the seeded global generator.
        self.fake_a_pool, self.fake_b_pool = ImagePool(pool_size), ImagePool(pool_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``generator_a(x)``: images of A translated into B (in the current train/eval mode)."""
        return self.generator_a(x)

    # ------------------------------------------------------------------------------ both directions
    def generator_for(self, direction: Direction | None = None) -> nn.Module:
        """The generator of ``direction``: ``generator_a`` for ``AtoB``, ``generator_b`` for ``BtoA``.

        ``None`` means the direction the model was built or trained for (``config.direction``,
        ``AtoB`` when it has none). A published model holds one generator: asking for the other
        is refused in one line, as an untrained generator would give noise.
        """
        config = getattr(self, "config", None)
        direction = check_direction(direction) or getattr(config, "direction", None) or "AtoB"
        name = GENERATORS[direction]
        if name in getattr(self, "untrained_parts", ()):
            other = "BtoA" if direction == "AtoB" else "AtoB"
            raise ValueError(
                f"direction {direction} needs {name}, which these weights do not hold "
                f"({getattr(config, 'name', 'the model')} holds the {other} generator only); translate {other}, or "
                "use the published model of the other direction"
            )
        return getattr(self, name)

    def channels_for(self, direction: Direction | None = None) -> tuple[int, int]:
        """``(input, output)`` channels of the generator of ``direction`` (A's and B's, or B's and A's)."""
        config = getattr(self, "config", None)
        direction = check_direction(direction) or getattr(config, "direction", None) or "AtoB"
        a, b = self.generator_a.in_channels, self.generator_b.in_channels
        return (a, b) if direction == "AtoB" else (b, a)

    @torch.no_grad()
    def translate(
        self, x: torch.Tensor, *, direction: Direction | None = None, paper_test_mode: bool = False
    ) -> torch.Tensor:
        """Translate a batch in [-1, 1] with the generator of ``direction`` (see [generator_for][imgtrans.models.cyclegan.CycleGAN.generator_for])."""
        return inference.translate(self.generator_for(direction), x, paper_test_mode=paper_test_mode)

    @torch.no_grad()
    def sample_rows(self, real_a: torch.Tensor, real_b: torch.Tensor) -> list[tuple[torch.Tensor, ...]]:
        """What the trainer's sample grid shows of images of A and B: the reference's visuals, row by row.

        ``real_A | fake_B = G_A(real_A) | rec_A = G_B(fake_B)`` and ``real_B | fake_A = G_B(real_B) |
        rec_B = G_A(fake_A)``: both translations and both cycles (see [imgtrans.train.samples][]).
        """
        def run(generator: nn.Module, x: torch.Tensor) -> torch.Tensor:  # an autocast output in the weights' dtype
            return inference.translate(generator, x.to(next(generator.parameters()).dtype))

        fake_b, fake_a = run(self.generator_a, real_a), run(self.generator_b, real_b)
        return [(real_a, fake_b, run(self.generator_b, fake_b)), (real_b, fake_a, run(self.generator_a, fake_a))]

    # ------------------------------------------------------- the training seam (imgtrans.train.objective)
    def networks(self) -> dict[str, nn.Module]:
        """The four networks by attribute."""
        return {
            "generator_a": self.generator_a,
            "generator_b": self.generator_b,
            "discriminator_a": self.discriminator_a,
            "discriminator_b": self.discriminator_b,
        }

    def optimizer_parameters(self) -> dict[str, Any]:
        """One Adam over both generators (``"g"``), one over both discriminators (``"d"``), as the reference."""
        return {
            "g": [*self.generator_a.parameters(), *self.generator_b.parameters()],
            "d": [*self.discriminator_a.parameters(), *self.discriminator_b.parameters()],
        }

    def training_step(self, batch: dict, step) -> dict[str, torch.Tensor]:
        """The reference's ``optimize_parameters``: the translations, G_A and G_B's update, then D_A and D_B's.

        Returns the loss terms as the reference logs them (each with its weight): ``g_a``, ``g_b``,
        ``cycle_a``, ``cycle_b``, ``idt_a``, ``idt_b``, ``d_a``, ``d_b``, and the sums ``g_loss``, ``d_loss``.
        """
        real_a, real_b = step.to_device(batch["input"]), step.to_device(batch["target"])
        with step.autocast():
            fake_b = self.generator_a(real_a)
            rec_a = self.generator_b(fake_b)
            fake_a = self.generator_b(real_b)
            rec_b = self.generator_a(fake_a)
        discriminators = (self.discriminator_a, self.discriminator_b)
        for d in discriminators:
            d.requires_grad_(False)  # G's update needs no gradients of D
        with step.autocast(), step.no_sync(self.discriminator_a), step.no_sync(self.discriminator_b):
            g = self.generator_loss(real_a, real_b, fake_a, fake_b, rec_a, rec_b)
        step.update("g", g["loss"])
        for d in discriminators:
            d.requires_grad_(True)
        with step.autocast():
            d = self.discriminator_loss(real_a, real_b, fake_a, fake_b)
        step.update("d", d["loss"])
        return {**{k: v for k, v in g.items() if k != "loss"}, "g_loss": g["loss"].detach(),
                **{k: v for k, v in d.items() if k != "loss"}, "d_loss": d["loss"].detach()}  # fmt: skip

    def generator_loss(
        self,
        real_a: torch.Tensor,
        real_b: torch.Tensor,
        fake_a: torch.Tensor,
        fake_b: torch.Tensor,
        rec_a: torch.Tensor,
        rec_b: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """The generators' objective (the reference's ``backward_G``): GAN terms, weighted cycles and identities.

        Returns ``loss`` (to back-propagate) and its weighted terms, detached.
        """
        terms: dict[str, torch.Tensor] = {}
        if self.lambda_identity > 0:
            idt_a, idt_b = self.generator_a(real_b), self.generator_b(real_a)
            terms["idt_a"] = l1_loss(idt_a.float(), real_b.float()) * self.lambda_b * self.lambda_identity
            terms["idt_b"] = l1_loss(idt_b.float(), real_a.float()) * self.lambda_a * self.lambda_identity
        terms["g_a"] = self.gan_loss.generator(self.discriminator_a(fake_b).float())
        terms["g_b"] = self.gan_loss.generator(self.discriminator_b(fake_a).float())
        terms["cycle_a"] = l1_loss(rec_a.float(), real_a.float()) * self.lambda_a
        terms["cycle_b"] = l1_loss(rec_b.float(), real_b.float()) * self.lambda_b
        order = ("g_a", "g_b", "cycle_a", "cycle_b", "idt_a", "idt_b")  # the reference's sum
        loss = sum((terms[k] for k in order if k in terms), torch.zeros((), device=real_a.device))
        return {"loss": loss, **{k: terms[k].detach() for k in order if k in terms}}

    def discriminator_loss(
        self, real_a: torch.Tensor, real_b: torch.Tensor, fake_a: torch.Tensor, fake_b: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Half the GAN loss of each discriminator on real images and pooled fakes (``backward_D_A``, ``backward_D_B``).

        The pool of B's fakes is drawn from first, as in the reference. Returns ``loss`` (their sum)
        and ``d_a``, ``d_b``.
        """
        d_a = self._half_loss(self.discriminator_a, real_b, self.fake_b_pool.query(fake_b))
        d_b = self._half_loss(self.discriminator_b, real_a, self.fake_a_pool.query(fake_a))
        return {"loss": d_a + d_b, "d_a": d_a.detach(), "d_b": d_b.detach()}

    def _half_loss(self, discriminator: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        # Losses in fp32 even when the networks run under autocast (bf16/fp16 logits).
        loss = 0.5 * self.gan_loss.discriminator(discriminator(real).float(), discriminator(fake).float())
        if self.gan_loss.mode == "wgan":
            loss = loss + gradient_penalty(discriminator, real, fake)
        return loss

    # --------------------------------------------------------- state the trainer keeps in checkpoints
    def training_state(self) -> dict[str, torch.Tensor]:
        """The pools' images and random states: saved in each checkpoint, so that a resume is exact."""
        return {f"{name}.{k}": v for name in ("fake_a_pool", "fake_b_pool") for k, v in getattr(self, name).state().items()}

    def load_training_state(self, state: dict[str, torch.Tensor]) -> None:
        """Restore what [training_state][imgtrans.models.cyclegan.CycleGAN.training_state] returned."""
        device = next(self.parameters()).device
        for name in ("fake_a_pool", "fake_b_pool"):
            saved = {k.split(".", 1)[1]: v for k, v in state.items() if k.startswith(f"{name}.")}
            if saved:  # (a checkpoint of another model has none)
                getattr(self, name).load_state(saved, device)


def cyclegan(
    generator: str = "resnet9",
    discriminator: str = "patchgan70",
    in_channels: int = 3,
    out_channels: int = 3,
    generator_args: dict[str, Any] | None = None,
    discriminator_args: dict[str, Any] | None = None,
    gan_mode: GANMode = "lsgan",
    lambda_a: float = 10.0,
    lambda_b: float = 10.0,
    lambda_identity: float = 0.5,
    pool_size: int = 50,
) -> CycleGAN:
    """Assemble a [CycleGAN][imgtrans.models.cyclegan.CycleGAN] from registered parts.

    Args:
        generator: registered generator name for both generators (``resnet9``, ``unet256``...).
        discriminator: registered discriminator name for both discriminators (``patchgan70``...);
            each is unconditional: it sees one image.
        in_channels: channels of the images of A.
        out_channels: channels of the images of B.
        generator_args: further arguments of both generators; instance norm unless they say
            otherwise (``norm``), as the reference trains CycleGAN (``--norm instance``, no dropout).
        discriminator_args: further arguments of both discriminators (instance norm unless given).
        gan_mode: adversarial loss (``lsgan`` in the paper).
        lambda_a: weight of the cycle A -> B -> A.
        lambda_b: weight of the cycle B -> A -> B.
        lambda_identity: weight of the identity terms relative to the cycles' (0 for none).
        pool_size: earlier fakes each discriminator sees.
    """
    if lambda_identity > 0 and in_channels != out_channels:
        raise ValueError(
            f"the identity term feeds images of B to the A -> B generator, so in_channels ({in_channels}) must equal "
            f"out_channels ({out_channels}); set lambda_identity=0 for domains with different channels"
        )
    g_args, d_args = _instance_norm(generator, generator_args), _instance_norm(discriminator, discriminator_args)
    return CycleGAN(
        part(generator, g_args, in_channels=in_channels, out_channels=out_channels),
        part(generator, g_args, in_channels=out_channels, out_channels=in_channels),
        part(discriminator, d_args, in_channels=out_channels),
        part(discriminator, d_args, in_channels=in_channels),
        gan_mode=gan_mode,
        lambda_a=lambda_a,
        lambda_b=lambda_b,
        lambda_identity=lambda_identity,
        pool_size=pool_size,
    )


cyclegan.part_arguments = {"generator_args": "generator", "discriminator_args": "discriminator"}


def _instance_norm(name: str, arguments: dict[str, Any] | None) -> dict[str, Any]:
    """``arguments`` with the reference CycleGAN's instance norm and no dropout, where the part takes them."""
    taken, defaults = entry(name).parameters(), {}
    if "norm" in taken:
        defaults["norm"] = "instance"
    if "dropout" in taken:
        defaults["dropout"] = 0.0
    return {**defaults, **(arguments or {})}


register(
    "cyclegan",
    cyclegan,
    direction="AtoB",
    description="CycleGAN (Zhu et al. 2017): 2 ResNet-9 G, 2 70x70 PatchGAN D, instance norm, LSGAN, cycle 10, identity 0.5",
)


def _published(task: str, dataset: str, file: str, direction: Direction, license: str = "bsd-2-clause") -> tuple:
    return direction, Published(
        task=task,
        dataset=dataset,
        reference_file=f"cyclegan/{file}.pth",
        reference_arch="resnet9",
        part=GENERATORS[direction],
        license=license,
        citation=PAPER,
    )


_IMAGENET = "ImageNet images found with the keywords"
_WIKIART = "paintings from Wikiart.org and landscape photos from Flickr"
# The reference's scripts/download_cyclegan_model.sh: each file (NAME_pretrained/latest_net_G.pth) holds one
# generator, that of the direction given here (G_A for A -> B of the dataset's trainA/ trainB/, G_B for B -> A).
PUBLISHED: dict[str, tuple[Direction, Published]] = {
    "cyclegan-horse2zebra": _published("horse -> zebra", f"horse2zebra: {_IMAGENET} 'wild horse' and 'zebra'",
                                       "horse2zebra", "AtoB"),
    "cyclegan-zebra2horse": _published("zebra -> horse", f"horse2zebra: {_IMAGENET} 'wild horse' and 'zebra'",
                                       "zebra2horse", "BtoA"),
    "cyclegan-monet2photo": _published("Monet painting -> photo", f"monet2photo: {_WIKIART}", "monet2photo", "AtoB"),
    "cyclegan-style-monet": _published("photo -> Monet painting", f"monet2photo: {_WIKIART}", "style_monet", "BtoA"),
    "cyclegan-style-cezanne": _published("photo -> Cezanne painting", f"cezanne2photo: {_WIKIART}", "style_cezanne",
                                         "BtoA"),
    "cyclegan-style-ukiyoe": _published("photo -> Ukiyo-e print", f"ukiyoe2photo: {_WIKIART}", "style_ukiyoe", "BtoA"),
    "cyclegan-style-vangogh": _published("photo -> Van Gogh painting", f"vangogh2photo: {_WIKIART}", "style_vangogh",
                                         "BtoA"),
    "cyclegan-summer2winter-yosemite": _published(
        "Yosemite in summer -> in winter", "summer2winter_yosemite: Flickr photos of Yosemite",
        "summer2winter_yosemite", "AtoB"),
    "cyclegan-winter2summer-yosemite": _published(
        "Yosemite in winter -> in summer", "summer2winter_yosemite: Flickr photos of Yosemite",
        "winter2summer_yosemite", "BtoA"),
    "cyclegan-apple2orange": _published("apple -> orange", f"apple2orange: {_IMAGENET} 'apple' and 'navel orange'",
                                        "apple2orange", "AtoB"),
    "cyclegan-orange2apple": _published("orange -> apple", f"apple2orange: {_IMAGENET} 'apple' and 'navel orange'",
                                        "orange2apple", "BtoA"),
    "cyclegan-sat2map": _published("aerial photo -> map", "maps: 1096 Google Maps pairs around New York, unpaired",
                                   "sat2map", "AtoB", "bsd-2-clause; map data and imagery (c) Google"),
    "cyclegan-map2sat": _published("map -> aerial photo", "maps: 1096 Google Maps pairs around New York, unpaired",
                                   "map2sat", "BtoA", "bsd-2-clause; map data and imagery (c) Google"),
    "cyclegan-cityscapes-photo2label": _published(
        "street photo -> semantic labels", "cityscapes: 2975 Cityscapes training images (Cordts et al. 2016), unpaired",
        "cityscapes_photo2label", "AtoB", "bsd-2-clause; Cityscapes terms apply to the data"),
    "cyclegan-cityscapes-label2photo": _published(
        "semantic labels -> street photo", "cityscapes: 2975 Cityscapes training images (Cordts et al. 2016), unpaired",
        "cityscapes_label2photo", "BtoA", "bsd-2-clause; Cityscapes terms apply to the data"),
    "cyclegan-facades-photo2label": _published(
        "facade photo -> architectural labels", "facades: 400 CMP Facades images (Tylecek and Sara 2013), unpaired",
        "facades_photo2label", "AtoB"),
    "cyclegan-facades-label2photo": _published(
        "architectural labels -> facade photo", "facades: 400 CMP Facades images (Tylecek and Sara 2013), unpaired",
        "facades_label2photo", "BtoA"),
    "cyclegan-iphone2dslr-flower": _published(
        "iPhone flower photo -> DSLR photo (shallow depth of field)", "iphone2dslr_flower: Flickr flower photos",
        "iphone2dslr_flower", "AtoB"),
}  # fmt: skip
"""The published generators: ``name -> (direction, weights)``; the weights fill ``generator_a`` or ``generator_b``."""

for _name, (_direction, _item) in PUBLISHED.items():
    register(
        _name,
        cyclegan,
        direction=_direction,
        published=_item,
        description=f"CycleGAN, {_item.task} ({_direction}, {_item.part}): ResNet-9, instance norm; published weights",
    )
