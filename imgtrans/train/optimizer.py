r"""Adam (Kingma & Ba, 2015) as the paper trains with it, without the fused CPU kernel's wasted copies.

pix2pix trains both networks with Adam, learning rate 2e-4 and momentum terms (0.5, 0.999)
(section 3.3). The trainer uses PyTorch's fused kernel, one pass over each tensor:

$$m \leftarrow \beta_1 m + (1 - \beta_1) g, \quad v \leftarrow \beta_2 v + (1 - \beta_2) g^2, \quad
\theta \leftarrow \theta - \frac{\eta}{1 - \beta_1^t} \cdot \frac{m}{\sqrt{v / (1 - \beta_2^t)} + \epsilon}.$$

On the CPU that kernel walks the weight, its gradient and both moments in memory order (all four
share a layout), but first makes a contiguous copy of every gradient that is not contiguous, and
then never reads it (``grad.contiguous()`` in PyTorch's ``FusedAdamKernel.cpp``, 2.14). A
channels-last weight's gradient is such a tensor, so each step copied the U-Net's 54 M gradients
once more for nothing: the step of a channels-last U-Net 256 + PatchGAN on 2 AMX cores took
265 -> 238 ms in bf16 and 514 -> 480 ms in fp32 without the copy (docs/performance.md).
[Adam][imgtrans.train.optimizer.Adam] hands the kernel each channels-last tensor as the contiguous
view that it already is in memory, ``(N, H, W, C)``, which the kernel updates in place in the same
order: the same update, bit for bit.
"""

from __future__ import annotations

import torch

from imgtrans.blocks.unfolded import channels_last


def in_memory_order(t: torch.Tensor) -> torch.Tensor:
    """A channels-last 4-D tensor as the contiguous ``(N, H, W, C)`` view it is in memory; others as they are."""
    return t.permute(0, 2, 3, 1) if t.dim() == 4 and channels_last(t) else t


class Adam(torch.optim.Adam):
    """``torch.optim.Adam`` (same arguments, state and checkpoints) that spares the fused CPU kernel its copies.

    Only the fused kernel on the CPU is handed views, and only for a weight whose gradient and
    moments share its channels-last layout; every other case is ``torch.optim.Adam``'s own.
    """

    def _init_group(self, group, params, grads, exp_avgs, exp_avg_sqs, *rest):
        # torch.optim.Adam.step fills these lists here and hands them to the kernel as they are.
        has_complex = super()._init_group(group, params, grads, exp_avgs, exp_avg_sqs, *rest)
        if group["fused"]:
            for i, tensors in enumerate(zip(params, grads, exp_avgs, exp_avg_sqs)):
                views = [in_memory_order(t) for t in tensors]
                same = all(v.is_contiguous() and v.shape == views[0].shape for v in views)  # one layout for all four
                if tensors[0].device.type == "cpu" and same:
                    params[i], grads[i], exp_avgs[i], exp_avg_sqs[i] = views
        return has_complex
