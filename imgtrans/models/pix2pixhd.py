r"""The assembled pix2pixHD model (Wang et al., CVPR 2018), as NVIDIA's ``pix2pixHD_model.py`` and ``train.py``
train it.

Equation 5 of the paper: $\min_G \big( (\max_{D_1,D_2,D_3} \sum_k \mathcal{L}_{GAN}(G, D_k)) +
\lambda \sum_k \mathcal{L}_{FM}(G, D_k) \big)$, with $\lambda = 10$, plus the VGG perceptual term
with weight 10 (the code's ``--lambda_feat`` weighs both). The adversarial loss is LSGAN, the
discriminators are conditional (the label map beside the image), their loss is halved, and each
step updates G first and then D, from one forward pass: ``loss_G.backward()``, ``optimizer_G.step()``,
then ``loss_D.backward()``, ``optimizer_D.step()``. The discriminator's features on the real pair
serve both D's loss and the feature-matching targets, computed once before either update.

Coarse to fine (section 3.2): train ``pix2pixhd`` (the global generator $G_1$), then
``pix2pixhd-enhancer`` ($G = \{G_1, G_2\}$, the ``pix2pixhd-local`` generator) with ``global_weights``
set to the first run's model: its $G_1$ is loaded into the local enhancer, and for the first
``niter_fix_global`` epochs only the finest enhancer trains (``--niter_fix_global``: NVIDIA's
optimiser holds the parameters named ``model{n_local_enhancers}*``), then all of $G$, with a fresh
Adam (``update_fixed_params``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from imgtrans import inference
from imgtrans.blocks import LocalEnhancer
from imgtrans.losses import GANLoss, feature_matching_loss
from imgtrans.losses.gan import GANMode
from imgtrans.models.pix2pix import part
from imgtrans.registry import register


def as_float(output: list[list[torch.Tensor]]) -> list[list[torch.Tensor]]:
    """A multi-scale discriminator's output in fp32 (losses in fp32 even when the networks run under autocast)."""
    return [[t.float() for t in scale] for scale in output]


