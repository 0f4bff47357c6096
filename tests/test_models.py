"""The StRA block against naive per-pixel implementations, and every registered model's shapes and gradients."""

import math

import pytest
import torch
import torchvision

from stra_face import models
from stra_face.models import StRAConfig, create_model, diversity_loss, list_models, mode_diversity
from stra_face.models.baselines import LocalSelfAttention
from stra_face.models.stra import LocalAttention, ModeAttention

torch.manual_seed(0)


def naive_local_attention(module: LocalAttention, x: torch.Tensor) -> torch.Tensor:
    """Eq. 2 by loops: for each output pixel i, softmax over its in-image K x K neighbours j."""
    groups, k, stride = module.groups, module.kernel_size, module.stride
    batch, _, height, width = x.shape
    logits = module.mask_branch(x).reshape(batch, groups, 1 + k * k, height, width)
    nu, omega = logits[:, :, 0], logits[:, :, 1:]
    values = module.value(x)
    per_group = values.shape[1] // groups
    out_h, out_w = (height - 1) // stride + 1, (width - 1) // stride + 1
    out = torch.zeros(batch, values.shape[1], out_h, out_w)
    for b in range(batch):
        for g in range(groups):
            channels = slice(g * per_group, (g + 1) * per_group)
            for oy in range(out_h):
                for ox in range(out_w):
                    y, x_ = oy * stride, ox * stride
                    scores, neighbours = [], []
                    for dy in range(k):
                        for dx in range(k):
                            ny, nx = y + dy - k // 2, x_ + dx - k // 2
                            if 0 <= ny < height and 0 <= nx < width:
                                scores.append(omega[b, g, dy * k + dx, y, x_] + nu[b, g, ny, nx])
                                neighbours.append(values[b, channels, ny, nx])
                    weights = torch.stack(scores).softmax(dim=0)
                    out[b, channels, oy, ox] = (weights[:, None] * torch.stack(neighbours)).sum(0)
    return out


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("kernel_size", [3, 5])
def test_local_attention_matches_naive_loop(stride, kernel_size):
    module = LocalAttention(16, 24, stride, StRAConfig(groups=4, kernel_size=kernel_size)).eval()
    for bn in (module.mask_branch[1], module.mask_branch[4]):  # non-trivial BN statistics
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
    x = torch.randn(2, 16, 7, 6)
    with torch.no_grad():
        expected = naive_local_attention(module, x)
        got = module(x)
    assert got.shape == expected.shape == (2, 24, (7 - 1) // stride + 1, (6 - 1) // stride + 1)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_local_attention_weights_sum_to_one_and_ignore_padding():
    module = LocalAttention(8, 8, 1, StRAConfig(groups=2)).eval()
    with torch.no_grad():
        weights = module.attention_weights(torch.randn(3, 8, 5, 5))
    assert weights.shape == (3, 2, 9, 5, 5)
    torch.testing.assert_close(weights.sum(dim=2), torch.ones(3, 2, 5, 5))
    # The top-left pixel's neighbours above and to the left are outside the image.
    outside = [0, 1, 2, 3, 6]
    assert weights[:, :, outside, 0, 0].abs().max() < 1e-6
    assert (weights[:, :, [4, 5, 7, 8], 0, 0] > 0).all()


def naive_mode_attention(s: torch.Tensor, groups: int, gating: str, interaction: bool) -> torch.Tensor:
    """Eqs. 1 and 3 written per mode and per pixel, mean modal vectors."""
    batch, channels, height, width = s.shape
    d = channels // groups
    scale = 1 / math.sqrt(d)
    out = s.clone()
    for b in range(batch):
        z = [s[b, g * d : (g + 1) * d].mean(dim=(1, 2)) for g in range(groups)]
        if interaction:
            z = [
                sum(
                    w * z[j] for j, w in enumerate(torch.stack([z[g] @ z[j] * scale for j in range(groups)]).softmax(0))
                )
                for g in range(groups)
            ]
        for y in range(height):
            for x in range(width):
                logits = torch.stack([s[b, g * d : (g + 1) * d, y, x] @ z[g] * scale for g in range(groups)])
                r = logits.sigmoid() if gating == "sigmoid" else logits.softmax(0)
                for g in range(groups):
                    out[b, g * d : (g + 1) * d, y, x] += r[g] * z[g]
    return out


@pytest.mark.parametrize("gating", ["sigmoid", "softmax"])
@pytest.mark.parametrize("interaction", [True, False])
def test_mode_attention_matches_naive_loop(gating, interaction):
    module = ModeAttention(12, StRAConfig(groups=3, gating=gating, mode_interaction=interaction))
    s = torch.randn(2, 12, 4, 5)
    torch.testing.assert_close(module(s), naive_mode_attention(s, 3, gating, interaction), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("gating", ["sigmoid", "softmax"])
@pytest.mark.parametrize("modal_vector", ["mean", "centroid"])
def test_mode_coefficients_are_in_unit_interval(gating, modal_vector):
    module = ModeAttention(16, StRAConfig(groups=4, gating=gating, modal_vector=modal_vector))
    captured = {}
    module.coefficients_tap.register_forward_hook(lambda m, i, o: captured.update(r=o))
    module(torch.randn(2, 16, 6, 6) * 5)
    r = captured["r"]
    assert r.shape == (2, 4, 6, 6)
    assert r.min() >= 0 and r.max() <= 1
    if gating == "softmax":  # modes mutually exclusive: coefficients of a pixel sum to 1
        torch.testing.assert_close(r.sum(dim=1), torch.ones(2, 6, 6))


def test_centroid_is_pulled_towards_the_dominant_pixels():
    module = ModeAttention(4, StRAConfig(groups=1, modal_vector="centroid"))
    s_g = torch.zeros(1, 1, 4, 10)  # (B, G, d, N)
    s_g[0, 0, 0, :8] = 4.0  # 8 pixels along e0
    s_g[0, 0, 1, 8:] = 4.0  # 2 pixels along e1
    mean = s_g.mean(dim=-1)[0, 0]
    centroid = module.modal_vectors(s_g)[0, 0]
    assert centroid[0] > mean[0] and centroid[1] < mean[1]


def test_mode_diversity_bounds_and_regulariser():
    orthogonal = torch.eye(4).unsqueeze(0)
    same = torch.ones(1, 4, 4)
    torch.testing.assert_close(mode_diversity(orthogonal), torch.zeros(1))
    torch.testing.assert_close(mode_diversity(same), torch.ones(1))

    model = create_model("resnet50_stra", num_classes=3)
    model(torch.randn(2, 3, 64, 64))
    loss = diversity_loss(model)
    assert loss.ndim == 0 and loss > 0
    loss.backward()
    assert model.backbone.layer4[0].conv2.local.value.weight.grad.abs().sum() > 0
    plain = create_model("resnet50", num_classes=3)
    plain(torch.randn(1, 3, 64, 64))
    assert diversity_loss(plain) == 0


def test_local_only_variant_has_no_mode_attention():
    model = create_model("resnet50_stra", mode_attention=False, groups=4)
    blocks = [m for m in model.modules() if isinstance(m, models.StRA)]
    assert len(blocks) == 3 and all(b.mode is None and b.local.groups == 4 for b in blocks)
    assert not any(isinstance(m, ModeAttention) for m in model.modules())


@pytest.mark.parametrize("name", list_models())
def test_every_model_forward_backward(name):
    model = create_model(name, num_classes=5)
    x = torch.randn(2, 3, 64, 64, requires_grad=True)
    logits = model(x)
    assert logits.shape == (2, 5)
    (logits.sum() + diversity_loss(model)).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"parameters without gradient: {missing[:5]}"


@pytest.mark.parametrize("name", ["resnet50_stra", "mobilenetv2_100_stra"])
def test_heads_and_input_options(name):
    embedder = create_model(name, embedding_dim=128, in_chans=1, stem_stride=2).eval()
    assert embedder(torch.randn(3, 1, 48, 48)).shape == (3, 128)
    features = create_model(name).eval()
    assert features(torch.randn(1, 3, 64, 64)).shape == (1, features.num_features)
    flat = create_model("resnet50_stra", embedding_dim=64, embedding_pool="flatten", input_size=(112, 112)).eval()
    assert flat(torch.randn(2, 3, 112, 112)).shape == (2, 64)


def test_last_stride_keeps_reid_resolution():
    for name in ("resnet50", "resnet50_stra", "mobilenetv2_100_stra"):
        model = create_model(name, last_stride=1).eval()
        assert model.forward_features(torch.randn(1, 3, 256, 128)).shape[-2:] == (16, 8), name


def test_plain_backbones_match_torchvision():
    def count(m):
        return sum(p.numel() for p in m.parameters())

    assert count(create_model("resnet50", num_classes=1000)) == count(torchvision.models.resnet50())
    assert count(create_model("mobilenetv2_100", num_classes=1000)) == count(torchvision.models.mobilenet_v2())
    assert count(create_model("mobilenetv2_140", num_classes=1000)) == count(
        torchvision.models.mobilenet_v2(width_mult=1.4)
    )


def naive_sasa(module: LocalSelfAttention, x: torch.Tensor) -> torch.Tensor:
    heads, k = module.heads, module.kernel_size
    q, key, v = module.query(x), module.key(x), module.value(x)
    rel = module.relative_embedding()
    _, channels, height, width = q.shape
    d = channels // heads
    out = torch.zeros_like(q)
    for h in range(heads):
        c = slice(h * d, (h + 1) * d)
        for y in range(height):
            for x_ in range(width):
                scores, vals = [], []
                for dy in range(k):
                    for dx in range(k):
                        ny, nx = y + dy - k // 2, x_ + dx - k // 2
                        if 0 <= ny < height and 0 <= nx < width:
                            scores.append(q[0, c, y, x_] @ (key[0, c, ny, nx] + rel[:, dy * k + dx]) * module.scale)
                            vals.append(v[0, c, ny, nx])
                out[0, c, y, x_] = (torch.stack(scores).softmax(0)[:, None] * torch.stack(vals)).sum(0)
    return out


def test_sasa_matches_naive_loop():
    module = LocalSelfAttention(8, 8, heads=2, kernel_size=3)
    x = torch.randn(1, 8, 5, 4)
    with torch.no_grad():
        torch.testing.assert_close(module(x), naive_sasa(module, x), atol=1e-5, rtol=1e-5)


def test_unknown_model_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown model 'resnet51'"):
        create_model("resnet51")
