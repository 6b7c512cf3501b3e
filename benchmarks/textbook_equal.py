#!/usr/bin/env python3
"""Does imgtrans's training step compute the textbook's function? Ten steps each from the same weights.

    python benchmarks/textbook_equal.py --steps 10                       # full width, 256x256, fp32
    python benchmarks/textbook_equal.py --steps 10 --base-channels 8     # what tests/test_textbook_step.py runs

Loads the textbook's randomly initialised U-Net 256 and PatchGAN (../shared/bench/textbook_pix2pix.py)
into imgtrans's pix2pix-facades (the parameters are in the same order with the same shapes), then runs
the textbook's step in float64 and in float32 and the trainer's own ``train_step`` on the same fixed
pair, each step from the same random seed, so all draw the same dropout masks. Prints one JSON line:
each float32 run's distance from the float64 run after the steps, as a share of what the steps changed
(``textbook_fp32_error``, ``imgtrans_error``), imgtrans's distance from the textbook's float32 run,
``ratio`` (that distance over the textbook's own float32 error), and the same errors for the first G
update's gradient (``first_gradient_*_error``). imgtrans computes the textbook's function when its
errors are no larger than the textbook's; the first gradient is what tells a different function
apart (see ``compare``).

    python benchmarks/textbook_equal.py --steps 1 --base-channels 8   # and --steps 3, as the CI test
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import tempfile
from pathlib import Path

import torch
from torch import nn

TEXTBOOK = Path(__file__).resolve().parents[2] / "shared" / "bench" / "textbook_pix2pix.py"


def load_textbook(path: Path = TEXTBOOK):
    spec = importlib.util.spec_from_file_location("textbook_pix2pix", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def textbook_step(g: nn.Module, d: nn.Module, opt_g, opt_d, x: torch.Tensor, y: torch.Tensor) -> None:
    """The textbook's train_step, verbatim but for its closure variables."""
    bce, l1 = nn.BCEWithLogitsLoss(), nn.L1Loss()
    fake = g(x)
    opt_d.zero_grad()
    pred_fake = d(torch.cat([x, fake.detach()], 1))
    pred_real = d(torch.cat([x, y], 1))
    loss_d = 0.5 * (bce(pred_fake, torch.zeros_like(pred_fake)) + bce(pred_real, torch.ones_like(pred_real)))
    loss_d.backward()
    opt_d.step()
    opt_g.zero_grad()
    pred_fake = d(torch.cat([x, fake], 1))
    loss_g = bce(pred_fake, torch.ones_like(pred_fake)) + 100.0 * l1(fake, y)
    loss_g.backward()
    opt_g.step()


def gradient_error(gradient: list[torch.Tensor], truth: list[torch.Tensor]) -> float:
    """``|g - g_64| / |g_64|`` over all of G's weights: the first G update's gradient, before Adam amplifies rounding."""
    return relative_error(gradient, truth, [torch.zeros_like(t) for t in truth])


def relative_error(params: list[torch.Tensor], truth: list[torch.Tensor], start: list[torch.Tensor]) -> float:
    """``|theta - theta_64| / |theta_64 - theta_0|`` over all weights: the error as a share of what training changed."""
    error = sum(((p.double() - t) ** 2).sum() for p, t in zip(params, truth)).sqrt()
    change = sum(((t - s) ** 2).sum() for t, s in zip(truth, start)).sqrt()
    return (error / change).item()


