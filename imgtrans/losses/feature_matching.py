r"""pix2pixHD's discriminator feature-matching loss (Wang et al., CVPR 2018, section 3.2, equation 4).

$\mathcal{L}_{FM}(G, D_k) = \mathbb{E}_{(s,x)} \sum_{i=1}^{T} \frac{1}{N_i}
\lVert D_k^{(i)}(s, x) - D_k^{(i)}(s, G(s)) \rVert_1$: L1 distances between the features a
discriminator computes on real and on generated pairs, layer by layer, with the real features fixed.

NVIDIA's code (``loss_G_GAN_Feat`` in ``pix2pixHD_model.py``) weighs each of the $T = n\_layers + 1$
intermediate features by ``4 / (n_layers + 1)`` and each of the ``num_D`` scales by ``1 / num_D``,
then the whole by $\lambda = 10$ (``--lambda_feat``); the logits are left out.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F


def feature_matching_loss(
    fake_features: Sequence[Sequence[torch.Tensor]],
    real_features: Sequence[Sequence[torch.Tensor]],
    weight: float = 10.0,
) -> torch.Tensor:
    r"""pix2pixHD's ``loss_G_GAN_Feat`` from a multi-scale discriminator's outputs on fake and real pairs.

    Args:
        fake_features: one list per scale of the discriminator's features on generated pairs, each
            ending with the logits ([imgtrans.blocks.MultiscaleDiscriminator][] with ``features=True``).
        real_features: the same on real pairs; detached here, as in the reference.
        weight: $\lambda_{FM}$ (10, ``--lambda_feat``).
    """
    if len(fake_features) != len(real_features) or not fake_features:
        raise ValueError(
            f"fake_features and real_features must hold the same number of scales (at least one); "
            f"got {len(fake_features)} and {len(real_features)}"
        )
    scale_weight = 1.0 / len(fake_features)
    total = None
    for scale, (fakes, reals) in enumerate(zip(fake_features, real_features)):
        if len(fakes) != len(reals) or len(fakes) < 2:
            raise ValueError(
                f"scale {scale} has {len(fakes)} fake and {len(reals)} real feature maps: they must match and "
                "hold the intermediate features before the logits (build the discriminator with features=True)"
            )
        layer_weight = 4.0 / (len(fakes) - 1)  # 4 / (n_layers + 1): a scale has n_layers + 2 outputs
        for fake, real in zip(fakes[:-1], reals[:-1]):
            if fake.shape != real.shape:
                raise ValueError(f"fake and real features differ in shape: {tuple(fake.shape)} and {tuple(real.shape)}")
            term = scale_weight * layer_weight * F.l1_loss(fake, real.detach()) * weight
            total = term if total is None else total + term
    return total
