// Dynamic per-token activation quantization, one definition for every kernel (host/device).
//
// Must match abqlab.kernels.reference.quantize_act bit for bit: fp32 math, IEEE division
// (no fast-math), rintf = round half to even = torch.round. The per-token range [lo, hi] is first
// shrunk by the clip ratio c in (0, 1]: lo = fl(xmin * c), hi = fl(xmax * c), two rounded fp32
// products (never contracted into an FMA with the subtraction below), as FakeQuantLinear does.
//   asym: scale = max(hi - lo, 1e-8) / (2^p - 1); zero = rint(-lo / scale);
//         q = clamp(rint(x / scale) + zero, 0, 2^p - 1)
//   sym:  scale = max(|lo|, |hi|, 1e-8) / (2^(p-1) - 1); q = clamp(rint(x / scale), -2^(p-1),
//         2^(p-1) - 1) + 2^(p-1); zero = 2^(p-1)
#pragma once
#include <math.h>

#include "abq/prim.cuh"

namespace abq {

struct ActQ {
  float scale, zero;  // zero: added before clamping (asym), 0 for sym
  float qmin, qmax;
  int shift;          // added after clamping (sym: 2^(p-1))
  int zero_point;     // the reported integer zero point
};

// fp32 product rounded on its own: on the device __fmul_rn is never fused into an FMA.
ABQ_HD float mul_rn(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}

// Quantizer of one token from its min / max and the clip ratio.
ABQ_HD ActQ act_qparams(float xmin, float xmax, float clip, int bits, int sym) {
  const float lo = mul_rn(xmin, clip), hi = mul_rn(xmax, clip);
  ActQ q;
  if (sym) {
    const int half = 1 << (bits - 1);
    q.scale = fmaxf(fmaxf(fabsf(lo), fabsf(hi)), 1e-8f) / (float)(half - 1);
    q.zero = 0.f;
    q.qmin = (float)-half;
    q.qmax = (float)(half - 1);
    q.shift = half;
    q.zero_point = half;
  } else {
    q.scale = fmaxf(hi - lo, 1e-8f) / (float)((1 << bits) - 1);
    q.zero = rintf(-lo / q.scale);
    q.qmin = 0.f;
    q.qmax = (float)((1 << bits) - 1);
    q.shift = 0;
    q.zero_point = (int)q.zero;
  }
  return q;
}

// Unsigned code of one activation.
ABQ_HD int act_code(float x, const ActQ& q) {
  const float v = rintf(x / q.scale) + q.zero;
  return (int)fminf(fmaxf(v, q.qmin), q.qmax) + q.shift;
}

}  // namespace abq
