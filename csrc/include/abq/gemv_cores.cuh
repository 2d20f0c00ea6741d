// Main-loop cores of the streaming GEMV (M <= 8), one per arithmetic path:
//   GemvA16<Q, T>  weight-only: planes -> exact (q - z) * s in T (unpack.cuh) -> HMMA
//   GemvS8<Q>      A8: planes -> int8 bytes (unpack.cuh) -> IMMA
//   GemvBtc<Q, P>  bit planes straight into BMMA (and.popc), one temp accumulator per 2^s
//
// Warp tile: 16 channels (rows g, g+8 of the MMA A operand = weights) x 8 tokens (B operand,
// lanes g >= M read the last token; those output columns are dropped). A trip covers 4*kW
// words (128*kW k): quad thread t owns words [kW*t, kW*t + kW) of it, one vector load per row and
// plane, issued one trip ahead (gemv.cuh). Activations sit in shared memory in the k-order the
// unpackers produce, so each MMA's B fragment is one 8-byte LDS.
//
// The code is __host__ __device__ and templated on an Ops policy (loads, LDS, MMA): the kernel
// passes DevOps, tests/kernels/host_harness.cu passes a recorder and replays the MMAs on the CPU.
#pragma once
#include "abq/unpack.cuh"

namespace abq {

enum { kPathA16 = 0, kPathS8 = 1, kPathBtc = 2 };

// What a warp's main loop reads; built by the kernel (or the host harness).
struct WarpCtx {
  const uint32_t* row[2];  // plane-0 row start of channels g and g+8 (clamped when absent)
  bool ok[2];              // those channels exist
  size_t plane;            // words between bit planes (N * kw)
  int wbeg, wend;          // this split's words [wbeg, wend)
  int t;                   // quad thread
  const char* act;         // this lane's token row in shared memory + t * Core::kChunk
  const uint32_t* sz[2];   // a16: (scale, zero) pairs of the two rows
  int groups;              // a16: groups per row
  DivMagic grp;            // a16: word -> group
  uint32_t magic[5];       // a16: A16Unpack::magic(N * i), from the kernel parameters
};

// Token rows in shared memory are chunks of kChunk = kW * kWordBytes + kPad bytes, one per quad
// thread and trip (relative word wr is in chunk wr / kW); the pad puts the four threads of a
// quad on different banks. Inside a chunk, offsets are compile-time constants.

// Vector loads of one trip: v[row][plane][word].
template <int Q, int W>
struct PlaneBuf {
  uint32_t v[2][Q][W];
};

template <class Core, class Ops>
ABQ_HD void load_trip(Ops& ops, PlaneBuf<Core::kQ, Core::kW>& b, const WarpCtx& c, int trip) {
  constexpr int W = Core::kW;
  const int word = c.wbeg + 4 * W * trip + W * c.t;
  const bool in = word < c.wend;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
#pragma unroll
    for (int j = 0; j < Core::kQ; ++j) {
      const uint32_t* ptr = c.row[r] + j * c.plane + word;
      if constexpr (W == 4) {
        uint4 x = make_uint4(b.v[r][j][0], b.v[r][j][1], b.v[r][j][2], b.v[r][j][3]);
        x = ops.ldw4(ptr, in && c.ok[r], x);
        b.v[r][j][0] = x.x, b.v[r][j][1] = x.y, b.v[r][j][2] = x.z, b.v[r][j][3] = x.w;
      } else {
        uint2 x = make_uint2(b.v[r][j][0], b.v[r][j][1]);
        x = ops.ldw2(ptr, in && c.ok[r], x);
        b.v[r][j][0] = x.x, b.v[r][j][1] = x.y;
      }
    }
  }
}

