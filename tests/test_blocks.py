import pytest
import torch
from torch import nn

from imgtrans.blocks import CDk, Ck, init_weights, parse_notation, stack


def test_ck_is_conv_norm_relu_in_the_papers_order():
    layer = Ck(3, 16)
    assert list(dict(layer.named_children())) == ["conv", "norm", "act"]
    assert isinstance(layer.conv, nn.Conv2d) and layer.conv.kernel_size == (4, 4) and layer.conv.stride == (2, 2)
    assert isinstance(layer.norm, nn.BatchNorm2d) and layer.conv.bias is None
    assert isinstance(layer.act, nn.LeakyReLU) and layer.act.negative_slope == 0.2
    assert layer(torch.randn(2, 3, 32, 32)).shape == (2, 16, 16, 16)


def test_cdk_puts_dropout_half_before_the_relu():
    layer = CDk(8, 4, transposed=True, activation="relu")
    assert list(dict(layer.named_children())) == ["conv", "norm", "dropout", "act"]
    assert layer.dropout.p == 0.5 and isinstance(layer.act, nn.ReLU)
    assert isinstance(layer.conv, nn.ConvTranspose2d)
    assert layer(torch.randn(1, 8, 5, 7)).shape == (1, 4, 10, 14)


@pytest.mark.parametrize("norm, norm_type, has_bias", [("batch", nn.BatchNorm2d, False), ("instance", nn.InstanceNorm2d, True), ("none", None, True)])
def test_norm_choice_and_bias(norm, norm_type, has_bias):
    layer = Ck(3, 8, norm=norm)
    assert (layer.conv.bias is not None) == has_bias
    if norm_type is None:
        assert not hasattr(layer, "norm")
    else:
        assert isinstance(layer.norm, norm_type)


def test_stack_reads_the_papers_notation():
    net = stack("C64-C128-CD256", 6, strides=[2, 2, 1], first_norm=False)
    assert [m.conv.out_channels for m in net] == [64, 128, 256]
    assert [m.conv.stride[0] for m in net] == [2, 2, 1]
    assert not hasattr(net[0], "norm") and isinstance(net[1].norm, nn.BatchNorm2d)
    assert not hasattr(net[1], "dropout") and net[2].dropout.p == 0.5
    assert parse_notation("CD512-CD1024-C256") == [(512, True), (1024, True), (256, False)]


@pytest.mark.parametrize("spec", ["C64-X128", "C64--C128", "c64", "CD-64"])
def test_bad_notation_says_how_to_write_it(spec):
    with pytest.raises(ValueError, match="write layers as 'Ck' or 'CDk'"):
        parse_notation(spec)


def test_bad_choices_are_named():
    with pytest.raises(ValueError, match="norm must be one of 'batch', 'instance', 'none'; got 'group'"):
        Ck(3, 8, norm="group")
    with pytest.raises(ValueError, match="activation must be one of"):
        Ck(3, 8, activation="gelu")
    with pytest.raises(ValueError, match="2 layers but 3 strides"):
        stack("C8-C16", 3, strides=[2, 2, 1])


def test_init_weights_follows_section_6_2():
    torch.manual_seed(1)
    net = init_weights(nn.Sequential(nn.Conv2d(64, 256, 4), nn.BatchNorm2d(4096), nn.ConvTranspose2d(256, 64, 4)))
    for conv in (net[0], net[2]):
        assert abs(conv.weight.mean().item()) < 1e-3
        assert conv.weight.std().item() == pytest.approx(0.02, rel=0.02)
        assert torch.all(conv.bias == 0)
    assert net[1].weight.mean().item() == pytest.approx(1.0, abs=2e-3)
    assert net[1].weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert torch.all(net[1].bias == 0)


