"""``imgtrans train`` as a user types it: no --direction, no --out, validation data, its help and warnings."""

import argparse
import json
import re
from pathlib import Path

import pytest

from imgtrans.cli import build_parser, main
from imgtrans.data import SyntheticFacades, write_ab_folder
from imgtrans.store.checkpoint import load_checkpoint
from imgtrans.train import TrainConfig, Trainer

from conftest import TINY_MODEL


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_ab_folder(SyntheticFacades(4, 36, seed=0), tmp_path_factory.mktemp("cli") / "train")


def tiny(*argv: str) -> list[str]:
    return [*argv, "--model-args", json.dumps(TINY_MODEL), "--load-size", "36", "--crop-size", "32", "--batch-size",
            "2", "--workers", "0", "--sample-every", "0", "--max-steps", "2"]  # fmt: skip


def lines(text: str) -> list[str]:
    """What a command printed, progress bars aside."""
    bar = re.compile(r"\d+/\d+ \[|^\s*0%\|")
    return [line for line in text.replace("\r", "\n").splitlines() if line.strip() and not bar.search(line)]


# --------------------------------------------------------------------------------- the direction
CONFIGURATIONS = [("pix2pix-facades", "BtoA", "right"), ("pix2pix-sat2map", "AtoB", "left")]


@pytest.mark.parametrize("config, direction, half", CONFIGURATIONS)
def test_train_with_validation_data_and_no_direction_uses_and_records_the_configurations(
    tmp_path, data, capsys, config, direction, half
):
    run = tmp_path / "run"
    assert main(tiny("train", config, "--data", str(data), "--val-data", str(data), "--out", str(run))) == 0
    out = capsys.readouterr().out
    assert f"({direction}," in out and "best:" in out  # validated, in the configuration's direction
    meta = load_checkpoint(run / "checkpoints" / "last.safetensors").meta
    assert meta["model"]["direction"] == direction and meta["train_config"]["direction"] == direction
    assert json.loads((run / "best" / "best.json").read_text())["step"] in (1, 2)

    assert main(["eval", str(run), "--data", str(data), "--out", str(tmp_path / "eval"), "--modes", "eval"]) == 0
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["info"]["direction"] == direction
    image = str(data / "1.png")
    assert main(["translate", str(run), image, "--split", "input", "--out", str(tmp_path / "input")]) == 0
    assert main(["translate", str(run), image, "--split", half, "--out", str(tmp_path / "half")]) == 0
    assert (tmp_path / "input" / "1.png").read_bytes() == (tmp_path / "half" / "1.png").read_bytes()


def test_validation_with_a_configuration_without_a_direction_asks_for_the_flag_in_one_line(tmp_path, data, capsys):
    argv = tiny("train", "pix2pix-l1", "--data", str(data), "--val-data", str(data), "--out", str(tmp_path / "run"))
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert lines(err) == [
        "imgtrans train: error: --direction is needed: pix2pix-l1 is not made for one dataset, so say which half of "
        "the AB images is the input: AtoB or BtoA (facades labels -> photo is BtoA)"
    ], err
    assert not (tmp_path / "run").exists()


def test_in_python_a_validation_folder_needs_a_direction_too(tmp_path, data):
    settings = TrainConfig(model="pix2pix-l1", model_args={k: v for k, v in TINY_MODEL.items() if "discr" not in k},
                           val_data=str(data), out=str(tmp_path / "run"), workers=0, crop_size=32)  # fmt: skip
    with pytest.raises(ValueError, match=r"^direction is needed: pix2pix-l1"):
        Trainer(settings, train_data=SyntheticFacades(2, 32))
    trainer = Trainer(settings, train_data=SyntheticFacades(2, 32), val_data=SyntheticFacades(2, 32))
    assert trainer.direction is None  # datasets given: nothing to read in a direction


