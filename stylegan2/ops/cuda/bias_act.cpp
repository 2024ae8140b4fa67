// Python binding and argument checks for the fused bias + activation kernel.
#include <torch/extension.h>

#include "bias_act.h"

static torch::Tensor bias_act(torch::Tensor x, torch::Tensor b, torch::Tensor dy, torch::Tensor ddx,
                              int64_t mode, int64_t act, double alpha, double gain, double clamp, int64_t dim)
{
    TORCH_CHECK(x.is_cuda(), "bias_act: x must be a CUDA tensor");
    TORCH_CHECK(x.numel() < INT32_MAX, "bias_act: x has too many elements for 32-bit indexing");
    TORCH_CHECK(dim >= 0 && dim < x.dim(), "bias_act: dim out of range");
    TORCH_CHECK(mode >= 0 && mode <= 2, "bias_act: mode must be 0, 1 or 2");
    TORCH_CHECK(x.is_contiguous() || (x.dim() == 4 && x.is_contiguous(at::MemoryFormat::ChannelsLast)),
                "bias_act: x must be contiguous or channels-last");
    TORCH_CHECK(b.numel() == 0 || (b.dim() == 1 && b.size(0) == x.size(dim) && b.is_contiguous() &&
                                   b.scalar_type() == x.scalar_type() && b.device() == x.device()),
                "bias_act: b must be a contiguous 1-D tensor of x.size(dim) elements, with x's dtype and device");
    for (const torch::Tensor& t : {dy, ddx})
        TORCH_CHECK(t.numel() == 0 || (t.sizes() == x.sizes() && t.strides() == x.strides() &&
                                       t.scalar_type() == x.scalar_type() && t.device() == x.device()),
                    "bias_act: dy and ddx must match x in shape, strides, dtype and device");
    TORCH_CHECK(mode == 0 || dy.numel() != 0, "bias_act: modes 1 and 2 need dy");
    TORCH_CHECK(mode != 2 || ddx.numel() != 0, "bias_act: mode 2 needs ddx");
    return bias_act_launch(x, b, dy, ddx, (int)mode, (int)act, alpha, gain, clamp, (int)dim);
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m)
{
    m.def("bias_act", &bias_act, "Fused bias + activation + gain + clamp and its first and second derivatives (CUDA)");
}
