"""CycleGAN resumes exactly under torchrun: every process's image pools and random generators are in the checkpoint."""

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from imgtrans.data import SyntheticFacades, write_unpaired_folder
from imgtrans.store.checkpoint import Checkpoint, load_checkpoint
from imgtrans.train import TrainConfig, Trainer
from imgtrans.train.distributed import Distributed
from imgtrans.train.state import ProcessStateWarning, own_state

ROOT = Path(__file__).resolve().parents[1]
TINY = {"generator_args": {"base_channels": 4, "n_blocks": 1}, "discriminator_args": {"base_channels": 4},
        "pool_size": 2}  # fmt: skip
SCRIPT = """
import json, sys
from safetensors.torch import save_file
from imgtrans.train import TrainConfig, Trainer
config = TrainConfig.from_dict(json.loads(sys.argv[1]))
trainer = Trainer(config)
trainer.fit(resume=sys.argv[2] == "resume")
model = trainer.model
state = {**model.state_dict(), **{f"pool.{k}": v for k, v in model.training_state().items()}}
save_file({k: v.contiguous() for k, v in state.items()}, f"{config.out}/rank{trainer.dist.rank}.safetensors")
trainer.dist.close()
"""


def settings(out: Path, data: Path, steps: int) -> TrainConfig:
    return TrainConfig(model="cyclegan", model_args=TINY, data=str(data), out=str(out), epochs=2, epochs_decay=1,
                       batch_size=1, load_size=26, crop_size=24, workers=0, log_every=1, sample_every=0,
                       checkpoint_every=0, max_steps=steps, device="cpu")  # fmt: skip


def torchrun(tmp_path: Path, config: TrainConfig, resume: bool = False) -> tuple[list[dict], str]:
    """Train with 2 CPU processes (gloo); each process's weights and pools at the end, and the run's stderr."""
    script = tmp_path / "cyclegan_ddp.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script),
         json.dumps(config.to_dict()), "resume" if resume else "new"],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return [load_file(Path(config.out) / f"rank{r}.safetensors") for r in (0, 1)], result.stderr


def differing(a: dict, b: dict) -> list[str]:
    assert a.keys() == b.keys()
    return [k for k in a if not torch.equal(a[k], b[k])]


@pytest.mark.slow
def test_a_two_process_run_stopped_and_resumed_equals_the_uninterrupted_one(tmp_path):
    data = write_unpaired_folder(SyntheticFacades(16, 24, seed=0), tmp_path / "data")  # 8 images of A: 4 steps an epoch
    whole, _ = torchrun(tmp_path, settings(tmp_path / "whole", data, 6))
    assert load_checkpoint(tmp_path / "whole" / "checkpoints" / "last.safetensors").meta["step"] == 6
    assert differing(whole[0], whole[1]) and all(k.startswith("pool.") for k in differing(whole[0], whole[1]))

    torchrun(tmp_path, settings(tmp_path / "parts", data, 3))  # the pools full (2 images) and drawn from
    saved = load_checkpoint(tmp_path / "parts" / "checkpoints" / "last.safetensors")
    assert (saved.meta["world_size"], saved.meta["step"]) == (2, 3)
    assert saved.section("rank1.train")["fake_b_pool.images"].shape == (2, 3, 24, 24)
    pools = saved.section("rank1.train")["fake_b_pool.images"], saved.section("train")["fake_b_pool.images"]
    assert not torch.equal(*pools)  # process 1's own fakes
    shutil.copytree(tmp_path / "parts", tmp_path / "old")  # for the check below

    resumed, stderr = torchrun(tmp_path, settings(tmp_path / "parts", data, 6), resume=True)
    assert "ProcessStateWarning" not in stderr
    for rank in (0, 1):  # weights, and each process's own pools and their generators
        assert differing(whole[rank], resumed[rank]) == [], rank

    # The check can fail: a checkpoint without process 1's state (as before it was kept) is resumed
    # with a warning, and the run is not the uninterrupted one.
    path = tmp_path / "old" / "checkpoints" / "last.safetensors"
    old = load_checkpoint(path)
    tensors = {k: v for k, v in old.tensors.items() if not k.startswith("rank1.")}
    save_file(tensors, str(path), metadata={"imgtrans": json.dumps(old.meta)})  # no checksum: loads unchecked
    (tmp_path / "old" / "checkpoints" / "previous.safetensors").unlink(missing_ok=True)
    stale, stderr = torchrun(tmp_path, settings(tmp_path / "old", data, 6), resume=True)
    assert "ProcessStateWarning" in stderr and "process(es) 1 start with empty image pools" in stderr
    assert any(not k.startswith("pool.") for k in differing(whole[0], stale[0]))

    # Another number of processes: one process resumes the two-process checkpoint, with a warning.
    shutil.copytree(tmp_path / "parts", tmp_path / "one")
    single = Trainer(settings(tmp_path / "one", data, 7))
    with pytest.warns(ProcessStateWarning, match=r"written by 2 process\(es\) and this run has 1: the saved pools of "
                                                 r"process\(es\) 1 are dropped; training goes on"):  # fmt: skip
        single.fit(resume=True)
    assert single.step == 7


def checkpoint_of(world: int, ranks: tuple[int, ...]) -> Checkpoint:
    tensors = {"train.fake_a_pool.rng": torch.zeros(3), "rng.cpu": torch.get_rng_state()}
    for r in ranks:
        tensors[f"rank{r}.train.fake_a_pool.rng"] = torch.full((3,), float(r))
        tensors[f"rank{r}.rng.cpu"] = torch.get_rng_state()
    return Checkpoint(tensors, {"world_size": world}, Path("run/checkpoints/last.safetensors"))


def test_each_process_takes_back_its_own_state():
    checkpoint = checkpoint_of(3, (1, 2))
    for rank in (0, 1, 2):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # same number of processes, each one's state held: no warning
            own = own_state(checkpoint, Distributed(rank, 3), keeps_state=True)
        assert torch.equal(own.section("train")["fake_a_pool.rng"], torch.full((3,), float(rank)))
        assert "rng.cpu" in own.tensors


def test_another_number_of_processes_is_said_by_rank_0_with_what_is_lost():
    with pytest.warns(ProcessStateWarning, match=r"written by 1 process\(es\) and this run has 3: process\(es\) 1, 2 "
                                                 r"start with empty image pools; training goes on"):  # fmt: skip
        assert own_state(checkpoint_of(1, ()), Distributed(0, 3), keeps_state=True) is not None
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once, by rank 0; a model without state (pix2pix) has nothing lost
        assert own_state(checkpoint_of(1, ()), Distributed(1, 3), keeps_state=True) is None
        assert own_state(checkpoint_of(1, ()), Distributed(0, 3), keeps_state=False) is not None
    with pytest.warns(ProcessStateWarning, match=r"written by 3 process\(es\) and this run has 2: the saved pools of "
                                                 r"process\(es\) 2 are dropped"):  # fmt: skip
        own_state(checkpoint_of(3, (1, 2)), Distributed(0, 2), keeps_state=True)
    alone = r"holds the state of process 0 only \(saved by it alone, .*\): process\(es\) 1 start with empty image pools"
    with pytest.warns(ProcessStateWarning, match=alone):  # the same number, but a save by rank 0 alone
        own_state(checkpoint_of(2, ()), Distributed(0, 2), keeps_state=True)
