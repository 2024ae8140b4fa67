// Fused bias + activation kernel of sgsim's StyleGAN2 ops: launcher declaration shared by the .cpp binding and the .cu kernel.
#pragma once
#include <ATen/core/Tensor.h>  // not torch/extension.h: keeps the nvcc compile of the .cu short

// mode 0: y = clamp(gain * f(x + b)); mode 1: dy * gain * f'(x + b) * inside_clamp;
// mode 2: ddx * dy * gain * f''(x + b) * inside_clamp. Empty tensors mean "absent".
at::Tensor bias_act_launch(at::Tensor x, at::Tensor b, at::Tensor dy, at::Tensor ddx,
                              int mode, int act, double alpha, double gain, double clamp, int dim);
