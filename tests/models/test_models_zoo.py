"""The zoo factory: widths, branch independence, shapes, exact CifarNet split8 branch, config,
the bottleneck and depthwise-separable architectures."""

import json
import math
from fractions import Fraction

import pytest
import torch
import torch.nn as nn
import brevitas.nn as qnn
from brevitas.quant import Int32Bias

import lcp.models as M
from lcp.models import ARCHS, SPLITS, build, branch_width, calibrate, example_input


def test_branch_width_is_exact_ceiling():
    for base in range(1, 600):
        for split in SPLITS:
            for widen in M.WIDENS:
                want = math.ceil(Fraction(base, split) * Fraction(100 + widen, 100))
                assert branch_width(base, split, widen) == want, (base, split, widen)
    # float arithmetic would give 34 here (120 / 4 * 1.1 = 33.000000000000004)
    assert branch_width(120, 4, 10) == 33
    assert [branch_width(6, s) for s in SPLITS] == [6, 3, 2, 1]


@pytest.mark.parametrize("arch,split,widen,widths", [
    ("lenet5", 1, 0, [6, 16, 120, 84]),
    ("lenet5", 4, 0, [2, 4, 30, 21]),
    ("lenet_fc", 8, 0, [38, 13]),
    ("cifarnet", 8, 0, [8, 8, 48, 24]),
    ("cifarnet", 8, 40, [12, 12, 68, 34]),
    ("resnet18", 8, 0, [8, 8, 8, 16, 16, 32, 32, 64, 64]),
])
def test_model_widths_follow_split_and_widen(arch, split, widen, widths):
    m = build(arch, split=split, widen=widen)
    assert m.branch_widths == widths
    assert len(m.branches) == split
    # the modules really have these widths: outputs of the convs/FCs outside residual shortcuts
    outs = [mod.out_channels if isinstance(mod, nn.Conv2d) else mod.out_features
            for mod in m.branches[0].modules()
            if isinstance(mod, (nn.Conv2d, nn.Linear))
            and not (isinstance(mod, nn.Conv2d) and mod.kernel_size == (1, 1))]
    if arch == "resnet18":
        outs = [outs[0]] + outs[2::2]     # stem, then the second conv of every block
    assert outs == widths
    assert m.merge.in_features == split * widths[-1]


def test_cifarnet_split8_branch_is_exactly_the_reference_branch():
    m = build("cifarnet", split=8, weight_bits=4, act_bits=4)
    layers = []
    for mod in m.branches[0]:
        if isinstance(mod, qnn.QuantConv2d):
            layers.append(("conv", mod.in_channels, mod.out_channels, mod.kernel_size,
                           mod.stride, mod.padding))
        elif isinstance(mod, qnn.QuantLinear):
            layers.append(("fc", mod.in_features, mod.out_features))
        elif isinstance(mod, qnn.QuantReLU):
            layers.append(("relu",))
        elif isinstance(mod, nn.MaxPool2d):
            layers.append(("maxpool", mod.kernel_size, mod.stride))
        elif isinstance(mod, nn.Flatten):
            layers.append(("flatten",))
        else:
            layers.append(type(mod).__name__)
    assert layers == [
        ("conv", 3, 8, (5, 5), (1, 1), (2, 2)), ("relu",), ("maxpool", 2, 2),
        ("conv", 8, 8, (5, 5), (1, 1), (2, 2)), ("relu",), ("maxpool", 2, 2),
        ("flatten",), ("fc", 512, 48), ("relu",), ("fc", 48, 24),
    ]
    assert isinstance(m.branch_act, qnn.QuantReLU)
    assert (m.merge.in_features, m.merge.out_features) == (192, 10)
    m.eval()
    assert tuple(m.branch_forward(0, m.input_quant(example_input((3, 32, 32), 2))).shape) == (2, 24)


#: Archs whose split2/4/8 builds take several seconds (hundreds of quantized layers): -m slow.
DEEP = {"vgg16", "resnet50", "mobilenet_v1"}


def _shape_cases():
    for arch in ARCHS:
        for split, widen in [(1, 0), (2, 0), (4, 0), (8, 0), (8, 40)]:
            slow = ARCHS[arch].dataset == "imagenet" or (arch in DEEP and split > 1)
            yield pytest.param(arch, split, widen, marks=pytest.mark.slow if slow else (),
                               id=f"{arch}-{split}-{widen}")


