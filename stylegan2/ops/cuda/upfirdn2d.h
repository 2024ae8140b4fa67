// Upsample-FIR-downsample kernel of sgsim's StyleGAN2 ops: launcher declaration shared by the .cpp binding and the .cu kernel.
#pragma once
#include <ATen/core/Tensor.h>  // not torch/extension.h: keeps the nvcc compile of the .cu short

struct Upfirdn2dGeometry {
    int up_x, up_y, down_x, down_y;
    int pad_x0, pad_x1, pad_y0, pad_y1;  // on the upsampled image; negative values crop
    bool flip_filter;                    // false: true convolution (filter reversed), true: correlation
    float gain;
};

// x: contiguous [N, C, H, W]; f: contiguous float32 [fh, fw]; returns [N, C, out_h, out_w].
at::Tensor upfirdn2d_launch(at::Tensor x, at::Tensor f, const Upfirdn2dGeometry& g);
