"""dlib's ResNet face descriptor (`dlib_face_recognition_resnet_model_v1.dat`, CC0) in PyTorch.

The network is `anet_type` of dlib's `dnn_face_recognition_ex.cpp`: a 29-conv ResNet with affine
layers (frozen batch norm) and a 128-d `fc_no_bias` head, trained by Davis King with a metric loss
(dlib publishes 99.38% on LFW). Weights are read from dlib's own `.dat` file by `read_dlib_net`,
which follows dlib's serializers (dlib/dnn/core.h, layers.h, input.h, loss.h, cuda/tensor.h and
dlib/serialize.h); nothing is converted by a third-party tool.

Input convention: (N, 3, 150, 150) float32 RGB pixel values in 0..255 (not normalised) of dlib's
150x150 face chip (`dlib.get_face_chip(image, shape, size=150, padding=0.25)`, or
`stra_face.vision.align.dlib_chip` from the service's 5 landmarks). The module itself applies
dlib's input scaling, `(pixel - mean[channel]) / 256` with mean = (122.782, 117.001, 104.298).
Output: (N, 128) raw descriptor, exactly what dlib's `compute_face_descriptor` returns (close
to, but not exactly, unit length; dlib compares them by Euclidean distance, same person < 0.6).

    from stra_face.models.dlib_resnet import load_dlib_resnet
    net = load_dlib_resnet()              # weights from the installed face_recognition_models
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

DLIB_CHIP_SIZE = 150
DLIB_CHIP_PADDING = 0.25
DLIB_DESCRIPTOR_DIM = 128
DLIB_RESNET_FILE = "dlib_face_recognition_resnet_model_v1.dat"
# (out_channels, downsampling first block?, blocks) per level, input side first: alevel4 ... alevel0.
DLIB_LEVELS = ((32, False, 3), (64, True, 4), (128, True, 3), (256, True, 3), (256, True, 1))


def dlib_model_file(name: str = DLIB_RESNET_FILE) -> Path:
    """A model file of the installed `face_recognition_models` package (the `teacher` extra).

    Located without importing the package: its __init__ imports pkg_resources, which new
    setuptools no longer ship."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("dlib's model files need `pip install face_recognition_models` (the `teacher` extra)")
    return Path(spec.submodule_search_locations[0]) / "models" / name


# --------------------------------------------------------------------------- the network


class Affine(nn.Module):
    """Per-channel scale and shift: dlib's `affine` layer (batch norm folded at inference)."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight[:, None, None] + self.bias[:, None, None]


def add_padded(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's `add_prev`: the sum over the larger of both shapes, the smaller one zero-padded at
    the end of channels, rows and columns (how a residual joins maps of different sizes)."""
    channels, height, width = (max(a.shape[i], b.shape[i]) for i in (1, 2, 3))

    def pad(t: torch.Tensor) -> torch.Tensor:
        extra = (0, width - t.shape[3], 0, height - t.shape[2], 0, channels - t.shape[1])
        return F.pad(t, extra) if any(extra) else t

    return pad(a) + pad(b)


class DlibResidual(nn.Module):
    """dlib's `ares` / `ares_down`: relu(x' + affine(con3x3(relu(affine(con3x3/s(x)))))).

    Strided convolutions and pools have no padding in dlib (its default for stride != 1), and the
    shortcut of a down block is a 2x2 average pool; `add_padded` joins the two branches."""

    def __init__(self, in_channels: int, out_channels: int, down: bool):
        super().__init__()
        self.down = down
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=2 if down else 1, padding=0 if down else 1)
        self.affine1 = Affine(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.affine2 = Affine(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.affine2(self.conv2(F.relu(self.affine1(self.conv1(x)))))
        shortcut = F.avg_pool2d(x, 2, 2) if self.down else x
        return F.relu(add_padded(shortcut, out))


class DlibFaceResNet(nn.Module):
    """(N, 3, 150, 150) RGB in 0..255 -> (N, 128) dlib face descriptor (see the module docstring)."""

    def __init__(self, mean_rgb: tuple[float, float, float] = (122.782, 117.001, 104.298)):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean_rgb, dtype=torch.float32).view(1, 3, 1, 1))
        self.stem = nn.Conv2d(3, 32, 7, stride=2)
        self.stem_affine = Affine(32)
        blocks, channels = [], 32
        for out_channels, down, count in DLIB_LEVELS:
            for index in range(count):
                blocks.append(DlibResidual(channels, out_channels, down and index == 0))
                channels = out_channels
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(channels, DLIB_DESCRIPTOR_DIM, bias=False)
        self.num_features = DLIB_DESCRIPTOR_DIM

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / 256.0
        x = F.max_pool2d(F.relu(self.stem_affine(self.stem(x))), 3, 2)
        x = self.blocks(x)
        return self.fc(x.mean(dim=(2, 3)))


