"""Every command line README.md and docs/ show runs as written, in a fresh folder, as a user would run it.

Each command of a fenced ``bash`` block (continuation lines joined, comments dropped) and each
complete ``imgtrans ...`` command written inline in prose runs through ``bash`` in its own empty
folder, with ``imgtrans``, ``torchrun`` and ``python`` meaning this checkout. It must exit 0 with
no traceback (or, where the page says the command refuses, exit non-zero with one line).

A test may change a command only in two ways, both listed below with a reason:

- ``ADDITIONS``: options that shorten it (``--max-steps 2``, a tiny model), appended; a ``--model-args``
  the command already gives is merged with the addition's instead (the page's keys stay, the sizes shrink);
- ``SUPPLIES``: the small data and runs the page names (``facades``, ``DIR``, ``runs/facades``,
  ``horse2zebra``, ``runs/cyclegan``, ``datasets/cityscapes``...), made before it runs: tiny synthetic
  facades (``SyntheticFacades``) as AB files or as unpaired ``trainA/``/``trainB/`` folders, tiny
  Cityscapes-style label, instance and image maps, and two-step runs of pix2pix, CycleGAN and pix2pixHD
  (made by tests/docs_supplies.py). ``$HOME`` is a folder of the test whose ``.cache/huggingface`` is
  ``$HF_HOME``, where "downloaded" datasets lie, so that a page's ``~/.cache/huggingface/...`` is found.

What cannot run here (the network, another program's server, minutes of benchmarks) is matched
by ``CANNOT_RUN`` and skipped with its reason; nothing is dropped silently: every inline command
must be classified (``test_every_inline_command_is_classified``).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from docs_supplies import (CYCLEGAN_SHORTER, HD_LOCAL_SHORTER, HD_SHORTER, TRAIN_SHORTER, ab_folder, copy_run,
                           family_checkpoint, hf_home, image_file, int8_model, label_folder, reference_checkpoint,
                           tiny_cyclegan_run, tiny_hd_run, tiny_run, unpaired_folder)  # fmt: skip

ROOT = Path(__file__).resolve().parents[1]
# docs/cookbook.md's commands continue its Python blocks (a run made there, its export): tests/test_cookbook.py
# runs that page's blocks and commands in page order, in one folder.
PAGES = [ROOT / "README.md", *sorted(p for p in (ROOT / "docs").rglob("*.md") if p.name != "cookbook.md")]
OPERATORS = {"|", "&&", "||", ";"}
TIMEOUT = 300


# ---------------------------------------------------------------------------------- the commands
def fenced_commands(page: Path) -> list[str]:
    """The command lines of a page's shell blocks, continuation lines joined, in order."""
    found = []
    for block in re.findall(r"```(?:bash|sh|shell|console)[^\n]*\n(.*?)```", page.read_text(), flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip() and not line.strip().startswith("#"):
                found.append(" ".join(line.split()))
    return found


def inline_commands(page: Path) -> list[str]:
    """``imgtrans ...`` written inline in the prose (outside fenced blocks), table pipes unescaped."""
    prose = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return [c.replace("\\|", "|") for c in re.findall(r"`((?:imgtrans|torchrun) [^`\n]+)`", prose)]


def normalised(command: str) -> list[str]:
    """The command's words: comments dropped, ``[--optional ...]`` synopsis groups dropped."""
    command = re.sub(r"\s\[--[^\]]*\]", "", command)
    return shlex.split(command, comments=True)


def shell_line(words: list[str]) -> str:
    """The words quoted for ``bash``; a leading ``~/`` stays unquoted: the shell expands it, as the page means."""
    return " ".join(w if w in OPERATORS else "~/" + shlex.quote(w[2:]) if w.startswith("~/") else shlex.quote(w)
                    for w in words)  # fmt: skip


# Where it cannot run here: (pattern on the command, reason). Checked in order, before anything runs.
CANNOT_RUN = [
    (r"^pip install", "installs from a package index: the network"),
    (r"python -m pytest", "the test suite itself, which runs this test"),
    # (benchmarks/cyclegan_samples.py is a sample grid of a run, seconds: it runs)
    (r"(^|\s)(python|bash) benchmarks/(?!cyclegan_samples\.py)",
     "a benchmark: minutes of a quiet machine, run by hand for the page's figures"),
    (r"^tensorboard ", "TensorBoard's own server, not imgtrans"),
    (r"^cat /proc/cpuinfo", "a shell query of the CPU, not imgtrans"),
    (r"imgtrans (data|zoo) download (?!cityscapes)", "downloads from the network"),
    (r"imgtrans app pix2pix-facades", "the published weights: downloaded from the network"),
    (r"--inception-weights", "needs the FID Inception weights file (a 92 MB download)"),
    (r"imgtrans eval .*--fid", "FID downloads its Inception weights from the network"),
    (r"imgtrans translate cyclegan-", "the published CycleGAN weights: downloaded from the network"),
]  # fmt: skip

# Options appended to shorten a command: (pattern, options, reason). The first match applies.
ADDITIONS = [
    (r"imgtrans train --resume", ["--max-steps", "3"], "one step more than the supplied run's two"),
    (r"imgtrans train cyclegan ", CYCLEGAN_SHORTER, "two steps of tiny CycleGAN networks on 32-pixel crops"),
    (r"imgtrans train pix2pixhd-enhancer ", HD_LOCAL_SHORTER, "two steps of a tiny enhancer on runs/hd-global"),
    (r"imgtrans train pix2pixhd ", HD_SHORTER, "two steps of a tiny pix2pixHD on 64x32 label maps, not 200 epochs"),
    (r"imgtrans train ", TRAIN_SHORTER, "two steps of a tiny model on 32-pixel crops instead of 200 epochs"),
    (r"imgtrans eval ", ["--limit", "2"], "two images"),
    (r"imgtrans demo", ["--steps", "2", "--size", "32"], "two steps on 32-pixel images instead of 450 at 128"),
    (r"imgtrans app ", ["--port", "0"], "a free port: others may use this machine's 7860 or 8000"),
]


# Commands the page says are refused here: (pattern, condition, message), exit status non-zero with one line.
def _no_native_bf16() -> bool:
    from imgtrans.devices import native_bf16

    return not native_bf16()


REFUSALS = [
    (r"imgtrans translate .*--precision bf16", _no_native_bf16, r"no native bfloat16 arithmetic"),
    (r"imgtrans data download cityscapes", lambda: True, r"cityscapes"),
]

# Commands that fail today for a reason outside the docs (a bug being fixed): (pattern, reason). Strict: once
# the fix is merged the test passes, xfail turns into a failure, and the entry must go.
KNOWN_FAILURES: list[tuple[str, str]] = []

# Inline commands in prose that name a command or a flag rather than give one to run.
INLINE_FRAGMENTS = {
    "imgtrans train --resume": "names the flag; the blocks give it with the run's --out",
    "imgtrans zoo info NAME": "NAME is a placeholder for any published model",
    "imgtrans train": "names the command",
    "imgtrans train cyclegan": "names the configuration; the page's blocks give the full command",
    "imgtrans eval pix2pix-facades --data facades/test": "a first try refused before the download "
    "(docs/reliability.md); tests/test_first_use.py runs it",
}
INLINE_RUN = {
    "imgtrans app runs/pix2pix-facades", "imgtrans app MODEL --threads 1", "imgtrans models", "imgtrans data list",
    "imgtrans models | head", "imgtrans models | head -1", "imgtrans zoo list", "imgtrans models 'unet-*'",
    "imgtrans train --help", "imgtrans models 'pix2pix-*'", "imgtrans data download cityscapes",
    "imgtrans app FOLDER --device cpu", "imgtrans train pix2pix-facades --data facades --out runs/facades",
    "imgtrans app runs/cyclegan --direction BtoA",
}  # fmt: skip


def is_fragment(command: str) -> bool:
    """A command named in prose, not a full command line: one the parser refuses, or an error message."""
    if command in INLINE_FRAGMENTS or "error:" in command or "..." in command:
        return True
    from imgtrans.cli import build_parser

    words = normalised(command)
    words = words[: next((i for i, w in enumerate(words) if w in OPERATORS), len(words))]
    try:
        build_parser().parse_args(words[1:])
    except SystemExit as stop:
        return stop.code != 0
    return False


def all_commands() -> list[tuple[str, str]]:
    found = [(page.relative_to(ROOT).as_posix(), c) for page in PAGES for c in fenced_commands(page)]
    found += [
        (page.relative_to(ROOT).as_posix(), c) for page in PAGES for c in inline_commands(page) if c in INLINE_RUN
    ]
    return list(dict.fromkeys(found))


COMMANDS = all_commands()
SLOW = ("torchrun ", "imgtrans train ", "imgtrans demo", "imgtrans export", "imgtrans eval", "imgtrans app ",
        ".int8.onnx")  # fmt: skip


def test_the_pages_show_commands():
    assert len(COMMANDS) >= 40 and {page for page, _ in COMMANDS} >= {"README.md", "docs/training.md", "docs/app.md"}


def test_every_inline_command_is_classified():
    unclassified = sorted({c for page in PAGES for c in inline_commands(page)
                           if c not in INLINE_RUN and not any(re.search(p, c) for p, _ in CANNOT_RUN)
                           and not is_fragment(c)})  # fmt: skip
    assert not unclassified, f"classify these inline commands (INLINE_RUN or INLINE_FRAGMENTS): {unclassified}"


def test_every_supply_is_named_by_a_page():
    named = {name for name in SUPPLIES for _, c in COMMANDS if names(normalised(c), name)}
    assert named == set(SUPPLIES), f"no page names {sorted(set(SUPPLIES) - named)}: remove them from SUPPLIES"


def test_an_addition_shrinks_the_model_args_a_page_gives_and_keeps_the_pages_keys():
    (command,) = [c for _, c in COMMANDS if c.startswith("imgtrans train pix2pixhd-enhancer ")]
    words = with_additions(normalised(command))
    assert words.count("--model-args") == 1 and words[words.index("--max-steps") + 1] == "2"
    arguments = json.loads(words[words.index("--model-args") + 1])
    assert arguments["global_weights"] == "runs/hd-global/model" and arguments["niter_fix_global"] == 20
    assert arguments["generator_args"]["base_channels"] == 4  # half runs/hd-global's 8: its global part fits
    assert merged({"a": {"b": 1, "c": 2}, "d": 3}, {"a": {"b": 5}, "e": 6}) == {"a": {"b": 5, "c": 2}, "d": 3, "e": 6}


def test_what_a_command_writes_is_not_supplied_and_a_home_path_expands():
    (write,) = [normalised(c) for _, c in COMMANDS if "write_unpaired_folder as w" in c]
    (train,) = [normalised(c) for _, c in COMMANDS if "--data synth" in c]
    assert "synth" in outputs(write) and names(write, "synth") and "synth" not in outputs(train)
    assert "MODEL" in outputs(normalised("python -c \"imgtrans.save_pretrained(imgtrans.load('RUN'), 'MODEL')\""))
    assert shell_line(["ls", "~/a b", "x~/y"]) == "ls ~/'a b' 'x~/y'"  # only a leading ~/ expands


# ------------------------------------------------------------------------------ what pages name
@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """Built once: a "downloaded" tiny facades, a tiny run, a saved model, an int8 ONNX file."""
    return tmp_path_factory.mktemp("supplies")


UNPAIRED_FOLDERS = ("synth",)
AB_FOLDERS = ("DIR", "HELD_OUT", "train/", "val/", "photos/", "labels/", "facades-split/train", "facades-split/val",
              "../shared/data/facades/train", "../shared/data/facades/test")  # fmt: skip
# What a page names, and how the test makes it (the paths are relative to the command's folder).
SUPPLIES = {
    **{name: lambda store, path: ab_folder(path) for name in AB_FOLDERS},
    **{name: lambda store, path: unpaired_folder(path) for name in UNPAIRED_FOLDERS},
    **{name: lambda store, path: image_file(path) for name in ("big.png", "one.png", "horse.jpg", "zebra.jpg")},
    # the page runs it in a checkout: the script, from this one
    "benchmarks/cyclegan_samples.py": lambda store, path: shutil.copytree(ROOT / "benchmarks", path.parent),
    "datasets/cityscapes": lambda store, path: label_folder(path),
    "datasets/cityscapes-1024": lambda store, path: label_folder(path, size=(128, 64)),
    "runs/facades": copy_run,
    "runs/facades/model": lambda store, path: copy_run(store, path.parent),
    "runs/pix2pix-facades": copy_run,
    "RUN": copy_run,
    "runs/cyclegan": lambda store, path: shutil.copytree(tiny_cyclegan_run(store), path),
    "runs/cyclegan/model": lambda store, path: shutil.copytree(tiny_cyclegan_run(store), path.parent),
    "runs/cyclegan/checkpoints/last.safetensors": lambda store, path: shutil.copytree(tiny_cyclegan_run(store),
                                                                                     path.parent.parent),
    "runs/hd-global/model": lambda store, path: shutil.copytree(tiny_hd_run(store), path.parent),
    "MODEL": lambda store, path: shutil.copytree(tiny_run(store) / "model", path),
    "latest_net_G.pth": reference_checkpoint,
    "FOLDER": lambda store, path: shutil.copytree(tiny_run(store) / "model", path),
    # NVIDIA's pix2pixHD checkpoints, as tiny ones: the reference networks' weights of tests/fixtures/family
    "checkpoints/label2city_512p/latest_net_G.pth": lambda store, path: family_checkpoint("global-instance", path),
    "checkpoints/label2city_1024p/latest_net_G.pth": lambda store, path: family_checkpoint("local-instance", path),
    "checkpoints/label2city_1024p/latest_net_D.pth": lambda store, path: family_checkpoint("multiscale-d", path),
    "facades.int8.onnx": lambda store, path: shutil.copy(int8_model(store), path),
    # docs/pix2pixhd.md's translate and eval: a tiny label-map run and a label/ img/ inst/ folder
    "runs/hd-global": lambda store, path: shutil.copytree(tiny_hd_run(store), path),
    "datasets/cityscapes/val": lambda store, path: label_folder(path),
    "datasets/cityscapes/val/label": lambda store, path: label_folder(path.parent),
    "datasets/cityscapes/val/inst": lambda store, path: label_folder(path.parent),
}  # fmt: skip


def names(words: list[str], name: str) -> bool:
    """Whether the command names ``name``: a word, or quoted inside one (python -c "...'RUN'...", and JSON:
    --model-args '{"global_weights": "runs/x/model"}')."""
    return name in words or any(f"'{name}'" in w or f'"{name}"' in w for w in words)


def outputs(words: list[str]) -> set[str]:
    """What the command writes: after --out (unless resuming), the folder python -c saves a model to or writes a
    dataset to (``write_unpaired_folder(data, 'synth')``, or an alias of it)."""
    found = {words[i + 1] for i, w in enumerate(words[:-1]) if w == "--out"} if "--resume" not in words else set()
    found |= {m for w in words for m in re.findall(r"save_pretrained\(.*'([^']+)'\)", w)}
    for w in words:
        writers = "|".join(["write_\\w+_folder", *re.findall(r"write_\w+_folder as (\w+)", w)])
        found |= set(re.findall(rf"\b(?:{writers})\([^']*?'([^']+)'", w))
    return found


def supply(words: list[str], store: Path, folder: Path) -> None:
    """Make the inputs the command names; its outputs are left to it."""
    written = outputs(words)
    for name, make in SUPPLIES.items():
        if names(words, name) and name not in written and not (folder / name).exists():
            make(store, folder / name)


# ---------------------------------------------------------------------------------------- running
def shims(store: Path) -> Path:
    """``imgtrans``, ``torchrun`` and ``python`` on PATH, meaning this checkout and this interpreter."""
    folder = store / "bin"
    if not folder.is_dir():
        folder.mkdir()
        for name, target in (("imgtrans", "-m imgtrans"), ("torchrun", "-m torch.distributed.run"), ("python", "")):
            (folder / name).write_text(f'#!/bin/sh\nexec "{sys.executable}" {target} "$@"\n')
            (folder / name).chmod(0o755)
    return folder


def environment(store: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PATH": f"{shims(store)}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(ROOT),
        "HOME": str(hf_home(store).parent.parent),  # ~/.cache/huggingface, as pages write it, is $HF_HOME
        "HF_HOME": str(hf_home(store)),
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "IMGTRANS_NO_BROWSER": "1",
    }


def first(patterns, command):
    return next((entry for entry in patterns if re.search(entry[0], command)), None)


def merged(page: dict, addition: dict) -> dict:
    """The page's JSON arguments with the addition's, nested objects merged key by key (the addition's sizes win)."""
    both = dict(page)
    for key, value in addition.items():
        both[key] = merged(page[key], value) if isinstance(value, dict) and isinstance(page.get(key), dict) else value
    return both


def shortened(words: list[str], options: list[str]) -> list[str]:
    """The command's words with the options appended; a ``--model-args`` the command gives already takes the
    addition's, merged in place: a second ``--model-args`` would replace the page's (``global_weights``...)."""
    words, options = list(words), list(options)
    if "--model-args" in options and "--model-args" in words[:-1]:
        at, given = words.index("--model-args") + 1, options.index("--model-args") + 1
        words[at] = json.dumps(merged(json.loads(words[at]), json.loads(options[given])))
        del options[given - 1 : given + 1]
    return words + options


def with_additions(words: list[str]) -> list[str]:
    """The command's words with the first matching ADDITIONS entry's options (before any ``|``, ``&&``...)."""
    addition = first(ADDITIONS, shell_line(words))
    if not addition:
        return words
    end = next((i for i, w in enumerate(words) if w in OPERATORS), len(words))
    return shortened(words[:end], addition[1]) + words[end:]


def prepared(command: str, store: Path, tmp_path: Path) -> tuple[str, Path]:
    skip = first(CANNOT_RUN, command)
    if skip:
        pytest.skip(skip[1])
    words = with_additions(normalised(command))
    folder = tmp_path / "work"  # ../shared, as the page means it, is tmp_path/shared
    folder.mkdir()
    supply(words, store, folder)
    return shell_line(words), folder


def run_server(line: str, folder: Path, env: dict[str, str]) -> None:
    """``imgtrans app``: it serves its page until Ctrl-C, then stops cleanly."""
    process = subprocess.Popen(["bash", "-c", line], cwd=folder, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip
    try:
        deadline, url = time.monotonic() + TIMEOUT, None
        while url is None and time.monotonic() < deadline and process.poll() is None:
            match = re.search(r"open (http://\S+)", process.stdout.readline())
            url = match.group(1) if match else None
        assert url is not None, f"no 'open http://...' line; exit {process.poll()}: {process.stderr.read()[-2000:]}"
        with urllib.request.urlopen(url, timeout=60) as response:
            assert response.status == 200 and b"<html" in response.read().lower()
        os.killpg(process.pid, signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert "stopped" in out and "Traceback" not in err, err[-2000:]


@pytest.mark.parametrize(
    "page, command",
    [pytest.param(p, c, marks=[pytest.mark.slow] if any(s in c for s in SLOW) else [], id=f"{p}: {c[:90]}")
     for p, c in COMMANDS],
)  # fmt: skip
def test_the_command_runs_as_written(page, command, store, tmp_path, request):
    known = first(KNOWN_FAILURES, command)
    if known:
        request.applymarker(pytest.mark.xfail(reason=known[1], strict=True))
    line, folder = prepared(command, store, tmp_path)
    env = environment(store)
    if re.search(r"(^|\s)imgtrans app ", line):
        return run_server(line, folder, env)
    result = subprocess.run(["bash", "-c", line], cwd=folder, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert "Traceback" not in result.stderr, f"{line}\n{result.stderr[-3000:]}"
    refusal = first(REFUSALS, command)
    if refusal and refusal[1]():
        errors = [e for e in result.stderr.splitlines() if e.startswith("imgtrans ")]
        assert result.returncode != 0 and len(errors) == 1 and re.search(refusal[2], errors[0]), result.stderr
        return
    assert result.returncode == 0, f"{page}: {line}\nexit {result.returncode}\n{result.stderr[-3000:]}"
