// Upsampling half of the filtered leaky ReLU: one thread per upsampled pixel, visiting only the filter taps that land
// on input samples, adding the bias to each sample and applying gain, leaky ReLU and clamp before the single store.
// Written for sgsim; semantics match filtered_lrelu_ref in filtered_lrelu.py up to its downsampling FIR.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>
#include "filtered_lrelu.h"

namespace {

// Smallest k >= 0 with (k + offset) divisible by step, for any sign of offset.
__device__ __forceinline__ int first_aligned_tap(int offset, int step)
{
    int r = offset % step;
    return r == 0 ? 0 : (r > 0 ? step - r : -r);
}

template <typename scalar_t>
__global__ void filtered_lrelu_up_kernel(const scalar_t* __restrict__ x, const scalar_t* __restrict__ b,
                                         const float* __restrict__ f, scalar_t* __restrict__ y, int channels, int planes,
                                         int in_h, int in_w, int f_h, int f_w, int out_h, int out_w, FilteredLreluUpArgs a)
{
    using opmath_t = at::opmath_type<scalar_t>;
    const int64_t count = (int64_t)planes * out_h * out_w;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < count; i += (int64_t)blockDim.x * gridDim.x) {
        const int ox = (int)(i % out_w);
        const int oy = (int)((i / out_w) % out_h);
        const int plane = (int)(i / ((int64_t)out_w * out_h));
        const scalar_t* src = x + (int64_t)plane * in_h * in_w;
        const opmath_t bias = b != nullptr ? opmath_t(b[plane % channels]) : opmath_t(0);
        const int base_y = oy - a.pad_y0;  // filter window's top-left corner in the unpadded upsampled image
        const int base_x = ox - a.pad_x0;
        opmath_t acc = opmath_t(0);
        for (int ky = first_aligned_tap(base_y, a.up); ky < f_h; ky += a.up) {
            const int sy = (base_y + ky) / a.up;
            if (base_y + ky < 0 || sy >= in_h)
                continue;
            const int fy = a.flip_filter ? ky : f_h - 1 - ky;
            for (int kx = first_aligned_tap(base_x, a.up); kx < f_w; kx += a.up) {
                const int sx = (base_x + kx) / a.up;
                if (base_x + kx < 0 || sx >= in_w)
                    continue;
                const int fx = a.flip_filter ? kx : f_w - 1 - kx;
                acc += (opmath_t(src[(int64_t)sy * in_w + sx]) + bias) * opmath_t(f[fy * f_w + fx]);
            }
        }
        opmath_t v = acc * opmath_t(a.gain);
        v = v < opmath_t(0) ? v * opmath_t(a.slope) : v;
        if (a.clamp >= 0.0)
            v = v > opmath_t(a.clamp) ? opmath_t(a.clamp) : (v < -opmath_t(a.clamp) ? -opmath_t(a.clamp) : v);
        y[i] = scalar_t(v);
    }
}

}  // namespace

at::Tensor filtered_lrelu_up_launch(at::Tensor x, at::Tensor b, at::Tensor f, const FilteredLreluUpArgs& a)
{
    const at::cuda::OptionalCUDAGuard device_guard(x.device());
    const int n = (int)x.size(0), c = (int)x.size(1), in_h = (int)x.size(2), in_w = (int)x.size(3);
    const int f_h = (int)f.size(0), f_w = (int)f.size(1);
    const int out_h = in_h * a.up + a.pad_y0 + a.pad_y1 - f_h + 1;
    const int out_w = in_w * a.up + a.pad_x0 + a.pad_x1 - f_w + 1;
    TORCH_CHECK(out_h >= 1 && out_w >= 1, "filtered_lrelu: the padding and filter leave no output pixels");
    at::Tensor y = at::empty({n, c, out_h, out_w}, x.options());
    const int64_t count = y.numel();
    if (count == 0)
        return y;
    const int threads = 256;
    const int blocks = (int)std::min<int64_t>((count + threads - 1) / threads, 65535);
    AT_DISPATCH_FLOATING_TYPES_AND_HALF(x.scalar_type(), "filtered_lrelu_up_kernel", [&] {
        filtered_lrelu_up_kernel<scalar_t><<<blocks, threads, 0, c10::cuda::getCurrentCUDAStream()>>>(
            x.data_ptr<scalar_t>(), b.numel() ? b.data_ptr<scalar_t>() : nullptr, f.data_ptr<float>(),
            y.data_ptr<scalar_t>(), c, n * c, in_h, in_w, f_h, f_w, out_h, out_w, a);
    });
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    return y;
}
