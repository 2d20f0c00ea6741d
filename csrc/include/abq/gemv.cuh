// Streaming GEMV kernel for M <= 8 tokens (decode), one launch per linear.
//
// Grid: (ceil(N / 128) channel tiles) x (splits of K). Block: 8 warps, each 16 channels, all
// over the block's K slice. Per block:
//   1. issue the first trip's weight loads (they stream while 2 runs);
//   2. prologue (gemv_prologue.cuh): this slice's activations into shared memory in the
//      unpackers' k-order; in fused mode (p.x set) quantize them first: per-token min/max over
//      the whole row (every block, vectorized, one block reduction), codes of the slice only;
//   3. main loop (gemv_cores.cuh): weights one trip ahead in registers, evict-first loads;
//   4. finish: with one split, the epilogue straight from the accumulators; else partials to
//      `workspace`, and the last block of a tile (atomic ticket) adds them in split order
//      (deterministic), applies the epilogue and resets its counter for the next call.
#pragma once
#include <cuda_runtime.h>

#include "abq/gemv_cores.cuh"
#include "abq/gemv_prologue.cuh"
#include "abq/mma.cuh"
#include "abq/params.h"

namespace abq {

struct DevOps {
  uint64_t pol = evict_first_policy();
  __device__ __forceinline__ uint4 ldw4(const uint32_t* p, bool ok, uint4 old) {
    return ldg_stream(p, ok, pol, old);
  }
  __device__ __forceinline__ uint2 ldw2(const uint32_t* p, bool ok, uint2 old) {
    return ldg_stream2(p, ok, pol, old);
  }
  __device__ __forceinline__ uint32_t ldsz(const uint32_t* p, bool ok) {
    return ok ? __ldg(p) : 0u;
  }
  __device__ __forceinline__ uint2 lds64(const char* p) {
    return *reinterpret_cast<const uint2*>(p);
  }
  __device__ __forceinline__ uint2 lds64_volatile(const char* p) {
    uint2 v;
    asm volatile("ld.shared.v2.u32 {%0,%1}, [%2];\n"
                 : "=r"(v.x), "=r"(v.y)
                 : "r"((uint32_t)__cvta_generic_to_shared(p)));
    return v;
  }
  template <class T>
  __device__ __forceinline__ void mma_f16(float (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2,
                                          uint32_t a3, uint32_t b0, uint32_t b1) {
    abq::mma_f16<T>(c, a0, a1, a2, a3, b0, b1);
  }
  __device__ __forceinline__ void mma_s8(int (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2,
                                         uint32_t a3, uint32_t b0, uint32_t b1) {
    abq::mma_s8(c, a0, a1, a2, a3, b0, b1);
  }
  __device__ __forceinline__ void mma_b1(int (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2,
                                         uint32_t a3, uint32_t b0, uint32_t b1) {
    abq::mma_b1(c, a0, a1, a2, a3, b0, b1);
  }
  __device__ __forceinline__ void shift_add(int (&acc)[4], const int (&tmp)[4], int s) {
#pragma unroll
    for (int e = 0; e < 4; ++e) acc[e] += tmp[e] << s;
  }
};

// Software-pipelined main loop: trip i + 1's loads are in flight while trip i is unpacked
// (cores without kPrefetch, the heaviest BTC pairs, load each trip right before using it).
template <class Core, class Ops>
ABQ_HD void warp_loop(Ops& ops, PlaneBuf<Core::kQ, Core::kW>& a, const WarpCtx& c, int trips,
                      typename Core::Acc& acc) {
  if constexpr (!Core::kPrefetch) {
    for (int trip = 0; trip < trips; ++trip) {
      if (trip > 0) load_trip<Core>(ops, a, c, trip);
      Core::compute(ops, a, c, trip, acc);
    }
    return;
  }
  PlaneBuf<Core::kQ, Core::kW> b = {};
  int trip = 0;
  for (; trip + 1 < trips; trip += 2) {
    load_trip<Core>(ops, b, c, trip + 1);
    Core::compute(ops, a, c, trip, acc);
    load_trip<Core>(ops, a, c, trip + 2);
    Core::compute(ops, b, c, trip + 1, acc);
  }
  if (trip < trips) Core::compute(ops, a, c, trip, acc);
}

// Main-loop context of the lane owning channels ch0, ch0 + 8 in split `split` (c.act is set
// by the caller: token row + t * kChunk).
template <class Core>
ABQ_HD WarpCtx warp_ctx(const AbqGemmParams& p, const GemvPlan& pl, int split, int ch0, int t) {
  WarpCtx c;
  c.t = t;
  c.wbeg = split * pl.split_words;
  c.wend = c.wbeg + pl.split_words < p.kw ? c.wbeg + pl.split_words : p.kw;
  c.plane = (size_t)p.N * p.kw;
  c.groups = p.groups;
  c.grp = pl.grp;
  for (int i = 0; i < 5; ++i) c.magic[i] = pl.magic[i];
  for (int r = 0; r < 2; ++r) {
    const int ch = ch0 + 8 * r;
    c.ok[r] = ch < p.N;
    const int cl = c.ok[r] ? ch : 0;
    c.row[r] = p.w + (size_t)cl * p.kw;
    c.sz[r] = p.w_sz + (size_t)cl * p.groups;
  }
  c.act = nullptr;
  return c;
}

// Output of one (token, channel) from the sum of its split partials (`info`: the block's token
// quantizers, read in fused mode only).
template <class Core>
ABQ_HD void gemv_store(const AbqGemmParams& p, const TokInfo* info, typename Core::Part sum,
                       int tok, int ch) {
  const size_t o = (size_t)tok * p.N + ch;
  float y;
  if constexpr (Core::kInt) {
    const long long sw = p.w_sum[ch], zw = p.w_zero[ch], k = p.K;
    long long e;
    float sa;
    long long za;
    if (p.x != nullptr) {  // fused: partials already hold r + (cw - zw) * SA_slice
      e = sum + Core::kSa * sw - Core::kSa * Core::kCw * k;
      sa = info->q[tok].scale;
      za = info->q[tok].zero_point;
    } else {
      const long long a_sum = p.a_sum[tok];
      const long long d = sum + Core::kCw * a_sum + Core::kSa * sw - Core::kSa * Core::kCw * k;
      if (p.out_kind == ABQ_OUT_I32) {
        static_cast<int32_t*>(p.out)[o] = (int32_t)d;
        return;
      }
      e = d - zw * a_sum;
      sa = p.a_scale[tok];
      za = p.a_zero[tok];
    }
    y = (sa * p.w_scale[ch]) * (float)(e - za * (sw - k * zw));
  } else {
    y = sum;
  }
  if (p.bias != nullptr) y += p.bias[ch];
  if (p.out_kind == ABQ_OUT_F16) {
    static_cast<__half*>(p.out)[o] = __float2half_rn(y);
  } else if (p.out_kind == ABQ_OUT_BF16) {
    static_cast<__nv_bfloat16*>(p.out)[o] = __float2bfloat16_rn(y);
  }
}

// Split partial of one accumulator element.
template <class Core>
ABQ_HD typename Core::Part gemv_part(const AbqGemmParams& p, const TokInfo& info,
                                     const typename Core::Acc& acc, int e, int tok, int ch) {
  if constexpr (Core::kInt) {
    long long r = acc.c[e];
    if (p.x != nullptr) r += (Core::kCw - p.w_zero[ch]) * (long long)info.sa[tok];
    return r;
  } else {
    return acc.c[e];
  }
}

template <class Core>
__global__ void __launch_bounds__(kGemvThreads, 2) gemv_kernel(const AbqGemmParams p,
                                                               const GemvPlan pl) {
  extern __shared__ uint4 smem_raw[];
  TokInfo& info = *reinterpret_cast<TokInfo*>(smem_raw);
  char* act = reinterpret_cast<char*>(smem_raw) + kTokInfoBytes;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int tile = blockIdx.x, split = blockIdx.y;
  const int ch0 = tile * kGemvTile + warp * 16 + (lane >> 2);
  WarpCtx c = warp_ctx<Core>(p, pl, split, ch0, lane & 3);
  DevOps ops;
  PlaneBuf<Core::kQ, Core::kW> first = {};
  if constexpr (Core::kEarlyLoad) load_trip<Core>(ops, first, c, 0);  // overlaps the prologue

  gemv_prologue<Core>(p, pl, info, act, c.wbeg);  // ends with __syncthreads()
  if constexpr (!Core::kEarlyLoad) load_trip<Core>(ops, first, c, 0);
  c.act = act + min(lane >> 2, p.M - 1) * pl.act_stride + c.t * Core::kChunk;

  typename Core::Acc acc;
#pragma unroll
  for (int e = 0; e < 4; ++e) acc.c[e] = 0;
  warp_loop<Core>(ops, first, c, pl.trips, acc);

  // c0, c1: channel g, tokens 2t, 2t+1; c2, c3: channel g + 8.
  if (pl.splits == 1) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int ch = ch0 + (e >= 2 ? 8 : 0), tok = 2 * c.t + (e & 1);
      if (ch < p.N && tok < p.M)
        gemv_store<Core>(p, &info, gemv_part<Core>(p, info, acc, e, tok, ch), tok, ch);
    }
    return;
  }
  using Part = typename Core::Part;
  Part* ws = static_cast<Part*>(p.workspace);
#pragma unroll
  for (int e = 0; e < 4; ++e) {
    const int ch = ch0 + (e >= 2 ? 8 : 0), tok = 2 * c.t + (e & 1);
    if (ch < p.N && tok < p.M)
      ws[((size_t)split * p.M + tok) * p.N + ch] = gemv_part<Core>(p, info, acc, e, tok, ch);
  }
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) info.last = atomicAdd(p.counters + tile, 1) == pl.splits - 1;
  __syncthreads();
  if (!info.last) return;
  __threadfence();
  for (int i = threadIdx.x; i < p.M * kGemvTile; i += kGemvThreads) {
    const int tok = i / kGemvTile, ch = tile * kGemvTile + i % kGemvTile;
    if (ch >= p.N) continue;
    Part sum = 0;
    for (int s = 0; s < pl.splits; ++s) sum += __ldcg(ws + ((size_t)s * p.M + tok) * p.N + ch);
    gemv_store<Core>(p, &info, sum, tok, ch);
  }
  if (threadIdx.x == 0) p.counters[tile] = 0;  // ready for the next launch on this stream
}

// ---------------------------------------------------------------- launch
inline int sm_count() {
  static int cached[64] = {0};
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= 64) return 108;
  if (cached[dev] == 0) {
    int n = 0;
    cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev);
    cached[dev] = n > 0 ? n : 108;
  }
  return cached[dev];
}

