"""A user's files are never replaced unless asked, and every write is atomic (issue 22): convert, export
(float32 and int8) and the writers under them, with long names, full disks and damaged checkpoints.

``zoo download`` has its cases beside the zoo's other tests (test_zoo_reference.py, test_zoo_hub.py).
"""

import errno
import os
import subprocess
import uuid
from pathlib import Path

import pytest
import torch
from safetensors import SafetensorError

import imgtrans
from imgtrans.cli import main
from imgtrans.io import WriteError, atomic_folder, atomic_write, temporary_path
from imgtrans.images import save_image
from imgtrans.store import checkpoint as checkpoints
from imgtrans.store.checkpoint import DamagedCheckpointError, load_checkpoint, save_checkpoint, verify_checkpoint
from imgtrans.store.factory import from_checkpoint, save_pretrained

from conftest import TINY_MODEL, shared_path

LONG = "n" * 246  # + a 4-character suffix: a 250-character name; the temporary name must still fit in 255 bytes


def tiny(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return imgtrans.build("pix2pix-facades", **TINY_MODEL)


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden ones included) and its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def leftovers(folder: Path) -> list[str]:
    """Temporary files or folders left anywhere under ``folder``."""
    return [p.name for p in folder.rglob(".*")]


def one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def write_checkpoint(path: Path, seed: int = 0) -> torch.nn.Module:
    model = tiny(seed)
    optimizer = torch.optim.Adam(model.parameters())
    sum(p.sum() for p in model.parameters()).backward()
    optimizer.step()
    save_checkpoint(path, model, {"g": optimizer}, {"step": 5, "model": model.config.to_dict()})
    return model


# ------------------------------------------------------------------------------- no silent replacing
def test_save_pretrained_refuses_an_existing_model_and_replaces_it_when_asked(tmp_path):
    folder = save_pretrained(tiny(0), tmp_path / "m")
    before = snapshot(tmp_path)
    with pytest.raises(FileExistsError, match=r"m already exists and was left as it is; pass overwrite=True to replace it"):
        save_pretrained(tiny(1), folder)
    assert snapshot(tmp_path) == before
    replacement = tiny(1)
    save_pretrained(replacement, folder, overwrite=True)
    loaded = imgtrans.from_pretrained(folder)
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), replacement.state_dict().values()))
    assert leftovers(tmp_path) == []


def test_an_empty_folder_is_written_and_a_file_or_the_users_own_files_are_refused_even_with_overwrite(tmp_path):
    (tmp_path / "empty").mkdir()
    save_pretrained(tiny(), tmp_path / "empty")  # nothing to replace: no overwrite needed
    assert imgtrans.from_pretrained(tmp_path / "empty").config.name == "pix2pix-facades"
    mixed = save_pretrained(tiny(), tmp_path / "mixed")
    (mixed / "notes.txt").write_text("mine")
    (tmp_path / "a-file").write_text("mine too")
    before = snapshot(tmp_path)
    with pytest.raises(ValueError, match=r"holds files imgtrans did not write \(notes.txt\); nothing was changed"):
        save_pretrained(tiny(1), mixed, overwrite=True)
    with pytest.raises(ValueError, match="a-file is a file, not a folder"):
        save_pretrained(tiny(1), tmp_path / "a-file", overwrite=True)
    assert snapshot(tmp_path) == before


