// GEMV launch plan and block prologue: activations of the block's K slice into shared memory,
// in the k-order of the core's unpacker (act_offset), quantized first in fused mode.
#pragma once
#include <math.h>

#include "abq/gemv_cores.cuh"
#include "abq/params.h"
#include "abq/quant.cuh"

namespace abq {

constexpr int kGemvWarps = 8;
constexpr int kGemvThreads = 32 * kGemvWarps;
constexpr int kGemvTile = 16 * kGemvWarps;  // channels per block
constexpr int kMaxSplits = 16;
constexpr int kGemvRowPad = 32;             // bytes after each token row (bank spread)

// Per-token state of a block (shared memory).
struct TokInfo {
  ActQ q[8];                           // fused quantizer of each token
  int sa[8];                           // sum of this slice's codes
  float lo[kGemvWarps][8], hi[kGemvWarps][8];
  int last;                            // this block reduces the split partials
};
constexpr int kTokInfoBytes = (int)((sizeof(TokInfo) + 15) / 16 * 16);
constexpr int kGemvSmemCap = 72 * 1024;  // two blocks per SM fit on sm_80 (164 KB) and sm_90

struct GemvPlan {
  int splits;       // gridDim.y
  int split_words;  // words of K per split (trips * 4 * kW)
  int trips;        // main-loop trips per split
  int act_stride;   // bytes per token row in shared memory
  int smem_bytes;   // dynamic shared memory
  DivMagic grp;     // a16: word -> group index
  uint32_t magic[5];  // a16: unpacker magics (see A16Unpack::Magics)
};

// Split K so that the grid fills >= 2 blocks per SM and each block's activations fit in shared
// memory. Returns 0 on success.
template <class Core>
inline int gemv_plan(const AbqGemmParams& p, int sms, GemvPlan* pl) {
  const int unit = 4 * Core::kW;                  // words per trip
  const int total = (p.kw + unit - 1) / unit;     // trips over all of K
  const int tiles = (p.N + kGemvTile - 1) / kGemvTile;
  const long per_trip = 4L * Core::kChunk;  // bytes of one trip in a token row
  const long avail = (kGemvSmemCap - kTokInfoBytes) / (p.M > 0 ? p.M : 1) - kGemvRowPad;
  const int max_trips = (int)(avail / per_trip);
  if (total < 1 || max_trips < 1) return 1;
  int splits = (total + max_trips - 1) / max_trips;
  const int fill = (2 * sms + tiles - 1) / tiles;
  if (fill > splits) splits = fill;
  if (splits > total) splits = total;
  if (splits > kMaxSplits) splits = kMaxSplits;
  if (p.workspace == nullptr || p.counters == nullptr) splits = 1;
  const int trips = (total + splits - 1) / splits;
  if (trips > max_trips) return 1;
  pl->trips = trips;
  pl->splits = (total + trips - 1) / trips;
  pl->split_words = trips * unit;
  pl->act_stride = (int)(trips * per_trip) + kGemvRowPad;
  pl->smem_bytes = kTokInfoBytes + p.M * pl->act_stride;
  pl->grp = div_magic(p.groups > 1 ? (uint32_t)(p.group_size / 32) : 0u);
  for (int i = 0; i < 5; ++i) pl->magic[i] = 0;
  if constexpr (Core::kPath == kPathA16) {
    using Un = typename Core::Un;
    for (int i = 0; i < Un::kNumP; ++i) pl->magic[i] = Un::magic(Un::N * i);
  }
  return 0;
}

#ifdef __CUDACC__
__device__ __forceinline__ float load_x(const void* x, int dtype, size_t i) {
  if (dtype == ABQ_IN_F16) return __half2float(static_cast<const __half*>(x)[i]);
  if (dtype == ABQ_IN_BF16) return __bfloat162float(static_cast<const __nv_bfloat16*>(x)[i]);
  return static_cast<const float*>(x)[i];
}

// Element e of a 16-byte chunk of activations as float.
__device__ __forceinline__ float chunk_elem(const uint4& v, int dtype, int e) {
  const uint32_t w = e < 8 ? (&v.x)[(e >> 1) & 3] : 0u;
  if (dtype == ABQ_IN_F32) return __uint_as_float((&v.x)[e & 3]);
  const uint32_t h = (e & 1) ? w >> 16 : w & 0xFFFFu;
  if (dtype == ABQ_IN_F16) return __half2float(__ushort_as_half((unsigned short)h));
  return __uint_as_float(h << 16);  // bf16
}

// Per-token min/max over all K columns (16-byte loads, every thread), one block reduction,
// then the quantizer of each token (range times p.a_clip) in info.q (identical in every block).
__device__ inline void act_qparams_block(const AbqGemmParams& p, TokInfo& info) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int per = p.x_dtype == ABQ_IN_F32 ? 4 : 8;  // elements per 16-byte chunk
  const int esize = p.x_dtype == ABQ_IN_F32 ? 4 : 2;
  const int chunks = (p.K + per - 1) / per;
  for (int tok = 0; tok < p.M; ++tok) {
    const char* row = static_cast<const char*>(p.x) + (size_t)tok * p.x_stride * esize;
    float lo = INFINITY, hi = -INFINITY;
    for (int c = threadIdx.x; c < chunks; c += kGemvThreads) {
      const uint4 v = __ldg(reinterpret_cast<const uint4*>(row) + c);
#pragma unroll
      for (int e = 0; e < 8; ++e) {
        if (e >= per || c * per + e >= p.K) continue;
        const float f = chunk_elem(v, p.x_dtype, e);
        lo = fminf(lo, f);
        hi = fmaxf(hi, f);
      }
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      lo = fminf(lo, __shfl_xor_sync(0xffffffffu, lo, o));
      hi = fmaxf(hi, __shfl_xor_sync(0xffffffffu, hi, o));
    }
    if (lane == 0) info.lo[warp][tok] = lo, info.hi[warp][tok] = hi;
  }
  __syncthreads();
  if (threadIdx.x < p.M) {
    float lo = INFINITY, hi = -INFINITY;
#pragma unroll
    for (int w = 0; w < kGemvWarps; ++w) {
      lo = fminf(lo, info.lo[w][threadIdx.x]);
      hi = fmaxf(hi, info.hi[w][threadIdx.x]);
    }
    info.q[threadIdx.x] = act_qparams(lo, hi, p.a_clip, p.a_bits, p.a_sym);
    info.sa[threadIdx.x] = 0;
  }
  __syncthreads();
}