# --------------------------------------------------------------------------- dlib's serialization


class DlibFormatError(ValueError):
    """The file is not the network this module describes, in dlib's serialization format."""


class _Reader:
    """dlib/serialize.h primitives over a byte buffer."""

    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise DlibFormatError("unexpected end of file")
        self.pos += 1
        return self.data[self.pos - 1]

    def int(self) -> int:
        """pack_int: a control byte (bit 7: negative, low 4 bits: byte count), then little-endian bytes."""
        control = self.byte()
        size = control & 0x0F
        if size == 0 or size > 8 or control & 0x70:
            raise DlibFormatError(f"bad integer control byte {control:#x} at offset {self.pos - 1}")
        value = int.from_bytes(self.data[self.pos : self.pos + size], "little")
        self.pos += size
        return -value if control & 0x80 else value

    def bool(self) -> bool:
        value = self.byte()
        if value not in (ord("0"), ord("1")):
            raise DlibFormatError(f"bad bool {value:#x} at offset {self.pos - 1}")
        return value == ord("1")

    def float(self) -> float:
        """float_details: int64 mantissa, int16 exponent; value = mantissa * 2**exponent."""
        mantissa, exponent = self.int(), self.int()
        if exponent >= 32000:  # dlib's codes for inf, -inf, nan
            return {32000: float("inf"), 32001: float("-inf")}.get(exponent, float("nan"))
        return float(np.ldexp(float(mantissa), exponent))

    def string(self) -> str:
        size = self.int()
        text = self.data[self.pos : self.pos + size].decode("latin-1")
        self.pos += size
        return text

    def expect(self, *names: str) -> str:
        name = self.string()
        if name not in names:
            raise DlibFormatError(f"expected {' or '.join(names)}, found {name!r} at offset {self.pos}")
        return name

    def version(self, *allowed: int) -> int:
        value = self.int()
        if value not in allowed:
            raise DlibFormatError(f"version {value} (expected {allowed}) at offset {self.pos}")
        return value

    def tensor(self) -> np.ndarray:
        """cuda/tensor.h: version 2, num_samples, k, nr, nc, then raw little-endian float32."""
        self.version(2)
        shape = tuple(self.int() for _ in range(4))
        count = int(np.prod(shape))
        values = np.frombuffer(self.data, "<f4", count, self.pos).astype(np.float32)
        self.pos += 4 * count
        return values.reshape(shape)

    def alias_tensor(self) -> tuple[int, int, int, int]:
        self.version(1)
        return tuple(self.int() for _ in range(4))


@dataclass
class DlibNet:
    """What the file holds, in forward order."""

    mean_rgb: tuple[float, float, float]
    layers: list[tuple[str, dict]] = field(default_factory=list)  # (kind, values), input side first
    loss: dict = field(default_factory=dict)


def _anet_chain() -> list[str]:
    """anet_type's layers from the loss down to the input, as dlib nests (and serializes) them.

    "layer" is an add_layer (has details), "tag"/"skip" are add_tag_layer/add_skip_layer."""
    chain = ["layer:fc", "layer:avg_pool_all"]
    for _out_channels, down, count in reversed(DLIB_LEVELS):
        for index in reversed(range(count)):  # the outermost block of a level is its last
            block = ["layer:affine", "layer:con", "layer:relu", "layer:affine", "layer:con", "tag"]
            if down and index == 0:  # relu<add_prev2<avg_pool<skip1<tag2<block<tag1<...>>>>>>>
                chain += ["layer:relu", "layer:add_prev", "layer:avg_pool", "skip", "tag", *block]
            else:  # relu<add_prev1<block<tag1<...>>>>
                chain += ["layer:relu", "layer:add_prev", *block]
    return chain + ["layer:max_pool", "layer:relu", "layer:affine", "input:con"]


