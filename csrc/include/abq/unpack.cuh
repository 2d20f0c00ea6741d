// Bit-plane words -> MMA operands, in registers (host/device; see prim.cuh).
//
// Input: the Q plane words of one row at one word index (bit b of plane j = bit j of the code of
// weight b of that word). A delta-swap network transposes them into N = 2, 4 or 8 "field words"
// holding N-bit fields: after transpose<N>, field f of word r is the code of weight N*f + r.
// Both unpackers keep that k-order; the activations are stored in the same order (act_k*),
// which the MMA allows (mma.cuh: any k-permutation shared by both operands).
//
// s8 (A8 path): byte c of byte-word r (r = 0..7) = code of weight 8c + r (8-bit fields; for
// Q = 8 the top plane is inverted first, i.e. code ^ 0x80 = code - 128 as int8).
//
// A16: pair pi = r*H + f (H = 16/N pairs per field word) packs weights klo = N*f + r (low half)
// and klo + 16 (high half) as T. Each pair is one LOP3: the field, shifted so that it sits at
// mantissa bit p, is ORed with the exponent of 2^(m - p) (m = 10 fp16 / 7 bf16), giving exactly
// 2^(m-p) + code; one HSUB2 with (2^(m-p) + z) gives q - z exactly and one HMUL2 with the
// group's scale rounds once: the same round_T((q - z) * s) as the reference, bit for bit.
// (Folding both into one HFMA2 against -(2^m + z)*s would round that constant first, an error
// of up to half a quantization step.) bf16 with Q = 8 has no 8-bit mantissa window: it goes
// through fp32 (magic 2^23), also exact.
#pragma once
#include "abq/prim.cuh"

namespace abq {

// Field width of the transposed words for Q-bit codes.
__host__ __device__ constexpr int field_bits(int q) { return q <= 2 ? 2 : (q <= 4 ? 4 : 8); }

template <int N, int D>
ABQ_HD void swap_stage(uint32_t (&w)[N], uint32_t m) {
#pragma unroll
  for (int j = 0; j < N; ++j) {
    if ((j & D) == 0 && j + D < N) {
      const uint32_t a = w[j], b = w[j + D];
      w[j] = (a & m) | ((b << D) & ~m);
      w[j + D] = ((a >> D) & m) | (b & ~m);
    }
  }
}

// Q plane words -> N field words (planes >= Q are zero; the compiler folds them away).
template <int Q, int N>
ABQ_HD void transpose(const uint32_t (&planes)[Q], uint32_t (&w)[N]) {
  static_assert(Q <= N && (N == 2 || N == 4 || N == 8), "bad transpose");
#pragma unroll
  for (int j = 0; j < N; ++j) w[j] = j < Q ? planes[j] : 0u;
  swap_stage<N, 1>(w, 0x55555555u);
  if constexpr (N >= 4) swap_stage<N, 2>(w, 0x33333333u);
  if constexpr (N >= 8) swap_stage<N, 4>(w, 0x0F0F0F0Fu);
}

// ---------------------------------------------------------------- s8 (A8)
template <int Q>
ABQ_HD void unpack_s8(const uint32_t (&planes)[Q], uint32_t (&out)[8]) {
  uint32_t p[Q];
#pragma unroll
  for (int j = 0; j < Q; ++j) p[j] = planes[j];
  if constexpr (Q == 8) p[7] = ~p[7];  // code - 128 in two's complement
  transpose<Q, 8>(p, out);
}

// k offset (within the 32-weight word) of byte c of s8 byte-word r.
__host__ __device__ constexpr int s8_k(int r, int c) { return 8 * c + r; }

// ---------------------------------------------------------------- A16
template <int Q, class T>
struct A16Unpack {
  static constexpr bool kBf16 = sizeof(T) == 2 && !__is_same(T, __half);
  static constexpr bool kF32 = kBf16 && Q == 8;  // fp32 route
  static constexpr int N = field_bits(Q);
  static constexpr int H = 16 / N;                       // pairs per field word
  static constexpr int kMant = kBf16 ? 7 : 10;
  static constexpr int kPmax = kMant - (Q < 2 ? 2 : Q);  // highest usable field position
  static constexpr int L = kF32 ? 1 : kPmax / N + 1;     // fields read per shift
  static constexpr int kNumP = L < H ? L : H;            // distinct positions p = N*i

