r"""A frozen eval-mode copy of a generator, with BatchNorm folded into the convolution before it.

In eval mode BatchNorm is an affine map per channel, $\gamma (z - \mu) / \sqrt{\sigma^2 + \epsilon} + \beta$,
so after a convolution $z = W * x + b$ it folds into the convolution's filters and bias:

$$W' = s\, W, \qquad b' = s\,(b - \mu) + \beta, \qquad s = \gamma / \sqrt{\sigma^2 + \epsilon},$$

scaling output channels (dimension 0 of a ``Conv2d``'s weight, dimension 1 of a ``ConvTranspose2d``'s).
One pass over each feature map is saved per layer, and exported graphs get a single operator. The
paper's test mode (batch statistics, section 3.3) cannot be folded: this is for eval mode only.
[compile_for_inference][imgtrans.deploy.fusion.compile_for_inference] compiles such a copy.
"""

from __future__ import annotations

import copy
from itertools import pairwise
from typing import Callable

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from imgtrans.blocks.subpixel import SubpixelConvTranspose2d, supports
from imgtrans.inference import generator_of


def inference_copy(model: nn.Module, *, subpixel: bool = False) -> nn.Module:
    """A copy of ``model``'s generator in eval mode, BatchNorm folded, without gradients.

    Args:
        model: a pix2pix model or a bare generator; it is left unchanged.
        subpixel: also replace each ``4x4`` stride-2 transposed convolution by the ordinary
            convolution that computes it ([SubpixelConvTranspose2d][imgtrans.blocks.subpixel.SubpixelConvTranspose2d]),
            so that int8 quantisers cover the decoder.

    The copy computes the generator's eval-mode function to float rounding (about 1e-7 in float32).
    """
    generator = copy.deepcopy(generator_of(model)).eval().requires_grad_(False)
    fold_batch_norm(generator)
    if subpixel:
        for parent in list(generator.modules()):
            for name, child in list(parent.named_children()):
                if supports(child):
                    setattr(parent, name, SubpixelConvTranspose2d.from_transposed(child))
    return generator


def compile_for_inference(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """A compiled eval-mode translator: ``torch.compile`` with inductor's weight freezing.

    What is compiled is the [inference_copy][imgtrans.deploy.fusion.inference_copy] of ``model``.
    Freezing treats the weights as constants, so oneDNN weights are packed once instead of on every
    call and pointwise operations are fused into the convolutions; on 2 CPU cores a U-Net 256 took
    232 ms against eager's 278 (256x256, batch 8, float32). BatchNorm is folded here, exactly, before
    compiling: inductor's own folding of a BatchNorm that follows a transposed convolution of a 1x1
    input is wrong by up to 5% (torch 2.14; the U-Net's innermost decoder layer), which put whole
    outputs 0.01 away from eager. The first call for each new input shape compiles (tens of seconds
    on a CPU), so it pays off for many images of one size. ``model`` is left unchanged.
    """
    compiled = torch.compile(inference_copy(model))

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad(), torch._inductor.config.patch(freezing=True):
            return compiled(x)

    return run


def fold_batch_norm(module: nn.Module) -> int:
    """Fold every eval-mode ``BatchNorm2d`` that directly follows a convolution in an ``nn.Sequential``.

    Only ``nn.Sequential`` containers are searched, because only there does the order of the
    children say that the norm reads the convolution's output (a ``Ck`` layer is one). The folded
    norm becomes ``nn.Identity``. Returns the number of norms folded.
    """
    folded = 0
    for parent in list(module.modules()):
        if not isinstance(parent, nn.Sequential):
            continue
        children = list(parent.named_children())
        for (conv_name, conv), (norm_name, norm) in pairwise(children):
            if _foldable(conv, norm):
                transposed = isinstance(conv, nn.ConvTranspose2d)
                setattr(parent, conv_name, fuse_conv_bn_eval(conv, norm, transpose=transposed))
                setattr(parent, norm_name, nn.Identity())
                folded += 1
    return folded


def _foldable(conv: nn.Module, norm: nn.Module) -> bool:
    # Exactly BatchNorm2d (not subclasses that add an activation), in eval mode with running statistics.
    return (
        isinstance(conv, (nn.Conv2d, nn.ConvTranspose2d))
        and conv.groups == 1
        and type(norm) is nn.BatchNorm2d
        and not norm.training
        and norm.running_mean is not None
        and norm.num_features == conv.out_channels
    )