@pytest.mark.parametrize("arch,split,widen", list(_shape_cases()))
def test_forward_shapes(arch, split, widen):
    m = build(arch, split=split, widen=widen, num_classes=7).eval()
    x = example_input(m.in_shape, 2 if ARCHS[arch].dataset != "imagenet" else 1)
    with torch.no_grad():
        assert tuple(m(x).shape) == (len(x), 7)
        xq = m.input_quant(x)
        outs = [m.branch_forward(i, xq) for i in range(split)]
    assert all(tuple(o.shape) == (len(x), m.merge.in_features // split) for o in outs)


def test_in_shape_is_checked_and_used():
    m = build("lenet_fc", in_shape=(1, 8, 8)).eval()
    assert m.branches[0][1].in_features == 64 and m.in_shape == (1, 8, 8)
    with pytest.raises(ValueError, match="does not fit"):
        build("lenet5", in_shape=(1, 8, 8))


@pytest.mark.parametrize("kw,msg", [
    (dict(arch="nope"), "unknown arch"), (dict(arch="lenet5", split=3), "split"),
    (dict(arch="lenet5", widen=-10), "widen"), (dict(arch="lenet5", num_classes=1), "num_classes"),
    (dict(arch="lenet5", branch_dropout=1.0), "branch_dropout"),
])
def test_bad_config_raises(kw, msg):
    with pytest.raises(ValueError, match=msg):
        build(kw.pop("arch"), **kw)


def test_every_layer_uses_the_common_quantizers():
    m = build("resnet18", split=2, weight_bits=3, act_bits=5)
    n_conv = n_act = 0
    inner = {id(sub) for mod in m.modules() if isinstance(mod, qnn.QuantReLU)
             for sub in mod.modules() if sub is not mod}   # the ReLU inside each QuantReLU
    for mod in m.modules():
        if id(mod) in inner:
            continue
        if isinstance(mod, (nn.Conv2d, nn.Linear)):
            assert isinstance(mod, (qnn.QuantConv2d, qnn.QuantLinear))
            assert mod.bias is not None and mod.bias_quant.is_quant_enabled
            assert issubclass(mod.bias_quant.quant_injector, Int32Bias)
            assert mod.quant_weight().bit_width.item() == 3
            n_conv += 1
        elif isinstance(mod, (nn.ReLU, nn.Dropout, nn.Softmax, nn.AvgPool2d)):
            pytest.fail(f"float op {mod} in the model")
        elif isinstance(mod, (qnn.QuantReLU, qnn.QuantIdentity)) and mod is not m.input_quant:
            assert mod.act_quant.bit_width().item() == 5
            n_act += 1
    assert n_conv == 2 * (1 + 8 * 2 + 3) + 1 and n_act > n_conv - 1


def _calibrated(arch, split, seed=0, **kw):
    torch.manual_seed(seed)
    m = build(arch, split=split, **kw)
    return calibrate(m, [example_input(m.in_shape, 16, seed=s) for s in range(3)])


#: Smaller inputs for the deep nets in the branch-independence tests (same layers, less compute).
SMALL = {"mobilenet_v1": (3, 16, 16), "resnet50": (3, 16, 16)}


@pytest.mark.parametrize("arch,split", [("lenet5", 4), ("resnet18", 2), ("lenet_fc", 8),
                                        ("mobilenet_v1", 2)])
def test_no_cross_branch_gradient(arch, split):
    m = _calibrated(arch, split, in_shape=SMALL.get(arch))
    xq = m.input_quant(example_input(m.in_shape, 4, seed=9))
    for i in range(split):
        out = m.branch_forward(i, xq).value.sum()
        params = [list(b.parameters()) for b in m.branches]
        flat = [p for ps in params for p in ps]
        grads = torch.autograd.grad(out, flat, allow_unused=True)
        k = 0
        for j, ps in enumerate(params):
            g = grads[k:k + len(ps)]
            k += len(ps)
            nonzero = any(x is not None and x.abs().sum() > 0 for x in g)
            assert nonzero == (i == j), f"branch {i} output vs branch {j} parameters"


@pytest.mark.parametrize("arch,split", [("cifarnet", 4), ("resnet18", 2), ("mobilenet_v1", 2),
                                        pytest.param("resnet50", 2, marks=pytest.mark.slow)])
def test_perturbing_one_branch_changes_only_its_features(arch, split):
    m = _calibrated(arch, split, in_shape=SMALL.get(arch))
    x = example_input(m.in_shape, 4, seed=5)
    w = m.merge.in_features // split
    with torch.no_grad():
        before = m.features(x).value.clone()
        j = split - 1
        for p in m.branches[j].parameters():
            p.add_(torch.randn_like(p) * p.abs().mean())
        after = m.features(x).value
    changed = (before != after).reshape(4, split, w).any(dim=(0, 2))
    assert changed.tolist() == [b == j for b in range(split)]


def test_branch_act_is_one_shared_module_and_scale():
    m = _calibrated("lenet5", 4)
    assert all(m.branch_act is not mod for b in m.branches for mod in b.modules())
    xq = m.input_quant(example_input(m.in_shape, 2))
    scales = {m.branch_forward(i, xq).scale.item() for i in range(4)}
    assert len(scales) == 1
    ids = [{id(p) for p in b.parameters()} for b in m.branches]
    assert all(not (ids[a] & ids[b]) for a in range(4) for b in range(a + 1, 4))


def test_config_roundtrip_and_entry_points():
    m = M.lenet5_split4_w4a4()
    cfg = m.config()
    assert json.loads(json.dumps(cfg)) == cfg
    assert (cfg["arch"], cfg["split"], cfg["widen"], cfg["weight_bits"]) == ("lenet5", 4, 0, 4)
    m2 = build(cfg.pop("arch"), **cfg)
    assert {k: v.shape for k, v in m2.state_dict().items()} == \
           {k: v.shape for k, v in m.state_dict().items()}
    f40 = M.from_name("cifarnet_split8_f40_w2a3")
    assert (f40.split, f40.widen, f40.weight_bits, f40.act_bits) == (8, 40, 2, 3)
    assert "resnet18_split8_f40_w4a4" in M.ENTRY_POINTS
    assert "mobilenet_v1_imagenet_split8_f40_w4a4" in M.ENTRY_POINTS
    big = M.from_name("resnet18_imagenet_split1_w3a5")
    assert (big.arch, big.split, big.weight_bits, big.act_bits) == ("resnet18_imagenet", 1, 3, 5)
    assert big.in_shape == (3, 224, 224) and big.num_classes == 1000 == big.merge.out_features
    assert M.model_name("lenet_fc", 2, 10, 8, 8) == "lenet_fc_split2_f10_w8a8"
    with pytest.raises(ValueError, match="not a model name"):
        M.from_name("lenet5-split4")


def test_archs_record_data_availability():
    assert {a for a, s in ARCHS.items() if s.has_data} == {"lenet5", "lenet_fc"}
    for spec in ARCHS.values():
        assert set(spec.real_data) <= set(M.DATASETS)
        assert len(spec.in_shape) == 3 and spec.dataset in ("mnist", "cifar10", "imagenet")
        assert spec.num_classes == (1000 if spec.dataset == "imagenet" else 10)
        assert spec.name.endswith("_imagenet") == (spec.dataset == "imagenet")
        assert spec.in_shape[1:] == ((224, 224) if spec.dataset == "imagenet" else
                                     (28, 28) if spec.dataset == "mnist" else (32, 32))


def test_drop_branches_never_drops_all_and_rescales():
    torch.manual_seed(0)
    m = _calibrated("lenet_fc", 4)
    y = m.features(example_input(m.in_shape, 512))
    d = M.drop_branches(y, 4, p=0.9)
    assert d.scale is y.scale                       # quantization metadata kept
    ratio = (d.value / y.value).reshape(512, 4, -1)
    v = y.value.reshape(512, 4, -1)
    for n in range(512):
        kept = [b for b in range(4) if (d.value.reshape(512, 4, -1)[n, b] != 0).any()
                or (v[n, b] == 0).all()]
        zeroed = [b for b in range(4) if b not in kept]
        assert len(zeroed) < 4
        for b in kept:
            r = ratio[n, b][v[n, b] != 0]
            assert torch.allclose(r, torch.full_like(r, 4 / (4 - len(zeroed))))
    drops = (d.value.reshape(512, 4, -1) == 0).all(2) & (v != 0).any(2)
    assert 0.7 < drops.float().mean() < 0.75 + 0.05   # p=0.9 capped by "never all"


def test_branch_dropout_only_in_training():
    m = _calibrated("lenet_fc", 4)
    assert m.branch_dropout == 0.0
    m.branch_dropout = 0.5
    x = example_input(m.in_shape, 8)
    with torch.no_grad():
        assert torch.equal(m.eval()(x), m(x))
        m.train()
        torch.manual_seed(1)
        a = m(x)
        torch.manual_seed(2)
        b = m(x)
    assert not torch.equal(a, b)


def _convs(module):
    return [m for m in module.modules() if isinstance(m, nn.Conv2d)]


def _branch(arch, split, widen):
    """One branch of ``build(arch, split, widen)`` (building all of them takes seconds):
    ``(nn.Sequential, hidden widths, output width)``."""
    from lcp.models.zoo import _build_branch

    spec = ARCHS[arch]
    return _build_branch(spec, spec.in_shape, split, widen, 4, 4, False)


@pytest.mark.parametrize("split,widen", [(1, 0), (2, 0), (8, 40)])
def test_mobilenet_branch_is_a_narrower_mobilenet(split, widen):
    branch, widths, out_w = _branch("mobilenet_v1", split, widen)
    convs = _convs(branch)
    stem, rest = convs[0], convs[1:]
    assert (stem.in_channels, stem.out_channels, stem.kernel_size, stem.groups) == \
        (3, branch_width(32, split, widen), (3, 3), 1)
    base = [64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024]
    strides = [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1]
    assert len(rest) == 2 * len(base)
    c = stem.out_channels
    for (dw, pw), out, stride in zip(zip(rest[::2], rest[1::2]), base, strides):
        # depthwise: one 3x3 filter per channel of the branch, then a pointwise 1x1
        assert (dw.in_channels, dw.out_channels, dw.groups) == (c, c, c)
        assert dw.kernel_size == (3, 3) and dw.stride == (stride, stride)
        assert tuple(dw.weight.shape) == (c, 1, 3, 3)
        assert (pw.in_channels, pw.kernel_size, pw.groups) == (c, (1, 1), 1)
        assert pw.out_channels == branch_width(out, split, widen)
        c = pw.out_channels
    assert out_w == branch_width(1024, split, widen) and widths == [x.out_channels for x in convs]
    # BN + QuantReLU after every depthwise and pointwise conv (the last one's ReLU included:
    # the branch ends in a global average pool and the shared branch quantizer)
    kinds = [type(mod).__name__ for mod in branch]
    assert kinds.count("BatchNorm2d") == 27 and kinds.count("QuantReLU") == 27
    assert kinds[-2:] == ["TruncAdaptiveAvgPool2d", "Flatten"]


@pytest.mark.parametrize("split,widen", [(1, 0), (8, 0), (8, 40)])
def test_resnet50_bottlenecks_split_every_width(split, widen):
    from lcp.models.net import Bottleneck

    branch, widths, out_w = _branch("resnet50", split, widen)
    blocks = [b for b in branch if isinstance(b, Bottleneck)]
    assert len(blocks) == 3 + 4 + 6 + 3
    first = [0, 3, 7, 13]
    c = branch_width(64, split, widen)
    for i, b in enumerate(blocks):
        stage = sum(i >= f for f in first) - 1
        mid = branch_width(64 << stage, split, widen)
        out = branch_width(256 << stage, split, widen)
        stride = 2 if i in first[1:] else 1
        assert (b.conv1.in_channels, b.conv1.out_channels, b.conv1.kernel_size) == (c, mid, (1, 1))
        assert (b.conv2.out_channels, b.conv2.kernel_size, b.conv2.stride) == \
            (mid, (3, 3), (stride, stride))
        assert (b.conv3.out_channels, b.conv3.kernel_size) == (out, (1, 1))
        assert (b.downsample is not None) == (i in first)     # shape changes: 1x1 shortcut
        c = out
    assert widths[1:] == [b.conv3.out_channels for b in blocks]
    assert out_w == branch_width(2048, split, widen)


def test_vgg16_widths_and_imagenet_stems():
    branch, widths, out_w = _branch("vgg16", 8, 0)
    assert widths == [8, 8, 16, 16, 32, 32, 32, 64, 64, 64, 64, 64, 64, 64, 64]
    assert out_w == 64 and _convs(branch)[0].padding == (1, 1)
    fcs = [m for m in branch if isinstance(m, nn.Linear)]
    assert [(f.in_features, f.out_features) for f in fcs] == [(64, 64), (64, 64)]
    branch, widths, out_w = _branch("vgg16_imagenet", 8, 40)
    fcs = [m for m in branch if isinstance(m, nn.Linear)]
    assert [(f.in_features, f.out_features) for f in fcs] == [(7 * 7 * 90, 717), (717, 717)]
    # the ImageNet ResNets: 7x7/2 stem and a 3x3/2 max pool with padding 1 (224 -> 56)
    branch, _, _ = _branch("resnet18_imagenet", 8, 0)
    stem = _convs(branch)[0]
    assert (stem.kernel_size, stem.stride, stem.padding) == ((7, 7), (2, 2), (3, 3))
    pool = next(p for p in branch if isinstance(p, nn.MaxPool2d))
    assert (pool.kernel_size, pool.stride, pool.padding) == (3, 2, 1)


def test_bad_layer_specs_are_rejected():
    from lcp.models import zoo

    with pytest.raises(ValueError, match="padding"):
        zoo._build_branch(zoo.ArchSpec("x", (3, 8, 8), (zoo.MaxPool(2, pad=2),), "cifar10"),
                          (3, 8, 8), 1, 0, 4, 4, False)
    with pytest.raises(ValueError, match="needs a"):
        zoo._build_branch(zoo.ArchSpec("x", (3, 8, 8), (zoo.Dense(4), zoo.DepthwiseConv(3)),
                                       "cifar10"), (3, 8, 8), 1, 0, 4, 4, False)