@pytest.mark.parametrize("shape", [(1, 16, 1, 1), (2, 16, 3, 5), (4, 16, 8, 8), (1, 16, 40, 40)])  # last: usual path
@pytest.mark.parametrize("kernel, stride, padding, bias", [(4, 2, 1, False), (4, 2, 1, True), (3, 1, 0, True)])
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])  # of layer and input
def test_matmul_transposed_convolution_equals_pytorchs(shape, kernel, stride, padding, bias, memory_format):
    from imgtrans.blocks.transposed import MatmulConvTranspose2d

    ours = MatmulConvTranspose2d(16, 8, kernel, stride, padding, bias=bias)
    theirs = nn.ConvTranspose2d(16, 8, kernel, stride, padding, bias=bias)
    theirs.load_state_dict(ours.state_dict())
    ours.to(memory_format=memory_format)
    x1 = torch.randn(*shape).contiguous(memory_format=memory_format).requires_grad_(True)
    x2 = x1.detach().clone().requires_grad_(True)
    y1, y2 = ours(x1), theirs(x2)
    torch.testing.assert_close(y1, y2, rtol=1e-5, atol=1e-5)
    _assert_same_gradients(ours, theirs, (x1, y1), (x2, y2))


@pytest.mark.parametrize("shape", [(1, 16, 2, 2), (2, 16, 4, 4), (1, 16, 16, 16), (4, 16, 32, 32)])  # last: usual path
@pytest.mark.parametrize("kernel, stride, padding, bias", [(4, 2, 1, False), (4, 2, 1, True), (3, 1, 1, True), (4, 1, 1, False)])
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("weight_format", [torch.contiguous_format, torch.channels_last])
def test_matmul_convolution_equals_pytorchs(shape, kernel, stride, padding, bias, memory_format, weight_format):
    from imgtrans.blocks.unfolded import MatmulConv2d

    ours = MatmulConv2d(16, 12, kernel, stride, padding, bias=bias)  # more outputs than the taps path takes
    theirs = nn.Conv2d(16, 12, kernel, stride, padding, bias=bias)
    theirs.load_state_dict(ours.state_dict())
    ours.to(memory_format=weight_format)
    x1 = torch.randn(*shape).contiguous(memory_format=memory_format).requires_grad_(True)
    x2 = x1.detach().clone().requires_grad_(True)
    with _Ops() as ops:
        y1 = ours(x1)
    small = y1.shape[0] * y1.shape[2] * y1.shape[3] <= 64
    assert (len(_products(ops)) == 1) == small, ops.names
    y2 = theirs(x2)
    torch.testing.assert_close(y1, y2, rtol=1e-5, atol=1e-5)
    channels_last = torch.channels_last in (memory_format, weight_format)  # either makes PyTorch's output so
    assert y1.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    _assert_same_gradients(ours, theirs, (x1, y1), (x2, y2))


@pytest.mark.parametrize("out, kernel, stride, padding", [(1, 4, 1, 1), (1, 4, 2, 1), (3, 3, 1, 0), (8, 4, 2, 1), (1, 1, 1, 0)])
@pytest.mark.parametrize("shape", [(1, 16, 31, 31), (2, 16, 9, 6)])
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_few_output_channels_are_one_product_over_the_taps(out, kernel, stride, padding, shape, memory_format):
    # The PatchGAN's last layer (512 -> 1, 4x4, stride 1 at 31x31) and its kin, at every layout and stride.
    from imgtrans.blocks.unfolded import MatmulConv2d

    ours = MatmulConv2d(16, out, kernel, stride, padding)
    theirs = nn.Conv2d(16, out, kernel, stride, padding)
    theirs.load_state_dict(ours.state_dict())
    x1 = torch.randn(*shape).contiguous(memory_format=memory_format).requires_grad_(True)
    x2 = x1.detach().clone().requires_grad_(True)
    with _Ops() as ops:
        y1 = ours(x1)
    assert len(_products(ops)) == 1 and not any("convolution" in name for name in ops.names), ops.names
    y2 = theirs(x2)
    assert y1.dtype == torch.float32 and y1.shape == y2.shape
    torch.testing.assert_close(y1, y2, rtol=1e-5, atol=1e-5)
    _assert_same_gradients(ours, theirs, (x1, y1), (x2, y2))