def test_convert_refuses_an_existing_out_names_overwrite_and_never_replaces_its_input(tmp_path, capsys):
    checkpoint = tmp_path / "net.pth"
    checkpoint.write_bytes(shared_path("reference", "unet256-f8.pth").read_bytes())
    argv = lambda out, *more: ["convert", str(checkpoint), str(out), "--arch", "unet256", *more]  # noqa: E731
    assert main(argv(tmp_path / "out")) == 0
    capsys.readouterr()
    before = snapshot(tmp_path)
    assert main(argv(tmp_path / "out")) == 2
    assert "out already exists and was left as it is; pass --overwrite to replace it" in one_line(capsys)
    for flags in ([], ["--overwrite"]):  # the input itself is never a folder to replace
        assert main(argv(checkpoint, *flags)) == 2
        assert "net.pth is a file, not a folder" in one_line(capsys)
    assert main(argv(tmp_path)) == 2 and "pass --overwrite to replace it" in one_line(capsys)
    assert main(argv(tmp_path, "--overwrite")) == 2  # the folder that holds the input
    assert "holds files imgtrans did not write (net.pth, out); nothing was changed" in one_line(capsys)
    assert snapshot(tmp_path) == before
    assert main(argv(tmp_path / "out", "--overwrite")) == 0
    assert leftovers(tmp_path) == []


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    return save_pretrained(tiny(), tmp_path_factory.mktemp("saved") / "model")


@pytest.fixture(scope="module")
def calibration_dir(tmp_path_factory) -> Path:
    from imgtrans.data import SyntheticFacades

    folder = tmp_path_factory.mktemp("calibration")
    for i, item in enumerate(SyntheticFacades(4, 64, seed=1)):
        save_image(item["input"], folder / f"{i}.png")
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_export_refuses_an_existing_file_and_replaces_it_with_overwrite(saved, calibration_dir, tmp_path, precision, capsys):
    pytest.importorskip("onnxruntime")
    out = tmp_path / "model.onnx"
    out.write_bytes(b"the user's own file")
    extra = ["--precision", "int8", "--calibration", str(calibration_dir)] if precision == "int8" else []
    argv = ["export", str(saved), "--out", str(out), "--direction", "BtoA", *extra]
    assert main(argv) == 2
    assert f"{out} already exists and was left as it is; pass --overwrite to replace it" in one_line(capsys)
    assert out.read_bytes() == b"the user's own file"
    assert main([*argv, "--overwrite"]) == 0
    from imgtrans.deploy.onnx import read_metadata

    assert read_metadata(out)["imgtrans.precision"] == precision and leftovers(tmp_path) == []


def test_the_python_exporters_refuse_an_existing_file_in_their_own_words(saved, tmp_path):
    pytest.importorskip("onnxruntime")
    from imgtrans.deploy.int8 import quantize_onnx
    from imgtrans.deploy.onnx import export_onnx

    out = tmp_path / "x.onnx"
    out.write_bytes(b"mine")
    model = imgtrans.load(saved)
    for export in (lambda: export_onnx(model, out), lambda: quantize_onnx(model, out, [torch.zeros(1, 3, 32, 32)])):
        with pytest.raises(FileExistsError, match="pass overwrite=True to replace it"):
            export()
    assert out.read_bytes() == b"mine"


# ------------------------------------------------------------------------------------ long names
def long_name_writers():
    """(kind, write(path)) for each kind of writer; each is called twice on one path."""
    return [
        ("bytes", lambda path: atomic_write(path, b"x" * 10)),
        ("image", lambda path: save_image(torch.zeros(3, 8, 8), path)),
        ("checkpoint", lambda path: write_checkpoint(path)),
        ("model folder", lambda path: save_pretrained(tiny(), path, overwrite=True)),
    ]


@pytest.mark.parametrize("kind, write", long_name_writers(), ids=[k for k, _ in long_name_writers()])
@pytest.mark.parametrize("name", [LONG, "é" * 123], ids=["250 ascii", "250 bytes of utf-8"])
def test_a_250_character_name_is_written_and_replaced_by_every_writer(tmp_path, kind, write, name):
    path = tmp_path / (name + {"image": ".png"}.get(kind, ".bin"))
    assert len(os.fsencode(path.name)) == 250
    for _ in range(2):
        write(path)
    assert path.exists() and leftovers(tmp_path) == []


def test_temporary_names_fit_and_stay_apart():
    folder = Path("/tmp")
    a, b = temporary_path(folder / (LONG + "a.png")), temporary_path(folder / (LONG + "b.png"))
    assert a != b and max(len(os.fsencode(a.name)), len(os.fsencode(b.name))) <= 255
    assert temporary_path(folder / "short.png").name == f".short.png.tmp-{os.getpid()}"


