// Elementwise kernel: bias, activation, gain and clamp, plus the first and second derivatives used by autograd.
// Written for sgsim; the activations and their defaults follow StyleGAN2's bias_act specification.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>
#include "bias_act.h"

namespace {

// Must match Activation.kernel_index in bias_act.py.
enum ActivationKind { kLinear = 1, kRelu = 2, kLrelu = 3, kTanh = 4, kSigmoid = 5, kElu = 6, kSelu = 7, kSoftplus = 8, kSwish = 9 };

// Constants of SELU (Klambauer et al. 2017), as in torch.nn.functional.selu.
constexpr double kSeluScale = 1.0507009873554804934193349852946;
constexpr double kSeluAlpha = 1.6732632423543772848170429916717;
// torch.nn.functional.softplus returns x itself above this threshold.
constexpr double kSoftplusThreshold = 20.0;

template <typename T>
struct Derivatives { T f, d1, d2; };  // f(x), f'(x), f''(x)

template <typename T>
__device__ __forceinline__ T sigmoid_of(T x) { return T(1) / (T(1) + exp(-x)); }

// Value and derivatives of each activation at x; computed in opmath precision (float for half).
template <typename T>
__device__ __forceinline__ Derivatives<T> evaluate(int act, T x, T alpha)
{
    const T one = T(1), zero = T(0);
    switch (act) {
    case kRelu:    return {x > zero ? x : zero, x > zero ? one : zero, zero};
    case kLrelu:   return {x > zero ? x : x * alpha, x > zero ? one : alpha, zero};
    case kTanh: {
        T t = tanh(x);
        T slope = one - t * t;
        return {t, slope, T(-2) * t * slope};
    }
    case kSigmoid: {
        T s = sigmoid_of(x);
        T slope = s * (one - s);
        return {s, slope, slope * (one - T(2) * s)};
    }
    case kElu: {
        if (x > zero) return {x, one, zero};
        T e = exp(x);
        return {e - one, e, e};
    }
    case kSelu: {
        const T scale = T(kSeluScale), scaled_alpha = T(kSeluScale * kSeluAlpha);
        if (x > zero) return {scale * x, scale, zero};
        T e = exp(x);
        return {scaled_alpha * (e - one), scaled_alpha * e, scaled_alpha * e};
    }
    case kSoftplus: {
        if (x > T(kSoftplusThreshold)) return {x, one, zero};
        T s = sigmoid_of(x);
        return {log1p(exp(x)), s, s * (one - s)};
    }
    case kSwish: {
        T s = sigmoid_of(x);
        T ds = s * (one - s);
        // d/dx x s = s + x s';  d2/dx2 = 2 s' + x s'', with s'' = s'(1 - 2s).
        return {x * s, s + x * ds, ds * (T(2) + x * (one - T(2) * s))};
    }
    default:       return {x, one, zero};  // kLinear
    }
}

template <typename scalar_t>
__global__ void bias_act_kernel(const scalar_t* __restrict__ x, const scalar_t* __restrict__ b, const scalar_t* __restrict__ dy,
                                const scalar_t* __restrict__ ddx, scalar_t* __restrict__ out, int64_t count, int64_t bias_step,
                                int64_t bias_count, int mode, int act, double alpha_in, double gain_in, double clamp_in)
{
    using opmath_t = at::opmath_type<scalar_t>;
    const opmath_t alpha = opmath_t(alpha_in), gain = opmath_t(gain_in), clamp = opmath_t(clamp_in);
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < count; i += (int64_t)blockDim.x * gridDim.x) {
        opmath_t v = opmath_t(x[i]);
        if (b != nullptr)
            v += opmath_t(b[(i / bias_step) % bias_count]);
        Derivatives<opmath_t> d = evaluate<opmath_t>(act, v, alpha);
        opmath_t y = d.f * gain;
        opmath_t result;
        if (mode == 0) {
            result = (clamp >= opmath_t(0)) ? min(max(y, -clamp), clamp) : y;
        } else {
            // Inside the clamp range (inclusive, as torch.clamp's gradient) the derivative passes; outside it is 0.
            bool inside = clamp < opmath_t(0) || (y >= -clamp && y <= clamp);
            opmath_t slope = (mode == 1) ? d.d1 : d.d2 * opmath_t(ddx[i]);
            result = inside ? opmath_t(dy[i]) * gain * slope : opmath_t(0);
        }
        out[i] = scalar_t(result);
    }
}

template <typename T>
const T* optional_data(const at::Tensor& t) { return t.numel() ? t.data_ptr<T>() : nullptr; }

}  // namespace

at::Tensor bias_act_launch(at::Tensor x, at::Tensor b, at::Tensor dy, at::Tensor ddx,
                              int mode, int act, double alpha, double gain, double clamp, int dim)
{
    const at::cuda::OptionalCUDAGuard device_guard(x.device());
    at::Tensor out = at::empty_like(x);  // keeps x's dense layout, so the bias index below stays valid
    const int64_t count = x.numel();
    if (count == 0)
        return out;
    const int threads = 256;
    const int blocks = (int)std::min<int64_t>((count + threads - 1) / threads, 65535);
    AT_DISPATCH_FLOATING_TYPES_AND_HALF(x.scalar_type(), "bias_act_kernel", [&] {
        bias_act_kernel<scalar_t><<<blocks, threads, 0, c10::cuda::getCurrentCUDAStream()>>>(
            x.data_ptr<scalar_t>(), optional_data<scalar_t>(b), optional_data<scalar_t>(dy), optional_data<scalar_t>(ddx),
            out.data_ptr<scalar_t>(), count, x.stride(dim), x.size(dim), mode, act, alpha, gain, clamp);
    });
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    return out;
}
