// Plain-C parameter blocks shared by the CUDA launchers and the C++ binding.
// No torch, no CUDA headers: this file is included from both sides.
#pragma once
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// Output kinds of the GEMM launchers.
enum { ABQ_OUT_I32 = 0, ABQ_OUT_F16 = 1, ABQ_OUT_BF16 = 2 };
// Input dtypes of the activation quantizer.
enum { ABQ_IN_F32 = 0, ABQ_IN_F16 = 1, ABQ_IN_BF16 = 2 };
// Output layouts of the activation quantizer.
enum { ABQ_ACT_PLANES = 0, ABQ_ACT_INT8 = 1 };

// One quantized GEMM: out[M, N] = epilogue(A[M, K] . W[N, K]^T).
// Packed weights: `w` holds q bit planes [q][N][kw] of uint32 words; bit b of word w in row n
// is bit j of code W_u[n, 32*w + b]; kw is a multiple of 8 (256-bit blocks), pad bits are 0.
// M <= 8 runs the GEMV kernels (gemv.cuh: one kernel, split-K reduced in-kernel through
// `workspace`); with `x` set (fused mode) they also quantize the activations themselves.
typedef struct AbqGemmParams {
  const void* a;          // btc: planes [p][M][kw] u32; s8: int8 [M][a_stride]; a16: x [M][a_stride]
  const float* a_scale;   // [M] per-token activation scale (btc, s8)
  const int32_t* a_zero;  // [M] per-token activation zero point (btc, s8)
  const int32_t* a_sum;   // [M] sum of activation codes over the K true columns (btc, s8)
  const uint32_t* w;      // [q][N][kw] weight bit planes
  const float* w_scale;   // btc/s8: [N]
  const int32_t* w_zero;  // btc/s8: [N] integer zero points
  const uint32_t* w_sz;   // a16: [N][groups] (scale, zero) packed as two fp16/bf16 (x's dtype)
  const int32_t* w_sum;   // [N] sum of weight codes over K (btc, s8)
  const float* bias;      // [N] or NULL
  void* out;              // [M][N], int32 / fp16 / bf16 per out_kind
  int M, N, K;            // K: true reduction length
  int kw;                 // 32-bit words per packed row (multiple of 8)
  int a_stride;           // row stride of `a` in its own elements (a16: halves; s8: bytes)
  int groups;             // a16: number of weight groups per row
  int group_size;         // a16: weights per group (multiple of 32, or >= K)
  int out_kind;           // ABQ_OUT_*
  // Fused activation quantization (btc/s8 GEMV, M <= 8): `x` replaces a/a_scale/a_zero/a_sum.
  const void* x;          // [M][x_stride] activations (ABQ_IN_*), NULL = pre-quantized `a`
  int x_dtype, x_stride;
  int a_bits, a_sym;      // per-token quantizer (bits 1..8 for btc, 8 for s8)
  float a_clip;           // range ratio in (0, 1]: per-token [min * a_clip, max * a_clip]
  // Split-K scratch of the GEMV kernels (NULL: no split).
  void* workspace;        // >= abq_gemv_workspace_bytes(M, N) bytes
  int32_t* counters;      // >= ceil(N / 128) ints, zero before the first call (kernels reset them)
} AbqGemmParams;

// Dynamic per-token activation quantization (+ bit-plane or int8 packing).
typedef struct AbqActParams {
  const void* x;      // [M][x_stride] input activations
  int x_dtype;        // ABQ_IN_*
  int M, K, x_stride;
  int bits;           // 1..8
  int sym;            // 0: asymmetric min/max, 1: symmetric absmax (bits >= 2)
  float clip;         // range ratio in (0, 1]: [min * clip, max * clip] (1: min/max)
  int mode;           // ABQ_ACT_PLANES or ABQ_ACT_INT8
  void* out;          // planes: u32 [bits][M][kw]; int8: [M][32*kw] holding (code - 128)
  int kw;             // words per packed row (multiple of 8)
  float* scale;       // [M]
  int32_t* zero;      // [M]
  int32_t* rowsum;    // [M] sum of codes over the K true columns
} AbqActParams;

// Launchers (return a cudaError_t value; 0 = success). `stream` is a cudaStream_t.
int abq_act_quant_pack(const AbqActParams* p, void* stream);
int abq_btc_gemm(const AbqGemmParams* p, int w_bits, int a_bits, void* stream);
int abq_s8_gemm(const AbqGemmParams* p, int w_bits, void* stream);
int abq_a16_gemm(const AbqGemmParams* p, int w_bits, int is_bf16, void* stream);
// Bytes of `workspace` the GEMV kernels may use for M tokens and N channels.
size_t abq_gemv_workspace_bytes(int M, int N);
const char* abq_error_string(int err);

#ifdef __cplusplus
}
#endif
