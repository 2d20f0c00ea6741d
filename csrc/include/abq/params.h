// Plain-C parameter blocks shared by the CUDA launchers and the C++ binding.
// No torch, no CUDA headers: this file is included from both sides.
#pragma once
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
// is bit j of code W_u[n, 32*w + b]; kw is a multiple of 16 (512-bit blocks), pad bits are 0.
typedef struct AbqGemmParams {
  const void* a;          // btc: planes [p][M][kw] u32; s8: int8 [M][a_stride]; a16: x [M][a_stride]
  const float* a_scale;   // [M] per-token activation scale (btc, s8)
  const int32_t* a_zero;  // [M] per-token activation zero point (btc, s8)
  const int32_t* a_sum;   // [M] sum of activation codes over the K true columns (btc, s8)
  const uint32_t* w;      // [q][N][kw] weight bit planes
  const float* w_scale;   // btc/s8: [N]; a16: [N][groups]
  const int32_t* w_zero;  // btc/s8: [N] integer zero points
  const float* w_zero_f;  // a16: [N][groups] (integer-valued floats)
  const int32_t* w_sum;   // [N] sum of weight codes over K (btc, s8)
  const float* bias;      // [N] or NULL
  void* out;              // [M][N], int32 / fp16 / bf16 per out_kind
  int M, N, K;            // K: true reduction length
  int kw;                 // 32-bit words per packed row (multiple of 16)
  int a_stride;           // row stride of `a` in its own elements (a16: halves; s8: bytes)
  int groups;             // a16: number of weight groups per row
  int group_size;         // a16: weights per group (multiple of 32, or >= K)
  int out_kind;           // ABQ_OUT_*
} AbqGemmParams;

// Dynamic per-token activation quantization (+ bit-plane or int8 packing).
typedef struct AbqActParams {
  const void* x;      // [M][x_stride] input activations
  int x_dtype;        // ABQ_IN_*
  int M, K, x_stride;
  int bits;           // 1..8
  int sym;            // 0: asymmetric min/max, 1: symmetric absmax (bits >= 2)
  int mode;           // ABQ_ACT_PLANES or ABQ_ACT_INT8
  void* out;          // planes: u32 [bits][M][kw]; int8: [M][32*kw] holding (code - 128)
  int kw;             // words per packed row (multiple of 16)
  float* scale;       // [M]
  int32_t* zero;      // [M]
  int32_t* rowsum;    // [M] sum of codes over the K true columns
} AbqActParams;

// Launchers (return a cudaError_t value; 0 = success). `stream` is a cudaStream_t.
int abq_act_quant_pack(const AbqActParams* p, void* stream);
int abq_btc_gemm(const AbqGemmParams* p, int w_bits, int a_bits, void* stream);
int abq_s8_gemm(const AbqGemmParams* p, int w_bits, void* stream);
int abq_a16_gemm(const AbqGemmParams* p, int w_bits, int is_bf16, void* stream);
const char* abq_error_string(int err);

#ifdef __cplusplus
}
#endif
