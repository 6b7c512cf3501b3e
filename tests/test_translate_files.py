"""translate and eval as a user types them: the user's files are never replaced, nothing silently wrong."""

import errno
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgtrans.cli import main

from conftest import TINY_MODEL


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    """A tiny facades model folder (BtoA), saved once."""
    import imgtrans
    import torch

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("model") / "tiny-facades"
    imgtrans.save_pretrained(imgtrans.build("pix2pix-facades", **TINY_MODEL).eval(), folder)
    return folder


def picture(path: Path, size=(24, 20), value: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(value)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


def contents(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


@pytest.mark.parametrize("layout", [["a.png", "b.png"], ["a.jpg", "a.png"], ["a.png", "a.jpeg", "c.bmp"]])
def test_out_equal_to_the_input_folder_never_replaces_an_input(model, tmp_path, layout, capsys):
    pics = tmp_path / "pics"
    for k, name in enumerate(layout):
        picture(pics / name, value=k)
    before = contents(pics)
    for argv in (["translate", str(model), str(pics), "--out", str(pics)],
                 ["translate", str(model), str(pics), "--out", str(pics), "--overwrite"],
                 ["translate", str(model), str(pics / layout[0]), "--out", str(pics)]):  # fmt: skip
        assert main(argv) == 2
        assert f"--out {pics} is the folder of the input" in one_line_error(capsys)
        assert contents(pics) == before


def test_an_output_that_would_be_an_input_is_refused_even_in_mirrored_folders(model, tmp_path, capsys):
    # x/i.png and y/i.png into --out ROOT would mirror to ROOT/x/i.png: the input itself
    picture(tmp_path / "x" / "i.png", value=1)
    picture(tmp_path / "y" / "i.png", value=2)
    before = contents(tmp_path)
    assert main(["translate", str(model), str(tmp_path / "x"), str(tmp_path / "y"), "--out", str(tmp_path)]) == 2
    assert "would replace the input" in one_line_error(capsys)
    assert contents(tmp_path) == before


def test_an_existing_output_is_replaced_only_with_overwrite(model, tmp_path, capsys):
    picture(tmp_path / "in" / "a.png")
    picture(tmp_path / "in" / "b.png", value=1)
    out = tmp_path / "out"
    out.mkdir()
    (out / "b.png").write_bytes(b"the user's own file")
    argv = ["translate", str(model), str(tmp_path / "in"), "--out", str(out)]
    assert main(argv) == 2
    err = one_line_error(capsys)
    assert "1 of the 2 output file(s) exist already" in err and "add --overwrite to replace them" in err
    assert sorted(p.name for p in out.iterdir()) == ["b.png"]  # refused before anything was written
    assert (out / "b.png").read_bytes() == b"the user's own file"
    assert main(argv) == 2  # a second run: still refused
    one_line_error(capsys)
    assert main(argv + ["--overwrite"]) == 0
    assert Image.open(out / "b.png").size == (24, 20) and (out / "a.png").is_file()
    assert main(argv) == 2  # the outputs of a first run are not replaced by a second either
    assert "2 of the 2 output file(s) exist already" in one_line_error(capsys)


@pytest.mark.parametrize(
    "inputs, expected",
    [
        (["x/i.png", "y/i.png"], {"x/i.png", "y/i.png"}),  # two files, different folders
        (["x", "y"], {"x/i.png", "x/j.png", "y/i.png"}),  # two folders sharing a name: mirrored, all of them
        (["x/i.png", "x/i.jpg"], {"i.png.png", "i.jpg.png"}),  # one folder, one stem: the extension is kept
        (["x", "x/i.png"], {"i.png", "j.png"}),  # the same file named twice is translated once
    ],
)
def test_two_inputs_never_share_an_output(model, tmp_path, inputs, expected, capsys):
    picture(tmp_path / "x" / "i.png", value=1)
    picture(tmp_path / "x" / "j.png", value=2)
    picture(tmp_path / "y" / "i.png", value=3)
    if any(name.endswith(".jpg") for name in inputs):
        picture(tmp_path / "x" / "i.jpg", value=4)
    out = tmp_path / "out"
    assert main(["translate", str(model), *(str(tmp_path / name) for name in inputs), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"translated {len(expected)} image(s)" in printed
    assert ("kept apart" in printed) == (expected != {"i.png", "j.png"})
    assert set(contents(out)) == expected
    outputs = list(contents(out).values())
    assert len(set(outputs)) == len(outputs)  # each a translation of its own input


def test_translations_are_written_through_the_atomic_writer(model, tmp_path, monkeypatch):
    import imgtrans.images
    import imgtrans.io

    real, written = imgtrans.io.atomic_write, []

    def spy(path, data, **options):
        written.append(Path(path))
        return real(path, data, **options)

    for module in (imgtrans.io, imgtrans.images):  # images are saved by imgtrans.images, through io's writer
        monkeypatch.setattr(module, "atomic_write", spy)
    picture(tmp_path / "in" / "a.png")
    picture(tmp_path / "in" / "big.png", size=(150, 70))  # tiled: saved from pixels
    argv = ["translate", str(model), str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--tile", "64",
            "--overlap", "16"]  # fmt: skip
    assert main(argv) == 0
    assert sorted(written) == [tmp_path / "out" / "a.png", tmp_path / "out" / "big.png"]


@pytest.mark.skipif(len(__import__("imgtrans.io").io.temporary_path(Path("n" * 250)).name) > 255,
                    reason="the atomic writer's temporary name exceeds 255 characters (its fix is in imgtrans.io)")
def test_a_250_character_image_name_translates(model, tmp_path):
    source = picture(tmp_path / "in" / ("n" * 246 + ".png"))
    assert main(["translate", str(model), str(source), "--out", str(tmp_path / "out")]) == 0
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["n" * 246 + ".png"]


@pytest.mark.parametrize("fail_at", [0, 2])
def test_a_full_disk_is_one_line_saying_what_was_written(model, tmp_path, monkeypatch, fail_at, capsys):
    import imgtrans.cli.translate as command

    for k in range(4):
        picture(tmp_path / "in" / f"{k}.png", value=k)
    real, calls = command.save_image, []

    def save_image(image, path):
        calls.append(path)
        if len(calls) > fail_at:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(image, path)

    monkeypatch.setattr(command, "save_image", save_image)
    out = tmp_path / "out"
    assert main(["translate", str(model), str(tmp_path / "in"), "--out", str(out), "--batch-size", "1"]) == 2
    err = one_line_error(capsys)
    assert f"the disk is full: wrote {fail_at} of 4 translation(s) into {out}" in err
    assert f"{calls[-1]} was not written" in err
    written = sorted(p.name for p in out.iterdir()) if out.exists() else []
    assert written == [f"{k}.png" for k in range(fail_at)]  # whole files, no temporaries


def test_pair_like_inputs_without_split_warn_naming_split(model, tmp_path, capsys):
    for k, size in enumerate([(64, 32), (100, 52)]):
        picture(tmp_path / "ab" / f"{k}.png", size=size, value=k)
    assert main(["translate", str(model), str(tmp_path / "ab"), "--out", str(tmp_path / "o")]) == 0
    err = capsys.readouterr().err
    assert "2 of the 2 input(s)" in err and "--split input" in err
    picture(tmp_path / "square.png", size=(32, 32))
    assert main(["translate", str(model), str(tmp_path / "square.png"), "--out", str(tmp_path / "s")]) == 0
    assert "--split" not in capsys.readouterr().err


@pytest.mark.parametrize("size, message", [((32, 32), "does not look like two images side by side"),
                                           ((20, 60), "does not look like two images side by side"),
                                           ((1, 40), "is 1 pixel(s) wide")])  # fmt: skip
def test_split_on_images_that_are_not_pairs_is_refused(model, tmp_path, size, message, capsys):
    source = picture(tmp_path / "one.png", size=size)
    argv = ["translate", str(model), str(source), "--split", "input", "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    assert message in one_line_error(capsys)
    assert not (tmp_path / "o").exists()
    if size[0] > 1:  # the user who knows better
        assert main(argv + ["--no-check-pairs"]) == 0


@pytest.mark.parametrize("command", ["translate", "eval"])
def test_a_direction_that_contradicts_the_model_is_a_warning(model, tmp_path, command, capsys):
    from imgtrans.data import SyntheticFacades, write_ab_folder

    data = write_ab_folder(SyntheticFacades(2, 32, seed=1), tmp_path / "test")
    if command == "translate":
        argv = ["translate", str(model), str(data), "--split", "input", "--out", str(tmp_path / "o")]
    else:
        argv = ["eval", str(model), "--data", str(data), "--out", str(tmp_path / "o"), "--modes", "eval"]
    assert main(argv + ["--direction", "AtoB"]) == 0  # the model records BtoA
    assert "--direction AtoB contradicts the model, which records BtoA" in capsys.readouterr().err
    argv[argv.index("--out") + 1] = str(tmp_path / "p")
    assert main(argv + ["--direction", "BtoA"]) == 0
    assert "contradicts" not in capsys.readouterr().err


def test_a_second_eval_never_replaces_an_earlier_report(model, tmp_path, monkeypatch, capsys):
    from imgtrans.data import SyntheticFacades, write_ab_folder

    data = write_ab_folder(SyntheticFacades(3, 32, seed=2), tmp_path / "facades" / "test")
    monkeypatch.chdir(tmp_path)
    argv = ["eval", str(model), "--data", str(data), "--modes", "eval"]
    assert main(argv) == 0
    report = tmp_path / "eval-tiny-facades-facades-test"  # the default names the model and the data
    first = contents(report)
    assert "metrics.json" in first and len([k for k in first if k.startswith("images/")]) == 9
    assert main(argv) == 2
    assert f"--out {report.name} holds an earlier report; add --overwrite" in one_line_error(capsys)
    assert contents(report) == first
    # a smaller evaluation over it: none of the first report's images stay behind
    assert main(argv + ["--overwrite", "--limit", "1"]) == 0
    second = contents(report)
    assert len([k for k in second if k.startswith("images/")]) == 3
    assert json.loads(second["metrics.json"])["info"]["images"] == 1
    # a folder of the user's own files is never a report's to replace
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    assert main(argv + ["--out", "mine", "--overwrite"]) == 2
    assert "holds files that are not an evaluation report's (e.g. notes.txt)" in one_line_error(capsys)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "mine"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary folder left


def test_the_python_evaluation_refuses_an_earlier_report_in_its_own_words(model, tmp_path):
    import imgtrans
    from imgtrans.data import PairedImageDataset, SyntheticFacades, write_ab_folder
    from imgtrans.metrics.scoring import evaluate_model

    data = write_ab_folder(SyntheticFacades(2, 32, seed=2), tmp_path / "test")
    dataset = PairedImageDataset(data, "BtoA", load_size=None, crop_size=None, train=False)
    evaluate_model(imgtrans.load(model), dataset, tmp_path / "r", modes=["eval"])
    with pytest.raises(FileExistsError, match="pass overwrite=True to replace it"):
        evaluate_model(imgtrans.load(model), dataset, tmp_path / "r", modes=["eval"])
    evaluate_model(imgtrans.load(model), dataset, tmp_path / "r", modes=["eval"], overwrite=True)


def test_the_smallest_tile_follows_the_generators_padding_multiple(tmp_path, capsys):
    import imgtrans

    deep = {**TINY_MODEL, "generator_args": {"base_channels": 4, "num_downs": 7}}  # pads to multiples of 128
    imgtrans.save_pretrained(imgtrans.build("pix2pix-facades", **deep), tmp_path / "deep")
    source = picture(tmp_path / "a.png", size=(300, 200))
    argv = ["translate", str(tmp_path / "deep"), str(source), "--out", str(tmp_path / "o"), "--overlap", "16"]
    assert main(argv + ["--tile", "96"]) == 2
    err = one_line_error(capsys)
    assert "--tile must be at least 128 for this model; got 96" in err and "multiple of 128 pixels" in err
    assert not (tmp_path / "o").exists()
    assert main(argv + ["--tile", "128"]) == 0
    assert Image.open(tmp_path / "o" / "a.png").size == (300, 200)


@pytest.mark.parametrize("out", ["a-file.txt", "in/a.png"])
def test_an_out_that_is_a_file_is_refused_before_anything_is_written(model, tmp_path, out, capsys):
    source = picture(tmp_path / "in" / "a.png")
    (tmp_path / "a-file.txt").write_text("mine")
    before = contents(tmp_path)
    assert main(["translate", str(model), str(source), "--out", str(tmp_path / out)]) == 2
    assert "is a file; give a folder" in one_line_error(capsys)
    assert contents(tmp_path) == before
