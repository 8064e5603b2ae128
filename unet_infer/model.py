"""The UNet of milesial/Pytorch-UNet, with its module names, and a loader that reads the layout
of a checkpoint from its state_dict alone.

Layouts (all told apart by their keys and shapes, no flags needed):

- ``modelzoo``: commit 6aa14cb as used by the Ascend ModelZoo guide: ``UNet(3, 1, bilinear=False)``,
  3x3 convolutions with bias, up-sampling by ConvTranspose2d, 136 entries, 31.0 M parameters.
- ``master``: milesial master: the same without conv bias (118 entries), usually 2 classes, and an
  extra ``mask_values`` entry that is dropped before loading.
- ``bilinear``: ``nn.Upsample`` + a DoubleConv whose middle width is in/2, no ``upK.up`` weights.

Any base width works (64 is the standard; the bundled sample model uses a smaller one).
"""

import logging
import pickle
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from .cli import UserError

log = logging.getLogger(__name__)


class DoubleConv(nn.Module):
    """(conv 3x3 => BN => ReLU) * 2."""

    def __init__(self, in_channels, out_channels, mid_channels=None, bias=True):
        super().__init__()
        mid_channels = mid_channels or out_channels
        self.double_conv = nn.Sequential(
            nn.Conv2d(in_channels, mid_channels, kernel_size=3, padding=1, bias=bias),
            nn.BatchNorm2d(mid_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid_channels, out_channels, kernel_size=3, padding=1, bias=bias),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, x):
        return self.double_conv(x)


class Down(nn.Module):
    """Max-pool by 2, then a DoubleConv."""

    def __init__(self, in_channels, out_channels, bias=True):
        super().__init__()
        self.maxpool_conv = nn.Sequential(nn.MaxPool2d(2), DoubleConv(in_channels, out_channels, bias=bias))

    def forward(self, x):
        return self.maxpool_conv(x)


