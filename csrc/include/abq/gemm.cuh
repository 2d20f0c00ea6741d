// The register-tiled GEMM (8 < M, no shared-memory staging), three cores:
//   BtcCore<Q, P>   sum_ij 2^(i+j) popc(A_i AND W_j) on binary tensor cores (BMMA)
//   S8Core<Q>       weight bit planes unpacked in registers to s8, mma.sync s8 (IMMA), for A8
//   A16Core<Q, T>   weight bit planes dequantized to fp16/bf16, mma.sync f16/bf16 (HMMA)
//
// Orientation: weights are the MMA A-operand (16 output channels per warp), activations the
// B-operand (8 tokens per MMA, NT such groups per warp). Each 512-bit k-block of a packed row is
// 16 words; thread t of a quad owns words 4t..4t+3 (one 16-byte load per row and plane; rows are
// padded to 256 bits only, so the last block may be half: its missing words load as zeros). The
// kernels rely on the k-permutation freedom explained in mma.cuh; the same logical k-order is
// used for the A and B operands inside every MMA. M <= 8 goes to gemv.cuh instead.
#pragma once
#include <cuda_runtime.h>

#include "abq/mma.cuh"
#include "abq/params.h"
#include "abq/prim.cuh"

namespace abq {

// Per-warp tile coordinates.
struct Tile {
  int g, t;        // lane = 4*g + t
  int n0, m0;      // first output channel / first token of the warp tile
  bool okg, okg8;  // channel rows n0+g and n0+g+8 exist
};

// Load the 16-byte slice (words 4t..4t+3 of k-block kb) of every weight plane, rows g and g+8.
template <int Q>
__device__ __forceinline__ void load_w(const AbqGemmParams& p, const Tile& tl, int kb,
                                       uint4 (&wf)[Q][2]) {
  const size_t plane = (size_t)p.N * p.kw;
  const size_t off = (size_t)kb * 16 + 4 * tl.t;
  const uint32_t* r0 = p.w + (size_t)(tl.n0 + tl.g) * p.kw + off;
  const uint32_t* r1 = r0 + (size_t)8 * p.kw;
  const bool in = off < (size_t)p.kw;
#pragma unroll
  for (int j = 0; j < Q; ++j) {
    wf[j][0] = ld16(r0 + j * plane, tl.okg && in);
    wf[j][1] = ld16(r1 + j * plane, tl.okg8 && in);
  }
}

// Bytes of 4 consecutive weight codes (bits off..off+3 of word wi, one row) = sum_j plane_j<<j.
template <int Q>
__device__ __forceinline__ uint32_t codes4(const uint4 (&wf)[Q][2], int row, int wi, int off) {
  uint32_t v = 0;
#pragma unroll
  for (int j = 0; j < Q; ++j) v |= spread4((comp(wf[j][row], wi) >> off) & 0xFu) << j;
  return v;
}

// ---------------------------------------------------------------- binary (BTC) core
template <int Q, int P>
struct BtcCore {
  static constexpr bool kInt = true;
  static constexpr int S = P + Q - 1;  // distinct plane weights 2^(i+j), s = i + j
  static constexpr int kNT = S <= 2 ? 4 : (S <= 4 ? 2 : 1);
  using Res = int;

  template <int NT>
  struct State {
    int acc[S][NT][4];

    __device__ __forceinline__ void zero() {
#pragma unroll
      for (int s = 0; s < S; ++s)
#pragma unroll
        for (int n = 0; n < NT; ++n)
#pragma unroll
          for (int i = 0; i < 4; ++i) acc[s][n][i] = 0;
    }

