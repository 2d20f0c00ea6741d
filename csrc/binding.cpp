// Thin torch binding over the extern "C" CUDA launchers. Only torch/extension.h: no ATen CUDA
// headers, so it builds against any torch; the CUDA stream comes from Python as an integer.
// Outputs are preallocated by the caller (tests poison them before each run). The GEMV path
// (M <= 8) takes an optional split-K scratch: `workspace` (>= workspace_bytes(M, N) bytes) and
// `counters` (>= ceil(N / 128) int32, zero before first use; the kernels reset them).
#include <torch/extension.h>

#include <optional>

#include "abq/params.h"

namespace {

void ok(int err, const char* what) {
  TORCH_CHECK(err == 0, "abqlab ", what, " failed: ", abq_error_string(err));
}

void cuda_contig(const torch::Tensor& t, const char* name, torch::ScalarType dt) {
  TORCH_CHECK(t.is_cuda(), name, " must be a CUDA tensor");
  TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
  TORCH_CHECK(t.scalar_type() == dt, name, " has dtype ", t.scalar_type(), ", expected ", dt);
  TORCH_CHECK(reinterpret_cast<uintptr_t>(t.data_ptr()) % 16 == 0, name,
              " must be 16-byte aligned");
}

void vec(const torch::Tensor& t, const char* name, torch::ScalarType dt, int64_t n) {
  cuda_contig(t, name, dt);
  TORCH_CHECK(t.dim() == 1 && t.size(0) == n, name, " must have shape [", n, "]");
}

void* as_stream(int64_t s) { return reinterpret_cast<void*>(s); }

// Split-K scratch of the GEMV kernels (both or neither).
void set_workspace(AbqGemmParams& p, const std::optional<torch::Tensor>& ws,
                   const std::optional<torch::Tensor>& counters, const torch::Tensor& like) {
  TORCH_CHECK(ws.has_value() == counters.has_value(), "pass workspace and counters together");
  if (!ws) return;
  TORCH_CHECK(ws->is_cuda() && ws->is_contiguous() && ws->device() == like.device(),
              "workspace must be a contiguous CUDA tensor on the output's device");
  TORCH_CHECK((size_t)ws->nbytes() >= abq_gemv_workspace_bytes(p.M, p.N), "workspace too small: ",
              ws->nbytes(), " < ", abq_gemv_workspace_bytes(p.M, p.N), " bytes");
  cuda_contig(*counters, "counters", torch::kInt32);
  TORCH_CHECK(counters->numel() >= (p.N + 127) / 128, "counters too small");
  TORCH_CHECK(reinterpret_cast<uintptr_t>(ws->data_ptr()) % 16 == 0, "workspace misaligned");
  p.workspace = ws->data_ptr();
  p.counters = counters->data_ptr<int32_t>();
}

int in_dtype(const torch::Tensor& x) {
  switch (x.scalar_type()) {
    case torch::kFloat16: return ABQ_IN_F16;
    case torch::kBFloat16: return ABQ_IN_BF16;
    case torch::kFloat32: return ABQ_IN_F32;
    default: TORCH_CHECK(false, "x must be float16/bfloat16/float32, got ", x.scalar_type());
  }
  return -1;
}

int out_kind(const torch::Tensor& out) {
  switch (out.scalar_type()) {
    case torch::kInt32: return ABQ_OUT_I32;
    case torch::kFloat16: return ABQ_OUT_F16;
    case torch::kBFloat16: return ABQ_OUT_BF16;
    default: TORCH_CHECK(false, "out must be int32, float16 or bfloat16, got ", out.scalar_type());
  }
  return -1;
}

void act_quant_pack(torch::Tensor x, torch::Tensor out, torch::Tensor scale, torch::Tensor zero,
                    torch::Tensor rowsum, int64_t bits, bool sym, double clip, bool int8,
                    int64_t stream) {
  TORCH_CHECK(x.is_cuda() && x.dim() == 2 && x.stride(1) == 1, "x must be a 2-D CUDA tensor "
              "with contiguous rows");
  const int dt = in_dtype(x);
  const int64_t m = x.size(0), k = x.size(1);
  int64_t kw;
  if (int8) {
    cuda_contig(out, "out", torch::kInt8);
    TORCH_CHECK(out.dim() == 2 && out.size(0) == m && out.size(1) % 256 == 0, "bad int8 out");
    kw = out.size(1) / 32;
  } else {
    cuda_contig(out, "out", torch::kInt32);
    TORCH_CHECK(out.dim() == 3 && out.size(0) == bits && out.size(1) == m, "bad planes out");
    kw = out.size(2);
  }
  vec(scale, "scale", torch::kFloat32, m);
  vec(zero, "zero", torch::kInt32, m);
  vec(rowsum, "rowsum", torch::kInt32, m);
  AbqActParams p{};
  p.x = x.data_ptr();
  p.x_dtype = dt;
  p.M = (int)m;
  p.K = (int)k;
  p.x_stride = (int)x.stride(0);
  p.bits = (int)bits;
  p.sym = sym ? 1 : 0;
  p.clip = (float)clip;  // rounded to fp32 as torch rounds the Python float (reference.py)
  p.mode = int8 ? ABQ_ACT_INT8 : ABQ_ACT_PLANES;
  p.out = out.data_ptr();
  p.kw = (int)kw;
  p.scale = scale.data_ptr<float>();
  p.zero = zero.data_ptr<int32_t>();
  p.rowsum = rowsum.data_ptr<int32_t>();
  ok(abq_act_quant_pack(&p, as_stream(stream)), "act_quant_pack");
}

// Shared checks + parameter block of the integer GEMMs (btc and s8).
AbqGemmParams int_params(const torch::Tensor& a, const torch::Tensor& a_scale,
                         const torch::Tensor& a_zero, const torch::Tensor& a_sum,
                         const torch::Tensor& w, const torch::Tensor& w_scale,
                         const torch::Tensor& w_zero, const torch::Tensor& w_sum,
                         const std::optional<torch::Tensor>& bias, const torch::Tensor& out,
                         int64_t k) {
  cuda_contig(w, "w_planes", torch::kInt32);
  TORCH_CHECK(w.dim() == 3 && w.size(2) % 8 == 0 && w.size(2) * 32 >= k, "bad w_planes");
  const int64_t m = a_scale.size(0), n = w.size(1);
  vec(a_scale, "a_scale", torch::kFloat32, m);
  vec(a_zero, "a_zero", torch::kInt32, m);
  vec(a_sum, "a_sum", torch::kInt32, m);
  vec(w_scale, "w_scale", torch::kFloat32, n);
  vec(w_zero, "w_zero", torch::kInt32, n);
  vec(w_sum, "w_sum", torch::kInt32, n);
  if (bias) vec(*bias, "bias", torch::kFloat32, n);
  TORCH_CHECK(out.is_cuda() && out.is_contiguous() && out.dim() == 2 && out.size(0) == m &&
              out.size(1) == n, "out must be a contiguous CUDA tensor [M, N]");
  TORCH_CHECK(a.device() == w.device() && out.device() == w.device(), "device mismatch");
  AbqGemmParams p{};
  p.a = a.data_ptr();
  p.a_scale = a_scale.data_ptr<float>();
  p.a_zero = a_zero.data_ptr<int32_t>();
  p.a_sum = a_sum.data_ptr<int32_t>();
  p.w = reinterpret_cast<const uint32_t*>(w.data_ptr<int32_t>());
  p.w_scale = w_scale.data_ptr<float>();
  p.w_zero = w_zero.data_ptr<int32_t>();
  p.w_sum = w_sum.data_ptr<int32_t>();
  p.bias = bias ? bias->data_ptr<float>() : nullptr;
  p.out = out.data_ptr();
  p.M = (int)m;
  p.N = (int)n;
  p.K = (int)k;
  p.kw = (int)w.size(2);
  p.out_kind = out_kind(out);
  return p;
}

void btc_gemm(torch::Tensor a, torch::Tensor a_scale, torch::Tensor a_zero, torch::Tensor a_sum,
              torch::Tensor w, torch::Tensor w_scale, torch::Tensor w_zero, torch::Tensor w_sum,
              std::optional<torch::Tensor> bias, torch::Tensor out, int64_t k,
              std::optional<torch::Tensor> workspace, std::optional<torch::Tensor> counters,
              int64_t stream) {
  AbqGemmParams p = int_params(a, a_scale, a_zero, a_sum, w, w_scale, w_zero, w_sum, bias, out, k);
  set_workspace(p, workspace, counters, out);
  cuda_contig(a, "a_planes", torch::kInt32);
  TORCH_CHECK(a.dim() == 3 && a.size(1) == p.M && a.size(2) == p.kw, "a_planes must be [p, M, ",
              p.kw, "]");
  p.a_stride = p.kw;
  ok(abq_btc_gemm(&p, (int)w.size(0), (int)a.size(0), as_stream(stream)), "btc_gemm");
}

void s8_gemm(torch::Tensor a, torch::Tensor a_scale, torch::Tensor a_zero, torch::Tensor a_sum,
             torch::Tensor w, torch::Tensor w_scale, torch::Tensor w_zero, torch::Tensor w_sum,
             std::optional<torch::Tensor> bias, torch::Tensor out, int64_t k,
             std::optional<torch::Tensor> workspace, std::optional<torch::Tensor> counters,
             int64_t stream) {
  AbqGemmParams p = int_params(a, a_scale, a_zero, a_sum, w, w_scale, w_zero, w_sum, bias, out, k);
  set_workspace(p, workspace, counters, out);
  cuda_contig(a, "a_i8", torch::kInt8);
  TORCH_CHECK(a.dim() == 2 && a.size(0) == p.M && a.size(1) == 32 * (int64_t)p.kw,
              "a_i8 must be [M, ", 32 * p.kw, "]");
  p.a_stride = (int)a.size(1);
  ok(abq_s8_gemm(&p, (int)w.size(0), as_stream(stream)), "s8_gemm");
}

// w_sz: int32 [N, groups], each the (scale, zero) pair as two x-dtype halves (low = scale).
void a16_gemm(torch::Tensor x, torch::Tensor w, torch::Tensor w_sz, int64_t group_size,
              std::optional<torch::Tensor> bias, torch::Tensor out, int64_t k,
              std::optional<torch::Tensor> workspace, std::optional<torch::Tensor> counters,
              int64_t stream) {
  const bool bf16 = x.scalar_type() == torch::kBFloat16;
  TORCH_CHECK(bf16 || x.scalar_type() == torch::kFloat16, "x must be float16 or bfloat16");
  cuda_contig(x, "x", x.scalar_type());
  cuda_contig(w, "w_planes", torch::kInt32);
  TORCH_CHECK(x.dim() == 2 && x.size(1) % 8 == 0 && x.size(1) >= k, "x must be [M, K8] with "
              "K8 >= K and K8 % 8 == 0 (columns past K are ignored)");
  TORCH_CHECK(w.dim() == 3 && w.size(2) % 8 == 0 && w.size(2) * 32 >= k, "bad w_planes");
  const int64_t m = x.size(0), n = w.size(1);
  cuda_contig(w_sz, "w_sz", torch::kInt32);
  TORCH_CHECK(w_sz.dim() == 2 && w_sz.size(0) == n, "w_sz must be [N, groups]");
  const int64_t groups = w_sz.size(1);
  TORCH_CHECK(groups == (k + group_size - 1) / group_size, "groups != ceil(K / group_size)");
  if (bias) vec(*bias, "bias", torch::kFloat32, n);
  cuda_contig(out, "out", x.scalar_type());
  TORCH_CHECK(out.dim() == 2 && out.size(0) == m && out.size(1) == n, "out must be [M, N]");
  AbqGemmParams p{};
  p.a = x.data_ptr();
  p.w = reinterpret_cast<const uint32_t*>(w.data_ptr<int32_t>());
  p.w_sz = reinterpret_cast<const uint32_t*>(w_sz.data_ptr<int32_t>());
  p.bias = bias ? bias->data_ptr<float>() : nullptr;
  p.out = out.data_ptr();
  p.M = (int)m;
  p.N = (int)n;
  p.K = (int)k;
  p.kw = (int)w.size(2);
  p.a_stride = (int)x.size(1);
  p.groups = (int)groups;
  p.group_size = (int)group_size;
  p.out_kind = bf16 ? ABQ_OUT_BF16 : ABQ_OUT_F16;
  set_workspace(p, workspace, counters, out);
  ok(abq_a16_gemm(&p, (int)w.size(0), bf16 ? 1 : 0, as_stream(stream)), "a16_gemm");
}

// One kernel per linear at M <= 8: quantize x per token (range times a_clip) inside the GEMV, then
// BTC or s8.
void fused_linear(torch::Tensor x, torch::Tensor w, torch::Tensor w_scale, torch::Tensor w_zero,
                  torch::Tensor w_sum, std::optional<torch::Tensor> bias, torch::Tensor out,
                  int64_t k, int64_t a_bits, bool a_sym, double a_clip, bool s8,
                  std::optional<torch::Tensor> workspace, std::optional<torch::Tensor> counters,
                  int64_t stream) {
  TORCH_CHECK(x.is_cuda() && x.dim() == 2 && x.stride(1) == 1, "x must be a 2-D CUDA tensor "
              "with contiguous rows");
  TORCH_CHECK(reinterpret_cast<uintptr_t>(x.data_ptr()) % 16 == 0, "x must be 16-byte aligned");
  cuda_contig(w, "w_planes", torch::kInt32);
  TORCH_CHECK(w.dim() == 3 && w.size(2) % 8 == 0 && w.size(2) * 32 >= k, "bad w_planes");
  const int64_t m = x.size(0), n = w.size(1);
  TORCH_CHECK(m <= 8, "fused_linear is the GEMV path (M <= 8), got M = ", m);
  vec(w_scale, "w_scale", torch::kFloat32, n);
  vec(w_zero, "w_zero", torch::kInt32, n);
  vec(w_sum, "w_sum", torch::kInt32, n);
  if (bias) vec(*bias, "bias", torch::kFloat32, n);
  TORCH_CHECK(out.is_cuda() && out.is_contiguous() && out.dim() == 2 && out.size(0) == m &&
              out.size(1) == n && out.device() == w.device(), "out must be [M, N] on w's device");
  AbqGemmParams p{};
  p.x = x.data_ptr();
  p.x_dtype = in_dtype(x);
  p.x_stride = (int)x.stride(0);
  p.a_bits = (int)a_bits;
  p.a_sym = a_sym ? 1 : 0;
  p.a_clip = (float)a_clip;
  p.w = reinterpret_cast<const uint32_t*>(w.data_ptr<int32_t>());
  p.w_scale = w_scale.data_ptr<float>();
  p.w_zero = w_zero.data_ptr<int32_t>();
  p.w_sum = w_sum.data_ptr<int32_t>();
  p.bias = bias ? bias->data_ptr<float>() : nullptr;
  p.out = out.data_ptr();
  p.M = (int)m;
  p.N = (int)n;
  p.K = (int)k;
  p.kw = (int)w.size(2);
  p.out_kind = out_kind(out);
  set_workspace(p, workspace, counters, out);
  const int err = s8 ? abq_s8_gemm(&p, (int)w.size(0), as_stream(stream))
                     : abq_btc_gemm(&p, (int)w.size(0), (int)a_bits, as_stream(stream));
  ok(err, "fused_linear");
}

int64_t workspace_bytes(int64_t m, int64_t n) {
  return (int64_t)abq_gemv_workspace_bytes((int)m, (int)n);
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "abqlab arbitrary-bit CUDA kernels (bit-plane BTC, s8 unpack, weight-only A16)";
  m.def("act_quant_pack", &act_quant_pack, "per-token quantize + pack (planes or int8)");
  m.def("btc_gemm", &btc_gemm, "bit-plane GEMM on binary tensor cores");
  m.def("s8_gemm", &s8_gemm, "A8 GEMM, weights unpacked to int8");
  m.def("a16_gemm", &a16_gemm, "weight-only GEMM (fp16/bf16 activations)");
  m.def("fused_linear", &fused_linear, "M <= 8: per-token activation quantization + BTC / s8");
  m.def("workspace_bytes", &workspace_bytes, "split-K workspace bytes for M tokens, N channels");
}