@pytest.mark.parametrize("padding_mode", ["reflect", "replicate", "circular"])
def test_heads_padded_other_ways_are_taps_too(padding_mode):
    # CycleGAN's and pix2pixHD's 7x7 reflection-padded heads (64 -> 3): padded as the layer pads, then taps.
    from imgtrans.blocks.unfolded import MatmulConv2d

    ours = MatmulConv2d(16, 3, 7, padding=3, padding_mode=padding_mode)
    theirs = nn.Conv2d(16, 3, 7, padding=3, padding_mode=padding_mode)
    theirs.load_state_dict(ours.state_dict())
    x1 = torch.randn(2, 16, 12, 10, requires_grad=True)
    x2 = x1.detach().clone().requires_grad_(True)
    with _Ops() as ops:
        y1 = ours(x1)
    assert len(_products(ops)) == 1 and not any("convolution" in name for name in ops.names), ops.names
    y2 = theirs(x2)
    torch.testing.assert_close(y1, y2, rtol=1e-5, atol=1e-5)
    _assert_same_gradients(ours, theirs, (x1, y1), (x2, y2))


def test_taps_too_large_for_memory_are_left_to_onednn(monkeypatch):
    from imgtrans.blocks import taps
    from imgtrans.blocks.unfolded import MatmulConv2d

    layer = MatmulConv2d(16, 3, 7, padding=3, padding_mode="reflect")
    x = torch.randn(1, 16, 12, 10, requires_grad=True)
    monkeypatch.setattr(taps, "TAPS_MAX_ELEMENTS", 3 * 49 * 19 * 17 - 1)  # one short of this input's taps
    with _Ops() as ops:
        y = layer(x)
    assert "aten.convolution.default" in ops.names and not _products(ops), ops.names
    torch.testing.assert_close(y, nn.Conv2d.forward(layer, x), rtol=1e-5, atol=1e-5)


def test_string_padding_takes_the_usual_path():
    from imgtrans.blocks.unfolded import MatmulConv2d

    for out in (1, 16):  # the taps and the matmul path would both misread "same"
        layer = MatmulConv2d(16, out, 3, padding="same")
        x = torch.randn(1, 16, 4, 4, requires_grad=True)
        torch.testing.assert_close(layer(x), nn.Conv2d.forward(layer, x), rtol=1e-5, atol=1e-5)


def test_taps_sum_in_float32_under_autocast_and_keep_other_dtypes():
    # A sum of 16 partial maps each rounded to bfloat16 would be ~5e-2 off; in float32 it is the
    # float32 convolution of the bf16 input, to float rounding.
    from imgtrans.blocks.unfolded import MatmulConv2d

    torch.manual_seed(0)
    layer = MatmulConv2d(64, 1, 4, 1, 1)
    x = torch.randn(1, 64, 15, 15).bfloat16().requires_grad_(True)
    with torch.autocast("cpu", torch.bfloat16):
        y = layer(x)
    assert y.dtype == torch.float32
    exact = nn.functional.conv2d(x.detach().double(), layer.weight.double(), layer.bias.double(), 1, 1)
    torch.testing.assert_close(y.double(), exact, rtol=1e-5, atol=1e-5)
    y.sum().backward()
    assert x.grad.dtype == torch.bfloat16 and layer.weight.grad.dtype == torch.float32
    assert layer.double()(x.detach().double()).dtype == torch.float64
    assert layer.bfloat16()(x.detach()).dtype == torch.bfloat16  # a bf16 model outside autocast stays bf16


