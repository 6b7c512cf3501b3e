"""Files written by imgtrans 0.1.0 (commit 2f4a115) still load and give the same outputs."""

from pathlib import Path

import torch
from safetensors.torch import load_file

from imgtrans.factory import load as load_model

FIXTURE = Path(__file__).parent / "fixtures" / "v0_1_0"


def test_a_saved_folder_of_0_1_0_loads_with_its_outputs():
    expected = load_file(str(FIXTURE / "outputs.safetensors"))
    model = load_model(FIXTURE / "saved")
    assert torch.equal(model.translate(expected["input"]), expected["saved_output"])


def test_a_training_checkpoint_of_0_1_0_loads_with_its_outputs():
    expected = load_file(str(FIXTURE / "outputs.safetensors"))
    model = load_model(FIXTURE / "last.safetensors")
    assert torch.equal(model.translate(expected["input"]), expected["checkpoint_output"])
