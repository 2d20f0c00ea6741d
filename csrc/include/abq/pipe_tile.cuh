// Tile geometry and per-thread pieces of the pipelined GEMM (gemm_pipe.cuh), host/device so
// that tests/kernels/host_harness.cu runs them too.
//
// CTA tile: 128 channels (weights = MMA A operand) x 128 tokens (B operand) x one 128-byte
// k-row per stage (s8: 128 k, A16: 64 k). Shared memory per stage: the activation tile
// [128 tokens][128 B] and the weight bit planes [Q][128 rows][kPlaneBytes]; once per stage the
// planes are unpacked (unpack.cuh) into one weight tile [128 rows][128 B] in natural k-order,
// then 8 warps (2 along channels x 4 along tokens, 64 x 32 each) run ldmatrix + mma.sync.
// Both 128-byte-row tiles are XOR-swizzled (16-byte chunk c of row r at chunk c ^ (r & 7)), so
// the 8 row addresses of every ldmatrix hit 8 different bank groups.
#pragma once
#include "abq/unpack.cuh"

namespace abq {

constexpr int kPipeBN = 128, kPipeBM = 128, kPipeRow = 128;  // channels, tokens, bytes per row
constexpr int kPipeThreads = 256, kPipeStages = 3;
constexpr int kPipeMinM = 256;  // smaller M runs the register-tiled GEMM (gemm.cuh)
constexpr int kPipeTileBytes = kPipeBM * kPipeRow;  // 16 KB

ABQ_HD int swz(int row, int chunk) { return row * kPipeRow + ((chunk ^ (row & 7)) << 4); }

// Plane bytes per row and stage: 4 words (s8: 128 k) or 2 words (A16: 64 k).
template <bool kA16>
struct PipeGeom {
  static constexpr int kWords = kA16 ? 2 : 4;       // plane words per row and stage
  static constexpr int kPlaneBytes = 4 * kWords;
  static constexpr int kK = 32 * kWords;            // k per stage
  static constexpr int kElem = kA16 ? 2 : 1;        // activation bytes
};

// s8 byte-words (byte c of F[r] = weight 8c + r) -> natural order (byte e of N[i] = weight
// 4i + e): a 4 x 4 byte transpose of F[0..3] and of F[4..7] (12 PRMT).
ABQ_HD void s8_natural(const uint32_t (&f)[8], uint32_t (&n)[8]) {
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const uint32_t* g = f + 4 * h;
    const uint32_t lo01 = prmt(g[0], g[1], 0x5140), lo23 = prmt(g[2], g[3], 0x5140);
    const uint32_t hi01 = prmt(g[0], g[1], 0x7362), hi23 = prmt(g[2], g[3], 0x7362);
    n[0 + h] = prmt(lo01, lo23, 0x5410);
    n[2 + h] = prmt(lo01, lo23, 0x7632);
    n[4 + h] = prmt(hi01, hi23, 0x5410);
    n[6 + h] = prmt(hi01, hi23, 0x7632);
  }
}

// A16 pairs (pi holds weights act_klo(pi), +16) -> natural pairs: word m < 8 = (2m, 2m+1),
// word 8 + m = (2m + 16, 2m + 17).
template <int Q>
ABQ_HD void a16_natural(const uint32_t (&pairs)[16], uint32_t (&n)[16]) {
  constexpr int N = field_bits(Q), H = 16 / N;
#pragma unroll
  for (int m = 0; m < 8; ++m) {
    const int pa = (2 * m) % N * H + 2 * m / N, pb = (2 * m + 1) % N * H + (2 * m + 1) / N;
    n[m] = prmt(pairs[pa], pairs[pb], 0x5410);
    n[8 + m] = prmt(pairs[pa], pairs[pb], 0x7632);
  }
}

// ldmatrix .x4 source rows: lane l provides the row address of matrix l / 8, row l % 8.
// A operand (16 rows x 32 B at chunks c, c + 1): matrices (rows 0-7, c), (8-15, c), (0-7, c+1),
// (8-15, c+1). B operand, two 8-token groups: (tokens 0-7, c), (0-7, c+1), (8-15, c),
// (8-15, c+1). Returns the byte offset in the swizzled tile.
ABQ_HD int ldsm_a_offset(int lane, int row0, int chunk) {
  const int mat = lane >> 3, r = lane & 7;
  return swz(row0 + r + 8 * (mat & 1), chunk + (mat >> 1));
}

ABQ_HD int ldsm_b_offset(int lane, int row0, int chunk) {
  const int mat = lane >> 3, r = lane & 7;
  return swz(row0 + r + 8 * (mat >> 1), chunk + (mat & 1));
}

}  // namespace abq