def test_export_writes_a_250_character_file_name(saved, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    out = tmp_path / (LONG[:245] + ".onnx")
    assert main(["export", str(saved), "--out", str(out)]) == 0 and out.is_file() and leftovers(tmp_path) == []


# ------------------------------------------------------------------------------------- full disks
def no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def full_disk_cases():
    """(name, make the old file or folder, write the new one, the lowest write call to break)."""
    return [
        ("text", lambda d: atomic_write(d / "a.json", "old"), lambda d: atomic_write(d / "a.json", "new"), "os.fsync"),
        ("image", lambda d: save_image(torch.zeros(3, 4, 4), d / "a.png"), lambda d: save_image(torch.ones(3, 4, 4), d / "a.png"),
         "os.fsync"),
        ("checkpoint", lambda d: write_checkpoint(d / "last.safetensors"), lambda d: write_checkpoint(d / "last.safetensors", 1),
         "imgtrans.store.checkpoint.save_file"),
        ("model folder", lambda d: save_pretrained(tiny(), d / "m"), lambda d: save_pretrained(tiny(1), d / "m", overwrite=True),
         "imgtrans.store.weights.save_file"),
        ("model folder, at fsync", lambda d: save_pretrained(tiny(), d / "m"),
         lambda d: save_pretrained(tiny(1), d / "m", overwrite=True), "os.fsync"),
    ]  # fmt: skip


@pytest.mark.parametrize("kind, old, new, call", full_disk_cases(), ids=[c[0] for c in full_disk_cases()])
def test_a_full_disk_keeps_the_old_file_whole_and_says_so_in_one_line(tmp_path, monkeypatch, kind, old, new, call):
    old(tmp_path)
    before = snapshot(tmp_path)
    monkeypatch.setattr(call, no_space)
    with pytest.raises(WriteError) as caught:
        new(tmp_path)
    message = str(caught.value)
    assert "\n" not in message and "No space left on device" in message and "nothing was written" in message
    assert "kept" in message and caught.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert snapshot(tmp_path) == before and leftovers(tmp_path) == []


SERIALISATION_ERRORS = [  # as safetensors 0.4-0.7 word a full disk
    "Error while serializing: I/O error: No space left on device (os error 28)",
    'Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space left on device" })',
]


@pytest.mark.parametrize("writer", ["weights", "checkpoint"])
@pytest.mark.parametrize("text", SERIALISATION_ERRORS)
def test_a_safetensors_serialisation_error_is_a_disk_error(tmp_path, monkeypatch, writer, text):
    def serialisation_fails(*args, **kwargs):
        raise SafetensorError(text)

    monkeypatch.setattr(f"imgtrans.store.{writer}.save_file", serialisation_fails)
    with pytest.raises(OSError, match=r"cannot write .*: No space left on device; nothing was written, no .* was created"):
        save_pretrained(tiny(), tmp_path / "m") if writer == "weights" else write_checkpoint(tmp_path / "c.safetensors")
    assert list(tmp_path.iterdir()) == []


def half_then_no_space(proto, path, *args, **kwargs):
    """onnx.save_model on a disk that fills up half way: a truncated file, then ENOSPC."""
    data = proto.SerializeToString()
    Path(path).write_bytes(data[: len(data) // 2])
    no_space()


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_export_on_a_full_disk_leaves_the_old_file_whole(saved, calibration_dir, tmp_path, monkeypatch, precision, capsys):
    pytest.importorskip("onnxruntime")
    import onnx

    out = tmp_path / "model.onnx"
    extra = ["--precision", "int8", "--calibration", str(calibration_dir)] if precision == "int8" else []
    assert main(["export", str(saved), "--out", str(out), *extra]) == 0
    before = out.read_bytes()
    save = onnx.save_model
    monkeypatch.setattr(onnx, "save_model", lambda proto, path, *a, **k: (
        half_then_no_space(proto, path) if Path(path).parent == tmp_path else save(proto, path, *a, **k)))  # fmt: skip
    capsys.readouterr()
    assert main(["export", str(saved), "--out", str(out), "--overwrite", *extra]) == 2
    message = one_line(capsys)
    assert f"cannot write {out}: No space left on device; nothing was written, the previous model.onnx is kept whole" in message
    assert out.read_bytes() == before and leftovers(tmp_path) == []


@pytest.fixture
def tiny_disk(tmp_path):
    """A 512 KiB tmpfs, where this machine lets tests mount one (root in a container that allows it)."""
    mount = tmp_path / f"disk-{uuid.uuid4().hex[:6]}"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mount)], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({result.stderr.strip() or 'mount failed'})")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_real_full_disk_keeps_every_old_file_and_frees_its_space(tiny_disk):
    small = imgtrans.build("unet128", base_channels=2, num_downs=5)
    large = imgtrans.build("pix2pix-facades", generator_args={"base_channels": 8}, discriminator_args={"base_channels": 8})
    save_pretrained(small, tiny_disk / "model")
    atomic_write(tiny_disk / "notes.bin", b"old" * 1000)
    before, free = snapshot(tiny_disk), os.statvfs(tiny_disk).f_bfree
    with pytest.raises(WriteError, match=r"cannot write the model folder .*model \(model.safetensors\): No space left on device"):
        save_pretrained(large, tiny_disk / "model", overwrite=True)
    with pytest.raises(WriteError, match=r"notes.bin: No space left on device; .* the previous notes.bin is kept whole"):
        atomic_write(tiny_disk / "notes.bin", os.urandom(600 * 1024))
    with pytest.raises(WriteError, match="No space left on device"):
        save_checkpoint(tiny_disk / "last.safetensors", large, {}, {"step": 1, "model": large.config.to_dict()})
    assert snapshot(tiny_disk) == before and leftovers(tiny_disk) == [] and os.statvfs(tiny_disk).f_bfree == free


# ------------------------------------------------------------------------------ folders, swapped whole
def test_a_folder_is_swapped_whole_with_or_without_an_atomic_exchange(tmp_path, monkeypatch):
    for exchange in (True, False):
        if not exchange:
            monkeypatch.setattr("imgtrans.io._rename_exchange", lambda a, b: False)
        folder = tmp_path / f"f{exchange}"
        with atomic_folder(folder) as fresh:
            (fresh / "a").write_text("1")
        with pytest.raises(RuntimeError, match="fails half way"), atomic_folder(folder, overwrite=True) as fresh:
            (fresh / "a").write_text("2")
            raise RuntimeError("fails half way")
        assert snapshot(folder) == {"a": b"1"}
        with atomic_folder(folder, overwrite=True) as fresh:
            (fresh / "b").write_text("2")
        assert snapshot(folder) == {"b": b"2"}
    assert leftovers(tmp_path) == []


def test_replacing_a_linked_folder_replaces_the_link_and_never_touches_what_it_points_to(tmp_path):
    target = tmp_path / "target"
    target.mkdir()
    (target / "config.json").write_text("the user's")
    (tmp_path / "link").symlink_to(target)
    save_pretrained(tiny(), tmp_path / "link", overwrite=True)
    assert snapshot(target) == {"config.json": b"the user's"} and imgtrans.from_pretrained(tmp_path / "link")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "target"]