    __device__ __forceinline__ void step(const AbqGemmParams& p, const Tile& tl, int kb) {
      uint4 wf[Q][2];
      load_w<Q>(p, tl, kb, wf);
      const uint32_t* a = static_cast<const uint32_t*>(p.a);
      const size_t plane = (size_t)p.M * p.kw;
#pragma unroll
      for (int n = 0; n < NT; ++n) {
        const int tok = tl.m0 + 8 * n + tl.g;
        const uint32_t* src = a + (size_t)tok * p.kw + (size_t)kb * 16 + 4 * tl.t;
        const bool ok = tok < p.M && kb * 16 + 4 * tl.t < p.kw;
#pragma unroll
        for (int i = 0; i < P; ++i) {
          const uint4 af = ld16(src + i * plane, ok);
#pragma unroll
          for (int j = 0; j < Q; ++j) {
            mma_b1(acc[i + j][n], wf[j][0].x, wf[j][1].x, wf[j][0].y, wf[j][1].y, af.x, af.y);
            mma_b1(acc[i + j][n], wf[j][0].z, wf[j][1].z, wf[j][0].w, wf[j][1].w, af.z, af.w);
          }
        }
      }
    }

    // Integer dot product sum_k A_u W_u (fits int32: checked on the host).
    __device__ __forceinline__ void result(int (&r)[NT][4]) const {
#pragma unroll
      for (int n = 0; n < NT; ++n)
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          int v = 0;
#pragma unroll
          for (int s = 0; s < S; ++s) v += acc[s][n][i] << s;
          r[n][i] = v;
        }
    }
  };

  __device__ static __forceinline__ long long fix(int r, int, int, int) { return r; }
};

// ---------------------------------------------------------------- unpack-to-s8 core (A8)
// Activations arrive as int8 (code - 128). Weights: codes < 128 are used as they are; for Q = 8
// they are shifted by 128 too (byte XOR 0x80). fix() restores sum_k A_u W_u exactly.
template <int Q>
struct S8Core {
  static constexpr bool kInt = true;
  static constexpr int kNT = Q <= 4 ? 4 : 2;
  static constexpr uint32_t kFlip = Q == 8 ? 0x80808080u : 0u;
  static constexpr long long kCw = Q == 8 ? 128 : 0;
  using Res = int;

  template <int NT>
  struct State {
    int acc[NT][4];

    __device__ __forceinline__ void zero() {
#pragma unroll
      for (int n = 0; n < NT; ++n)
#pragma unroll
        for (int i = 0; i < 4; ++i) acc[n][i] = 0;
    }

    __device__ __forceinline__ void step(const AbqGemmParams& p, const Tile& tl, int kb) {
      uint4 wf[Q][2];
      load_w<Q>(p, tl, kb, wf);
      const int8_t* a = static_cast<const int8_t*>(p.a);
#pragma unroll
      for (int wi = 0; wi < 4; ++wi) {
        const size_t kbyte = (size_t)32 * (kb * 16 + 4 * tl.t + wi);
        uint4 av[NT][2];
#pragma unroll
        for (int n = 0; n < NT; ++n) {
          const int tok = tl.m0 + 8 * n + tl.g;
          const int8_t* src = a + (size_t)tok * p.a_stride + kbyte;
          const bool ok = tok < p.M && kbyte < (size_t)p.a_stride;
          av[n][0] = ld16(src, ok);
          av[n][1] = ld16(src + 16, ok);
        }
#pragma unroll
        for (int c = 0; c < 4; ++c) {
          const uint32_t a0 = codes4<Q>(wf, 0, wi, 8 * c) ^ kFlip;
          const uint32_t a1 = codes4<Q>(wf, 1, wi, 8 * c) ^ kFlip;
          const uint32_t a2 = codes4<Q>(wf, 0, wi, 8 * c + 4) ^ kFlip;
          const uint32_t a3 = codes4<Q>(wf, 1, wi, 8 * c + 4) ^ kFlip;
#pragma unroll
          for (int n = 0; n < NT; ++n)
            mma_s8(acc[n], a0, a1, a2, a3, comp(av[n][c >> 1], 2 * (c & 1)),
                   comp(av[n][c >> 1], 2 * (c & 1) + 1));
        }
      }
    }

    __device__ __forceinline__ void result(int (&r)[NT][4]) const {
#pragma unroll
      for (int n = 0; n < NT; ++n)
#pragma unroll
        for (int i = 0; i < 4; ++i) r[n][i] = acc[n][i];
    }
  };

