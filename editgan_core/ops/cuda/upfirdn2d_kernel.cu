// upfirdn2d on the GPU: zero-insert upsampling, padding (negative = crop), FIR filtering, decimation.
//
// Every output pixel is a short sum over the input pixels that the (flipped) kernel covers after the
// upsampled image is shifted by the padding. Instead of materialising the upsampled image, the sum
// walks the *input* rows and columns that land on kernel taps; `accumulate_output` holds that index
// math once, for both kernels below:
//   * the tiled kernel stages one block's input footprint and the taps in shared memory, so each input
//     value is read from global memory once per tile instead of once per tap;
//   * the direct kernel reads global memory per tap; it is the fallback for kernels so large that a
//     tile does not fit in shared memory.
// The index helpers are `__host__ __device__` so the same code can be exercised on a CPU.

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>
#include <cstdint>

namespace editgan_upfirdn2d {

struct Params {
  int64_t planes;  // N * C: every (sample, channel) plane is filtered independently
  int in_h, in_w, out_h, out_w;
  int up_x, up_y, down_x, down_y;
  int pad_x0, pad_y0;  // only the leading pads matter; the trailing ones are implied by out_h/out_w
  int kernel_h, kernel_w;
  int tile_out_h, tile_out_w;  // outputs per tile (tiled kernel only)
  int tile_in_h, tile_in_w;    // input pixels staged per tile (tiled kernel only)
};

// Integer division rounding towards -inf / +inf; the divisor is positive, the numerator may not be.
__host__ __device__ inline int floor_div(int a, int b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }
__host__ __device__ inline int ceil_div(int a, int b) { return -floor_div(-a, b); }
__host__ __device__ inline int min_int(int a, int b) { return a < b ? a : b; }
__host__ __device__ inline int max_int(int a, int b) { return a > b ? a : b; }

// One output pixel. `src` holds input rows/columns starting at (src_y0, src_x0) with row stride
// `src_stride`: the whole plane for the direct kernel, the staged tile for the tiled one.
//
// With the upsampled, padded image P[j] = X[(j - pad0) / up] (zero unless j - pad0 is a multiple of
// up), out[o] = sum_i P[o * down + i] * K[kernel_size - 1 - i]. Substituting the input index
// iy = (o * down - pad0 + i) / up leaves only the input rows inside the image that hit a tap.
template <typename acc_t, typename src_t>
__host__ __device__ inline acc_t accumulate_output(const src_t* src, int64_t src_stride, int src_y0, int src_x0,
                                                   const acc_t* taps, const Params& p, int oy, int ox) {
  const int uy0 = oy * p.down_y - p.pad_y0;  // upsampled coordinate under tap i = 0
  const int ux0 = ox * p.down_x - p.pad_x0;
  const int iy_lo = max_int(ceil_div(uy0, p.up_y), 0);
  const int iy_hi = min_int(floor_div(uy0 + p.kernel_h - 1, p.up_y), p.in_h - 1);
  const int ix_lo = max_int(ceil_div(ux0, p.up_x), 0);
  const int ix_hi = min_int(floor_div(ux0 + p.kernel_w - 1, p.up_x), p.in_w - 1);
  acc_t acc = acc_t(0);
  for (int iy = iy_lo; iy <= iy_hi; ++iy) {
    const src_t* row = src + static_cast<int64_t>(iy - src_y0) * src_stride - src_x0;
    const acc_t* tap_row = taps + static_cast<int64_t>(p.kernel_h - 1 - (iy * p.up_y - uy0)) * p.kernel_w;
    for (int ix = ix_lo; ix <= ix_hi; ++ix) {
      acc += static_cast<acc_t>(row[ix]) * tap_row[p.kernel_w - 1 - (ix * p.up_x - ux0)];
    }
  }
  return acc;
}

// Where a tile's staged input starts: the first input row/column any of its outputs touches.
__host__ __device__ inline int tile_origin(int first_out, int down, int pad0, int up) {
  return ceil_div(first_out * down - pad0, up);
}

// Stage element `i` of a tile (row-major over tile_in_h x tile_in_w); outside the image it is zero.
template <typename scalar_t, typename acc_t>
__host__ __device__ inline void stage_tile_element(const Params& p, const scalar_t* plane_in, acc_t* tile,
                                                   int tile_y0, int tile_x0, int i) {
  const int iy = tile_y0 + i / p.tile_in_w;
  const int ix = tile_x0 + i % p.tile_in_w;
  const bool inside = iy >= 0 && iy < p.in_h && ix >= 0 && ix < p.in_w;
  tile[i] = inside ? static_cast<acc_t>(plane_in[static_cast<int64_t>(iy) * p.in_w + ix]) : acc_t(0);
}

// Compute output `i` of a tile (row-major over tile_out_h x tile_out_w) from the staged input.
template <typename scalar_t, typename acc_t>
__host__ __device__ inline void compute_tile_element(const Params& p, const acc_t* tile, const acc_t* taps,
                                                     scalar_t* plane_out, int oy0, int ox0, int tile_y0,
                                                     int tile_x0, int i) {
  const int oy = oy0 + i / p.tile_out_w;
  const int ox = ox0 + i % p.tile_out_w;
  if (oy < p.out_h && ox < p.out_w) {
    const acc_t v = accumulate_output(tile, p.tile_in_w, tile_y0, tile_x0, taps, p, oy, ox);
    plane_out[static_cast<int64_t>(oy) * p.out_w + ox] = static_cast<scalar_t>(v);
  }
}

// Output element `idx` of the flattened (planes, out_h, out_w) result, straight from global memory.
template <typename scalar_t, typename acc_t>
__host__ __device__ inline void compute_direct_element(const Params& p, const scalar_t* in, const acc_t* taps,
                                                       scalar_t* out, int64_t idx) {
  const int ox = static_cast<int>(idx % p.out_w);
  const int oy = static_cast<int>((idx / p.out_w) % p.out_h);
  const int64_t plane = idx / (static_cast<int64_t>(p.out_w) * p.out_h);
  const scalar_t* plane_in = in + plane * p.in_h * p.in_w;
  out[idx] = static_cast<scalar_t>(accumulate_output(plane_in, p.in_w, 0, 0, taps, p, oy, ox));
}

template <typename scalar_t, typename acc_t>
__global__ void upfirdn2d_tiled_kernel(const scalar_t* __restrict__ in, const acc_t* __restrict__ kernel,
                                       scalar_t* __restrict__ out, const Params p) {
  extern __shared__ __align__(16) unsigned char shared_bytes[];
  acc_t* taps = reinterpret_cast<acc_t*>(shared_bytes);
  acc_t* tile = taps + p.kernel_h * p.kernel_w;
  const int thread = threadIdx.x;
  const int threads = blockDim.x;
  for (int i = thread; i < p.kernel_h * p.kernel_w; i += threads) taps[i] = kernel[i];

  const int tiles_y = (p.out_h + p.tile_out_h - 1) / p.tile_out_h;
  const int tiles_x = (p.out_w + p.tile_out_w - 1) / p.tile_out_w;
  const int tile_in_size = p.tile_in_h * p.tile_in_w;
  const int tile_out_size = p.tile_out_h * p.tile_out_w;
  // Grid-stride loops over planes and tiles; the bounds depend only on blockIdx, so every thread of a
  // block reaches the same barriers.
  for (int64_t plane = blockIdx.z; plane < p.planes; plane += gridDim.z) {
    const scalar_t* plane_in = in + plane * p.in_h * p.in_w;
    scalar_t* plane_out = out + plane * p.out_h * p.out_w;
    for (int ty = blockIdx.y; ty < tiles_y; ty += gridDim.y) {
      for (int tx = blockIdx.x; tx < tiles_x; tx += gridDim.x) {
        const int oy0 = ty * p.tile_out_h;
        const int ox0 = tx * p.tile_out_w;
        const int tile_y0 = tile_origin(oy0, p.down_y, p.pad_y0, p.up_y);
        const int tile_x0 = tile_origin(ox0, p.down_x, p.pad_x0, p.up_x);
        __syncthreads();  // the previous tile is consumed (and, the first time, the taps are staged)
        for (int i = thread; i < tile_in_size; i += threads) {
          stage_tile_element(p, plane_in, tile, tile_y0, tile_x0, i);
        }
        __syncthreads();
        for (int i = thread; i < tile_out_size; i += threads) {
          compute_tile_element(p, tile, taps, plane_out, oy0, ox0, tile_y0, tile_x0, i);
        }
      }
    }
  }
}

template <typename scalar_t, typename acc_t>
__global__ void upfirdn2d_direct_kernel(const scalar_t* __restrict__ in, const acc_t* __restrict__ kernel,
                                        scalar_t* __restrict__ out, const Params p) {
  const int64_t total = p.planes * p.out_h * p.out_w;
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total; idx += stride) {
    compute_direct_element(p, in, kernel, out, idx);
  }
}

