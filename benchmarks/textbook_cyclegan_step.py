#!/usr/bin/env python3
"""Textbook CycleGAN training step, as a reader of the paper and the reference code would write it, beside imgtrans's.

Plain PyTorch, float32, eager, NCHW: two ResNet-9 generators and two 70x70 PatchGANs with instance
norm (Zhu et al. 2017, section 4 and appendix 7.2), LSGAN, cycle losses with lambda 10, identity
loss 0.5 * lambda, a pool of 50 earlier fakes per discriminator, Adam 2e-4 / (0.5, 0.999), and the
reference's order: G_A and G_B together with the discriminators frozen, then D_A and D_B, each D
loss halved. No speed tricks on purpose.

[textbook_step][] works on any four networks (tests/test_cyclegan.py runs it on copies of
imgtrans's networks and compares the weights after each step with imgtrans's step).

    python benchmarks/textbook_cyclegan_step.py --size 256 --batch 1 --iters 5            # textbook
    python benchmarks/textbook_cyclegan_step.py --size 256 --batch 1 --iters 5 --imgtrans # imgtrans's step

Prints one JSON line: {"what": ..., "ms_per_iter": ..., "img_per_s": ...}.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics

import torch
from torch import nn


def resnet_block(c):
    return nn.Sequential(
        nn.ReflectionPad2d(1), nn.Conv2d(c, c, 3), nn.InstanceNorm2d(c), nn.ReLU(True),
        nn.ReflectionPad2d(1), nn.Conv2d(c, c, 3), nn.InstanceNorm2d(c),
    )


class Residual(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.body = resnet_block(c)

    def forward(self, x):
        return x + self.body(x)


def resnet9(cin=3, cout=3, f=64, blocks=9):
    """c7s1-64, d128, d256, R256 x 9, u128, u64, c7s1-3 (appendix 7.2), instance norm, reflection padding."""
    layers = [nn.ReflectionPad2d(3), nn.Conv2d(cin, f, 7), nn.InstanceNorm2d(f), nn.ReLU(True)]
    for m in (1, 2):
        layers += [nn.Conv2d(f * m, f * m * 2, 3, 2, 1), nn.InstanceNorm2d(f * m * 2), nn.ReLU(True)]
    layers += [Residual(4 * f) for _ in range(blocks)]
    for m in (4, 2):
        layers += [nn.ConvTranspose2d(f * m, f * m // 2, 3, 2, 1, output_padding=1), nn.InstanceNorm2d(f * m // 2),
                   nn.ReLU(True)]
    layers += [nn.ReflectionPad2d(3), nn.Conv2d(f, cout, 7), nn.Tanh()]
    return nn.Sequential(*layers)


def patch_gan(cin=3, f=64):
    """70x70 PatchGAN C64-C128-C256-C512, instance norm, unconditional (appendix 7.2)."""
    return nn.Sequential(
        nn.Conv2d(cin, f, 4, 2, 1), nn.LeakyReLU(0.2, True),
        nn.Conv2d(f, 2 * f, 4, 2, 1), nn.InstanceNorm2d(2 * f), nn.LeakyReLU(0.2, True),
        nn.Conv2d(2 * f, 4 * f, 4, 2, 1), nn.InstanceNorm2d(4 * f), nn.LeakyReLU(0.2, True),
        nn.Conv2d(4 * f, 8 * f, 4, 1, 1), nn.InstanceNorm2d(8 * f), nn.LeakyReLU(0.2, True),
        nn.Conv2d(8 * f, 1, 4, 1, 1),
    )


class TextbookPool:
    """The reference's util/image_pool.py; ``uniform()`` and ``randint(a, b)`` are its random draws."""

    def __init__(self, size=50, uniform=random.random, randint=random.randint):
        self.size, self.images, self.uniform, self.randint = size, [], uniform, randint

    def query(self, images):
        if self.size == 0:
            return images
        out = []
        for image in images:
            image = torch.unsqueeze(image.data, 0)
            if len(self.images) < self.size:
                self.images.append(image)
                out.append(image)
            elif self.uniform() > 0.5:
                i = self.randint(0, self.size - 1)
                out.append(self.images[i].clone())
                self.images[i] = image
            else:
                out.append(image)
        return torch.cat(out, 0)