def _layer_details(reader: _Reader, kind: str) -> dict:
    """One layer's `details` (layers.h serialize functions)."""
    if kind == "con":
        version = reader.expect("con_4", "con_5", "con_6")
        params = reader.tensor()
        filters, nr, nc, stride_y, stride_x, pad_y, pad_x = (reader.int() for _ in range(7))
        weight_shape, _bias_shape = reader.alias_tensor(), reader.alias_tensor()  # the bias is `filters` long
        for _ in range(4):  # learning-rate and weight-decay multipliers
            reader.float()
        use_bias = reader.bool() if version in ("con_5", "con_6") else True
        if version == "con_6":
            reader.bool()  # use_relu: a training-time fusion flag
        weight_size = int(np.prod(weight_shape))
        flat = params.reshape(-1)
        return {
            "weight": flat[:weight_size].reshape(weight_shape),
            "bias": flat[weight_size : weight_size + filters] if use_bias else np.zeros(filters, np.float32),
            "kernel": (nr, nc),
            "stride": (stride_y, stride_x),
            "padding": (pad_y, pad_x),
        }
    if kind == "affine":
        version = reader.expect("affine_", "affine_2", "bn_con2")
        if version == "bn_con2":  # dlib converts a stored batch norm to its affine form on load
            params = reader.tensor().reshape(-1)
            gamma_shape, _ = reader.alias_tensor(), reader.alias_tensor()
            reader.tensor(), reader.tensor()  # means, invstds of the last training batch
            running_means, running_variances = reader.tensor().reshape(-1), reader.tensor().reshape(-1)
            reader.int(), reader.int()  # num_updates, running_stats_window_size
            for _ in range(4):
                reader.float()
            eps = reader.float()
            size = int(np.prod(gamma_shape))
            weight = params[:size] / np.sqrt(running_variances + np.float32(eps))
            return {"weight": weight, "bias": params[size : 2 * size] - weight * running_means}
        params = reader.tensor().reshape(-1)
        gamma_shape, _ = reader.alias_tensor(), reader.alias_tensor()
        reader.int()  # mode (conv / fc)
        disabled = reader.bool() if version == "affine_2" else False
        if disabled:
            raise DlibFormatError("a disabled affine layer is not part of anet_type")
        size = int(np.prod(gamma_shape))
        return {"weight": params[:size], "bias": params[size : 2 * size]}
    if kind == "relu":
        if reader.expect("relu_", "relu_2") == "relu_2" and reader.bool():
            raise DlibFormatError("a disabled relu is not part of anet_type")
        return {}
    if kind in ("max_pool", "avg_pool", "avg_pool_all"):
        reader.expect("max_pool_2" if kind == "max_pool" else "avg_pool_2")
        nr, nc, stride_y, stride_x, pad_y, pad_x = (reader.int() for _ in range(6))
        return {"kernel": (nr, nc), "stride": (stride_y, stride_x), "padding": (pad_y, pad_x)}
    if kind == "add_prev":
        reader.expect("add_prev_")
        return {}
    if kind == "fc":
        version = reader.expect("fc_2", "fc_3")
        outputs, inputs = reader.int(), reader.int()
        params = reader.tensor().reshape(-1)
        reader.alias_tensor(), reader.alias_tensor()  # weights, biases views into params
        bias_mode = reader.int()
        for _ in range(4):
            reader.float()
        if version == "fc_3":
            reader.bool()
        if bias_mode != 1:  # FC_NO_BIAS
            raise DlibFormatError("anet_type ends in fc_no_bias")
        # dlib computes output = input (N x inputs) * W (inputs x outputs), W row-major.
        return {"weight": params[: inputs * outputs].reshape(inputs, outputs).T.copy()}
    raise AssertionError(kind)


