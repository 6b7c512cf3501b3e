"""pix2pixHD's coarse-to-fine generator (Wang et al., CVPR 2018, section 3.2), as NVIDIA's code builds it.

$G_1$, the global generator, is ``c7s1-64, d128, d256, d512, d1024, R1024 x 9, u512, u256, u128, u64,
c7s1-3`` (appendix): a 7x7 stem, ``n_downsampling`` stride-2 3x3 convolutions, residual blocks,
as many transposed-convolution upsamplings and a 7x7 head with ``Tanh``. $G_2$, the local
enhancer, is ``c7s1-32, d64, R64 x 3, u32, c7s1-3``: it downsamples the full-resolution image once,
adds the last feature map of $G_1$ (run on the image at half resolution, without its head), and
upsamples back; ``n_local_enhancers`` such branches stack on an image pyramid
(``AvgPool2d(3, 2, padding=1, count_include_pad=False)``).

Unlike the reference pix2pix ResNet ([imgtrans.blocks.resnet][]), every convolution keeps its bias,
BatchNorm or not. Defaults: ``n_downsampling=4`` and 9 blocks are the paper's and the code's training
options (``networks.GlobalGenerator``'s own default is 3); instance norm is both's; the local
enhancer's width 32 is the paper's $G_2$ and the README's 1024p recipe (``--netG local --ngf 32``).
"""

from __future__ import annotations

import torch
from torch import nn

from imgtrans.blocks.conv import MAX_WIDTH, Norm, check_range
from imgtrans.blocks.pad import check_input, crop_padding, pad_to_multiple
from imgtrans.blocks.resnet import ResnetBlock, conv_norm_relu
from imgtrans.blocks.unfolded import MatmulConv2d


def init_like_pix2pixhd(module: nn.Module, std: float = 0.02) -> nn.Module:
    """pix2pixHD's ``weights_init``: convolution weights from N(0, ``std``), BatchNorm scales from N(1, ``std``).

    Unlike [init_weights][imgtrans.blocks.init_weights], convolution biases keep PyTorch's default
    (uniform) initialisation, which NVIDIA's code leaves in place.
    """
    for m in module.modules():
        if getattr(getattr(m, "weight", None), "is_meta", False):
            continue
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, std)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, std)
            nn.init.zeros_(m.bias)
    return module


def pyramid_downsample() -> nn.AvgPool2d:
    """The 2x average pooling of pix2pixHD's image pyramids, for generators and discriminators alike."""
    return nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)


def stem(in_channels: int, channels: int, norm: Norm) -> nn.Sequential:
    """``c7s1-k``: 7x7 reflection-padded convolution, norm, ReLU."""
    return conv_norm_relu(nn.Conv2d(in_channels, channels, 7, padding=3, padding_mode="reflect"), norm)


def down(channels: int, norm: Norm) -> nn.Sequential:
    """``dk``: 3x3 stride-2 convolution (zero padding, as in the code) doubling the channels, norm, ReLU."""
    return conv_norm_relu(nn.Conv2d(channels, channels * 2, 3, 2, 1), norm)