def textbook_step(g_a, g_b, d_a, d_b, opt_g, opt_d, pool_a, pool_b, real_a, real_b, lam_a=10.0, lam_b=10.0,
                  lam_idt=0.5):
    """One step of the reference's ``optimize_parameters``; returns the losses as floats."""
    mse, l1 = nn.MSELoss(), nn.L1Loss()

    def gan(pred, real):
        return mse(pred, torch.full_like(pred, 1.0 if real else 0.0))

    fake_b = g_a(real_a)
    rec_a = g_b(fake_b)
    fake_a = g_b(real_b)
    rec_b = g_a(fake_a)
    for d in (d_a, d_b):
        d.requires_grad_(False)
    opt_g.zero_grad()
    idt_a, idt_b = g_a(real_b), g_b(real_a)
    loss_idt_a = l1(idt_a, real_b) * lam_b * lam_idt
    loss_idt_b = l1(idt_b, real_a) * lam_a * lam_idt
    loss_g_a, loss_g_b = gan(d_a(fake_b), True), gan(d_b(fake_a), True)
    loss_cycle_a, loss_cycle_b = l1(rec_a, real_a) * lam_a, l1(rec_b, real_b) * lam_b
    loss_g = loss_g_a + loss_g_b + loss_cycle_a + loss_cycle_b + loss_idt_a + loss_idt_b
    loss_g.backward()
    opt_g.step()
    for d in (d_a, d_b):
        d.requires_grad_(True)
    opt_d.zero_grad()
    losses = {}
    for name, d, real, fake in (("d_a", d_a, real_b, pool_b.query(fake_b)), ("d_b", d_b, real_a, pool_a.query(fake_a))):
        loss = (gan(d(real), True) + gan(d(fake.detach()), False)) * 0.5
        loss.backward()
        losses[name] = loss.item()
    opt_d.step()
    return {"g_loss": loss_g.item(), "cycle_a": loss_cycle_a.item(), **losses}


def init_weights(m):
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(m.weight, 0.0, 0.02)
        nn.init.zeros_(m.bias)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--imgtrans", action="store_true", help="time imgtrans's CycleGAN step (the trainer's own)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = p.parse_args()
    torch.manual_seed(0)
    dev = torch.device(a.device)
    real_a = torch.rand(a.batch, 3, a.size, a.size, device=dev) * 2 - 1
    real_b = torch.rand(a.batch, 3, a.size, a.size, device=dev) * 2 - 1
    if a.imgtrans:
        import imgtrans
        from imgtrans.train.objective import StepContext

        model = imgtrans.build("cyclegan").to(dev)
        groups = model.optimizer_parameters()
        # As the trainer makes them (fused Adam where PyTorch has it).
        optimizers = {k: torch.optim.Adam(v, lr=2e-4, betas=(0.5, 0.999), fused=dev.type in ("cpu", "cuda"))
                      for k, v in groups.items()}  # fmt: skip
        context = StepContext(optimizers, torch.amp.GradScaler(enabled=False), dev)
        batch = {"input": real_a, "target": real_b}

        def step():
            model.training_step(batch, context)
        what = "imgtrans"
    else:
        g_a, g_b, d_a, d_b = resnet9().to(dev), resnet9().to(dev), patch_gan().to(dev), patch_gan().to(dev)
        for net in (g_a, g_b, d_a, d_b):
            net.apply(init_weights)
        opt_g = torch.optim.Adam([*g_a.parameters(), *g_b.parameters()], lr=2e-4, betas=(0.5, 0.999))
        opt_d = torch.optim.Adam([*d_a.parameters(), *d_b.parameters()], lr=2e-4, betas=(0.5, 0.999))
        pool_a, pool_b = TextbookPool(), TextbookPool()

        def step():
            textbook_step(g_a, g_b, d_a, d_b, opt_g, opt_d, pool_a, pool_b, real_a, real_b)
        what = "textbook"
    from peak import step_seconds  # this folder's, when run as a script (tests import only textbook_step)

    times = step_seconds(step, a.warmup, a.iters, dev)
    mean = statistics.mean(times)
    print(json.dumps({
        "what": f"{what} cyclegan train size={a.size} batch={a.batch} device={dev.type} fp32",
        "ms_per_iter": round(mean * 1000, 1), "median_ms": round(statistics.median(times) * 1000, 1),
        "img_per_s": round(a.batch / mean, 3), "threads": torch.get_num_threads(), "torch": torch.__version__,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