// Codes of the block's slice (lane = k within a 32-word), stored in the core's layout; the
// slice's code sum per token goes to info.sa.
template <class Core>
__device__ void quantize_slice(const AbqGemmParams& p, const GemvPlan& pl, TokInfo& info,
                               char* act, int wbeg, int aw) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int tok = 0; tok < p.M; ++tok) {
    const ActQ q = info.q[tok];
    char* row = act + tok * pl.act_stride;
    int sum = 0;
    for (int wr = warp; wr < aw; wr += kGemvWarps) {
      const int k = 32 * (wbeg + wr) + lane;
      const bool in = k < p.K;
      const int code = in ? act_code(load_x(p.x, p.x_dtype, (size_t)tok * p.x_stride + k), q) : 0;
      sum += code;
      if constexpr (Core::kPath == kPathS8) {
        row[Core::act_offset(wr, lane)] = (char)(in ? code - 128 : 0);
      } else {
        uint32_t mine = 0;
#pragma unroll
        for (int i = 0; i < Core::kP; ++i) {
          const uint32_t b = __ballot_sync(0xffffffffu, (code >> i) & 1);
          if (lane == i) mine = b;
        }
        if (lane < Core::kP) *reinterpret_cast<uint32_t*>(row + Core::act_offset(wr, lane)) = mine;
      }
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
    if (lane == 0) atomicAdd(&info.sa[tok], sum);
  }
}

template <class Core>
__device__ void gemv_prologue(const AbqGemmParams& p, const GemvPlan& pl, TokInfo& info,
                              char* act, int wbeg) {
  const int aw = pl.trips * 4 * Core::kW;  // words per token row
  if constexpr (Core::kPath == kPathA16) {
    using T = typename Core::Elem;
    const T* x = static_cast<const T*>(p.a);
    for (int tok = 0; tok < p.M; ++tok) {
      const T* xr = x + (size_t)tok * p.a_stride;
      char* row = act + tok * pl.act_stride;
      for (int i = threadIdx.x; i < aw * 16; i += kGemvThreads) {
        const int wr = i >> 4, pi = i & 15;
        const int k = 32 * (wbeg + wr) + act_klo<Core::kQ>(pi);
        const T lo = k < p.K ? xr[k] : T(0.f), hi = k + 16 < p.K ? xr[k + 16] : T(0.f);
        *reinterpret_cast<uint32_t*>(row + Core::act_offset(wr, pi)) =
            (uint32_t)bitcast<uint16_t>(lo) | (uint32_t)bitcast<uint16_t>(hi) << 16;
      }
    }
  } else if (p.x != nullptr) {
    act_qparams_block(p, info);
    quantize_slice<Core>(p, pl, info, act, wbeg, aw);
  } else if constexpr (Core::kPath == kPathS8) {
    const int8_t* a = static_cast<const int8_t*>(p.a);
    for (int tok = 0; tok < p.M; ++tok) {
      char* row = act + tok * pl.act_stride;
      for (int i = threadIdx.x; i < aw * 32; i += kGemvThreads) {
        const int wr = i >> 5, kk = i & 31, w = wbeg + wr;
        row[Core::act_offset(wr, kk)] = w < p.kw ? a[(size_t)tok * p.a_stride + 32 * w + kk] : 0;
      }
    }
  } else {
    const uint32_t* a = static_cast<const uint32_t*>(p.a);
    for (int tok = 0; tok < p.M; ++tok) {
      char* row = act + tok * pl.act_stride;
      for (int i = threadIdx.x; i < aw * Core::kP; i += kGemvThreads) {
        const int plane = i / aw, wr = i % aw, w = wbeg + wr;
        *reinterpret_cast<uint32_t*>(row + Core::act_offset(wr, plane)) =
            w < p.kw ? a[((size_t)plane * p.M + tok) * p.kw + w] : 0u;
      }
    }
  }
  __syncthreads();
}
#endif

}  // namespace abq
