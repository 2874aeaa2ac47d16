// Python binding and argument checks for the fused bias + activation kernel (fused_bias_act_kernel.cu).

#include <torch/extension.h>

at::Tensor fused_bias_act_cuda(const at::Tensor& x, const at::Tensor& bias, const at::Tensor& ref, int64_t act,
                               int64_t grad, double alpha, double scale);

namespace {

bool is_supported_dtype(at::ScalarType t) {
  return t == at::kFloat || t == at::kDouble || t == at::kHalf || t == at::kBFloat16;
}

}  // namespace

// fused_bias_act(input, bias, refer, act, grad, alpha, scale): act 1 = linear, 2 = relu, 3 = leaky relu
// with slope alpha; grad 0 = forward, 1 = first derivative (branch from refer, the forward output),
// 2 = second derivative. `bias` may be empty (no bias) or have input.size(1) elements; `refer` may be
// empty when grad == 0. bias and refer are cast to the input's dtype.
at::Tensor fused_bias_act(const at::Tensor& input, const at::Tensor& bias, const at::Tensor& refer, int64_t act,
                          int64_t grad, double alpha, double scale) {
  TORCH_CHECK(input.is_cuda(), "fused_bias_act: input must be a CUDA tensor, got one on ", input.device());
  TORCH_CHECK(is_supported_dtype(input.scalar_type()),
              "fused_bias_act: input must be float32, float64, float16 or bfloat16, got ", input.scalar_type());
  TORCH_CHECK(act >= 1 && act <= 3, "fused_bias_act: act must be 1 (linear), 2 (relu) or 3 (leaky relu), got ",
              act);
  TORCH_CHECK(grad >= 0 && grad <= 2, "fused_bias_act: grad must be 0, 1 or 2, got ", grad);

  const bool has_bias = bias.defined() && bias.numel() > 0;
  if (has_bias) {
    TORCH_CHECK(input.dim() >= 2, "fused_bias_act: a bias needs an input with a channel dim (dim 1), got ",
                input.dim(), " dims");
    TORCH_CHECK(bias.dim() == 1 && bias.size(0) == input.size(1), "fused_bias_act: bias must have shape (",
                input.size(1), ",) to match input dim 1, got ", bias.sizes());
    TORCH_CHECK(bias.device() == input.device(), "fused_bias_act: bias is on ", bias.device(), " but input is on ",
                input.device());
  }
  const bool needs_ref = grad > 0 && act != 1;
  if (needs_ref) {
    TORCH_CHECK(refer.defined() && refer.sizes() == input.sizes(), "fused_bias_act: grad=", grad,
                " needs refer (the forward output) shaped like input ", input.sizes(), ", got ",
                refer.defined() ? refer.sizes() : at::IntArrayRef{});
    TORCH_CHECK(refer.device() == input.device(), "fused_bias_act: refer is on ", refer.device(),
                " but input is on ", input.device());
  }

  const at::Tensor x = input.contiguous();
  const at::Tensor b = has_bias ? bias.to(input.scalar_type()).contiguous() : at::empty({0}, input.options());
  // With a linear activation the reference is never read; pass the input to keep the pointer valid.
  const at::Tensor r = needs_ref ? refer.to(input.scalar_type()).contiguous() : x;
  return fused_bias_act_cuda(x, b, r, act, grad, alpha, scale);
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "fused bias + activation + gain (with derivative modes) for CUDA tensors";
  m.def("fused_bias_act", &fused_bias_act, "fused_bias_act(input, bias, refer, act, grad, alpha, scale)",
        pybind11::arg("input"), pybind11::arg("bias"), pybind11::arg("refer"), pybind11::arg("act"),
        pybind11::arg("grad"), pybind11::arg("alpha"), pybind11::arg("scale"));
}
