import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from imgtrans.train.optimizer import Adam, in_memory_order


def _parameters(memory_format: torch.memory_format) -> list[torch.nn.Parameter]:
    """A convolution's weight and bias, and a second weight, each with a random gradient."""
    torch.manual_seed(0)
    shapes = [(8, 6, 4, 4), (8,), (16, 8, 3, 3)]
    return [torch.nn.Parameter(torch.randn(s).contiguous(memory_format=memory_format) if len(s) == 4
                               else torch.randn(s)) for s in shapes]  # fmt: skip


def _train(optimizer_class, params: list[torch.nn.Parameter], steps: int = 3) -> torch.optim.Optimizer:
    optimizer = optimizer_class(params, lr=2e-4, betas=(0.5, 0.999), fused=True)
    generator = torch.Generator().manual_seed(1)
    for _ in range(steps):
        for p in params:
            p.grad = torch.randn(p.shape, generator=generator).contiguous(memory_format=_format(p))
        optimizer.step()
    return optimizer


def _format(t: torch.Tensor) -> torch.memory_format:
    return torch.channels_last if t.dim() == 4 and not t.is_contiguous() else torch.contiguous_format


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_adam_is_torchs_fused_adam_bit_for_bit(memory_format):
    ours, theirs = _parameters(memory_format), _parameters(memory_format)
    optimizer = _train(Adam, ours)
    _train(torch.optim.Adam, theirs)
    for mine, reference in zip(ours, theirs):
        assert torch.equal(mine, reference) and mine.stride() == reference.stride()
    state = optimizer.state[ours[0]]
    assert state["exp_avg"].stride() == ours[0].stride()  # the moments keep their weight's layout
    assert optimizer.state_dict()["state"].keys() == {0, 1, 2}  # checkpoints as torch.optim.Adam's


def test_adam_spares_the_fused_kernel_its_copies_of_channels_last_gradients():
    # PyTorch's fused CPU kernel makes a contiguous copy of each non-contiguous gradient and never reads it.
    params = _parameters(torch.channels_last)
    optimizer = _train(Adam, params, steps=1)
    for p in params:
        p.grad = torch.randn_like(p)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        optimizer.step()
    names = [e.name for e in prof.events()]
    assert "aten::_fused_adam_" in names and "aten::clone" not in names, names


def test_adam_leaves_tensors_of_different_layouts_as_torchs_adam_does():
    # A weight whose moments are in another layout is handed over unchanged (as torch.optim.Adam would).
    param = torch.nn.Parameter(torch.randn(8, 6, 4, 4).contiguous(memory_format=torch.channels_last))
    param.grad = torch.randn_like(param)
    optimizer = Adam([param], lr=2e-4, fused=True)
    optimizer.state[param] = {"step": torch.tensor(0.0), "exp_avg": torch.zeros(8, 6, 4, 4),
                              "exp_avg_sq": torch.zeros(8, 6, 4, 4)}  # fmt: skip
    reference = torch.nn.Parameter(param.detach().clone())
    reference.grad = param.grad.clone()
    torch_optimizer = torch.optim.Adam([reference], lr=2e-4, fused=True)
    torch_optimizer.state[reference] = {k: v.clone() for k, v in optimizer.state[param].items()}
    optimizer.step()
    torch_optimizer.step()
    assert torch.equal(param, reference)


def test_in_memory_order_is_a_view_of_channels_last_tensors_only():
    t = torch.randn(2, 3, 4, 5).contiguous(memory_format=torch.channels_last)
    view = in_memory_order(t)
    assert view.is_contiguous() and view.shape == (2, 4, 5, 3) and view.data_ptr() == t.data_ptr()
    for other in (torch.randn(2, 3, 4, 5), torch.randn(3, 1, 1, 1), torch.randn(7)):
        assert in_memory_order(other) is other