# ------------------------------------------------------------------------------ damaged checkpoints
def zero_middle(data: bytearray) -> None:
    middle = len(data) // 2
    data[middle - 32 * 1024 : middle + 32 * 1024] = bytes(64 * 1024)


def flip_last_byte(data: bytearray) -> None:
    data[-1] ^= 0x01


def change_the_step(data: bytearray) -> None:
    at = data.index(b'\\"step\\": 5')
    data[at : at + 11] = b'\\"step\\": 7'


def zero_header(data: bytearray) -> None:
    data[8:4096] = bytes(4088)


def truncate(data: bytearray) -> None:
    del data[len(data) * 3 // 4 :]


DAMAGES = [zero_middle, flip_last_byte, change_the_step, zero_header, truncate]


@pytest.mark.parametrize("damage", DAMAGES, ids=[d.__name__ for d in DAMAGES])
def test_a_damaged_checkpoint_is_refused_in_one_line(tmp_path, damage, capsys):
    path = tmp_path / "last.safetensors"
    write_checkpoint(path)
    assert len(path.read_bytes()) > 3 * 64 * 1024  # large enough for 64 KB of zeros in the middle
    data = bytearray(path.read_bytes())
    damage(data)
    path.write_bytes(bytes(data))
    with pytest.raises(DamagedCheckpointError, match=r"last.safetensors (is damaged: its contents do not match the checksum|"
                       r"is not a readable checkpoint|has unreadable metadata)"):  # fmt: skip
        verify_checkpoint(path)
    assert main(["export", str(path), "--out", str(tmp_path / "x.onnx")]) == 2
    assert "last.safetensors" in one_line(capsys) and not (tmp_path / "x.onnx").exists()


def test_a_good_checkpoint_and_one_without_a_checksum_load(tmp_path):
    from safetensors import safe_open
    from safetensors.torch import save_file

    path = tmp_path / "last.safetensors"
    model = write_checkpoint(path)
    assert load_checkpoint(path).meta["step"] == 5
    with safe_open(str(path), framework="pt") as f:
        metadata, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    assert checkpoints.CHECKSUM_KEY in metadata
    old = tmp_path / "old.safetensors"  # as imgtrans wrote them before checkpoints had a checksum
    save_file(tensors, str(old), metadata={"imgtrans": metadata["imgtrans"]})
    loaded = from_checkpoint(old)
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))


