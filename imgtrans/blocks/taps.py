r"""A convolution with few output channels as one matrix product over its taps and a shifted sum.

oneDNN computes a convolution a vector register of output channels at a time (16 floats with
AVX-512), so a layer with one output channel, like the PatchGAN's last (512 -> 1, 4x4, on 31x31
maps, paper 6.1.2), wastes most of its arithmetic on padding channels: 4.7 ms forward and
backward in float32 for 15 MFLOP of work. Written per tap $(i, j)$ of the $k_h \times k_w$ kernel,

$$Y_{o,a,b} = \sum_{i,j} Z_{(o,i,j),\; s a + i,\; s b + j}, \qquad Z = W' \tilde X,
\quad W' \in \mathbb{R}^{o k_h k_w \times c},$$

where $\tilde X$ is the zero-padded input: one product gives every tap's contribution at every
pixel (a ``1x1`` convolution with $o k_h k_w$ outputs, 16 for the PatchGAN), and the output sums
each pixel's $k_h k_w$ shifted contributions, read as one strided view of $Z$. On 2 AVX-512 cores,
forward and backward at batch 1: 4.7 -> 1.0 ms in float32, 1.9 -> 0.9 ms under bfloat16 autocast.

CycleGAN's and pix2pixHD's 7x7 heads (64 -> 3, reflection-padded) are the same case with 147 taps
per pixel: padded as the layer pads, then summed. Their taps' map is 2.3 times the input, so layers
whose taps would exceed ``TAPS_MAX_ELEMENTS`` (pix2pixHD's head beyond 512x512) stay with oneDNN.

The taps are computed in float32 even under autocast: a sum of 16 partial maps each rounded to
bfloat16 is 5e-2 off, and in float32 the product is too small (16 rows) to cost anything.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from imgtrans.blocks.product import product

TAPS_MAX_OUT = 8  # output channels up to which the taps win: oneDNN pads them to a whole vector (16 floats)
TAPS_MAX_ELEMENTS = 1 << 26  # the taps' map (256 MB in float32) beyond which the convolution is left to oneDNN


def fits_taps(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether the taps of ``weight`` over ``x`` (``out kh kw`` values per pixel) stay within ``TAPS_MAX_ELEMENTS``.

    CycleGAN's 7x7 head at 256x256 has 147 per pixel (10 M in all), pix2pixHD's at 1024x2048 300 M.
    """
    n, _, h, w = x.shape
    out, _, kh, kw = weight.shape
    return n * (h + kh) * (w + kw) * out * kh * kw <= TAPS_MAX_ELEMENTS


def taps_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: tuple[int, int],
                padding: tuple[int, int]) -> torch.Tensor:  # fmt: skip
    """``F.conv2d(x, weight, bias, stride, padding)`` (no groups or dilation) as taps.

    The result has ``x``'s dtype, except under autocast, where it is float32 (or float64) like the taps.
    """
    n, c, h, w = x.shape
    out, _, kh, kw = weight.shape
    (sh, sw), (ph, pw) = stride, padding
    dtype = torch.promote_types(torch.promote_types(x.dtype, weight.dtype), torch.float32)
    autocast = torch.is_autocast_enabled(x.device.type)
    with torch.autocast(x.device.type, enabled=False):
        padded = F.pad(x.to(dtype), (pw, pw, ph, ph))
        hp, wp = h + 2 * ph, w + 2 * pw
        out_h, out_w = (hp - kh) // sh + 1, (wp - kw) // sw + 1
        # Pixel-major rows (N Hp Wp) x c: channels-last inputs (the PatchGAN's) need no copy.
        rows = padded.permute(0, 2, 3, 1).reshape(n * hp * wp, c)
        z = product(rows, weight.to(dtype).permute(1, 0, 2, 3).reshape(c, out * kh * kw))
        # Z[(n, y, x), (o, i, j)] sits at (n hp wp + y wp + x) s0 + (o kh kw + i kw + j) s1; output pixel
        # (a, b) reads taps (i, j) at y = sh a + i, x = sw b + j: a view of Z over (n, o, a, b, i, j).
        s0, s1 = z.stride()
        taps = z.as_strided(
            (n, out, out_h, out_w, kh, kw),
            (hp * wp * s0, kh * kw * s1, sh * wp * s0, sw * s0, wp * s0 + kw * s1, s0 + s1),
        )
        y = taps.sum((4, 5))
        y = y if bias is None else y + bias.to(dtype).view(1, -1, 1, 1)
    return y if autocast else y.to(x.dtype)