@pytest.mark.parametrize("m, k, n", [(64, 32, 4), (4, 32, 64), (1, 16, 48), (48, 1, 16)])
@pytest.mark.parametrize("a_columns, b_columns", [(False, False), (False, True), (True, False), (True, True)])
def test_product_and_its_gradients_equal_float64s(m, k, n, a_columns, b_columns):
    # Every memory layout the matmul convolutions hand over, both orientations of oneDNN's product.
    from imgtrans.blocks import product as P

    a = _stored(m, k, a_columns).requires_grad_(True)
    b = _stored(k, n, b_columns).requires_grad_(True)
    with _Ops() as ops:
        c = P.product(a, b)
    if P._LINEAR is not None:  # builds with oneDNN: its product, not MKL's
        assert ops.names.count("mkldnn._linear_pointwise.default") == 1 and "aten.mm.default" not in ops.names
    for ours, exact in _with_float64s(a, b, c):
        assert ours.dtype == torch.float32 and ours.shape == exact.shape
        torch.testing.assert_close(ours.double(), exact, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("m, k, n", [(512, 8192, 1), (1, 512, 8192), (512, 1, 8192), (8192, 512, 1)])
@pytest.mark.parametrize("a_columns, b_columns", [(False, False), (False, True), (True, False), (True, True)])
@pytest.mark.parametrize("amp", [False, True])
def test_products_with_a_vector_equal_float64s_in_float32(m, k, n, a_columns, b_columns, amp):
    # The 1x1 bottleneck's products (512 x 8192 weights against one pixel) take the memory-bound
    # kernels, in float32 under autocast too: every gradient, every layout, each result in float32.
    from imgtrans.blocks import product as P

    torch.manual_seed(0)
    a = _stored(m, k, a_columns).requires_grad_(True)
    b = _stored(k, n, b_columns).requires_grad_(True)
    assert P._with_vector(a, b)
    with torch.autocast("cpu", torch.bfloat16, enabled=amp):
        c = P.product(a, b)
    for ours, exact in _with_float64s(a, b, c):
        assert ours.dtype == torch.float32 and ours.shape == exact.shape
        assert (ours.double() - exact).norm() <= 1e-5 * exact.norm()  # float32 rounding over sums of 8192
    for operand in (a, b):  # the outer products (the weight gradients) come out in their operand's layout
        if min(operand.shape) > 1:
            assert operand.grad.stride() == operand.stride()


def test_products_with_a_vector_take_the_memory_bound_kernels():
    # oneDNN's matmul streams a matrix against a vector at half the memory's speed: the outer product is
    # one broadcast multiply, v^T W (W row-major) MKL's gemv; smaller matrices stay with oneDNN.
    from imgtrans.blocks import product as P

    if P._LINEAR is None:
        pytest.skip("oneDNN's product is registered on x86 builds only")
    w = torch.randn(512, 8192)
    for a, b, kernel in ((torch.randn(512, 1), torch.randn(1, 8192), "aten.mul.Tensor"),
                         (torch.randn(1, 512), w, "aten.mm.default"),
                         (w.t(), torch.randn(512, 1), "aten.mm.default"),
                         (w, torch.randn(8192, 1), "mkldnn._linear_pointwise.default"),
                         (torch.randn(1, 64), torch.randn(64, 128), "mkldnn._linear_pointwise.default")):  # fmt: skip
        with _Ops() as ops:
            c = P.product(a, b)
        assert kernel in ops.names and len(_products(ops)) == (kernel != "aten.mul.Tensor"), ops.names
        exact = a.double() @ b.double()
        assert (c.double() - exact).norm() <= 1e-5 * exact.norm()
    with torch.autocast("cpu", torch.bfloat16), _Ops() as ops:  # the weight is not cast to bfloat16
        c = P.product(w, torch.randn(8192, 1))
    assert c.dtype == torch.float32 and "aten._to_copy.default" not in ops.names, ops.names


@pytest.mark.parametrize("transposed", [False, True])
def test_matmul_convolutions_differentiate_twice(transposed):
    # WGAN-GP's gradient penalty backpropagates through D's input gradient (create_graph=True): D's
    # weights must get the penalty's gradient through the matmul path as through PyTorch's convolution.
    from imgtrans.blocks.transposed import MatmulConvTranspose2d
    from imgtrans.blocks.unfolded import MatmulConv2d
    from imgtrans.losses import gradient_penalty

    torch.manual_seed(0)
    ours = nn.Sequential((MatmulConvTranspose2d if transposed else MatmulConv2d)(6, 16, 4, 2, 1), nn.Tanh(),
                         MatmulConv2d(16, 1, 4, 2, 1))  # fmt: skip
    theirs = nn.Sequential((nn.ConvTranspose2d if transposed else nn.Conv2d)(6, 16, 4, 2, 1), nn.Tanh(),
                           nn.Conv2d(16, 1, 4, 2, 1))  # fmt: skip
    theirs.load_state_dict(ours.state_dict())
    real, fake = torch.randn(2, 6, 4, 4), torch.randn(2, 6, 4, 4)
    for net in (ours, theirs):
        torch.manual_seed(1)  # the same mixing weights
        gradient_penalty(net, real, fake).backward()
    assert all(net[0].weight.grad.abs().sum() > 0 for net in (ours, theirs))
    for mine, reference in zip(ours.parameters(), theirs.parameters()):
        if reference.grad is None:  # the last bias: the input gradient does not depend on it
            assert mine.grad is None or not mine.grad.any()
        else:
            torch.testing.assert_close(mine.grad, reference.grad, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("weight_format", [torch.contiguous_format, torch.channels_last])
def test_matmul_convolutions_hand_weight_gradients_over_in_the_weights_layout(transposed, memory_format, weight_format):
    # A weight gradient in another layout than its weight is copied by autograd at every step (13 ms for
    # a 16 MB weight whose layer is fed channels-last activations): oneDNN's product writes it in place.
    # A channels-last weight (the U-Net on AMX CPUs) is read as the matrix it is in memory, never copied.
    from imgtrans.blocks.product import _LINEAR
    from imgtrans.blocks.transposed import MatmulConvTranspose2d
    from imgtrans.blocks.unfolded import MatmulConv2d

    if _LINEAR is None:
        pytest.skip("oneDNN's product is registered on x86 builds only")
    layer = (MatmulConvTranspose2d if transposed else MatmulConv2d)(32, 16, 4, 2, 1, bias=False)
    reference = (nn.ConvTranspose2d if transposed else nn.Conv2d)(32, 16, 4, 2, 1, bias=False)
    reference.load_state_dict(layer.state_dict())
    layer.to(memory_format=weight_format)
    x = torch.randn(1, 32, 4, 4).contiguous(memory_format=memory_format).requires_grad_(True)  # 2x2 or 8x8 out
    with _Ops() as forward:
        y = layer(x)
    assert len(_products(forward)) == 1, forward.names
    g = torch.randn_like(y)
    with _Ops() as ops:
        y.backward(g)
    copying = ("aten.copy_.default", "aten.clone.default", "aten._to_copy.default")
    copies = [args[0].shape for name, args in forward.calls + ops.calls if name in copying]
    weight_copies = [shape for shape in copies if shape.numel() == layer.weight.numel()]
    assert not weight_copies and layer.weight.grad.stride() == layer.weight.stride(), forward.names + ops.names
    x2 = x.detach().clone().requires_grad_(True)
    torch.testing.assert_close(y, reference(x2), rtol=1e-5, atol=1e-5)
    x2.grad = None
    reference(x2).backward(g)
    torch.testing.assert_close(layer.weight.grad, reference.weight.grad, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(x.grad, x2.grad, rtol=1e-5, atol=1e-5)


def test_product_takes_broadcast_and_strided_operands():
    # What autograd and callers may hand over: a loss's expanded gradient (strides 0), slices, broadcasts.
    from imgtrans.blocks.product import product

    a, b = torch.randn(64, 32, requires_grad=True), torch.randn(32, 4, requires_grad=True)
    product(a, b).sum().backward()  # the gradient arrives as ones expanded to 64 x 4
    a64, b64 = a.detach().double().requires_grad_(True), b.detach().double().requires_grad_(True)
    (a64 @ b64).sum().backward()
    torch.testing.assert_close(a.grad.double(), a64.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(b.grad.double(), b64.grad, rtol=1e-5, atol=1e-5)
    broadcast, sliced = torch.randn(1, 32).expand(64, 32), torch.randn(32, 16)[:, ::2]
    torch.testing.assert_close(product(broadcast, sliced), broadcast @ sliced, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("amp", [False, True])
@pytest.mark.parametrize("a_shape, b_shape", [((512, 1), (512, 8192)), ((64, 32), (16, 4)), ((8192,), (512, 8192))])
def test_product_of_mismatched_shapes_fails_as_matmul_does(a_shape, b_shape, amp):
    # An outer product written as a broadcast multiply would give (512, 1) x (512, 8192) a result.
    from imgtrans.blocks.product import product

    a, b = torch.randn(a_shape), torch.randn(b_shape)
    refused = pytest.raises(RuntimeError, match="cannot be multiplied|size mismatch")
    with torch.autocast("cpu", torch.bfloat16, enabled=amp), refused:
        product(a, b)


def test_product_leaves_autocast_and_other_dtypes_to_pytorch():
    from imgtrans.blocks.product import product

    a, b = torch.randn(8, 16), torch.randn(16, 4)
    with torch.autocast("cpu", torch.bfloat16), _Ops() as ops:
        c = product(a, b)
    assert c.dtype == torch.bfloat16 and "aten.mm.default" in ops.names, ops.names
    with _Ops() as ops:
        c = product(a.double(), b.double())
    assert c.dtype == torch.float64 and "aten.mm.default" in ops.names, ops.names


def test_matmul_convolutions_train_under_torch_compile():
    # The trainer's compile option: inductor cannot lower oneDNN's linear for weights that train,
    # so compiled graphs take the plain product, and agree with eager.
    from imgtrans.blocks.transposed import MatmulConvTranspose2d
    from imgtrans.blocks.unfolded import MatmulConv2d

    torch.manual_seed(0)
    net = nn.Sequential(MatmulConv2d(16, 32, 4, 2, 1), nn.ReLU(), MatmulConvTranspose2d(32, 8, 4, 2, 1))
    x = torch.randn(2, 16, 4, 4)
    net(x).square().sum().backward()
    eager = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    y = torch.compile(net)(x)
    y.square().sum().backward()
    torch.testing.assert_close(y, net(x), rtol=1e-5, atol=1e-5)
    for ours, theirs in zip((p.grad for p in net.parameters()), eager):
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("transposed", [False, True])
def test_matmul_convolutions_take_inputs_as_pytorchs_do(transposed):
    from imgtrans.blocks.transposed import MatmulConvTranspose2d
    from imgtrans.blocks.unfolded import MatmulConv2d

    ours = (MatmulConvTranspose2d if transposed else MatmulConv2d)(16, 8, 4, 2, 1)
    theirs = (nn.ConvTranspose2d if transposed else nn.Conv2d)(16, 8, 4, 2, 1)
    theirs.load_state_dict(ours.state_dict())
    with pytest.raises(RuntimeError, match="expected input.*to have 16 channels"):  # PyTorch's own message
        ours(torch.randn(1, 3, 4, 4))
    x = torch.randn(16, 4, 4)  # unbatched, as nn.Conv2d accepts it
    torch.testing.assert_close(ours(x), theirs(x), rtol=1e-5, atol=1e-5)


def test_matmul_convolution_in_inference_is_onednns():
    from imgtrans.blocks.unfolded import MatmulConv2d

    layer = MatmulConv2d(16, 8, 4, 2, 1)
    with torch.no_grad(), _Ops() as ops:
        layer(torch.randn(1, 16, 2, 2))
    assert "aten.convolution.default" in ops.names and not _products(ops), ops.names


def _assert_same_gradients(ours: nn.Module, theirs: nn.Module, mine: tuple, reference: tuple) -> None:
    """One random gradient backpropagated through each layer's ``(input, output)``: input and parameter gradients agree."""
    (x1, y1), (x2, y2) = mine, reference
    g = torch.randn_like(y1)
    y1.backward(g)
    y2.backward(g)
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-5, atol=1e-5)
    for (name, p1), p2 in zip(ours.named_parameters(), theirs.parameters()):
        torch.testing.assert_close(p1.grad, p2.grad, rtol=1e-4, atol=1e-4, msg=lambda m, name=name: f"{name}: {m}")


def _stored(rows: int, cols: int, column_major: bool) -> torch.Tensor:
    """A random ``rows x cols`` matrix, stored row- or column-major."""
    return torch.randn(cols, rows).t() if column_major else torch.randn(rows, cols)


def _with_float64s(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``c = a @ b`` and both gradients from one random output gradient, each beside float64's."""
    a64, b64 = a.detach().double().requires_grad_(True), b.detach().double().requires_grad_(True)
    c64 = a64 @ b64
    g = torch.randn(c.shape)
    c.backward(g)
    c64.backward(g.double())
    return [(c, c64), (a.grad, a64.grad), (b.grad, b64.grad)]


def _products(ops) -> list[str]:
    """The matrix products among the operators ``ops`` saw (MKL's ``mm``, or oneDNN's ``linear`` in float32)."""
    return [n for n in ops.names if n in ("aten.mm.default", "aten.bmm.default", "mkldnn._linear_pointwise.default")]


class _Ops:
    """The ATen operators dispatched inside the ``with`` block (``.names``; with their arguments, ``.calls``)."""

    def __enter__(self):
        from torch.utils._python_dispatch import TorchDispatchMode

        names, calls = self.names, self.calls = [], []

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                names.append(str(func))
                calls.append((str(func), args))
                return func(*args, **(kwargs or {}))

        self.mode = Mode()
        self.mode.__enter__()
        return self

    def __exit__(self, *exc):
        return self.mode.__exit__(*exc)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_matmul_transposed_convolution_is_one_product_for_weights_without_gradients(dtype):
    # torch.matmul(W^T, X) with a batched X folds into one product only while autograd tracks W; for
    # weights that need no gradient (frozen, or cast by autocast) it broadcasts W^T, and in bf16 it
    # copied it once per image: two thirds of bf16 inference time. The layer must use one 2-D product.
    from imgtrans.blocks.transposed import MatmulConvTranspose2d

    layer = MatmulConvTranspose2d(16, 8, 4, 2, 1).to(dtype).requires_grad_(False)
    reference = nn.ConvTranspose2d(16, 8, 4, 2, 1).to(dtype)
    reference.load_state_dict(layer.state_dict())
    for memory_format in (torch.contiguous_format, torch.channels_last):
        x = torch.randn(4, 16, 3, 5, dtype=dtype).contiguous(memory_format=memory_format).requires_grad_(True)
        with _Ops() as ops:
            y = layer(x)
        assert len(_products(ops)) == 1 and "aten.bmm.default" not in ops.names, ops.names
        tolerance = 1e-5 if dtype == torch.float32 else 2e-2
        with torch.no_grad():
            torch.testing.assert_close(y.float(), reference(x).float(), rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("out_channels, transposed", [(16, True), (3, False)])
def test_transposed_convolution_in_inference_is_onednns(dtype, out_channels, transposed):
    # Without autograd oneDNN's convolution is faster at every size (U-Net 256, batch 8: 322 -> 279 ms), so
    # inference and torch.compile's frozen graphs never take the matmul path; with few output channels
    # (the last layer's 3) the four output phases run as one ordinary convolution (20 -> 8.5 ms).
    from imgtrans.blocks.transposed import MatmulConvTranspose2d

    layer = MatmulConvTranspose2d(16, out_channels, 4, 2, 1).to(dtype)
    x = torch.randn(4, 16, 3, 5, dtype=dtype)
    with torch.no_grad(), _Ops() as ops:
        y = layer(x)
    convolutions = [args[6] for name, args in ops.calls if name == "aten.convolution.default"]
    assert not _products(ops) and convolutions == [transposed], ops.names
    tolerance = 1e-5 if dtype == torch.float32 else 2e-2
    with torch.no_grad():
        torch.testing.assert_close(y, nn.ConvTranspose2d.forward(layer, x), rtol=tolerance, atol=tolerance)
    with _Ops() as ops:  # autograd on: the matmul path, as in training
        layer(x)
    assert _products(ops), ops.names


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("inplace", [False, True])
def test_dropout_draws_the_same_mask_in_any_memory_layout(dtype, inplace):
    # PyTorch draws the mask in memory order: a channels-last U-Net (AMX CPUs) would drop other units from one seed.
    from imgtrans.blocks.dropout import Dropout

    x = torch.randn(2, 8, 4, 4, dtype=dtype)
    torch.manual_seed(3)
    reference = nn.Dropout(0.5)(x.clone())
    torch.manual_seed(3)
    assert not torch.equal(nn.Dropout(0.5)(x.contiguous(memory_format=torch.channels_last)), reference)  # the premise
    for memory_format in (torch.contiguous_format, torch.channels_last):
        torch.manual_seed(3)
        y = Dropout(0.5, inplace=inplace)(x.clone(memory_format=memory_format))  # a copy: inplace writes it
        assert torch.equal(y, reference) and y.is_contiguous(memory_format=memory_format)
    assert torch.equal(Dropout(0.5).eval()(x.contiguous(memory_format=torch.channels_last)), x)
    x.requires_grad_(dtype == torch.float32)
    if x.requires_grad:  # the gradient passes the kept units, scaled by 1 / (1 - p)
        torch.manual_seed(3)
        Dropout(0.5)(x.contiguous(memory_format=torch.channels_last)).sum().backward()
        assert torch.equal(x.grad, (reference != 0).float() * 2)