constexpr int kMaxTileSide = 32;
constexpr int kMaxThreads = 256;
constexpr size_t kSharedBudget = 48 * 1024;  // the default per-block limit, no opt-in needed

inline int next_pow2_capped(int n, int cap) {
  int v = 1;
  while (v < n && v < cap) v *= 2;
  return v;
}

// Bytes of shared memory the tiled kernel needs for the tile size already set in `p`.
inline size_t tiled_shared_bytes(const Params& p, size_t acc_size) {
  return (static_cast<size_t>(p.kernel_h) * p.kernel_w + static_cast<size_t>(p.tile_in_h) * p.tile_in_w) *
         acc_size;
}

// Set a tile of th x tw outputs and the input footprint it needs: the outputs' taps span
// (th - 1) * down + kernel upsampled positions, and an interval of n + 1 positions holds at most
// n / up + 1 input samples (those at multiples of up).
inline void set_tile_size(Params& p, int th, int tw) {
  p.tile_out_h = th;
  p.tile_out_w = tw;
  p.tile_in_h = ((th - 1) * p.down_y + p.kernel_h - 1) / p.up_y + 1;
  p.tile_in_w = ((tw - 1) * p.down_x + p.kernel_w - 1) / p.up_x + 1;
}

// Pick the largest tile (at most 32 x 32 outputs, no larger than the output) whose input footprint and
// taps fit in shared memory; returns false when even a 1 x 1 tile does not (huge kernels).
inline bool choose_tile(Params& p, size_t acc_size) {
  int th = next_pow2_capped(p.out_h, kMaxTileSide);
  int tw = next_pow2_capped(p.out_w, kMaxTileSide);
  while (true) {
    set_tile_size(p, th, tw);
    if (tiled_shared_bytes(p, acc_size) <= kSharedBudget) return true;
    if (th == 1 && tw == 1) return false;
    if (th >= tw) {
      th = std::max(th / 2, 1);
    } else {
      tw = std::max(tw / 2, 1);
    }
  }
}

}  // namespace editgan_upfirdn2d