def read_dlib_net(path: str | Path) -> DlibNet:
    """Parse a serialized `anet_type` (dlib's face recognition ResNet) into arrays, forward order."""
    reader = _Reader(Path(path).read_bytes())
    reader.version(1)  # add_loss_layer
    loss_version = reader.expect("loss_metric_", "loss_metric_2")
    loss = {"margin": reader.float(), "dist_thresh": reader.float()} if loss_version == "loss_metric_2" else {}
    chain = _anet_chain()
    add_layer_versions = []
    for item in chain[:-1]:  # each add_layer writes its version, then its subnetwork, then the rest
        add_layer_versions.append(reader.version(1, 2) if item.startswith("layer") else reader.version(1))
    input_version = reader.version(2, 3)  # add_layer<con, input_rgb_image_sized<150>>
    reader.expect("input_rgb_image_sized")
    mean_rgb = (reader.float(), reader.float(), reader.float())
    if (reader.int(), reader.int()) != (DLIB_CHIP_SIZE, DLIB_CHIP_SIZE):
        raise DlibFormatError(f"the input layer is not {DLIB_CHIP_SIZE}x{DLIB_CHIP_SIZE}")
    net = DlibNet(mean_rgb=tuple(float(np.float32(v)) for v in mean_rgb), loss=loss)
    net.layers.append(("con", _layer_details(reader, "con")))
    reader.bool(), reader.bool(), reader.bool()  # setup called, gradient stale, output disabled
    reader.tensor(), reader.tensor(), reader.tensor()  # x_grad, cached_output, grad_final
    if input_version == 3:
        reader.int()  # sample expansion factor
    # Unwind: the details of every add_layer, input side first; tags and skips wrote only a version.
    for item, version in reversed(list(zip(chain[:-1], add_layer_versions))):
        if not item.startswith("layer"):
            continue
        kind = item.split(":")[1]
        net.layers.append((kind, _layer_details(reader, kind)))
        reader.bool(), reader.bool(), reader.bool()
        reader.tensor(), reader.tensor()  # x_grad, cached_output
        if version == 2:
            reader.tensor()  # params_grad
    if reader.pos != len(reader.data):
        raise DlibFormatError(f"{len(reader.data) - reader.pos} bytes left after the network")
    return net


def _check_geometry(values: dict, kernel: int, stride: int, padding: int) -> None:
    found = (values["kernel"], values["stride"], values["padding"])
    if found != ((kernel, kernel), (stride, stride), (padding, padding)):
        raise DlibFormatError(f"layer geometry {found} differs from anet_type's ({kernel}, {stride}, {padding})")


def load_dlib_weights(model: DlibFaceResNet, net: DlibNet) -> DlibFaceResNet:
    """Copy the parsed arrays into the module, checking every shape and layer geometry."""
    layers = iter(net.layers)

    def take(kind: str) -> dict:
        found, values = next(layers)
        if found != kind:
            raise DlibFormatError(f"expected a {kind} layer, found {found}")
        return values

    def copy(parameter: torch.Tensor, array: np.ndarray) -> None:
        if tuple(parameter.shape) != array.shape:
            raise DlibFormatError(f"shape {array.shape} in the file, {tuple(parameter.shape)} in the module")
        with torch.no_grad():
            parameter.copy_(torch.from_numpy(np.ascontiguousarray(array)))

    def conv(module: nn.Conv2d) -> None:
        values = take("con")
        _check_geometry(values, module.kernel_size[0], module.stride[0], module.padding[0])
        copy(module.weight, values["weight"])
        copy(module.bias, values["bias"])

    def affine(module: Affine) -> None:
        values = take("affine")
        copy(module.weight, values["weight"])
        copy(module.bias, values["bias"])

    model.mean.copy_(torch.tensor(net.mean_rgb).view(1, 3, 1, 1))
    conv(model.stem)
    affine(model.stem_affine)
    take("relu")
    _check_geometry(take("max_pool"), 3, 2, 0)
    for block in model.blocks:
        conv(block.conv1)
        affine(block.affine1)
        take("relu")
        conv(block.conv2)
        affine(block.affine2)
        if block.down:
            _check_geometry(take("avg_pool"), 2, 2, 0)
        take("add_prev")
        take("relu")
    pool = take("avg_pool_all")
    if pool["kernel"] != (0, 0):
        raise DlibFormatError("anet_type pools everything before its fc layer")
    copy(model.fc.weight, take("fc")["weight"])
    if next(layers, None) is not None:
        raise DlibFormatError("layers left over after the fc layer")
    return model


def load_dlib_resnet(path: str | Path | None = None) -> DlibFaceResNet:
    """The network with dlib's weights (default: the installed face_recognition_models' file), in eval mode."""
    return load_dlib_weights(DlibFaceResNet(), read_dlib_net(path or dlib_model_file())).eval()
