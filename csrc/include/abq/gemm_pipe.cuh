// Pipelined GEMM for M >= 256 (prefill), s8 (A8) and weight-only (A16) paths; mma.sync, which
// is native on sm_80 and sm_90a (geometry in pipe_tile.cuh).
//
// Per k-stage: a 3-deep cp.async ring brings the activation tile and the weight bit planes of
// stage kt + 2 while stage kt is used; the planes of stage kt are unpacked once (each thread
// two / one (row, word) items) into the shared weight tile; 8 warps then run 4 k-steps of
// ldmatrix.x4 + mma (16 per warp and step). Accumulators: int32 (s8) / fp32 (A16); the
// epilogue is the GEMV's (gemv_store, unfused formula: exact integer correction, then fp32).
#pragma once
#include <cuda_runtime.h>

#include "abq/gemv.cuh"
#include "abq/pipe_tile.cuh"

namespace abq {

template <int Q>
struct PipeS8 {
  using Gemv = GemvS8<Q>;
  using Geom = PipeGeom<false>;
  using Acc = int;
  static constexpr int kQ = Q;
};

template <int Q, class T>
struct PipeA16 {
  using Gemv = GemvA16<Q, T, true>;
  using Geom = PipeGeom<true>;
  using Acc = float;
  static constexpr int kQ = Q;
};

template <class Core>
ABQ_HD constexpr int pipe_stage_bytes() {
  return kPipeTileBytes + Core::kQ * kPipeBN * Core::Geom::kPlaneBytes;
}

template <class Core>
ABQ_HD constexpr int pipe_smem_bytes() {
  return kPipeStages * pipe_stage_bytes<Core>() + kPipeTileBytes;
}

// cp.async work of thread `tid` for stage kt into `stage` (activation tile, then planes).
// ops.copy(dst, src, bytes, valid): copy `valid` <= bytes bytes, zero-fill the rest.
template <class Core, class Ops>
ABQ_HD void pipe_load(Ops& ops, const AbqGemmParams& p, char* stage, int kt, int n0, int m0,
                      int tid) {
  using G = typename Core::Geom;
  const char* a = static_cast<const char*>(p.a);
  for (int i = tid; i < kPipeBM * 8; i += kPipeThreads) {
    const int tok = i >> 3, chunk = i & 7;
    const long col = (long)kt * kPipeRow + 16 * chunk;  // byte column in the activation row
    const long limit = G::kElem == 2 ? 2L * p.K : (long)p.a_stride;  // A16: nothing past K
    long valid = m0 + tok < p.M ? limit - col : 0;
    valid = valid < 0 ? 0 : (valid > 16 ? 16 : valid);
    const char* src = valid ? a + (long)(m0 + tok) * p.a_stride * G::kElem + col : a;
    ops.copy(stage + swz(tok, chunk), src, 16, (int)valid);
  }
  char* planes = stage + kPipeTileBytes;
  const char* w = reinterpret_cast<const char*>(p.w);
  for (int i = tid; i < Core::kQ * kPipeBN; i += kPipeThreads) {
    const int plane = i / kPipeBN, row = i % kPipeBN;
    long valid = n0 + row < p.N ? 4L * (p.kw - (long)kt * G::kWords) : 0;
    valid = valid < 0 ? 0 : (valid > G::kPlaneBytes ? G::kPlaneBytes : valid);
    const char* src = valid ? w + 4 * (((long)plane * p.N + n0 + row) * p.kw + (long)kt * G::kWords)
                            : w;
    ops.copy(planes + i * G::kPlaneBytes, src, G::kPlaneBytes, (int)valid);
  }
}

// Unpack stage kt's planes into the weight tile (natural k-order, swizzled 16-byte chunks).
template <class Core, class Ops>
ABQ_HD void pipe_unpack(Ops& ops, const AbqGemmParams& p, const char* stage, char* wtile, int kt,
                        int n0, DivMagic grp, int tid) {
  using G = typename Core::Geom;
  constexpr int Q = Core::kQ;
  const char* planes = stage + kPipeTileBytes;
  for (int i = tid; i < kPipeBN * G::kWords; i += kPipeThreads) {
    const int row = i / G::kWords, word = i % G::kWords;
    uint32_t pl[Q];
#pragma unroll
    for (int j = 0; j < Q; ++j)
      pl[j] = ops.lds32(planes + (j * kPipeBN + row) * G::kPlaneBytes + 4 * word);
    if constexpr (G::kElem == 1) {
      uint32_t f[8], nat[8];
      unpack_s8<Q>(pl, f);
      s8_natural(f, nat);
      ops.sts128(wtile + swz(row, 2 * word), nat[0], nat[1], nat[2], nat[3]);
      ops.sts128(wtile + swz(row, 2 * word + 1), nat[4], nat[5], nat[6], nat[7]);
    } else {
      using Un = typename Core::Gemv::Un;
      const bool ok = n0 + row < p.N;
      uint32_t g = div_fast((uint32_t)(kt * G::kWords + word), grp);
      g = g < (uint32_t)p.groups ? g : (uint32_t)p.groups - 1;
      const uint32_t sz = ops.ldsz(p.w_sz + (long)(ok ? n0 + row : 0) * p.groups + g, ok);
      typename Un::Magics mg;
#pragma unroll
      for (int m = 0; m < Un::kNumP; ++m) mg.m[m] = Un::magic(Un::N * m);
      uint32_t pairs[16], nat[16];
      Un::pairs(pl, Un::consts(sz), mg, pairs);
      a16_natural<Q>(pairs, nat);
#pragma unroll
      for (int c = 0; c < 4; ++c)
        ops.sts128(wtile + swz(row, 4 * word + c), nat[4 * c], nat[4 * c + 1], nat[4 * c + 2],
                   nat[4 * c + 3]);
    }
  }
}

// One warp's 4 k-steps over a stage: warp (wn, wm) owns channels 64 wn.. and tokens 32 wm..
template <class Core, class Ops>
ABQ_HD void pipe_mma(Ops& ops, const char* wtile, const char* atile, int lane, int wn, int wm,
                     typename Core::Acc (&acc)[4][4][4]) {
#pragma unroll
  for (int ks = 0; ks < 4; ++ks) {
    uint4 a[4], b[2];
#pragma unroll
    for (int mt = 0; mt < 4; ++mt) a[mt] = ops.ldsm_a(wtile, lane, 64 * wn + 16 * mt, 2 * ks);
#pragma unroll
    for (int np = 0; np < 2; ++np) b[np] = ops.ldsm_b(atile, lane, 32 * wm + 16 * np, 2 * ks);
#pragma unroll
    for (int mt = 0; mt < 4; ++mt)
#pragma unroll
      for (int nt = 0; nt < 4; ++nt) {
        const uint32_t b0 = nt & 1 ? b[nt >> 1].z : b[nt >> 1].x;
        const uint32_t b1 = nt & 1 ? b[nt >> 1].w : b[nt >> 1].y;
        if constexpr (Core::Geom::kElem == 1) {
          ops.mma_s8(acc[mt][nt], a[mt].x, a[mt].y, a[mt].z, a[mt].w, b0, b1);
        } else {
          ops.template mma_f16<typename Core::Gemv::Elem>(acc[mt][nt], a[mt].x, a[mt].y,
                                                          a[mt].z, a[mt].w, b0, b1);
        }
      }
  }
}

// Outputs of one lane: c0, c1 = (channel g, tokens 2t, 2t+1), c2, c3 = channel g + 8.
template <class Core>
ABQ_HD void pipe_store(const AbqGemmParams& p, int n0, int m0, int lane, int wn, int wm,
                       const typename Core::Acc (&acc)[4][4][4]) {
  using Gemv = typename Core::Gemv;
#pragma unroll
  for (int mt = 0; mt < 4; ++mt)
#pragma unroll
    for (int nt = 0; nt < 4; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int ch = n0 + 64 * wn + 16 * mt + (lane >> 2) + 8 * (e >> 1);
        const int tok = m0 + 32 * wm + 8 * nt + 2 * (lane & 3) + (e & 1);
        if (ch < p.N && tok < p.M)
          gemv_store<Gemv>(p, nullptr, (typename Gemv::Part)acc[mt][nt][e], tok, ch);
      }
}

#ifdef __CUDACC__
struct PipeOps : DevOps {
  __device__ __forceinline__ void copy(char* dst, const char* src, int bytes, int valid) {
    const uint32_t d = (uint32_t)__cvta_generic_to_shared(dst);
    if (bytes == 16) {
      asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(d), "l"(src),
                   "r"(valid));
    } else {
      asm volatile("cp.async.ca.shared.global [%0], [%1], 8, %2;\n" ::"r"(d), "l"(src),
                   "r"(valid));
    }
  }
  __device__ __forceinline__ uint32_t lds32(const char* p) {
    return *reinterpret_cast<const uint32_t*>(p);
  }
  __device__ __forceinline__ void sts128(char* p, uint32_t a, uint32_t b, uint32_t c,
                                         uint32_t d) {
    *reinterpret_cast<uint4*>(p) = make_uint4(a, b, c, d);
  }
  __device__ __forceinline__ uint4 ldsm(const char* p) {
    uint4 v;
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                 : "r"((uint32_t)__cvta_generic_to_shared(p)));
    return v;
  }
  __device__ __forceinline__ uint4 ldsm_a(const char* tile, int lane, int row0, int chunk) {
    return ldsm(tile + ldsm_a_offset(lane, row0, chunk));
  }
  __device__ __forceinline__ uint4 ldsm_b(const char* tile, int lane, int row0, int chunk) {
    return ldsm(tile + ldsm_b_offset(lane, row0, chunk));
  }
};