// ---------------------------------------------------------------- weight-only (A16)
// kHoist: the group is looked up once per row and trip (group_size a multiple of 32 * kW, or
// one group per row); otherwise once per word.
template <int Q, class T, bool kHoist>
struct GemvA16 {
  using Un = A16Unpack<Q, T>;
  using Elem = T;
  static constexpr int kPath = kPathA16, kQ = Q, kW = Q <= 2 ? 4 : 2;
  static constexpr bool kPrefetch = true, kEarlyLoad = true;
  static constexpr bool kInt = false;
  static constexpr int kWordBytes = 64, kChunk = kW * kWordBytes + 16;  // 16 pairs per word
  using Part = float;
  struct Acc {
    float c[4];
  };

  // Byte offset of pair pi (MMA i = pi / 2 reads pairs 2i, 2i+1 as one 8-byte LDS).
  static ABQ_HD int act_offset(int wr, int pi) {
    return wr / kW * kChunk + wr % kW * kWordBytes + 4 * pi;
  }

  template <class Ops>
  static ABQ_HD void group_consts(Ops& ops, const WarpCtx& c, int wr,
                                  typename Un::Consts (&k)[2]) {
    uint32_t grp = div_fast((uint32_t)(c.wbeg + wr), c.grp);
    grp = grp < (uint32_t)c.groups ? grp : (uint32_t)c.groups - 1;  // pad words past K
#pragma unroll
    for (int r = 0; r < 2; ++r) k[r] = Un::consts(ops.ldsz(c.sz[r] + grp, c.ok[r]));
  }

  template <class Ops>
  static ABQ_HD void compute(Ops& ops, const PlaneBuf<Q, kW>& b, const WarpCtx& c, int trip,
                             Acc& acc) {
    typename Un::Magics g;
#pragma unroll
    for (int i = 0; i < Un::kNumP; ++i) g.m[i] = c.magic[i];
    typename Un::Consts k[2];
    if constexpr (kHoist) group_consts(ops, c, 4 * kW * trip + kW * c.t, k);
#pragma unroll
    for (int u = 0; u < kW; ++u) {
      const int wr = 4 * kW * trip + kW * c.t + u;
      if constexpr (!kHoist) group_consts(ops, c, wr, k);
      uint32_t p0[Q], p1[Q], a0[16], a1[16];
#pragma unroll
      for (int j = 0; j < Q; ++j) p0[j] = b.v[0][j][u], p1[j] = b.v[1][j][u];
      Un::pairs(p0, k[0], g, a0);
      Un::pairs(p1, k[1], g, a1);
      const char* act = c.act + 4 * kChunk * trip + kWordBytes * u;
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        const uint2 x = ops.lds64(act + 8 * i);
        ops.template mma_f16<T>(acc.c, a0[2 * i], a1[2 * i], a0[2 * i + 1], a1[2 * i + 1], x.x,
                                x.y);
      }
    }
  }
};

// ---------------------------------------------------------------- A8 (unpack to s8)
// Activations hold code - 128; codes of Q < 8 weights fit int8 as they are, Q = 8 codes are
// shifted by 128 too (cw). The finish step restores sum A_u W_u exactly (gemv.cuh).
template <int Q>
struct GemvS8 {
  static constexpr int kPath = kPathS8, kQ = Q, kW = Q <= 4 ? 4 : 2;
  static constexpr bool kPrefetch = true, kEarlyLoad = true;
  static constexpr bool kInt = true;
  static constexpr int kWordBytes = 32, kChunk = kW * kWordBytes + 8;
  static constexpr long long kCw = Q == 8 ? 128 : 0, kSa = 128;
  using Part = long long;
  struct Acc {
    int c[4];
  };

  // Byte offset of activation kk (0..31) of relative word wr: byte c = kk / 8 of register
  // r = kk % 8 (s8_k); registers (2i, 2i+1) form MMA i's B fragment (one 8-byte LDS).
  static ABQ_HD int act_offset(int wr, int kk) {
    return wr / kW * kChunk + wr % kW * kWordBytes + 4 * (kk & 7) + (kk >> 3);
  }

