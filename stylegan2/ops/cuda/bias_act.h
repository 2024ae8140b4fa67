// Fused bias + activation kernel of sgsim's StyleGAN2 ops: launcher declaration shared by the .cpp binding and the .cu kernel.
#pragma once
#include <torch/extension.h>

// mode 0: y = clamp(gain * f(x + b)); mode 1: dy * gain * f'(x + b) * inside_clamp;
// mode 2: ddx * dy * gain * f''(x + b) * inside_clamp. Empty tensors mean "absent".
torch::Tensor bias_act_launch(torch::Tensor x, torch::Tensor b, torch::Tensor dy, torch::Tensor ddx,
                              int mode, int act, double alpha, double gain, double clamp, int dim);
