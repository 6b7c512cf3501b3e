"""``imgtrans demo``: pix2pix trained on the embedded synthetic facades, on the CPU, no download.

Labels -> photo, as the paper's facades task: the model learns to paint brick courses, window
frames and glass, wooden doors and railings from flat label maps. It writes a before/after grid
(input | untrained output | trained output | target) on held-out images, the translations of
those images, and the run folder (checkpoint, log, samples, exported model).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from imgtrans.cli.common import count
from imgtrans.data import SyntheticFacades
from imgtrans.train import TrainConfig, Trainer
from imgtrans.train.run import RunExistsError
from imgtrans.images import save_image
from imgtrans.train.samples import image_grid

# A pix2pix-facades model scaled to 128x128 images and a two-minute CPU budget.
DEMO_MODEL = {
    "generator": "unet128",
    "generator_args": {"base_channels": 32},
    "discriminator_args": {"base_channels": 32},
}


def add_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("demo", help="train pix2pix on embedded synthetic facades (CPU, ~2 minutes)")
    p.add_argument("--out", default="demo", help="output folder (default ./demo)")
    p.add_argument("--steps", type=count(1), default=450, help="training steps of batch 4 (default 450)")
    p.add_argument("--size", type=count(16), default=128, help="image side (default 128)")
    p.add_argument("--overwrite", action="store_true", help="replace the demo run --out holds")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    train = SyntheticFacades(num_images=400, size=args.size, seed=0)
    test = SyntheticFacades(num_images=8, size=args.size, seed=1)
    config = TrainConfig(
        model="pix2pix-facades",
        model_args=DEMO_MODEL,
        out=str(out / "run"),
        epochs=args.steps,  # max_steps ends the run; the rate stays constant
        epochs_decay=0,
        batch_size=4,
        load_size=None,
        crop_size=None,
        device=args.device,
        workers=0,
        log_every=20,
        sample_every=0,
        checkpoint_every=0,
        max_steps=args.steps,
    )
    trainer = Trainer(config, train_data=train, sample_data=test)
    x = torch.stack([test[i]["input"] for i in range(len(test))])
    y = torch.stack([test[i]["target"] for i in range(len(test))])
    before = trainer.model.translate(x.to(trainer.device)).cpu()
    print(f"imgtrans demo: training pix2pix (labels -> photo) on synthetic facades, {args.steps} steps on {trainer.device}")
    start = time.perf_counter()
    try:
        summary = trainer.fit(overwrite=args.overwrite)
    except RunExistsError:
        raise FileExistsError(f"{out} already holds a demo run: replace it with --overwrite, or use another --out") from None
    minutes = (time.perf_counter() - start) / 60
    after = trainer.model.translate(x.to(trainer.device)).cpu()
    grid = save_image(image_grid([x[:4], before[:4], after[:4], y[:4]]), out / "before_after.png")
    for i, image in enumerate(after):
        save_image(image, out / "translations" / f"{i + 1}.png")
    l1_before, l1_after = (before - y).abs().mean().item(), (after - y).abs().mean().item()
    print(f"trained {summary.steps} steps in {minutes:.1f} min; held-out L1 {l1_before:.3f} -> {l1_after:.3f}")
    print(f"before/after grid (input | untrained | trained | target): {grid}")
    print(f"translations of {len(after)} held-out label maps:          {out / 'translations'}")
    print(f"run (checkpoint, log, samples, model):                   {summary.out}")
    return 130 if summary.interrupted else 0
