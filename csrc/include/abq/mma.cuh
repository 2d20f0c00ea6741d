// Warp-level MMA wrappers (PTX mma.sync) and bit helpers used by every kernel core.
//
// Fragment convention (PTX ISA, m16n8kX, row.col): lane = 4*g + t. A-operand registers
// a0/a2 hold row g, a1/a3 row g+8; a0/a1 cover the first k-half owned by thread t, a2/a3 the
// second; B-operand b0/b1 hold column g with the same two k-sets. C: c0,c1 = (row g, cols 2t,
// 2t+1), c2,c3 = (row g+8, same cols). Because the product sums over k, any permutation of k
// applied identically to A and B (depending on t and register slot only, never on g) gives the
// same result: the kernels use that freedom to load contiguous words per thread.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

namespace abq {

// C += popc(A AND B) on binary tensor cores (BMMA), m16n8k256.
__device__ __forceinline__ void mma_b1(int (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2,
                                       uint32_t a3, uint32_t b0, uint32_t b1) {
  asm("mma.sync.aligned.m16n8k256.row.col.s32.b1.b1.s32.and.popc "
      "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// C += A . B with signed 8-bit inputs (IMMA), m16n8k32.
__device__ __forceinline__ void mma_s8(int (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2,
                                       uint32_t a3, uint32_t b0, uint32_t b1) {
  asm("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 "
      "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// C += A . B with fp16 or bf16 inputs and fp32 accumulation (HMMA), m16n8k16.
template <class T>
__device__ __forceinline__ void mma_f16(float (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2,
                                        uint32_t a3, uint32_t b0, uint32_t b1);

template <>
__device__ __forceinline__ void mma_f16<__half>(float (&c)[4], uint32_t a0, uint32_t a1,
                                                uint32_t a2, uint32_t a3, uint32_t b0,
                                                uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
      "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

template <>
__device__ __forceinline__ void mma_f16<__nv_bfloat16>(float (&c)[4], uint32_t a0, uint32_t a1,
                                                       uint32_t a2, uint32_t a3, uint32_t b0,
                                                       uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
      "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// Spread the 4 low bits of n into the low bit of 4 bytes: byte b = bit b of n.
// n * 0x00204081 places copies of n at bit offsets 0, 7, 14, 21 (no overlap, no carries).
__device__ __forceinline__ uint32_t spread4(uint32_t n) {
  return (n * 0x00204081u) & 0x01010101u;
}

// Component i (compile-time after unrolling) of a uint4.
__device__ __forceinline__ uint32_t comp(const uint4& v, int i) {
  return i == 0 ? v.x : (i == 1 ? v.y : (i == 2 ? v.z : v.w));
}

// 16-byte read-only load, or zeros when !ok.
__device__ __forceinline__ uint4 ld16(const void* ptr, bool ok) {
  return ok ? __ldg(reinterpret_cast<const uint4*>(ptr)) : make_uint4(0u, 0u, 0u, 0u);
}

// 8-byte read-only load, or zeros when !ok.
__device__ __forceinline__ uint2 ld8(const void* ptr, bool ok) {
  return ok ? __ldg(reinterpret_cast<const uint2*>(ptr)) : make_uint2(0u, 0u);
}

// Pack two floats into a 32-bit pair of T (low half = lo).
template <class T>
__device__ __forceinline__ uint32_t pack2(float lo, float hi);

template <>
__device__ __forceinline__ uint32_t pack2<__half>(float lo, float hi) {
  __half2 h = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&h);
}

template <>
__device__ __forceinline__ uint32_t pack2<__nv_bfloat16>(float lo, float hi) {
  __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&h);
}

}  // namespace abq