  // sum A_u W_u = sum A_s W_s + cw*sum(A_u) + 128*sum(W_u) - 128*cw*K.
  __device__ static __forceinline__ long long fix(int r, int a_sum, int w_sum, int K) {
    return (long long)r + kCw * a_sum + 128LL * w_sum - 128LL * kCw * K;
  }
};

// ---------------------------------------------------------------- weight-only core (A16)
// Same arithmetic as the GEMV unpacker: round_T((q - z) * s) with s, z stored as T (the product
// is exact in fp32 before the one rounding); activations at k >= K are masked to zero.
template <int Q, class T>
struct A16Core {
  static constexpr bool kInt = false;
  static constexpr int kNT = Q <= 4 ? 4 : 2;
  using Res = float;

  template <int NT>
  struct State {
    float acc[NT][4];

    __device__ __forceinline__ void zero() {
#pragma unroll
      for (int n = 0; n < NT; ++n)
#pragma unroll
        for (int i = 0; i < 4; ++i) acc[n][i] = 0.f;
    }

    __device__ static __forceinline__ float tval(uint32_t bits16) {
      return (float)bitcast<T>((uint16_t)bits16);
    }

    __device__ static __forceinline__ uint32_t deq2(uint32_t v, int b, float z, float s) {
      const float lo = ((float)((v >> (8 * b)) & 0xFFu) - z) * s;
      const float hi = ((float)((v >> (8 * b + 8)) & 0xFFu) - z) * s;
      return pack2<T>(lo, hi);
    }

    // Zero the halves of an 8-element chunk starting at k0 that lie at or beyond K.
    __device__ static __forceinline__ uint4 mask_k(uint4 v, int k0, int K) {
      if (k0 + 8 <= K) return v;
      uint32_t* w = &v.x;
#pragma unroll
      for (int e = 0; e < 8; ++e)
        if (k0 + e >= K) w[e >> 1] &= (e & 1) ? 0x0000FFFFu : 0xFFFF0000u;
      return v;
    }

    __device__ __forceinline__ void step(const AbqGemmParams& p, const Tile& tl, int kb) {
      uint4 wf[Q][2];
      load_w<Q>(p, tl, kb, wf);
      const T* x = static_cast<const T*>(p.a);
      const int rg = tl.n0 + tl.g;
#pragma unroll
      for (int wi = 0; wi < 4; ++wi) {
        const int kbase = 32 * (kb * 16 + 4 * tl.t + wi);
        const int grp = min(kbase / p.group_size, p.groups - 1);
        const size_t i0 = (size_t)rg * p.groups + grp;
        const size_t i1 = i0 + (size_t)8 * p.groups;
        const uint32_t sz0 = tl.okg ? __ldg(p.w_sz + i0) : 0u;
        const uint32_t sz1 = tl.okg8 ? __ldg(p.w_sz + i1) : 0u;
        const float s0 = tval(sz0 & 0xFFFFu), z0 = tval(sz0 >> 16);
        const float s1 = tval(sz1 & 0xFFFFu), z1 = tval(sz1 >> 16);
        uint4 xv[NT][4];  // 32 activations of this word: x[tok, kbase .. kbase+31]
#pragma unroll
        for (int n = 0; n < NT; ++n) {
          const int tok = tl.m0 + 8 * n + tl.g;
          const T* src = x + (size_t)tok * p.a_stride + kbase;
#pragma unroll
          for (int u = 0; u < 4; ++u)
            xv[n][u] = mask_k(ld16(src + 8 * u, tok < p.M && kbase + 8 * u < p.K),
                              kbase + 8 * u, p.K);
        }
#pragma unroll
        for (int c = 0; c < 8; ++c) {
          const uint32_t v0 = codes4<Q>(wf, 0, wi, 4 * c);
          const uint32_t v1 = codes4<Q>(wf, 1, wi, 4 * c);
          const uint32_t a0 = deq2(v0, 0, z0, s0), a2 = deq2(v0, 2, z0, s0);
          const uint32_t a1 = deq2(v1, 0, z1, s1), a3 = deq2(v1, 2, z1, s1);
#pragma unroll
          for (int n = 0; n < NT; ++n)
            mma_f16<T>(acc[n], a0, a1, a2, a3, comp(xv[n][c >> 1], 2 * (c & 1)),
                       comp(xv[n][c >> 1], 2 * (c & 1) + 1));
        }
      }
    }

