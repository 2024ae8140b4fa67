// Direct upfirdn2d kernel: one thread per output pixel, visiting only the filter taps that land on input samples.
// Written for sgsim; semantics match the pure-PyTorch reference in upfirdn2d.py.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>
#include "upfirdn2d.h"

namespace {

// Smallest k >= 0 with (k + offset) divisible by step, for any sign of offset.
__device__ __forceinline__ int first_aligned_tap(int offset, int step)
{
    int r = offset % step;
    return r == 0 ? 0 : (r > 0 ? step - r : -r);
}

template <typename scalar_t>
__global__ void upfirdn2d_kernel(const scalar_t* __restrict__ x, const float* __restrict__ f, scalar_t* __restrict__ y,
                                 int planes, int in_h, int in_w, int f_h, int f_w, int out_h, int out_w, Upfirdn2dGeometry g)
{
    using opmath_t = at::opmath_type<scalar_t>;
    const int64_t count = (int64_t)planes * out_h * out_w;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < count; i += (int64_t)blockDim.x * gridDim.x) {
        const int ox = (int)(i % out_w);
        const int oy = (int)((i / out_w) % out_h);
        const int plane = (int)(i / ((int64_t)out_w * out_h));
        const scalar_t* src = x + (int64_t)plane * in_h * in_w;
        // Top-left corner of the filter window, as an index into the (unpadded) upsampled image.
        const int base_y = oy * g.down_y - g.pad_y0;
        const int base_x = ox * g.down_x - g.pad_x0;
        opmath_t acc = opmath_t(0);
        for (int ky = first_aligned_tap(base_y, g.up_y); ky < f_h; ky += g.up_y) {
            const int sy = (base_y + ky) / g.up_y;
            if (base_y + ky < 0 || sy >= in_h)
                continue;
            const int fy = g.flip_filter ? ky : f_h - 1 - ky;
            for (int kx = first_aligned_tap(base_x, g.up_x); kx < f_w; kx += g.up_x) {
                const int sx = (base_x + kx) / g.up_x;
                if (base_x + kx < 0 || sx >= in_w)
                    continue;
                const int fx = g.flip_filter ? kx : f_w - 1 - kx;
                acc += opmath_t(src[(int64_t)sy * in_w + sx]) * opmath_t(f[fy * f_w + fx]);
            }
        }
        y[i] = scalar_t(acc * opmath_t(g.gain));
    }
}

}  // namespace

at::Tensor upfirdn2d_launch(at::Tensor x, at::Tensor f, const Upfirdn2dGeometry& g)
{
    const at::cuda::OptionalCUDAGuard device_guard(x.device());
    const int n = (int)x.size(0), c = (int)x.size(1), in_h = (int)x.size(2), in_w = (int)x.size(3);
    const int f_h = (int)f.size(0), f_w = (int)f.size(1);
    const int out_h = (in_h * g.up_y + g.pad_y0 + g.pad_y1 - f_h) / g.down_y + 1;
    const int out_w = (in_w * g.up_x + g.pad_x0 + g.pad_x1 - f_w) / g.down_x + 1;
    TORCH_CHECK(out_h >= 1 && out_w >= 1, "upfirdn2d: the padding and filter leave no output pixels");
    at::Tensor y = at::empty({n, c, out_h, out_w}, x.options());
    const int64_t count = y.numel();
    if (count == 0)
        return y;
    const int threads = 256;
    const int blocks = (int)std::min<int64_t>((count + threads - 1) / threads, 65535);
    AT_DISPATCH_FLOATING_TYPES_AND_HALF(x.scalar_type(), "upfirdn2d_kernel", [&] {
        upfirdn2d_kernel<scalar_t><<<blocks, threads, 0, c10::cuda::getCurrentCUDAStream()>>>(
            x.data_ptr<scalar_t>(), f.data_ptr<float>(), y.data_ptr<scalar_t>(), n * c, in_h, in_w, f_h, f_w, out_h, out_w, g);
    });
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    return y;
}
