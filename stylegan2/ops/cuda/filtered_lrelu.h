// Upsampling half of sgsim's filtered leaky ReLU (StyleGAN3): launcher declaration shared by the .cpp binding and the .cu kernel.
#pragma once
#include <ATen/core/Tensor.h>  // not torch/extension.h: keeps the nvcc compile of the .cu short

struct FilteredLreluUpArgs {
    int up;                      // zero-insertion factor, both axes
    int pad_x0, pad_x1, pad_y0, pad_y1;  // on the upsampled image; negative values crop
    bool flip_filter;            // false: true convolution (filter reversed), true: correlation
    double gain;                 // applied after the filter (the caller folds up^2 in), before the leaky ReLU
    double slope;                // leaky ReLU slope below zero
    double clamp;                // clamp to [-clamp, clamp]; negative = no clamp (double: exact for float64 inputs)
};

// x: contiguous [N, C, H, W]; b: contiguous [C] of x's dtype (or empty); f: contiguous float32 [fh, fw].
// Returns clamp(lrelu(gain * conv(f, pad(up(x + b))))), [N, C, out_h, out_w].
at::Tensor filtered_lrelu_up_launch(at::Tensor x, at::Tensor b, at::Tensor f, const FilteredLreluUpArgs& a);