    __device__ __forceinline__ void result(float (&r)[NT][4]) const {
#pragma unroll
      for (int n = 0; n < NT; ++n)
#pragma unroll
        for (int i = 0; i < 4; ++i) r[n][i] = acc[n][i];
    }
  };

  __device__ static __forceinline__ long long fix(int r, int, int, int) { return r; }
};

// ---------------------------------------------------------------- epilogue
template <class Core, int NT>
__device__ __forceinline__ void epilogue(const AbqGemmParams& p, const Tile& tl,
                                         const typename Core::Res (&r)[NT][4]) {
#pragma unroll
  for (int n = 0; n < NT; ++n)
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int ch = tl.n0 + tl.g + (i >= 2 ? 8 : 0);
      const int tok = tl.m0 + 8 * n + 2 * tl.t + (i & 1);
      if (ch >= p.N || tok >= p.M) continue;
      const size_t o = (size_t)tok * p.N + ch;
      float y;
      if constexpr (Core::kInt) {
        const int sa = p.a_sum[tok], sw = p.w_sum[ch];
        const long long d = Core::fix((int)r[n][i], sa, sw, p.K);
        if (p.out_kind == ABQ_OUT_I32) {
          static_cast<int32_t*>(p.out)[o] = (int32_t)d;
          continue;
        }
        const long long za = p.a_zero[tok], zw = p.w_zero[ch];
        const long long e = d - za * sw - zw * sa + (long long)p.K * za * zw;
        y = (p.a_scale[tok] * p.w_scale[ch]) * (float)e;
      } else {
        y = (float)r[n][i];
      }
      if (p.bias != nullptr) y += p.bias[ch];
      if (p.out_kind == ABQ_OUT_F16) {
        static_cast<__half*>(p.out)[o] = __float2half_rn(y);
      } else if (p.out_kind == ABQ_OUT_BF16) {
        static_cast<__nv_bfloat16*>(p.out)[o] = __float2bfloat16_rn(y);
      }
    }
}

// ---------------------------------------------------------------- kernel + launchers
// WM x WN warps tile tokens x channels; each warp covers all of K. GEMM kernels may use 255
// registers (one block of 4 warps per SM slot is plenty at M > 8).
template <class Core, int NT, int WM, int WN>
__global__ void __launch_bounds__(32 * WM * WN, 1) gemm_kernel(const AbqGemmParams p) {
  using Res = typename Core::Res;
  const int lane = threadIdx.x & 31, wr = threadIdx.x >> 5;
  Tile tl;
  tl.g = lane >> 2;
  tl.t = lane & 3;
  tl.n0 = (blockIdx.x * WN + wr % WN) * 16;
  tl.m0 = (blockIdx.y * WM + wr / WN) * 8 * NT;
  tl.okg = tl.n0 + tl.g < p.N;
  tl.okg8 = tl.n0 + tl.g + 8 < p.N;

  typename Core::template State<NT> st;
  st.zero();
  const int kblocks = (p.kw + 15) >> 4;
  for (int kb = 0; kb < kblocks; ++kb) st.step(p, tl, kb);
  Res r[NT][4];
  st.result(r);
  epilogue<Core, NT>(p, tl, r);
}

// GEMM path: 2 x 2 warps, each 16 channels x 8*NT tokens.
template <class Core>
cudaError_t launch_gemm(const AbqGemmParams& p, cudaStream_t s) {
  constexpr int NT = Core::kNT, WM = 2, WN = 2;
  const dim3 grid((p.N + 16 * WN - 1) / (16 * WN), (p.M + 8 * NT * WM - 1) / (8 * NT * WM));
  gemm_kernel<Core, NT, WM, WN><<<grid, 32 * WM * WN, 0, s>>>(p);
  return cudaGetLastError();
}

}  // namespace abq