template <class Core>
__global__ void __launch_bounds__(kPipeThreads, 1) pipe_kernel(const AbqGemmParams p,
                                                               const DivMagic grp) {
  extern __shared__ uint4 smem_raw[];
  char* smem = reinterpret_cast<char*>(smem_raw);
  char* wtile = smem + kPipeStages * pipe_stage_bytes<Core>();
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int wn = warp & 1, wm = warp >> 1;
  const int n0 = blockIdx.x * kPipeBN, m0 = blockIdx.y * kPipeBM;
  const int kts = (p.kw + Core::Geom::kWords - 1) / Core::Geom::kWords;
  PipeOps ops;
#pragma unroll
  for (int s = 0; s < kPipeStages - 1; ++s) {
    if (s < kts) pipe_load<Core>(ops, p, smem + s * pipe_stage_bytes<Core>(), s, n0, m0, tid);
    asm volatile("cp.async.commit_group;\n");
  }
  typename Core::Acc acc[4][4][4];
#pragma unroll
  for (int mt = 0; mt < 4; ++mt)
#pragma unroll
    for (int nt = 0; nt < 4; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[mt][nt][e] = 0;
  for (int kt = 0; kt < kts; ++kt) {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(kPipeStages - 2));
    __syncthreads();  // stage kt landed; every warp is done with stage kt - 1 and the tile
    const int next = kt + kPipeStages - 1;
    if (next < kts)
      pipe_load<Core>(ops, p, smem + next % kPipeStages * pipe_stage_bytes<Core>(), next, n0,
                      m0, tid);
    asm volatile("cp.async.commit_group;\n");
    const char* stage = smem + kt % kPipeStages * pipe_stage_bytes<Core>();
    pipe_unpack<Core>(ops, p, stage, wtile, kt, n0, grp, tid);
    __syncthreads();
    pipe_mma<Core>(ops, wtile, stage, lane, wn, wm, acc);
  }
  asm volatile("cp.async.wait_group 0;\n");
  pipe_store<Core>(p, n0, m0, lane, wn, wm, acc);
}

template <class Core>
cudaError_t launch_pipe(const AbqGemmParams& p, cudaStream_t s) {
  constexpr int smem = pipe_smem_bytes<Core>();
  static bool done[64] = {};  // per instantiation and device
  if (!raise_smem_limit(reinterpret_cast<const void*>(pipe_kernel<Core>), smem, done)) {
    return cudaErrorInvalidValue;
  }
  const DivMagic grp = div_magic(p.groups > 1 ? (uint32_t)(p.group_size / 32) : 0u);
  const dim3 grid((p.N + kPipeBN - 1) / kPipeBN, (p.M + kPipeBM - 1) / kPipeBM);
  pipe_kernel<Core><<<grid, kPipeThreads, smem, s>>>(p, grp);
  return cudaGetLastError();
}
#endif

}  // namespace abq
