// Python binding and argument checks for the upfirdn2d CUDA kernel (upfirdn2d_kernel.cu).
//
// Checks live here so that a bad call fails with a message that names the argument, before anything
// reaches the GPU; the kernel file assumes what is checked below.

#include <torch/extension.h>

#include <limits>

at::Tensor upfirdn2d_cuda(const at::Tensor& input, const at::Tensor& kernel, int up_x, int up_y, int down_x,
                          int down_y, int pad_x0, int pad_x1, int pad_y0, int pad_y1, int out_h, int out_w);

namespace {

bool is_supported_dtype(at::ScalarType t) {
  return t == at::kFloat || t == at::kDouble || t == at::kHalf || t == at::kBFloat16;
}

// (in * up + pad0 + pad1 - kernel) / down + 1, computed in 64 bits and checked to fit the kernel's ints.
int output_size(int64_t in, int64_t up, int64_t down, int64_t pad0, int64_t pad1, int64_t kernel,
                const char* axis) {
  const int64_t padded = in * up + pad0 + pad1;
  TORCH_CHECK(padded < std::numeric_limits<int>::max() / 2, "upfirdn2d: the upsampled, padded ", axis,
              " size ", padded, " is too large");
  TORCH_CHECK(padded >= kernel, "upfirdn2d: the upsampled, padded ", axis, " size (", in, " * ", up, " + ", pad0,
              " + ", pad1, " = ", padded, ") is smaller than the kernel (", kernel, "); the output would be empty");
  return static_cast<int>((padded - kernel) / down + 1);
}

}  // namespace

// upfirdn2d(input (N, C, H, W), kernel (kh, kw), up_x, up_y, down_x, down_y, pad_x0, pad_x1, pad_y0,
// pad_y1) -> (N, C, out_h, out_w), the same numbers as the native PyTorch op. The kernel may live on
// the CPU or the input's device; it is used in the accumulation precision (float, or double for
// double inputs).
at::Tensor upfirdn2d(const at::Tensor& input, const at::Tensor& kernel, int64_t up_x, int64_t up_y,
                     int64_t down_x, int64_t down_y, int64_t pad_x0, int64_t pad_x1, int64_t pad_y0,
                     int64_t pad_y1) {
  TORCH_CHECK(input.is_cuda(), "upfirdn2d: input must be a CUDA tensor, got one on ", input.device());
  TORCH_CHECK(input.dim() == 4, "upfirdn2d: input must be (N, C, H, W), got ", input.dim(), " dims");
  TORCH_CHECK(is_supported_dtype(input.scalar_type()),
              "upfirdn2d: input must be float32, float64, float16 or bfloat16, got ", input.scalar_type());
  TORCH_CHECK(kernel.dim() == 2 && kernel.numel() > 0, "upfirdn2d: kernel must be a non-empty 2-D tensor, got shape ",
              kernel.sizes());
  TORCH_CHECK(kernel.is_floating_point(), "upfirdn2d: kernel must be floating point, got ", kernel.scalar_type());
  TORCH_CHECK(kernel.is_cpu() || kernel.device() == input.device(), "upfirdn2d: kernel is on ", kernel.device(),
              " but input is on ", input.device());
  TORCH_CHECK(up_x >= 1 && up_y >= 1 && down_x >= 1 && down_y >= 1,
              "upfirdn2d: up and down factors must be >= 1, got up=(", up_x, ", ", up_y, ") down=(", down_x, ", ",
              down_y, ")");
  const int64_t pad_limit = std::numeric_limits<int>::max() / 4;
  for (int64_t v : {up_x, up_y, down_x, down_y, pad_x0, pad_x1, pad_y0, pad_y1}) {
    TORCH_CHECK(v > -pad_limit && v < pad_limit, "upfirdn2d: factor or pad ", v, " is out of range");
  }
  TORCH_CHECK(kernel.size(0) < pad_limit && kernel.size(1) < pad_limit, "upfirdn2d: kernel is too large");

  const int out_h = output_size(input.size(2), up_y, down_y, pad_y0, pad_y1, kernel.size(0), "height");
  const int out_w = output_size(input.size(3), up_x, down_x, pad_x0, pad_x1, kernel.size(1), "width");

  const auto acc_dtype = input.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const at::Tensor x = input.contiguous();
  const at::Tensor k = kernel.to(input.device(), acc_dtype).contiguous();
  return upfirdn2d_cuda(x, k, static_cast<int>(up_x), static_cast<int>(up_y), static_cast<int>(down_x),
                        static_cast<int>(down_y), static_cast<int>(pad_x0), static_cast<int>(pad_x1),
                        static_cast<int>(pad_y0), static_cast<int>(pad_y1), out_h, out_w);
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "upfirdn2d (upsample, pad, FIR filter, downsample) for CUDA tensors";
  m.def("upfirdn2d", &upfirdn2d, "upfirdn2d(input, kernel, up_x, up_y, down_x, down_y, pad_x0, pad_x1, pad_y0, pad_y1)",
        pybind11::arg("input"), pybind11::arg("kernel"), pybind11::arg("up_x"), pybind11::arg("up_y"),
        pybind11::arg("down_x"), pybind11::arg("down_y"), pybind11::arg("pad_x0"), pybind11::arg("pad_x1"),
        pybind11::arg("pad_y0"), pybind11::arg("pad_y1"));
}
