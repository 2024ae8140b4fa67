// Python binding and argument checks for the upsampling half of the filtered leaky ReLU.
#include <torch/extension.h>

#include "filtered_lrelu.h"

static torch::Tensor filtered_lrelu_up(torch::Tensor x, torch::Tensor b, torch::Tensor f, int64_t up, int64_t pad_x0,
                                       int64_t pad_x1, int64_t pad_y0, int64_t pad_y1, bool flip_filter, double gain,
                                       double slope, double clamp)
{
    TORCH_CHECK(x.is_cuda() && x.dim() == 4 && x.is_contiguous(), "filtered_lrelu: x must be a contiguous 4-D CUDA tensor");
    TORCH_CHECK(b.numel() == 0 || (b.dim() == 1 && b.size(0) == x.size(1) && b.is_contiguous() &&
                                   b.scalar_type() == x.scalar_type() && b.device() == x.device()),
                "filtered_lrelu: b must be a contiguous vector of x.size(1) elements with x's dtype and device");
    TORCH_CHECK(f.device() == x.device() && f.dim() == 2 && f.is_contiguous() && f.scalar_type() == torch::kFloat,
                "filtered_lrelu: f must be a contiguous 2-D float32 tensor on x's device");
    TORCH_CHECK(x.numel() < INT32_MAX && f.numel() < INT32_MAX, "filtered_lrelu: tensors too large for 32-bit indexing");
    TORCH_CHECK(up >= 1, "filtered_lrelu: up must be >= 1");
    FilteredLreluUpArgs a{(int)up, (int)pad_x0, (int)pad_x1, (int)pad_y0, (int)pad_y1, flip_filter,
                          gain, slope, clamp};
    return filtered_lrelu_up_launch(x, b, f, a);
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m)
{
    m.def("filtered_lrelu_up", &filtered_lrelu_up,
          "Bias, zero-insertion upsampling, FIR filter, gain, leaky ReLU and clamp in one pass (CUDA)");
}
