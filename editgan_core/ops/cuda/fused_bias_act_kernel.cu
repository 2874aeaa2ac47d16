// Bias + activation + gain in one pass over memory, with the derivative modes that an autograd
// Function needs for double backward (StyleGAN2's fused_bias_act contract):
//   grad = 0: out = act(x + b) * scale
//   grad = 1: out = act'(ref) * (x + b) * scale    x is an incoming gradient, ref the forward output
//   grad = 2: out = act''(ref) * (x + b) * scale   zero for the piecewise-linear activations here
// The forward output has the sign of the pre-activation (scale > 0, alpha >= 0), so it is enough to
// pick the branch: no need to keep the pre-activation tensor around for backward.

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>
#include <cstdint>

namespace editgan_fused_bias_act {

enum Activation : int { kLinear = 1, kRelu = 2, kLeakyRelu = 3 };

template <typename acc_t>
struct Params {
  int64_t numel;
  int64_t bias_stride;  // elements per channel step: the product of the sizes after dim 1
  int64_t channels;     // bias length; 0 = no bias
  int act;
  int grad;
  acc_t alpha;
  acc_t scale;
};

// The activation's `grad`-th derivative at the branch chosen by `ref`, applied to `x`.
template <typename acc_t>
__host__ __device__ inline acc_t activate(const Params<acc_t>& p, acc_t x, acc_t ref) {
  if (p.grad == 2) return acc_t(0);  // linear, relu and leaky relu are piecewise linear
  const acc_t branch = p.grad == 0 ? x : ref;
  if (p.act == kLinear || branch > acc_t(0)) return x;
  return p.act == kRelu ? acc_t(0) : x * p.alpha;
}

template <typename scalar_t, typename acc_t>
__host__ __device__ inline void fused_bias_act_element(const Params<acc_t>& p, const scalar_t* x, const scalar_t* bias,
                                                       const scalar_t* ref, scalar_t* out, int64_t idx) {
  acc_t v = static_cast<acc_t>(x[idx]);
  if (p.channels > 0) v += static_cast<acc_t>(bias[(idx / p.bias_stride) % p.channels]);
  const acc_t r = p.grad == 0 ? v : static_cast<acc_t>(ref[idx]);
  out[idx] = static_cast<scalar_t>(activate(p, v, r) * p.scale);
}

template <typename scalar_t, typename acc_t>
__global__ void fused_bias_act_kernel(const scalar_t* __restrict__ x, const scalar_t* __restrict__ bias,
                                      const scalar_t* __restrict__ ref, scalar_t* __restrict__ out,
                                      const Params<acc_t> p) {
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < p.numel; idx += stride) {
    fused_bias_act_element(p, x, bias, ref, out, idx);
  }
}

}  // namespace editgan_fused_bias_act

// Called from fused_bias_act.cpp after the argument checks: all tensors contiguous, on the same CUDA
// device and of the same dtype; `bias` is empty or has x.size(1) elements; `ref` is x-shaped when
// grad > 0 (undefined otherwise).
at::Tensor fused_bias_act_cuda(const at::Tensor& x, const at::Tensor& bias, const at::Tensor& ref, int64_t act,
                               int64_t grad, double alpha, double scale) {
  using namespace editgan_fused_bias_act;
  const c10::cuda::OptionalCUDAGuard device_guard(x.device());
  auto out = at::empty_like(x, at::MemoryFormat::Contiguous);
  if (x.numel() == 0) return out;

  int64_t bias_stride = 1;
  for (int64_t d = 2; d < x.dim(); ++d) bias_stride *= x.size(d);
  const bool has_bias = bias.numel() > 0;

  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "fused_bias_act_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    Params<acc_t> p{};
    p.numel = x.numel();
    p.bias_stride = bias_stride;
    p.channels = has_bias ? bias.numel() : 0;
    p.act = static_cast<int>(act);
    p.grad = static_cast<int>(grad);
    p.alpha = static_cast<acc_t>(alpha);
    p.scale = static_cast<acc_t>(scale);
    const scalar_t* bias_ptr = has_bias ? bias.const_data_ptr<scalar_t>() : nullptr;
    const scalar_t* ref_ptr = grad > 0 ? ref.const_data_ptr<scalar_t>() : nullptr;
    constexpr int threads = 256;
    const int64_t blocks = std::min<int64_t>((p.numel + threads - 1) / threads, int64_t{1} << 20);
    fused_bias_act_kernel<scalar_t, acc_t><<<static_cast<unsigned>(blocks), threads, 0, stream>>>(
        x.const_data_ptr<scalar_t>(), bias_ptr, ref_ptr, out.mutable_data_ptr<scalar_t>(), p);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}