def test_a_bad_direction_is_named_in_the_words_of_each_interface(tmp_path):
    with pytest.raises(ValueError, match=r"^direction must be AtoB or BtoA; got 'atob'"):
        TrainConfig(direction="atob")
    from imgtrans.data.paired import PairedImageDataset
    from imgtrans.store.config import ModelConfig

    with pytest.raises(ValueError, match=r"^direction must be AtoB or BtoA; got 'up'"):
        PairedImageDataset(tmp_path, direction="up")
    with pytest.raises(ValueError, match=r"^x.json: direction must be AtoB or BtoA; got 'up'"):
        ModelConfig.from_dict({"name": "pix2pix-facades", "direction": "up"}, "x.json")


# ------------------------------------------------------------------------------------ the run folder
def test_without_out_train_and_resume_use_the_run_folder_the_help_shows(tmp_path, data, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    help_text = " ".join(train_help().split())
    assert "by default runs/MODEL" in help_text and TrainConfig(model="pix2pix-sat2map").out == "runs/pix2pix-sat2map"
    assert main(tiny("train", "pix2pix-facades", "--data", str(data))) == 0
    assert load_checkpoint(tmp_path / "runs" / "pix2pix-facades" / "checkpoints" / "last.safetensors").meta["step"] == 2
    assert main(["train", "--resume", "--max-steps", "3"]) == 0  # neither CONFIG nor --out: the run above
    assert load_checkpoint(tmp_path / "runs" / "pix2pix-facades" / "checkpoints" / "last.safetensors").meta["step"] == 3
    assert main(["train", "pix2pix-facades", "--resume", "--max-steps", "4"]) == 0  # CONFIG alone: the same folder
    assert load_checkpoint(tmp_path / "runs" / "pix2pix-facades" / "checkpoints" / "last.safetensors").meta["step"] == 4

    assert main(tiny("train", "pix2pix-sat2map", "--data", str(data))) == 0  # a second run: resume must be told which
    capsys.readouterr()
    assert main(["train", "--resume", "--max-steps", "5"]) == 2
    assert lines(capsys.readouterr().err) == [
        "imgtrans train: error: runs/ holds 2 runs (pix2pix-facades, pix2pix-sat2map); say which to resume: "
        "imgtrans train CONFIG --resume, or --resume --out FOLDER"
    ]


# ------------------------------------------------------------------------------ help and warnings
def train_help() -> str:
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return commands.choices["train"].format_help()


def train_options() -> dict[str, str]:
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    train = commands.choices["train"]
    return {a.option_strings[-1]: a.help for a in train._actions if a.option_strings and a.dest != "help"}


def test_every_train_option_says_what_it_does_without_stray_brackets():
    options = train_options()
    assert len(options) > 30
    for flag, text in options.items():
        assert text and len(text) > 10, flag
        assert text.count("[") == text.count("]") and text.count("(") == text.count(")"), (flag, text)
        assert "``" not in text and "None" not in text, (flag, text)
    negated = [flag for flag in options if flag.startswith("--no-")]
    assert sorted(negated) == ["--no-check-pairs", "--no-flip"]
    assert options["--no-flip"] == "turn off (on by default): random horizontal mirroring"
    assert options["--data"].count("NAME[/SPLIT]") == 1
    assert options["--log-to"].startswith("where to log besides log.jsonl: tensorboard")
    assert options["--betas"].endswith("(default 0.5 0.999)")


def test_fp16_on_the_cpu_is_one_warning_line_in_the_flags_words(tmp_path, data, capsys):
    argv = tiny("train", "pix2pix-facades", "--data", str(data), "--out", str(tmp_path / "run"), "--amp", "fp16",
                "--device", "cpu")  # fmt: skip
    assert main([*argv[:-1], "1"]) == 0
    err = capsys.readouterr().err
    warned = [line for line in lines(err) if "warning" in line]
    assert warned == [
        "imgtrans train: warning: fp16 autocast on the CPU is for checking the fp16 code path (gradient scaler "
        "included); it is not faster than fp32 here. Use --amp bf16 on a CPU with native bfloat16"
    ], err
    assert ".py:" not in err and "UserWarning" not in err
