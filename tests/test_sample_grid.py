"""Sample grids: the model says what its rows are (CycleGAN: the reference's visuals); pix2pix keeps its own."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import imgtrans
from imgtrans.data import SyntheticFacades, write_unpaired_folder
from imgtrans.train import TrainConfig, Trainer
from imgtrans.train.samples import rows_grid, write_samples

from conftest import TINY_MODEL

TINY_CYCLE = {"generator_args": {"base_channels": 4, "n_blocks": 1}, "discriminator_args": {"base_channels": 4}}
SIDE, BORDER = 16, 2
STEP = 1 / 127.5 + 1e-6  # a PNG holds 8 bits: [-1, 1] in steps of 2/255, rounded


def tile(grid: torch.Tensor, line: int, column: int) -> torch.Tensor:
    """The image at ``line``, ``column`` of a saved grid of SIDE x SIDE tiles."""
    y, x = line * (SIDE + 2 * BORDER) + BORDER, column * (SIDE + 2 * BORDER) + BORDER
    return grid[:, y : y + SIDE, x : x + SIDE]


def saved_grid(path: Path) -> torch.Tensor:
    return torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1).float() / 127.5 - 1


def rgb(image: torch.Tensor) -> torch.Tensor:
    return image.expand(3, -1, -1) if image.shape[0] == 1 else image


def items(n: int, a_channels: int = 3, b_channels: int = 3) -> list[dict]:
    return [{"input": torch.rand(a_channels, SIDE, SIDE) * 2 - 1, "target": torch.rand(b_channels, SIDE, SIDE) * 2 - 1}
            for _ in range(n)]  # fmt: skip


@pytest.mark.parametrize("channels", [(3, 3), (1, 3)])
def test_cyclegan_rows_are_both_translations_and_both_cycles(tmp_path, channels):
    a, b = channels
    model = imgtrans.build("cyclegan", **TINY_CYCLE, in_channels=a, out_channels=b, lambda_identity=0.0)
    data = items(2, a, b)
    path = write_samples(model, data, 2, torch.device("cpu"), torch.autocast("cpu", enabled=False), tmp_path / "s.png")
    grid = saved_grid(path)
    assert grid.shape == (3, 2 * 2 * (SIDE + 2 * BORDER), 3 * (SIDE + 2 * BORDER))  # 2 lines an item, 3 columns
    with torch.no_grad():
        for i, item in enumerate(data):
            real_a, real_b = item["input"][None], item["target"][None]
            fake_b, fake_a = model.generator_a(real_a), model.generator_b(real_b)
            expected = [[real_a, fake_b, model.generator_b(fake_b)], [real_b, fake_a, model.generator_a(fake_a)]]
            for line, row in enumerate(expected):
                for column, image in enumerate(row):
                    torch.testing.assert_close(tile(grid, 2 * i + line, column), rgb(image[0]), atol=STEP, rtol=0)


def test_pix2pix_keeps_input_output_target(tmp_path):
    model = imgtrans.build("pix2pix-facades", **TINY_MODEL).eval()
    data = items(3)
    path = write_samples(model, data, 2, torch.device("cpu"), torch.autocast("cpu", enabled=False), tmp_path / "s.png")
    grid = saved_grid(path)
    assert grid.shape == (3, 2 * (SIDE + 2 * BORDER), 3 * (SIDE + 2 * BORDER))  # one line an item, the first 2 items
    for i, item in enumerate(data[:2]):
        output = imgtrans.inference.translate(model, item["input"][None])[0]
        for column, image in enumerate((item["input"], output, item["target"])):
            torch.testing.assert_close(tile(grid, i, column), image, atol=STEP, rtol=0)


def test_a_cyclegan_run_writes_the_reference_visuals(tmp_path):
    data = write_unpaired_folder(SyntheticFacades(4, 24, seed=0), tmp_path / "data")
    config = TrainConfig(model="cyclegan", model_args=TINY_CYCLE, data=str(data), out=str(tmp_path / "run"),
                         batch_size=1, load_size=26, crop_size=24, workers=0, max_steps=1, num_samples=2,
                         sample_every=0, checkpoint_every=0)  # fmt: skip
    summary = Trainer(config).fit()
    first = Image.open(summary.samples[0])
    assert first.size == (3 * (24 + 2 * BORDER), 2 * 2 * (24 + 2 * BORDER))  # real | fake | rec, for A and for B


def test_rows_of_different_widths_are_refused():
    x = torch.zeros(1, 3, 4, 4)
    with pytest.raises(ValueError, match=r"every row of a sample grid needs the same number of images; got \[2, 3\]"):
        rows_grid([(x, x, x), (x, x)])
