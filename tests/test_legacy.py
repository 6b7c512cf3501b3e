"""Files written by imgtrans 0.1.0 (commit 2f4a115) still load, with the same weights and outputs."""

from pathlib import Path

import torch
from safetensors.torch import load_file

from imgtrans.store.factory import load as load_model

FIXTURE = Path(__file__).parent / "fixtures" / "v0_1_0"


def same_output(actual: torch.Tensor, expected: torch.Tensor) -> None:
    # The weights are checked bit for bit; outputs to float rounding, since inference now computes the
    # decoder's transposed convolutions with other (equal) kernels than 0.1.0 did: 4e-9 apart at outputs of 0.03.
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-7)


def test_a_saved_folder_of_0_1_0_loads_with_its_outputs():
    expected = load_file(str(FIXTURE / "outputs.safetensors"))
    model = load_model(FIXTURE / "saved")
    state = model.state_dict()
    written = load_file(str(FIXTURE / "saved" / "model.safetensors"))
    assert written.keys() == state.keys() and all(state[k].equal(v) for k, v in written.items())
    same_output(model.translate(expected["input"]), expected["saved_output"])


def test_a_training_checkpoint_of_0_1_0_loads_with_its_outputs():
    expected = load_file(str(FIXTURE / "outputs.safetensors"))
    model = load_model(FIXTURE / "last.safetensors")
    state = model.state_dict()
    written = {k.removeprefix("model."): v for k, v in load_file(str(FIXTURE / "last.safetensors")).items()
               if k.startswith("model.")}  # fmt: skip
    assert written.keys() == state.keys() and all(state[k].equal(v) for k, v in written.items())
    same_output(model.translate(expected["input"]), expected["checkpoint_output"])