def compare(steps: int = 10, base_channels: int = 64, size: int = 256, amp: str = "fp32", textbook: Path = TEXTBOOK,
            model_args: dict | None = None) -> dict:
    """Train the textbook in float64 and float32 and imgtrans for ``steps`` from the same weights and data.

    The float64 run is the function computed exactly (to float32's eye); the textbook's float32 run
    shows how far float rounding alone takes the steps from it (GAN training amplifies rounding, and
    Adam's first steps, near ``lr * sign(g)``, turn the rounding of near-zero gradients into whole
    updates). imgtrans computes the same function when its distance from the float64 run is of the
    same size or smaller; ``ratio`` is the distance between the two float32 runs over the textbook's
    own error. Measured (errors from float64, textbook float32 / imgtrans / ``lambda_l1=99``):

    - width 8 (the CI test), first G gradient: 1.5e-4 / 4.6e-6 / 1.0e-2; weights after 3 steps
      0.100 / 0.048 / 0.075. imgtrans's PatchGAN output layer sums its 16 taps in float32
      (imgtrans.blocks.taps), more exactly than oneDNN's 1-channel convolution: with oneDNN's, imgtrans
      gave the textbook's 1.5e-4 to three digits. So imgtrans is closer to float64 than the textbook,
      and ``ratio`` is about 1 (the textbook's own error); it no longer tells functions apart, the
      first gradient does (66 times the textbook's rounding for ``lambda_l1=99``).
    - full width, first G gradient: 2.1e-3 / 2.6e-3 / 1.0e-2; weights after 1, 3 and 10 steps
      0.068 / 0.081, 0.212 / 0.295 (``lambda_l1=99``: 0.295) and 0.516 / 0.577. Rounding grows so
      fast at full width that after 3 steps any two float32 runs are about as far apart as either is
      from float64, and the weights cannot tell ``lambda_l1=99`` from 100; the first gradient can.
      With MKL's products imgtrans's first gradient was 3.5e-4, and 2.6e-3 again once those products
      were moved by one rounding step (``* (1 + 1.2e-7)``): a lucky rounding, not a more exact function.

    ``model_args`` are added to imgtrans's (a different function, for a control that this can fail).
    """
    from imgtrans.data import SyntheticFacades
    from imgtrans.train import TrainConfig, Trainer

    tb = load_textbook(textbook)
    torch.manual_seed(0)
    g, d = tb.UNet256(f=base_channels), tb.patch_gan(f=base_channels)
    g.apply(tb.init_weights)
    d.apply(tb.init_weights)
    initial = [copy.deepcopy(g.state_dict()), copy.deepcopy(d.state_dict())]
    start = [p.detach().double().clone() for p in [*g.parameters(), *d.parameters()]]
    torch.manual_seed(1)
    x, y = torch.rand(1, 3, size, size) * 2 - 1, torch.rand(1, 3, size, size) * 2 - 1

    def run_textbook(dtype: torch.dtype) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        tg, td = copy.deepcopy(g).to(dtype), copy.deepcopy(d).to(dtype)
        opt_g = torch.optim.Adam(tg.parameters(), lr=2e-4, betas=(0.5, 0.999))
        opt_d = torch.optim.Adam(td.parameters(), lr=2e-4, betas=(0.5, 0.999))
        for step in range(steps):
            torch.manual_seed(100 + step)  # the same dropout masks in every run (they do not depend on the dtype)
            textbook_step(tg, td, opt_g, opt_d, x.to(dtype), y.to(dtype))
            if step == 0:
                gradient = [p.grad.double().clone() for p in tg.parameters()]
        return [p.detach().double() for p in [*tg.parameters(), *td.parameters()]], gradient

    (truth, truth_gradient), (rounded, rounded_gradient) = run_textbook(torch.float64), run_textbook(torch.float32)
    width = {"base_channels": base_channels}
    # The textbook follows the paper's dropout (first three decoder layers); the zoo's facades model the reference's.
    generator = {**width, "dropout_layout": "paper"}
    with tempfile.TemporaryDirectory() as out:
        networks = {"generator_args": generator, "discriminator_args": width}
        config = TrainConfig(model="pix2pix-facades", model_args={**networks, **(model_args or {})},
                             amp=amp, workers=0, out=out)  # fmt: skip
        trainer = Trainer(config, train_data=SyntheticFacades(1, 16))
        ours = trainer.model
        for state, mine in zip(initial, (ours.generator, ours.discriminator)):
            if [v.shape for v in state.values()] != [v.shape for v in mine.state_dict().values()]:
                raise SystemExit("the textbook's and imgtrans's networks differ in their parameter layout")
            mine.load_state_dict(dict(zip(mine.state_dict(), state.values())))
        for step in range(steps):
            torch.manual_seed(100 + step)
            trainer.train_step({"input": x, "target": y})
            if step == 0:
                gradient = [p.grad.double().clone() for p in ours.generator.parameters()]
    mine = [p.detach() for p in [*ours.generator.parameters(), *ours.discriminator.parameters()]]
    textbook_error, imgtrans_error = relative_error(rounded, truth, start), relative_error(mine, truth, start)
    distance = relative_error(mine, rounded, start)
    return {"steps": steps, "base_channels": base_channels, "size": size, "amp": amp,
            "textbook_fp32_error": textbook_error, "imgtrans_error": imgtrans_error,
            "imgtrans_vs_textbook_fp32": distance, "ratio": distance / textbook_error,
            "first_gradient_textbook_fp32_error": gradient_error(rounded_gradient, truth_gradient),
            "first_gradient_imgtrans_error": gradient_error(gradient, truth_gradient)}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--base-channels", type=int, default=64)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--amp", default="fp32")
    a = p.parse_args()
    print(json.dumps(compare(a.steps, a.base_channels, a.size, a.amp)))


if __name__ == "__main__":
    main()
