"""A tiny UNet and smooth images for the INT8 tests (onnxruntime and openvino): width 4 at 32 x 32."""

import numpy as np
import torch

from unet_infer.model import UNet

SIZE = 32


def smooth_images(n, seed=0, size=SIZE):
    """n smooth random images, 3 x size x size float32 in [0, 1] (like preprocessed photos)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    images = []
    for _ in range(n):
        waves = [0.5 + 0.5 * np.sin(2 * np.pi * (rng.uniform(0.5, 2) * x + rng.uniform(0.5, 2) * y)
                                    + rng.uniform(0, 2 * np.pi)) for _ in range(3)]
        images.append(np.stack(waves).astype(np.float32))
    return images


def varied_unet(width=4, affine=False):
    """UNet(width) in eval mode (torch seed 0) with random BatchNorm statistics, and with ``affine``
    a random BatchNorm scale and shift too, so that no BatchNorm is the identity."""
    torch.manual_seed(0)
    model = UNet(width=width).eval()
    for bn in [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]:
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 1.5)
        if affine:
            bn.weight.data.uniform_(0.5, 1.5)
            bn.bias.data.uniform_(-0.2, 0.2)
    return model


def skip_without_cpu_fp16():
    """Skip the test where this torch build has no fp16 convolution on the CPU."""
    import pytest
    try:
        torch.nn.functional.conv2d(torch.zeros(1, 1, 3, 3, dtype=torch.half), torch.zeros(1, 1, 1, 1).half())
    except RuntimeError as exc:
        pytest.skip(f"this torch build has no fp16 convolution on the CPU ({exc})")


def tiny_unet(seed=0, size=SIZE):
    """UNet(width=4) whose activations neither die nor explode (He init), so the logits vary, with
    the output bias set so that about half the pixels are "car": the sign checks mean something."""
    torch.manual_seed(seed)
    model = UNet(width=4)
    for module in model.modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            torch.nn.init.normal_(module.bias, std=0.1)
    model.eval()
    with torch.no_grad():
        logits = model(torch.from_numpy(np.stack(smooth_images(4, seed=100, size=size))))
        model.outc.conv.bias -= logits.median()
    return model


def tiny_onnx(folder, size=SIZE):
    """``folder/unet.onnx``: the tiny UNet's checkpoint (``folder/unet.pth``) exported at ``size``."""
    from unet_infer.export import pth_to_onnx
    torch.save(tiny_unet(size=size).state_dict(), folder / "unet.pth")
    pth_to_onnx(folder / "unet.pth", folder / "unet.onnx", size=size)
    return folder / "unet.onnx"