# ------------------------------------------------------------------ every writer goes through io
WRITES = {"save_file", "save_model", "write_text", "write_bytes", "save", "os.replace", "os.rename", "shutil.move"}


def direct_writes(source: str) -> list[str]:
    """Calls that write or rename a file outside a callback given to ``atomic_write`` (a lambda, or a ``def write``)."""
    import ast

    found = []

    def visit(node: ast.AST, inside_callback: bool) -> None:
        if isinstance(node, ast.Lambda) or (isinstance(node, ast.FunctionDef) and node.name == "write"):
            inside_callback = True
        if isinstance(node, ast.Call) and not inside_callback:
            name = getattr(node.func, "attr", getattr(node.func, "id", ""))
            owner = getattr(getattr(node.func, "value", None), "id", None)
            name = f"{owner}.{name}" if owner in ("os", "shutil") else name
            mode = [a.value for a in node.args[1:2] if isinstance(a, ast.Constant)]
            if name in WRITES or (name == "open" and mode and set(str(mode[0])) & set("wax+")):
                found.append(f"line {node.lineno}: {ast.unparse(node)[:60]}")
        for child in ast.iter_child_nodes(node):
            visit(child, inside_callback)

    visit(ast.parse(source), False)
    return found


def test_no_module_of_store_or_deploy_writes_a_file_but_through_imgtrans_io():
    root = Path(imgtrans.__file__).parent
    offenders = {
        str(path.relative_to(root)): writes
        for folder in ("store", "deploy")
        for path in sorted((root / folder).glob("*.py"))
        if (writes := direct_writes(path.read_text()))
    }
    assert offenders == {}
    assert direct_writes("def f(p):\n    p.write_bytes(b'x')\n") == ["line 2: p.write_bytes(b'x')"]  # the check sees one
    assert direct_writes("os.replace(a, b)\n'x'.replace('a', 'b')\n") == ["line 1: os.replace(a, b)"]
    assert direct_writes("atomic_write(p, lambda t: save_file(s, t))\n") == []
