"""docs/cookbook.md runs as written: its blocks, in page order, in one empty folder.

Each Python block runs in a fresh interpreter (so each imports what it uses, as a reader pasting
it would need), each command of a bash block through the ``imgtrans`` command line. A block's
test first runs the blocks before it that have not run yet, so any one of them can be selected
alone (``-k``). ``imgtrans app`` serves until stopped: its test opens the address it prints,
reads the page, and stops it with Ctrl-C (SIGINT), as the page says.
"""

from __future__ import annotations

import ast
import math
import os
import re
import shlex
import signal
import subprocess
import sys
import urllib.request
from importlib.util import find_spec
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow  # five recipes with two ONNX exports and a training: a minute or more

PAGE = ROOT / "docs" / "cookbook.md"
BLOCKS = re.findall(r"```(python|bash)\n(.*?)```", PAGE.read_text(encoding="utf-8"), flags=re.DOTALL)
ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
    "HF_HUB_OFFLINE": "1",
    "OMP_NUM_THREADS": "2",
}
TIMEOUT = 300


def commands(block: str) -> list[list[str]]:
    """The command lines of a bash block, comments stripped, each split as the shell would."""
    lines = block.replace("\\\n", " ").splitlines()  # a backslash continues a command on the next line
    return [shlex.split(line, comments=True) for line in lines if shlex.split(line, comments=True)]


def run_python(code: str, where: Path, index: int) -> str:
    done = subprocess.run([sys.executable, "-c", code], check=False, cwd=where, env=ENV, capture_output=True, text=True,
                          timeout=TIMEOUT)  # fmt: skip
    assert done.returncode == 0, f"cookbook block {index} failed:\n{done.stdout}\n{done.stderr[-3000:]}"
    return done.stdout


def run_app(arguments: list[str], where: Path) -> str:
    """Start ``imgtrans app``, read the page at the address it prints, stop it with SIGINT."""
    server = subprocess.Popen([sys.executable, "-m", "imgtrans", *arguments], cwd=where, env=ENV,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        printed = []
        for line in server.stdout:
            printed.append(line)
            if match := re.match(r"open (http://\S+)", line):
                break
        else:
            pytest.fail(f"imgtrans app stopped before printing its address:\n{''.join(printed)}")
        with urllib.request.urlopen(match.group(1), timeout=30) as response:
            assert response.status == 200
            assert "<html" in response.read().decode("utf-8").lower()
        server.send_signal(signal.SIGINT)
        rest, _ = server.communicate(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    assert server.returncode == 0, "".join(printed) + rest
    assert "stopped" in rest
    return "".join(printed) + rest


def run_bash(block: str, where: Path, index: int) -> str:
    out = []
    for arguments in commands(block):
        assert arguments[0] == "imgtrans", f"cookbook block {index}: {arguments[0]} is not the imgtrans command"
        if arguments[1] == "app":
            out.append(run_app(arguments[1:], where))
            continue
        done = subprocess.run([sys.executable, "-m", "imgtrans", *arguments[1:]], check=False, cwd=where, env=ENV,
                              capture_output=True, text=True, timeout=TIMEOUT)  # fmt: skip
        assert done.returncode == 0, f"cookbook block {index}: {shlex.join(arguments)} failed:\n{done.stderr[-3000:]}"
        out.append(done.stdout)
    return "".join(out)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """The empty folder the page runs in, and the outputs of the blocks run so far."""
    return tmp_path_factory.mktemp("cookbook"), {}


def run_through(index: int, workspace) -> str:
    where, outputs = workspace
    for i in range(index + 1):
        if i not in outputs:
            language, code = BLOCKS[i]
            if "onnx" in code and find_spec("onnxruntime") is None:
                pytest.skip('ONNX recipes need pip install "imgtrans[onnx]"')
            outputs[i] = run_python(code, where, i) if language == "python" else run_bash(code, where, i)
    return outputs[index]


def block_index(needle: str) -> int:
    return next(i for i, (_, code) in enumerate(BLOCKS) if needle in code)


def test_the_page_has_the_recipes():
    assert len(BLOCKS) >= 7
    for needle in ("imgtrans.load(", "imgtrans.save_pretrained(", "PatchDiscriminator(", "gan_mode=",
                   "imgtrans export", "imgtrans app", "onnxruntime.InferenceSession"):  # fmt: skip
        assert any(needle in code for _, code in BLOCKS), needle


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_cookbook_block_runs(index, workspace):
    run_through(index, workspace)


def test_the_translations_are_images_of_the_input_size(workspace):
    where, _ = workspace
    run_through(len(BLOCKS) - 1, workspace)
    size = Image.open(where / "labels.png").size
    assert size == (64, 64)
    for name in ("photo.png", "photo-onnx.png", "translated/labels.png", "translated-onnx/labels.png"):
        with Image.open(where / name) as image:
            assert image.size == size and image.mode == "RGB", name


def test_the_round_trip_and_the_export_report(workspace):
    assert "same output after a round trip: True" in run_through(block_index("imgtrans.save_pretrained("), workspace)
    exported = run_through(block_index("export_onnx("), workspace)
    errors = re.search(r"largest difference from PyTorch: (\{.*\})", exported).group(1)
    assert errors != "{}" and all(float(e) <= 1e-4 for e in re.findall(r": ([0-9.e-]+)", errors))
    assert "onnxruntime fp32 (1, 3, 64, 64)" in exported


def test_the_own_loop_and_the_swapped_loss_train(workspace):
    loop = run_through(block_index("PatchDiscriminator("), workspace)
    assert len(re.findall(r"^D \d+\.\d+  G \d+\.\d+$", loop, flags=re.MULTILINE)) == 2  # 8 images, batches of 4
    swapped = run_through(block_index("edge-l1"), workspace)
    losses = ast.literal_eval(re.search(r"\{.*\}", swapped).group(0))
    assert set(losses) == {"loss", "l1", "gan", "perceptual"} and all(math.isfinite(v) for v in losses.values())
    weighted = losses["gan"] + 10 * losses["l1"] + 5 * losses["perceptual"]
    assert losses["loss"] == pytest.approx(weighted, abs=1e-2)  # each printed to 3 decimals