class Pix2PixHD(nn.Module):
    """A pix2pixHD generator, a multi-scale discriminator and pix2pixHD's objective.

    Args:
        generator: a [GlobalGenerator][imgtrans.blocks.GlobalGenerator] or a
            [LocalEnhancer][imgtrans.blocks.LocalEnhancer].
        discriminator: a [MultiscaleDiscriminator][imgtrans.blocks.MultiscaleDiscriminator] with
            ``features=True``, seeing the input and the image concatenated.
        gan_mode: the adversarial loss (``lsgan``, pix2pixHD's; ``vanilla`` is its ``--no_lsgan``).
        lambda_feat: weight of the feature-matching term (10; 0 turns it off, ``--no_ganFeat_loss``).
        vgg: the perceptual term, called as ``vgg(fake, target)`` (a
            [VGG19Loss][imgtrans.losses.perceptual.VGG19Loss]), or ``None`` (``--no_vgg_loss``).
        lambda_vgg: its weight (10: NVIDIA's code multiplies it by ``--lambda_feat`` too).
        niter_fix_global: epochs during which only the finest local enhancer trains (a LocalEnhancer only).

    The loss terms logged are ``g_gan``, ``g_feat``, ``g_vgg`` (each weighted, as summed into
    ``g_loss``; the GAN terms summed over scales), ``d_loss`` (D's halved loss) and ``d_real``,
    ``d_fake``: the mean patch logits on real and on generated pairs, over scales.
    """

    progress_terms = ("d_loss", "g_gan", "g_feat")
    """The loss terms the trainer's progress bar shows."""

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        *,
        gan_mode: GANMode = "lsgan",
        lambda_feat: float = 10.0,
        vgg: nn.Module | None = None,
        lambda_vgg: float = 10.0,
        niter_fix_global: int = 0,
    ) -> None:
        super().__init__()
        if niter_fix_global < 0:
            raise ValueError(f"niter_fix_global must be at least 0; got {niter_fix_global}")
        if gan_mode == "wgan":
            raise ValueError(
                "pix2pixHD has no gradient penalty for gan_mode='wgan'; use lsgan (its own), vanilla or hinge"
            )
        if niter_fix_global and not isinstance(generator, LocalEnhancer):
            raise ValueError(
                "niter_fix_global fixes the global part of a local enhancer; this generator is "
                f"{type(generator).__name__}: use pix2pixhd-enhancer, or niter_fix_global=0"
            )
        self.generator, self.discriminator = generator, discriminator
        self.gan_loss = GANLoss(gan_mode)
        self.lambda_feat, self.lambda_vgg, self.niter_fix_global = lambda_feat, lambda_vgg, niter_fix_global
        self.vgg = vgg

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The generator's output ``G(x)``."""
        return self.generator(x)

    # ------------------------------------------------------- the training seam (imgtrans.train.objective)
    def networks(self) -> dict[str, nn.Module]:
        """The trainable networks: ``generator`` and ``discriminator``."""
        return {"generator": self.generator, "discriminator": self.discriminator}

    def optimizer_parameters(self) -> dict[str, Any]:
        """Adam ``"g"`` over all of G and ``"d"`` over D; the fixed phase leaves the global part without gradients."""
        return {"g": self.generator.parameters(), "d": self.discriminator.parameters()}

    @property
    def freezes_parameters(self) -> bool:
        """Whether some steps leave parameters without gradients (the trainer tells ``DistributedDataParallel``)."""
        return self.niter_fix_global > 0

    def finest_parameters(self) -> list[nn.Parameter]:
        """What trains while the global part is fixed: the finest enhancer and the head (NVIDIA's ``model{n}_*``)."""
        generator = getattr(self.generator, "module", self.generator)  # under torchrun, inside its DDP wrapper
        if not isinstance(generator, LocalEnhancer):
            return list(generator.parameters())
        return [*generator.enhancers[-1].parameters(), *generator.head.parameters()]

    def fixes_global(self, epoch: int) -> bool:
        """Whether the global part (all but the finest enhancer) is fixed in ``epoch`` (0 for the first)."""
        return epoch < self.niter_fix_global

    def _enter_phase(self, epoch: int, optimizer: torch.optim.Optimizer) -> None:
        """Fix or release the global part; on release, start Adam afresh as ``update_fixed_params`` does.

        A function of the epoch and of the optimiser's state alone, so a run resumed on either side
        of the change continues exactly: Adam has no state for the fixed parameters until the first
        step after the change, and that step clears the finest enhancer's state too.
        """
        if not self.niter_fix_global:
            return
        fixed = self.fixes_global(epoch)
        finest = {id(p) for p in self.finest_parameters()}
        rest = [p for p in self.generator.parameters() if id(p) not in finest]
        for p in rest:
            p.requires_grad_(not fixed)
        if not fixed and any(p not in optimizer.state for p in rest):
            optimizer.state.clear()

    def training_step(self, batch: dict, step) -> dict[str, torch.Tensor]:
        """One step of NVIDIA's ``train.py``: the losses from one forward pass, then G's update, then D's.

        ``step`` is a [StepContext][imgtrans.train.objective.StepContext].
        """
        x, y = step.to_device(batch["input"]), step.to_device(batch["target"])
        self._enter_phase(getattr(step, "epoch", 0), step.optimizers["g"])
        d_net = self.discriminator
        with step.autocast():
            fake = self(x)
            real_out = as_float(d_net(torch.cat([x, y], 1)))
            fake_out = as_float(d_net(torch.cat([x, fake.detach()], 1)))
        d_net.requires_grad_(False)  # G's update needs no gradients of D
        with step.autocast(), step.no_sync(d_net):
            g = self.generator_loss(fake, y, as_float(d_net(torch.cat([x, fake], 1))), real_out)
        d_net.requires_grad_(True)
        step.update("g", g["loss"])
        d_loss = 0.5 * self.gan_loss.discriminator(real_out, fake_out)  # (loss_D_fake + loss_D_real) * 0.5
        step.update("d", d_loss)
        d_real, d_fake = (torch.stack([s[-1].detach().mean() for s in out]).mean() for out in (real_out, fake_out))
        return {
            "d_loss": d_loss.detach(), "d_real": d_real.detach(), "d_fake": d_fake.detach(),
            **{f"g_{k}" if k != "loss" else "g_loss": v.detach() for k, v in g.items()},
        }  # fmt: skip

    def generator_loss(
        self, fake: torch.Tensor, y: torch.Tensor, fake_out: list[list[torch.Tensor]], real_out: list[list[torch.Tensor]]
    ) -> dict[str, torch.Tensor]:
        """``G_GAN + G_GAN_Feat + G_VGG``: each term weighted as summed, with ``loss`` their sum."""
        terms = {"gan": self.gan_loss.generator(fake_out)}
        if self.lambda_feat > 0:
            terms["feat"] = feature_matching_loss(fake_out, real_out, weight=self.lambda_feat)
        if self.vgg is not None and self.lambda_vgg > 0:
            terms["vgg"] = self.vgg(fake.float(), y.float()).float() * self.lambda_vgg
        loss = terms["gan"]
        for name in ("feat", "vgg"):
            if name in terms:
                loss = loss + terms[name]
        return {"loss": loss, **terms}

    @torch.no_grad()
    def translate(self, x: torch.Tensor, *, paper_test_mode: bool = False) -> torch.Tensor:
        """Translate a batch (one-hot label maps, or images in [-1, 1]) without gradients, in eval mode."""
        return inference.translate(self.generator, x, paper_test_mode=paper_test_mode)

    def load_global(self, path: str | Path) -> None:
        """Load a trained global generator into a local enhancer's global part (all but its head).

        ``path``: the ``model`` folder of a ``pix2pixhd`` run (or its ``model.safetensors``), or a
        safetensors file of a bare ``pix2pixhd-global``.
        """
        if not isinstance(self.generator, LocalEnhancer):
            raise ValueError("global_weights loads a global generator into a local enhancer: use pix2pixhd-enhancer")
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        file = Path(path) / "model.safetensors" if Path(path).is_dir() else Path(path)
        if not file.is_file():
            raise FileNotFoundError(
                f"no global generator at {path} (global_weights): give the model folder of a pix2pixhd run"
            )
        try:
            state = load_file(str(file))
        except (SafetensorError, OSError) as error:
            raise ValueError(f"{file} is not a readable safetensors file (global_weights): {error}") from None
        if any(k.startswith("generator.") for k in state):
            state = {k.removeprefix("generator."): v for k, v in state.items() if k.startswith("generator.")}
        state = {k: v for k, v in state.items() if not k.startswith("head.")}
        target = self.generator.global_generator
        wanted = target.state_dict()
        if set(state) != set(wanted) or any(state[k].shape != wanted[k].shape for k in wanted):
            raise ValueError(
                f"the global generator in {file} does not fit this local enhancer's global part (its "
                f"{len(wanted)} tensors, first width {wanted['stem.conv.weight'].shape[0]}): train pix2pixhd with "
                "base_channels twice the local enhancer's and the same n_downsampling and n_blocks"
            )
        target.load_state_dict(state)