// Allow `bytes` of dynamic shared memory for `kernel` on the current device. `done` is the
// caller's per-kernel flag array (one per device); concurrent first calls only repeat an
// idempotent attribute set.
inline bool raise_smem_limit(const void* kernel, int bytes, bool (&done)[64]) {
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) return false;
  if (dev >= 0 && dev < 64 && done[dev]) return true;
  if (cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes) !=
      cudaSuccess)
    return false;
  if (dev >= 0 && dev < 64) done[dev] = true;
  return true;
}

template <class Core>
cudaError_t launch_gemv(const AbqGemmParams& p, cudaStream_t s) {
  GemvPlan pl;
  const int err = gemv_plan<Core>(p, sm_count(), &pl);
  if (err != 0) return cudaErrorInvalidValue;
  static bool done[64] = {};  // per instantiation and device
  if (!raise_smem_limit(reinterpret_cast<const void*>(gemv_kernel<Core>), kGemvSmemCap, done)) {
    return cudaErrorInvalidValue;
  }
  const dim3 grid((p.N + kGemvTile - 1) / kGemvTile, pl.splits);
  gemv_kernel<Core><<<grid, kGemvThreads, pl.smem_bytes, s>>>(p, pl);
  return cudaGetLastError();
}

}  // namespace abq
