"""Golden tensors for the pix2pix family, made by the reference networks themselves.

    python tools/make_family_golden.py --cyclegan CHECKOUT --pix2pixhd CHECKOUT [--out tests/fixtures/family]

``--cyclegan`` is a checkout of junyanz/pytorch-CycleGAN-and-pix2pix (or of
taesungp/contrastive-unpaired-translation, whose ``networks.py`` holds the same ``ResnetGenerator`` and
``NLayerDiscriminator`` behind ``no_antialias`` flags), ``--pix2pixhd`` one of NVIDIA/pix2pixHD; either
may be the path of its ``models/networks.py``. The reference code is imported from there and never
copied into imgtrans. Each case is written as ``NAME.safetensors`` holding ``reference.KEY`` (the
network's ``state_dict()`` under the reference's own key names, as its checkpoints hold it), the
inputs and the reference's outputs in eval mode; tests/test_reference_family.py converts and compares.
``layouts.json`` lists the keys and shapes of networks at full width: CycleGAN's published 2017 G and D
(with their InstanceNorm buffers) and pix2pixHD's at its Cityscapes sizes.

Weights are drawn at a larger scale than the reference's N(0, 0.02) initialisation, and BatchNorm
statistics are random, so that every layer moves the output and eval mode is a real test.
Widths are tiny (4 or 8 filters: ngf 4 for the ResNet-9s, whose 18 blocks dominate) to keep the files small.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import inspect
import json
import sys
import types
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

SEED = 2017


def load_networks(path: Path, name: str) -> types.ModuleType:
    """Import a reference ``networks.py`` from ``path`` (a checkout or the file) without running ``models/__init__``.

    The file becomes ``NAME.networks`` of a package whose path is its folder, so relative imports
    (CUT's ``from .stylegan_networks import ...``) resolve there.
    """
    file = path if path.suffix == ".py" else path / "models" / "networks.py"
    if not file.is_file():
        raise SystemExit(f"no networks.py at {file}: pass a checkout of the reference repository or its networks.py")
    package = types.ModuleType(name)
    package.__path__ = [str(file.parent)]
    sys.modules[name] = package
    spec = importlib.util.spec_from_file_location(f"{name}.networks", file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def instance_norm() -> functools.partial:
    """The reference's ``get_norm_layer("instance")`` of today: no affine parameters, no running statistics."""
    return functools.partial(nn.InstanceNorm2d, affine=False, track_running_stats=False)


def supported(cls: type, **flags: object) -> dict[str, object]:
    """The ``flags`` that ``cls.__init__`` accepts (CUT's ``no_antialias``, older ``use_deconvolution``)."""
    params = inspect.signature(cls).parameters
    return {k: v for k, v in flags.items() if k in params}


def randomise(net: nn.Module) -> nn.Module:
    """Weights at the scale of He initialisation, biases and BatchNorm affine terms and statistics random."""
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                fan_in = m.weight[0].numel() if isinstance(m, nn.Conv2d) else m.weight.shape[0] * m.weight[0, 0].numel()
                m.weight.normal_(0.0, (2.0 / fan_in) ** 0.5)
                if m.bias is not None:
                    m.bias.normal_(0.0, 0.1)
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.1)
                m.running_mean.normal_(0.0, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.num_batches_tracked.fill_(1000)
    return net.eval()


def with_2017_buffers(net: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` as PyTorch 0.3 saved it: every ``InstanceNorm2d`` also held ``running_mean`` and ``running_var``.

    They were updated in training but never used (instance norm normalises with each image's own
    statistics), so they are random here; a faithful reader ignores them.
    """
    legacy = dict(state)
    for name, m in net.named_modules():
        if isinstance(m, nn.InstanceNorm2d):
            legacy[f"{name}.running_mean"] = torch.randn(m.num_features) * 0.5
            legacy[f"{name}.running_var"] = torch.rand(m.num_features) + 0.5
    return legacy


def without_batch_counters(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` as PyTorch before 0.4.1 saved it: BatchNorm without ``num_batches_tracked``."""
    return {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}


def flat(prefix: str, outputs: list[list[torch.Tensor]]) -> dict[str, torch.Tensor]:
    """``{prefix.SCALE.LAYER: tensor}`` for a multi-scale discriminator's nested output."""
    return {f"{prefix}.{i}.{j}": t for i, scale in enumerate(outputs) for j, t in enumerate(scale)}


def pix2pixhd_losses(hd: types.ModuleType, pred_fake: list, pred_real: list, n_layers_d: int) -> dict:
    """The reference's terms: ``GANLoss`` from its networks.py (LSGAN) and ``loss_G_GAN_Feat`` as
    pix2pixHD_model.py computes it (``feat_weights = 4 / (n_layers_D + 1)``, ``D_weights = 1 / num_D``,
    ``criterionFeat = L1Loss``, ``lambda_feat = 10``)."""
    criterion_gan = hd.GANLoss(use_lsgan=True, tensor=torch.FloatTensor)
    criterion_feat = nn.L1Loss()
    num_d, lambda_feat = len(pred_fake), 10.0
    feat_weights, d_weights = 4.0 / (n_layers_d + 1), 1.0 / num_d
    loss_feat = 0
    for i in range(num_d):
        for j in range(len(pred_fake[i]) - 1):
            loss_feat += (
                d_weights * feat_weights * criterion_feat(pred_fake[i][j], pred_real[i][j].detach()) * lambda_feat
            )
    return {
        "loss_G_GAN": criterion_gan(pred_fake, True).reshape(()),
        "loss_D_real": criterion_gan(pred_real, True).reshape(()),
        "loss_D_fake": criterion_gan(pred_fake, False).reshape(()),
        "loss_G_GAN_Feat": loss_feat.reshape(()),
    }


def cyclegan_cases(ref: types.ModuleType) -> dict[str, dict[str, torch.Tensor]]:
    """ResNet-9 with instance norm, a 2017-style ResNet-9 and the CycleGAN discriminator."""
    flags = supported(ref.ResnetGenerator, no_antialias=True, no_antialias_up=True, use_deconvolution=True)
    cases = {}
    g = randomise(ref.ResnetGenerator(3, 3, 4, norm_layer=instance_norm(), use_dropout=False, n_blocks=9, **flags))
    x = torch.randn(1, 3, 32, 32)
    cases["resnet9-instance"] = {"state": g.state_dict(), "input": x, "output": g(x)}
    g = randomise(ref.ResnetGenerator(3, 3, 4, norm_layer=instance_norm(), use_dropout=False, n_blocks=9, **flags))
    x = torch.randn(2, 3, 16, 24)
    cases["resnet9-2017"] = {"state": with_2017_buffers(g, g.state_dict()), "input": x, "output": g(x)}
    d_flags = supported(ref.NLayerDiscriminator, no_antialias=True)
    d = randomise(ref.NLayerDiscriminator(3, 8, n_layers=3, norm_layer=instance_norm(), **d_flags))
    x = torch.randn(2, 3, 32, 40)
    cases["cyclegan-d-2017"] = {"state": with_2017_buffers(d, d.state_dict()), "input": x, "output": d(x)}
    return cases


def pix2pixhd_cases(hd: types.ModuleType) -> dict[str, dict[str, torch.Tensor]]:
    """Global generator (instance and batch norm), local enhancer, multi-scale discriminator and its losses."""
    cases = {}
    g = randomise(hd.GlobalGenerator(5, 3, 8, n_downsampling=2, n_blocks=2, norm_layer=instance_norm()))
    x = torch.randn(1, 5, 16, 24)
    cases["global-instance"] = {"state": g.state_dict(), "input": x, "output": g(x)}
    g = randomise(hd.GlobalGenerator(3, 2, 4, n_downsampling=1, n_blocks=1, norm_layer=nn.BatchNorm2d))
    x = torch.randn(2, 3, 16, 24)
    cases["global-batch-0.4"] = {"state": without_batch_counters(g.state_dict()), "input": x, "output": g(x)}
    g = randomise(
        hd.LocalEnhancer(
            5, 3, 4, n_downsample_global=1, n_blocks_global=1, n_local_enhancers=2, n_blocks_local=1,
            norm_layer=instance_norm(),
        )
    )
    x = torch.randn(1, 5, 32, 48)
    cases["local-instance"] = {"state": g.state_dict(), "input": x, "output": g(x)}

    n_layers = 2
    d = randomise(hd.MultiscaleDiscriminator(8, 8, n_layers, instance_norm(), False, num_D=3, getIntermFeat=True))
    real, fake = torch.randn(1, 8, 32, 32), torch.randn(1, 8, 32, 32)
    pred_real, pred_fake = d(real), d(fake)
    cases["multiscale-d"] = {
        "state": d.state_dict(),
        "real": real,
        "fake": fake,
        **flat("output_real", pred_real),
        **flat("output_fake", pred_fake),
        **pix2pixhd_losses(hd, pred_fake, pred_real, n_layers),
    }
    d = randomise(hd.MultiscaleDiscriminator(4, 4, 1, instance_norm(), False, num_D=2, getIntermFeat=False))
    x = torch.randn(1, 4, 40, 40)
    cases["multiscale-d-logits"] = {"state": d.state_dict(), "input": x, **flat("output", d(x))}
    return cases


def full_width_layouts(ref: types.ModuleType, hd: types.ModuleType) -> dict[str, dict[str, list[int]]]:
    """Keys and shapes at full width (on the meta device): CycleGAN's published 2017 G and D, and
    pix2pixHD's networks at the sizes of its Cityscapes recipes (36 input channels: 35 labels and the
    instance-boundary map; the discriminator also sees the image).
    """
    norm = instance_norm()
    flags = supported(ref.ResnetGenerator, no_antialias=True, no_antialias_up=True, use_deconvolution=True)
    with torch.device("meta"):
        cyclegan_g = ref.ResnetGenerator(3, 3, 64, norm_layer=norm, use_dropout=False, n_blocks=9, **flags)
        d_flags = supported(ref.NLayerDiscriminator, no_antialias=True)
        cyclegan_d = ref.NLayerDiscriminator(3, 64, n_layers=3, norm_layer=norm, **d_flags)
        legacy = {
            "cyclegan_2017_G": with_2017_buffers(cyclegan_g, cyclegan_g.state_dict()),
            "cyclegan_2017_D": with_2017_buffers(cyclegan_d, cyclegan_d.state_dict()),
        }
        nets = {
            "label2city_512p_G": hd.GlobalGenerator(36, 3, 64, 4, 9, norm),
            "label2city_1024p_G": hd.LocalEnhancer(36, 3, 32, 4, 9, 1, 3, norm),
            "label2city_D": hd.MultiscaleDiscriminator(39, 64, 3, norm, False, num_D=3, getIntermFeat=True),
            "deep_D_512_cap": hd.MultiscaleDiscriminator(39, 64, 5, norm, False, num_D=2, getIntermFeat=False),
            "global_batch_G": hd.GlobalGenerator(36, 3, 64, 4, 9, nn.BatchNorm2d),
        }
    states = {**legacy, **{name: net.state_dict() for name, net in nets.items()}}
    return {name: {k: list(v.shape) for k, v in state.items()} for name, state in states.items()}


def write(cases: dict[str, dict[str, torch.Tensor]], out: Path, force: bool) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, case in cases.items():
        path = out / f"{name}.safetensors"
        if path.exists() and not force:
            raise SystemExit(f"{path} exists; pass --force to replace the golden tensors")
        tensors = {f"reference.{k}": v for k, v in case.pop("state").items()}
        tensors.update(case)
        save_file({k: v.detach().contiguous() for k, v in tensors.items()}, path)
        print(f"wrote {path} ({path.stat().st_size // 1024} KiB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cyclegan", type=Path, required=True, help="pytorch-CycleGAN-and-pix2pix (or CUT) checkout")
    parser.add_argument("--pix2pixhd", type=Path, required=True, help="NVIDIA/pix2pixHD checkout")
    default_out = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "family"
    parser.add_argument("--out", type=Path, default=default_out, help="the folder to write (tests/fixtures/family)")
    parser.add_argument("--force", action="store_true", help="replace existing golden files")
    args = parser.parse_args()
    ref = load_networks(args.cyclegan, "_reference_cyclegan")
    hd = load_networks(args.pix2pixhd, "_reference_pix2pixhd")
    torch.manual_seed(SEED)
    with torch.no_grad():
        cases = {**cyclegan_cases(ref), **pix2pixhd_cases(hd)}
    write(cases, args.out, args.force)
    layouts = args.out / "layouts.json"
    if layouts.exists() and not args.force:
        raise SystemExit(f"{layouts} exists; pass --force to replace it")
    layouts.write_text(json.dumps(full_width_layouts(ref, hd), indent=0) + "\n")
    print(f"wrote {layouts}")


if __name__ == "__main__":
    main()
