// Python binding and argument checks for the upsample-FIR-downsample kernel.
#include <torch/extension.h>

#include "upfirdn2d.h"

static torch::Tensor upfirdn2d(torch::Tensor x, torch::Tensor f, int64_t up_x, int64_t up_y, int64_t down_x, int64_t down_y,
                               int64_t pad_x0, int64_t pad_x1, int64_t pad_y0, int64_t pad_y1, bool flip_filter, double gain)
{
    TORCH_CHECK(x.is_cuda() && x.dim() == 4 && x.is_contiguous(), "upfirdn2d: x must be a contiguous 4-D CUDA tensor");
    TORCH_CHECK(f.device() == x.device() && f.dim() == 2 && f.is_contiguous() && f.scalar_type() == torch::kFloat,
                "upfirdn2d: f must be a contiguous 2-D float32 tensor on x's device");
    TORCH_CHECK(x.numel() < INT32_MAX && f.numel() < INT32_MAX, "upfirdn2d: tensors too large for 32-bit indexing");
    TORCH_CHECK(up_x >= 1 && up_y >= 1 && down_x >= 1 && down_y >= 1, "upfirdn2d: up and down must be >= 1");
    Upfirdn2dGeometry g{(int)up_x, (int)up_y, (int)down_x, (int)down_y, (int)pad_x0, (int)pad_x1, (int)pad_y0, (int)pad_y1,
                        flip_filter, (float)gain};
    return upfirdn2d_launch(x, f, g);
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m)
{
    m.def("upfirdn2d", &upfirdn2d, "Upsample by zero insertion, pad/crop, FIR filter, downsample (CUDA)");
}
