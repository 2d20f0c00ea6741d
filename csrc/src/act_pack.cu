// Dynamic per-token activation quantization fused with packing (bit planes or int8), for the
// GEMM path (M > 8; the GEMV kernels quantize in their prologue). The arithmetic (range shrunk
// by p.clip) is abq/quant.cuh, shared with the GEMV prologue: bit-exact with reference.quantize_act.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "abq/params.h"
#include "abq/quant.cuh"

namespace abq {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;

__device__ __forceinline__ float load_x(const void* x, int dtype, size_t i) {
  if (dtype == ABQ_IN_F16) return __half2float(static_cast<const __half*>(x)[i]);
  if (dtype == ABQ_IN_BF16) return __bfloat162float(static_cast<const __nv_bfloat16*>(x)[i]);
  return static_cast<const float*>(x)[i];
}

// Block-wide reduction of (min, max, sum) via shuffles + shared memory; result in all threads.
struct Red {
  float lo, hi;
  int sum;
};

__device__ Red block_reduce(Red v) {
  __shared__ Red buf[kWarps];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    v.lo = fminf(v.lo, __shfl_xor_sync(0xffffffffu, v.lo, o));
    v.hi = fmaxf(v.hi, __shfl_xor_sync(0xffffffffu, v.hi, o));
    v.sum += __shfl_xor_sync(0xffffffffu, v.sum, o);
  }
  if (lane == 0) buf[warp] = v;
  __syncthreads();
  Red r = buf[0];
#pragma unroll
  for (int w = 1; w < kWarps; ++w) {
    r.lo = fminf(r.lo, buf[w].lo);
    r.hi = fmaxf(r.hi, buf[w].hi);
    r.sum += buf[w].sum;
  }
  __syncthreads();  // buf may be reused by a later call
  return r;
}

__global__ void __launch_bounds__(kThreads) act_quant_pack_kernel(const AbqActParams p) {
  const int m = blockIdx.x;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const size_t row = (size_t)m * p.x_stride;

  Red v{INFINITY, -INFINITY, 0};
  for (int k = threadIdx.x; k < p.K; k += kThreads) {
    const float x = load_x(p.x, p.x_dtype, row + k);
    v.lo = fminf(v.lo, x);
    v.hi = fmaxf(v.hi, x);
  }
  const Red mm = block_reduce(v);

  const ActQ q = act_qparams(mm.lo, mm.hi, p.clip, p.bits, p.sym);

  int sum = 0;
  for (int cw = warp; cw < p.kw; cw += kWarps) {  // one 32-element word per warp step
    const int k = cw * 32 + lane;
    int code = 0;
    if (k < p.K) {
      code = act_code(load_x(p.x, p.x_dtype, row + k), q);
    }
    sum += code;
    if (p.mode == ABQ_ACT_PLANES) {
      uint32_t mine = 0;
      for (int i = 0; i < p.bits; ++i) {
        const uint32_t b = __ballot_sync(0xffffffffu, (code >> i) & 1);
        if (lane == i) mine = b;
      }
      if (lane < p.bits) static_cast<uint32_t*>(p.out)[((size_t)lane * p.M + m) * p.kw + cw] = mine;
    } else {
      static_cast<int8_t*>(p.out)[(size_t)m * p.kw * 32 + k] =
          k < p.K ? (int8_t)(code - 128) : (int8_t)0;
    }
  }
  const Red tot = block_reduce(Red{0.f, 0.f, sum});
  if (threadIdx.x == 0) {
    p.scale[m] = q.scale;
    p.zero[m] = q.zero_point;
    p.rowsum[m] = tot.sum;
  }
}

}  // namespace
}  // namespace abq

extern "C" int abq_act_quant_pack(const AbqActParams* p, void* stream) {
  if (p->bits < 1 || p->bits > 8 || (p->sym && p->bits < 2) || p->kw % 8 != 0 ||
      p->kw * 32 < p->K || !(p->clip > 0.f && p->clip <= 1.f)) {
    return (int)cudaErrorInvalidValue;
  }
  if (p->M == 0) return 0;
  abq::act_quant_pack_kernel<<<p->M, abq::kThreads, 0, static_cast<cudaStream_t>(stream)>>>(*p);
  return (int)cudaGetLastError();
}
