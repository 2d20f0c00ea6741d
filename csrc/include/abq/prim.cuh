// Primitives shared by the kernels: bit casts, byte permute, packed half arithmetic (all
// __host__ __device__, so the unpack code runs unchanged in the CPU harness of
// tests/kernels/host_harness.cu), and device-only streaming loads.
//
// Host versions compute packed fp16/bf16 ops through float: exact for the operands the kernels
// feed them (integer-valued differences; products of an 8-bit integer and an fp16/bf16 scale,
// which are exact in fp32 before the single rounding), i.e. identical to the hardware results.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>
#include <string.h>

#define ABQ_HD __host__ __device__ __forceinline__

namespace abq {

template <class To, class From>
ABQ_HD To bitcast(const From& f) {
  static_assert(sizeof(To) == sizeof(From), "size mismatch");
  To t;
  memcpy(&t, &f, sizeof(To));
  return t;
}

// PTX prmt (default mode, selector nibbles 0..7): result byte i = byte sel[i] of {b:a}.
ABQ_HD uint32_t prmt(uint32_t a, uint32_t b, uint32_t sel) {
#ifdef __CUDA_ARCH__
  return __byte_perm(a, b, sel);
#else
  const uint64_t v = ((uint64_t)b << 32) | a;
  uint32_t r = 0;
  for (int i = 0; i < 4; ++i) r |= (uint32_t)((v >> (8 * ((sel >> (4 * i)) & 7))) & 0xFF) << (8 * i);
  return r;
#endif
}

template <class T>
struct Vec2;
template <>
struct Vec2<__half> {
  using type = __half2;
};
template <>
struct Vec2<__nv_bfloat16> {
  using type = __nv_bfloat162;
};

// Packed 2 x T arithmetic on 32-bit registers (low half = element 0).
template <class T>
ABQ_HD uint32_t hsub2(uint32_t a, uint32_t b) {
  using V = typename Vec2<T>::type;
  return bitcast<uint32_t>(__hsub2(bitcast<V>(a), bitcast<V>(b)));
}

template <class T>
ABQ_HD uint32_t hadd2(uint32_t a, uint32_t b) {
  using V = typename Vec2<T>::type;
  return bitcast<uint32_t>(__hadd2(bitcast<V>(a), bitcast<V>(b)));
}

template <class T>
ABQ_HD uint32_t hmul2(uint32_t a, uint32_t b) {
  using V = typename Vec2<T>::type;
  return bitcast<uint32_t>(__hmul2(bitcast<V>(a), bitcast<V>(b)));
}

// Two fp32 values rounded (RNE) into a packed pair of T.
template <class T>
ABQ_HD uint32_t pack2f(float lo, float hi);
template <>
ABQ_HD uint32_t pack2f<__half>(float lo, float hi) {
  return bitcast<uint32_t>(__floats2half2_rn(lo, hi));
}
template <>
ABQ_HD uint32_t pack2f<__nv_bfloat16>(float lo, float hi) {
  return bitcast<uint32_t>(__floats2bfloat162_rn(lo, hi));
}

#ifdef __CUDACC__
// L2 policy for data read once per call (weights): evict first. Create once per thread.
__device__ __forceinline__ uint64_t evict_first_policy() {
  uint64_t pol;
  asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;\n" : "=l"(pol));
  return pol;
}

// Predicated streaming loads: no L1 allocation, L2 evict-first. When !ok the registers keep
// whatever they held (callers only use such values against zero activations).
__device__ __forceinline__ uint4 ldg_stream(const uint32_t* p, bool ok, uint64_t pol, uint4 v) {
  asm volatile(
      "{\n .reg .pred q;\n setp.ne.b32 q, %5, 0;\n"
      " @q ld.global.nc.L1::no_allocate.L2::cache_hint.v4.u32 {%0,%1,%2,%3}, [%4], %6;\n}\n"
      : "+r"(v.x), "+r"(v.y), "+r"(v.z), "+r"(v.w)
      : "l"(p), "r"((int)ok), "l"(pol));
  return v;
}

__device__ __forceinline__ uint2 ldg_stream2(const uint32_t* p, bool ok, uint64_t pol, uint2 v) {
  asm volatile(
      "{\n .reg .pred q;\n setp.ne.b32 q, %3, 0;\n"
      " @q ld.global.nc.L1::no_allocate.L2::cache_hint.v2.u32 {%0,%1}, [%2], %4;\n}\n"
      : "+r"(v.x), "+r"(v.y)
      : "l"(p), "r"((int)ok), "l"(pol));
  return v;
}
#endif

}  // namespace abq