def pix2pixhd(
    generator: str = "pix2pixhd-global",
    discriminator: str = "multiscale-patchgan",
    in_channels: int = 3,
    out_channels: int = 3,
    generator_args: dict[str, Any] | None = None,
    discriminator_args: dict[str, Any] | None = None,
    num_scales: int = 2,
    gan_mode: GANMode = "lsgan",
    lambda_feat: float = 10.0,
    vgg: str | None = "perceptual-vgg19",
    vgg_args: dict[str, Any] | None = None,
    lambda_vgg: float = 10.0,
    pretrained_vgg: bool = True,
    niter_fix_global: int = 0,
    global_weights: str | None = None,
) -> Pix2PixHD:
    """Assemble a [Pix2PixHD][imgtrans.models.pix2pixhd.Pix2PixHD] model from registered parts.

    Args:
        generator: ``pix2pixhd-global`` ($G_1$) or ``pix2pixhd-local`` ($G_1$ and local enhancers).
        discriminator: a registered multi-scale discriminator (``multiscale-patchgan``).
        in_channels: channels of the input: ``label_nc`` (+1 with instance maps), or 3 for images.
        out_channels: channels of the images made.
        generator_args: further arguments of the generator (``base_channels``, ``n_blocks``...).
        discriminator_args: further arguments of the discriminator (``base_channels``, ``n_layers``...).
        num_scales: discriminators, ``--num_D``: 2 is NVIDIA's code default (its 512p recipe), 3
            the paper's and the 1024p recipe's.
        gan_mode: adversarial loss (``lsgan``).
        lambda_feat: feature-matching weight (10).
        vgg: registered perceptual term (``perceptual-vgg19``, NVIDIA's VGGLoss) or ``None``.
        vgg_args: further arguments of the perceptual term (``vgg_weights``: a local file).
        lambda_vgg: its weight (10).
        pretrained_vgg: load VGG-19's ImageNet weights (timm's ``vgg19``, from the Hugging Face
            cache or downloaded once); ``False`` gives random features, for tests only.
        niter_fix_global: with the ``pix2pixhd-local`` generator: epochs that train only the finest enhancer.
        global_weights: with the ``pix2pixhd-local`` generator: a trained ``pix2pixhd`` run's ``model`` folder whose
            global generator starts the local enhancer's global part.
    """
    g = part(generator, generator_args, in_channels=in_channels, out_channels=out_channels)
    d = part(discriminator, discriminator_args, in_channels=in_channels + out_channels, num_scales=num_scales)
    p = None
    if vgg is not None:
        p = part(vgg, {"pretrained_vgg": pretrained_vgg, **(vgg_args or {})})
    model = Pix2PixHD(
        g, d, gan_mode=gan_mode, lambda_feat=lambda_feat, vgg=p, lambda_vgg=lambda_vgg,
        niter_fix_global=niter_fix_global,
    )
    if global_weights is not None:
        model.load_global(global_weights)
    return model


# Which arguments configure which registered part, and which only choose initial weights (see imgtrans.registry).
pix2pixhd.part_arguments = {"generator_args": "generator", "discriminator_args": "discriminator", "vgg_args": "vgg"}
pix2pixhd.weight_arguments = {"pretrained_vgg": False, "global_weights": None}

CONFIGURATIONS: dict[str, tuple[str, dict[str, Any]]] = {
    "pix2pixhd": (
        "pix2pixHD, global generator G1 (its 512x1024 recipe): 2 multi-scale D, LSGAN, feature matching and VGG",
        {},
    ),
    "pix2pixhd-enhancer": (
        "pix2pixHD, G1 plus a local enhancer (its 1024x2048 recipe): 3 multi-scale D; starts from global_weights",
        {"generator": "pix2pixhd-local", "num_scales": 3},
    ),
}
"""The named pix2pixHD configurations: ``name -> (description, defaults)``."""

for _name, (_description, _defaults) in CONFIGURATIONS.items():
    register(_name, pix2pixhd, description=_description, **_defaults)
