"""Each command as a first-time user types it: bare, then with only its required arguments.

In an empty folder, offline (HF_HUB_OFFLINE, an empty cache), nothing downloaded yet: every command
either succeeds, printing something, or exits non-zero with ONE line on stderr that names the
command and says what to do. Never a traceback.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# (the words after `imgtrans`, what a user then sees: "ok" or a phrase of the one error line)
FIRST_TRIES = [
    ([], "arguments are required: COMMAND"),
    (["train"], "name a pix2pix configuration"),
    (["train", "pix2pix-facades"], "--data is required"),
    (["translate"], "arguments are required: model, inputs, --out"),
    (["translate", "pix2pix-facades", "photo.jpg", "--out", "translated"], "offline"),  # the model loads first
    (["eval"], "arguments are required"),
    (["eval", "pix2pix-facades", "--data", "facades/test"], "imgtrans data download facades"),
    (["export"], "arguments are required"),
    (["export", "pix2pix-facades", "--out", "facades.onnx"], "offline"),
    (["convert"], "arguments are required"),
    (["convert", "latest_net_G.pth", "my-model", "--arch", "unet256"], "latest_net_G.pth"),
    (["app"], "arguments are required: model"),
    (["app", "pix2pix-facades"], "offline"),
    (["data"], "arguments are required: ACTION"),
    (["data", "list"], "ok"),
    (["data", "download"], "arguments are required"),
    (["zoo"], "arguments are required: ACTION"),
    (["zoo", "list"], "ok"),
    (["zoo", "info"], "arguments are required"),
    (["zoo", "download"], "arguments are required"),
    (["models"], "ok"),
    (["demo", "--help"], "ok"),
    (["--help"], "ok"),
]


@pytest.mark.parametrize("words, outcome", FIRST_TRIES, ids=[" ".join(["imgtrans", *w]) for w, _ in FIRST_TRIES])
def test_a_first_try_is_a_result_or_one_line(words, outcome, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HOME": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1",
           "OMP_NUM_THREADS": "1", "HOME": str(tmp_path)}  # fmt: skip
    result = subprocess.run([sys.executable, "-m", "imgtrans", *words], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=300)  # fmt: skip
    assert "Traceback" not in result.stderr, result.stderr
    if outcome == "ok":
        assert result.returncode == 0 and result.stdout.strip(), result.stderr
        return
    lines = [line for line in result.stderr.replace("\r", "\n").splitlines() if line.strip()]
    command = " ".join(["imgtrans", *words[:1]])  # the command, and its action (imgtrans data download: ...)
    assert result.returncode != 0 and len(lines) == 1, result.stderr
    assert lines[0].startswith(command) and ": error: " in lines[0] and outcome in lines[0], lines[0]
    assert not any(tmp_path.glob("*.onnx")) and not (tmp_path / "translated").exists()  # a refusal writes nothing