class Up(nn.Module):
    """Up-sample x1, pad it to the skip tensor's size, concatenate [skip, x1], then a DoubleConv."""

    def __init__(self, in_channels, out_channels, bilinear=False, bias=True):
        super().__init__()
        if bilinear:
            self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
            self.conv = DoubleConv(in_channels, out_channels, in_channels // 2, bias=bias)
        else:
            self.up = nn.ConvTranspose2d(in_channels, in_channels // 2, kernel_size=2, stride=2)
            self.conv = DoubleConv(in_channels, out_channels, bias=bias)

    def forward(self, x1, x2):
        x1 = self.up(x1)
        diff_y = x2.size(2) - x1.size(2)
        diff_x = x2.size(3) - x1.size(3)
        x1 = F.pad(x1, [diff_x // 2, diff_x - diff_x // 2, diff_y // 2, diff_y - diff_y // 2])
        return self.conv(torch.cat([x2, x1], dim=1))


class OutConv(nn.Module):
    """1x1 convolution to the class logits."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=1)

    def forward(self, x):
        return self.conv(x)


class UNet(nn.Module):
    """UNet with widths w-2w-4w-8w-16w (w = 64 for the standard model)."""

    def __init__(self, n_channels=3, n_classes=1, bilinear=False, width=64, bias=True):
        super().__init__()
        self.n_channels = n_channels
        self.n_classes = n_classes
        self.bilinear = bilinear
        self.width = width
        w = width
        factor = 2 if bilinear else 1
        self.inc = DoubleConv(n_channels, w, bias=bias)
        self.down1 = Down(w, 2 * w, bias=bias)
        self.down2 = Down(2 * w, 4 * w, bias=bias)
        self.down3 = Down(4 * w, 8 * w, bias=bias)
        self.down4 = Down(8 * w, 16 * w // factor, bias=bias)
        self.up1 = Up(16 * w, 8 * w // factor, bilinear, bias=bias)
        self.up2 = Up(8 * w, 4 * w // factor, bilinear, bias=bias)
        self.up3 = Up(4 * w, 2 * w // factor, bilinear, bias=bias)
        self.up4 = Up(2 * w, w, bilinear, bias=bias)
        self.outc = OutConv(w, n_classes)

    def forward(self, x):
        x1 = self.inc(x)
        x2 = self.down1(x1)
        x3 = self.down2(x2)
        x4 = self.down3(x3)
        x5 = self.down4(x4)
        x = self.up1(x5, x4)
        x = self.up2(x, x3)
        x = self.up3(x, x2)
        x = self.up4(x, x1)
        return self.outc(x)


@dataclass(frozen=True)
class Layout:
    """What a state_dict says about the UNet that made it."""

    name: str  # "modelzoo", "master" or "bilinear"
    n_channels: int
    n_classes: int
    width: int
    bilinear: bool
    bias: bool

    def describe(self):
        return (f"layout={self.name} (bilinear={self.bilinear}, conv bias={self.bias}), "
                f"input channels={self.n_channels}, classes={self.n_classes}, width={self.width}")


_FIRST = "inc.double_conv.0.weight"
_LAST = "outc.conv.weight"


def detect_layout(state_dict, source="state_dict"):
    """Read the layout from a (cleaned) state_dict; :class:`UserError` (naming ``source``) when it is not a UNet's."""
    if _FIRST not in state_dict or _LAST not in state_dict:
        expected = UNet(width=4).state_dict().keys()
        missing = [k for k in expected if k not in state_dict]
        unexpected = [k for k in state_dict if k not in expected]
        raise UserError(f"{source}: not a UNet state_dict: " + _key_report(missing, unexpected))
    first = state_dict[_FIRST]
    last = state_dict[_LAST]
    if getattr(first, "ndim", 0) != 4 or getattr(last, "ndim", 0) != 4:
        raise UserError(f"{source}: not a UNet state_dict: {_FIRST} and {_LAST} must be 4-D conv weights")
    bias = "inc.double_conv.0.bias" in state_dict
    bilinear = "up1.up.weight" not in state_dict
    name = "bilinear" if bilinear else ("modelzoo" if bias else "master")
    return Layout(name, int(first.shape[1]), int(last.shape[0]), int(first.shape[0]), bilinear, bias)


def _key_report(missing, unexpected):
    def show(keys):
        return ", ".join(keys[:5]) + (f" (+{len(keys) - 5} more)" if len(keys) > 5 else "")

    parts = []
    if missing:
        parts.append(f"{len(missing)} missing key{'s' if len(missing) != 1 else ''}: {show(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key{'s' if len(unexpected) != 1 else ''}: {show(unexpected)}")
    return "; ".join(parts) or "no matching keys"


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _load_failure(path, exc):
    """The one-line error for a checkpoint torch.load refused: what is wrong, in words."""
    text = _ANSI.sub("", str(exc))
    blocked = re.search(r"GLOBAL ([\w.]+)", text)  # "Unsupported global: GLOBAL __main__.Evil ..."
    if isinstance(exc, pickle.UnpicklingError) and ("weights_only" in text or "Weights only" in text):
        what = f" ({blocked.group(1)})" if blocked else ""
        return UserError(f"{path}: refused: the checkpoint holds objects or code{what} that a weights-only load "
                         f"does not run; save it again as a plain state_dict of tensors")
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head.startswith(b"PK"):
        return UserError(f"{path}: not a readable PyTorch checkpoint (a truncated or damaged zip archive)")
    if not head.startswith(b"\x80"):
        return UserError(f"{path}: not a PyTorch checkpoint (neither a torch.save zip archive nor a pickle)")
    first = (text.strip().splitlines() or [type(exc).__name__])[0]
    return UserError(f"{path}: not a readable PyTorch checkpoint ({first[:120].rstrip('. ')})")


def read_state_dict(path):
    """Load a checkpoint safely (``weights_only=True``; code in a pickle is refused)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: checkpoint not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError, zipfile.BadZipFile, KeyError,
            AttributeError, IndexError, TypeError, UnicodeDecodeError, MemoryError) as exc:
        raise _load_failure(path, exc) from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(k, str) for k in obj):
        raise UserError(f"{path}: not a state_dict (found {type(obj).__name__})")
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if len(tensors) != len(obj) and set(obj) - set(tensors) - {"mask_values"}:
        bad = sorted(set(obj) - set(tensors) - {"mask_values"})[:3]
        raise UserError(f"{path}: not a state_dict: entries {bad} are not tensors")
    sd = {k: v for k, v in obj.items() if k != "mask_values"}  # master's extra entry: not a weight
    if sd and all(k.startswith("module.") for k in sd):  # saved from nn.DataParallel
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def build_from_state_dict(state_dict, source="state_dict"):
    """Build the UNet a state_dict describes and load it (strict); returns (model, layout)."""
    layout = detect_layout(state_dict, source)
    model = UNet(layout.n_channels, layout.n_classes, layout.bilinear, layout.width, layout.bias)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    if missing or unexpected:
        raise UserError(f"{source}: not a {layout.name} UNet state_dict: {_key_report(missing, unexpected)}")
    wrong = [f"{k} {tuple(state_dict[k].shape)} (expected {tuple(v.shape)})"
             for k, v in expected.items() if tuple(state_dict[k].shape) != tuple(v.shape)]
    if wrong:
        raise UserError(f"{source}: tensor shapes do not fit a {layout.name} UNet of width "
                        f"{layout.width}: {'; '.join(wrong[:3])}")
    model.load_state_dict(state_dict, strict=True)
    model.eval()
    return model, layout


def load_unet(path):
    """Load a checkpoint file into an eval-mode UNet; returns (model, layout)."""
    model, layout = build_from_state_dict(read_state_dict(path), source=str(path))
    if layout.n_channels != 3:
        raise UserError(f"{path}: the model takes {layout.n_channels} input channels, the pipeline feeds 3 (RGB)")
    return model, layout


def count_parameters(model):
    return sum(p.numel() for p in model.parameters())


def count_macs(model, size=572):
    """Multiply-adds of the convolutions for one image of ``size`` x ``size`` (counted on the ``meta``
    device: no arithmetic, no memory)."""
    with torch.device("meta"):
        shadow = UNet(model.n_channels, model.n_classes, model.bilinear, model.width,
                      model.inc.double_conv[0].bias is not None).eval()
    total = 0

    def conv_hook(mod, inputs, output):
        nonlocal total
        k = mod.kernel_size[0] * mod.kernel_size[1]
        if isinstance(mod, nn.ConvTranspose2d):
            total += inputs[0].numel() * mod.out_channels * k // mod.groups
        else:
            total += output.numel() * (mod.in_channels // mod.groups) * k

    for m in shadow.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            m.register_forward_hook(conv_hook)
    with torch.no_grad():
        shadow(torch.zeros(1, model.n_channels, size, size, device="meta"))
    return total