  // Exponent bits of 2^(kMant - p) in both halves (= the magic OR-ed onto a field at p).
  static ABQ_HD constexpr uint32_t magic(int p) {
    return (kBf16 ? ((134u - p) << 7) : ((25u - p) << 10)) * 0x10001u;
  }

  struct Consts {
    uint32_t s2;         // (s, s)
    uint32_t c[kNumP];   // (2^(m-p_i) + z) x 2
    float s, cz;         // fp32 route: s and 2^23 + z
  };

  // The magics as run-time values (the kernel reads them from its parameters: a LOP3 has one
  // immediate slot, so (field & mask) | magic is one instruction only with magic in a register;
  // ptxas would fold a constant back into a second LOP3).
  struct Magics {
    uint32_t m[kNumP];
  };

  // sz: scale in the low half, integer-valued zero point in the high half (both T).
  static ABQ_HD Consts consts(uint32_t sz) {
    Consts k{};
    if constexpr (kF32) {
      k.s = bitcast<float>(sz << 16);
      k.cz = 8388608.0f + bitcast<float>(sz & 0xFFFF0000u);
    } else {
      k.s2 = prmt(sz, sz, 0x1010);
      const uint32_t z2 = prmt(sz, sz, 0x3232);
#pragma unroll
      for (int i = 0; i < kNumP; ++i) k.c[i] = hadd2<T>(z2, magic(N * i));
    }
    return k;
  }

  // 16 packed pairs (weights act_klo(pi), act_klo(pi) + 16) of one row's word.
  static ABQ_HD void pairs(const uint32_t (&planes)[Q], const Consts& k, const Magics& g,
                           uint32_t (&out)[16]) {
    uint32_t w[N];
    transpose<Q, N>(planes, w);
#pragma unroll
    for (int r = 0; r < N; ++r) {
#pragma unroll
      for (int f = 0; f < H; ++f) {
        if constexpr (kF32) {  // bytes f and f + 2 through fp32 magic 2^23
          const float lo = bitcast<float>(prmt(w[r], 0x4B000000u, 0x7540 | f)) - k.cz;
          const float hi = bitcast<float>(prmt(w[r], 0x4B000000u, 0x7542 | f)) - k.cz;
          out[r * H + f] = pack2f<T>(lo * k.s, hi * k.s);
        } else {
          const int i = f % L, p = N * i, sh = N * L * (f / L);
          const uint32_t mask = ((1u << N) - 1) * 0x10001u << p;
          const uint32_t x = ((w[r] >> sh) & mask) | g.m[i];
          out[r * H + f] = hmul2<T>(hsub2<T>(x, k.c[i]), k.s2);
        }
      }
    }
  }
};

// k offset (within the word) of the low weight of A16 pair pi (the high one is +16).
template <int Q>
__host__ __device__ constexpr int act_klo(int pi) {
  return field_bits(Q) * (pi % (16 / field_bits(Q))) + pi / (16 / field_bits(Q));
}

// ---------------------------------------------------------------- group index
// floor(n / d) for n < 2^20 and 1 <= d < 2^20 as (n*mh + umulhi(n, ml)) >> 8, with
// mh:ml = ceil(2^40 / d) (exact: n * (ceil(2^40/d)*d - 2^40) < 2^40). d = 0 encodes "one group".
struct DivMagic {
  uint32_t mh, ml;
};

inline DivMagic div_magic(uint32_t d) {
  if (d == 0) return {0u, 0u};
  const uint64_t m = ((1ull << 40) + d - 1) / d;
  return {(uint32_t)(m >> 32), (uint32_t)m};
}

ABQ_HD uint32_t div_fast(uint32_t n, DivMagic m) {
#ifdef __CUDA_ARCH__
  const uint32_t hi = __umulhi(n, m.ml);
#else
  const uint32_t hi = (uint32_t)(((uint64_t)n * m.ml) >> 32);
#endif
  return (n * m.mh + hi) >> 8;
}

}  // namespace abq
