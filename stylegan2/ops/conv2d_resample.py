"""2-D convolution fused with FIR upsampling, in the operation order of NVIDIA's StyleGAN2 (needed for exact parity)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from stylegan2.errors import NetworkConfigError
from stylegan2.ops import upfirdn2d


def conv2d_resample(
    x: torch.Tensor,
    w: torch.Tensor,
    f: torch.Tensor | None = None,
    up: int = 1,
    padding: int = 0,
    groups: int = 1,
    flip_weight: bool = True,
) -> torch.Tensor:
    """conv2d(x, w) at `up` times the resolution, padding given on the upsampled image.

    flip_weight=True correlates (like F.conv2d), False convolves. Upsampling runs as a stride-`up`
    transposed convolution followed by the FIR filter f (gain up**2), or, for 1x1 kernels, as the
    convolution followed by upfirdn2d; this order is what the published generators were trained with.
    """
    out_channels, in_per_group, kh, kw = w.shape
    if up < 1:
        raise NetworkConfigError(f"conv2d_resample: up={up} must be >= 1")
    if up == 1:
        return F.conv2d(x, w if flip_weight else w.flip([2, 3]), padding=padding, groups=groups)
    f_w, f_h = (1, 1) if f is None else (f.shape[-1], f.shape[0])
    # Padding of the filter stage that centres the upsampled image (as upfirdn2d.upsample2d).
    px0, px1 = padding + (f_w + up - 1) // 2, padding + (f_w - up) // 2
    py0, py1 = padding + (f_h + up - 1) // 2, padding + (f_h - up) // 2
    if kh == 1 and kw == 1:
        x = F.conv2d(x, w if flip_weight else w.flip([2, 3]), groups=groups)
        return upfirdn2d.upfirdn2d(x, f, up=up, padding=[px0, px1, py0, py1], gain=up**2)
    # conv_transpose2d wants [in, out/groups, kh, kw] per group.
    if groups == 1:
        w = w.transpose(0, 1)
    else:
        w = w.reshape(groups, out_channels // groups, in_per_group, kh, kw).transpose(1, 2)
        w = w.reshape(groups * in_per_group, out_channels // groups, kh, kw)
    # The transposed convolution already grows the image by k - 1 (left) and k - up (right).
    px0, px1, py0, py1 = px0 - (kw - 1), px1 - (kw - up), py0 - (kh - 1), py1 - (kh - up)
    pxt, pyt = max(min(-px0, -px1), 0), max(min(-py0, -py1), 0)
    # A transposed convolution convolves where conv2d correlates, hence the inverted flip.
    x = F.conv_transpose2d(x, w.flip([2, 3]) if flip_weight else w, stride=up, padding=[pyt, pxt], groups=groups)
    return upfirdn2d.upfirdn2d(x, f, padding=[px0 + pxt, px1 + pxt, py0 + pyt, py1 + pyt], gain=up**2)