def up(channels: int, norm: Norm) -> nn.Sequential:
    """``uk``: 3x3 stride-2 transposed convolution halving the channels, norm, ReLU."""
    return conv_norm_relu(nn.ConvTranspose2d(channels, channels // 2, 3, 2, 1, output_padding=1), norm)


def head(channels: int, out_channels: int) -> nn.Conv2d:
    """``c7s1-3`` without its ``Tanh``: the last 7x7 reflection-padded convolution (taps in training, where they fit)."""
    return MatmulConv2d(channels, out_channels, 7, padding=3, padding_mode="reflect")


def pad_for(x: torch.Tensor, halvings: int) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """Pad to a multiple of ``2**halvings`` with sides of at least 2 pixels at the coarsest level.

    Two pixels is what the 3x3 reflection padding of the residual blocks needs. Sides that are
    such multiples and that large already are left as they are: the output equals the reference's.
    """
    return pad_to_multiple(x, 2**halvings, minimum=max(2 ** (halvings + 1), 4))


class GlobalGenerator(nn.Module):
    """$G_1$ of pix2pixHD: ``c7s1-k, d2k, ..., R(2^n k) x n_blocks, ..., u k, c7s1-out``.

    Args:
        in_channels: channels of the input (label maps: their one-hot channels, plus 1 for the
            instance-boundary map when used).
        out_channels: channels of the image it makes.
        base_channels: filters of the stem, ``ngf`` (64).
        n_downsampling: stride-2 convolutions, ``n_downsample_global`` (4).
        n_blocks: residual blocks at the lowest resolution, ``n_blocks_global`` (9).
        norm: ``"instance"`` (pix2pixHD's default), ``"batch"`` or ``"none"``.
        with_head: ``False`` leaves out the final 7x7 convolution, as the local enhancer's copy does;
            [features][imgtrans.blocks.pix2pixhd.GlobalGenerator.features] is then its output.
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        base_channels: int = 64,
        n_downsampling: int = 4,
        n_blocks: int = 9,
        norm: Norm = "instance",
        with_head: bool = True,
    ) -> None:
        super().__init__()
        check_range("n_downsampling", n_downsampling, 0, 8)
        check_range("n_blocks", n_blocks, 0, 64)
        check_range("base_channels", base_channels, 1, MAX_WIDTH)
        self.in_channels = in_channels
        self.n_downsampling = n_downsampling
        c = base_channels
        self.stem = stem(in_channels, c, norm)
        self.down = nn.Sequential(*(down(c * 2**i, norm) for i in range(n_downsampling)))
        self.blocks = nn.Sequential(*(ResnetBlock(c * 2**n_downsampling, norm, bias=True) for _ in range(n_blocks)))
        self.up = nn.Sequential(*(up(c * 2 ** (n_downsampling - i), norm) for i in range(n_downsampling)))
        self.head = head(c, out_channels) if with_head else None
        init_like_pix2pixhd(self)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature map before the head, at the input's resolution (sides multiples of ``2**n``)."""
        return self.up(self.blocks(self.down(self.stem(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Translate ``N x in_channels x H x W`` inputs to ``N x out_channels x H x W`` images in [-1, 1]."""
        check_input(x, self.in_channels, type(self).__name__)
        if self.head is None:
            raise ValueError("this GlobalGenerator was built with_head=False: call features(x) instead")
        x, pad = pad_for(x, self.n_downsampling)
        return crop_padding(torch.tanh(self.head(self.features(x))), pad)


class EnhancerBranch(nn.Module):
    """One local enhancer: ``c7s1-k, d2k`` on its pyramid level, then ``R2k x n_blocks, u k`` on the sum."""

    def __init__(self, in_channels: int, channels: int, n_blocks: int, norm: Norm) -> None:
        super().__init__()
        self.down = nn.Sequential(stem(in_channels, channels, norm), down(channels, norm))
        self.blocks = nn.Sequential(*(ResnetBlock(channels * 2, norm, bias=True) for _ in range(n_blocks)))
        self.up = up(channels * 2, norm)

    def forward(self, image: torch.Tensor, coarser: torch.Tensor) -> torch.Tensor:
        """Features at ``image``'s resolution from the image and the coarser level's features (half size)."""
        return self.up(self.blocks(self.down(image) + coarser))


class LocalEnhancer(nn.Module):
    """$G = \\{G_1, G_2\\}$ of pix2pixHD: a global generator at ``1/2^n`` resolution and ``n`` enhancers.

    The global generator has ``base_channels * 2**n_local_enhancers`` filters and no head; enhancer
    ``i`` (``1 <= i <= n``, the finest last) has ``base_channels * 2**(n - i)``, and only the finest
    ends in the ``c7s1-out`` head.

    Args:
        in_channels: channels of the input, as for [GlobalGenerator][imgtrans.blocks.pix2pixhd.GlobalGenerator].
        out_channels: channels of the image it makes.
        base_channels: filters of the finest enhancer, ``ngf`` (32, the paper's $G_2$).
        n_downsampling: the global generator's, ``n_downsample_global`` (4).
        n_blocks: the global generator's residual blocks (9).
        n_local_enhancers: enhancers, each doubling the resolution (1; 2 for 2048x1024 and beyond).
        n_blocks_local: residual blocks of each enhancer (3).
        norm: ``"instance"`` (pix2pixHD's default), ``"batch"`` or ``"none"``.
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        base_channels: int = 32,
        n_downsampling: int = 4,
        n_blocks: int = 9,
        n_local_enhancers: int = 1,
        n_blocks_local: int = 3,
        norm: Norm = "instance",
    ) -> None:
        super().__init__()
        check_range("n_local_enhancers", n_local_enhancers, 1, 4)
        check_range("n_blocks_local", n_blocks_local, 0, 64)
        check_range("base_channels", base_channels, 1, MAX_WIDTH)
        self.in_channels = in_channels
        self.halvings = n_local_enhancers + n_downsampling
        n = n_local_enhancers
        self.global_generator = GlobalGenerator(
            in_channels, out_channels, base_channels * 2**n, n_downsampling, n_blocks, norm, with_head=False
        )
        self.enhancers = nn.ModuleList(
            EnhancerBranch(in_channels, base_channels * 2 ** (n - i), n_blocks_local, norm) for i in range(1, n + 1)
        )
        self.head = head(base_channels, out_channels)
        self.downsample = pyramid_downsample()
        init_like_pix2pixhd(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Translate ``N x in_channels x H x W`` inputs to ``N x out_channels x H x W`` images in [-1, 1]."""
        check_input(x, self.in_channels, type(self).__name__)
        x, pad = pad_for(x, self.halvings)
        pyramid = [x]  # full resolution first
        for _ in self.enhancers:
            pyramid.append(self.downsample(pyramid[-1]))
        features = self.global_generator.features(pyramid.pop())
        for enhancer in self.enhancers:  # coarsest enhancer first, on the next finer level
            features = enhancer(pyramid.pop(), features)
        return crop_padding(torch.tanh(self.head(features)), pad)