  template <class Ops>
  static ABQ_HD void compute(Ops& ops, const PlaneBuf<Q, kW>& b, const WarpCtx& c, int trip,
                             Acc& acc) {
#pragma unroll
    for (int u = 0; u < kW; ++u) {
      uint32_t p0[Q], p1[Q], a0[8], a1[8];
#pragma unroll
      for (int j = 0; j < Q; ++j) p0[j] = b.v[0][j][u], p1[j] = b.v[1][j][u];
      unpack_s8<Q>(p0, a0);
      unpack_s8<Q>(p1, a1);
      const char* act = c.act + 4 * kChunk * trip + kWordBytes * u;
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const uint2 x = ops.lds64(act + 8 * i);
        ops.mma_s8(acc.c, a0[2 * i], a1[2 * i], a0[2 * i + 1], a1[2 * i + 1], x.x, x.y);
      }
    }
  }
};

// ---------------------------------------------------------------- binary (BTC)
// sum_ij 2^(i+j) popc(A_i AND W_j): the MMAs of one s = i + j go into a zeroed temp that is
// added, shifted by s, to the total (4 + 4 registers instead of 4 * (P + Q - 1)).
template <int Q, int P>
struct GemvBtc {
  // Registers: weights 2 (rows) x Q x kW per trip, twice with prefetch; activations P x kW.
  static constexpr int kPath = kPathBtc, kQ = Q, kP = P, kW = P + Q <= 6 ? 4 : 2;
  static constexpr bool kPrefetch = P + Q <= 8, kEarlyLoad = P < 5;
  static constexpr bool kInt = true;
  // A chunk holds kW / 2 word pairs, each [plane][2] u32: MMA (u, u+1) of plane i is one LDS.
  static constexpr int kWordBytes = 4 * P, kChunk = kW * kWordBytes + 8;
  static constexpr long long kCw = 0, kSa = 0;
  using Part = long long;
  struct Acc {
    int c[4];
  };

  static ABQ_HD int act_offset(int wr, int plane) {
    return wr / kW * kChunk + (wr % kW >> 1) * 8 * P + 8 * plane + 4 * (wr & 1);
  }

  // Heavy pairs re-read each activation plane from shared memory at its use (volatile, so it is
  // not hoisted) instead of holding all P planes next to 2 trips of weights: no spills at 128
  // registers.
  static constexpr bool kLazy = P >= 5;

  template <class Ops>
  static ABQ_HD void compute(Ops& ops, const PlaneBuf<Q, kW>& b, const WarpCtx& c, int trip,
                             Acc& acc) {
    const char* act = c.act + 4 * kChunk * trip;
    uint32_t a[kLazy ? 1 : P][kW];
    if constexpr (!kLazy) {
#pragma unroll
      for (int i = 0; i < P; ++i)
#pragma unroll
        for (int u = 0; u < kW; u += 2) {
          const uint2 x = ops.lds64(act + (u >> 1) * 8 * P + 8 * i);
          a[i][u] = x.x, a[i][u + 1] = x.y;
        }
    }
#pragma unroll
    for (int s = 0; s < P + Q - 1; ++s) {
      int tmp[4] = {0, 0, 0, 0};
#pragma unroll
      for (int i = 0; i < P; ++i) {
        const int j = s - i;
        if (j < 0 || j >= Q) continue;
#pragma unroll
        for (int u = 0; u < kW; u += 2) {
          uint32_t a0, a1;
          if constexpr (kLazy) {
            const uint2 x = ops.lds64_volatile(act + (u >> 1) * 8 * P + 8 * i);
            a0 = x.x, a1 = x.y;
          } else {
            a0 = a[i][u], a1 = a[i][u + 1];
          }
          ops.mma_b1(tmp, b.v[0][j][u], b.v[1][j][u], b.v[0][j][u + 1], b.v[1][j][u + 1], a0, a1);
        }
      }
      ops.shift_add(acc.c, tmp, s);
    }
  }
};

}  // namespace abq