// Called from upfirdn2d.cpp after the argument checks: `input` is a contiguous (N, C, H, W) CUDA
// tensor, `kernel` a contiguous 2-D tensor on the same device in the accumulation dtype.
at::Tensor upfirdn2d_cuda(const at::Tensor& input, const at::Tensor& kernel, int up_x, int up_y, int down_x,
                          int down_y, int pad_x0, int pad_x1, int pad_y0, int pad_y1, int out_h, int out_w) {
  using namespace editgan_upfirdn2d;
  const c10::cuda::OptionalCUDAGuard device_guard(input.device());
  auto out = at::empty({input.size(0), input.size(1), out_h, out_w}, input.options());
  if (out.numel() == 0) return out;

  Params p{};
  p.planes = input.size(0) * input.size(1);
  p.in_h = static_cast<int>(input.size(2));
  p.in_w = static_cast<int>(input.size(3));
  p.out_h = out_h;
  p.out_w = out_w;
  p.up_x = up_x;
  p.up_y = up_y;
  p.down_x = down_x;
  p.down_y = down_y;
  p.pad_x0 = pad_x0;
  p.pad_y0 = pad_y0;
  p.kernel_h = static_cast<int>(kernel.size(0));
  p.kernel_w = static_cast<int>(kernel.size(1));
  (void)pad_x1;  // implied by out_w
  (void)pad_y1;

  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "upfirdn2d_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* in_ptr = input.const_data_ptr<scalar_t>();
    const acc_t* kernel_ptr = kernel.const_data_ptr<acc_t>();
    scalar_t* out_ptr = out.mutable_data_ptr<scalar_t>();
    if (choose_tile(p, sizeof(acc_t))) {
      const int tiles_y = (p.out_h + p.tile_out_h - 1) / p.tile_out_h;
      const int tiles_x = (p.out_w + p.tile_out_w - 1) / p.tile_out_w;
      const int tile_out_size = p.tile_out_h * p.tile_out_w;
      const int threads = std::min(kMaxThreads, std::max(32, (tile_out_size + 31) / 32 * 32));
      const dim3 grid(static_cast<unsigned>(std::min(tiles_x, 1 << 30)),
                      static_cast<unsigned>(std::min(tiles_y, 65535)),
                      static_cast<unsigned>(std::min<int64_t>(p.planes, 65535)));
      const size_t shared = tiled_shared_bytes(p, sizeof(acc_t));
      upfirdn2d_tiled_kernel<scalar_t, acc_t><<<grid, threads, shared, stream>>>(in_ptr, kernel_ptr, out_ptr, p);
    } else {
      const int64_t total = out.numel();
      const int threads = kMaxThreads;
      const int64_t blocks = std::min<int64_t>((total + threads - 1) / threads, int64_t{1} << 20);
      upfirdn2d_direct_kernel<scalar_t, acc_t>
          <<<static_cast<unsigned>(blocks), threads, 0, stream>>>(in_ptr, kernel_ptr, out_ptr, p);
    }
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}
