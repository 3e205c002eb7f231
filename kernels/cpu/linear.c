/* Linear layer: one sgemm forward, two backward (PyTorch's weight layout). */
#include "kernels/cpu/cpu.h"

void kn_cpu_linear_forward(kn_ctx *ctx, float *out, const float *inp, const float *weight,
                           const float *bias, int N, int IC, int OC) {
  kn_gemm(ctx, 0, 1, N, OC, IC, 1.0f, inp, IC, weight, IC, 0.0f, out, OC);
  if (!bias) return;
#pragma omp parallel for num_threads(kn_team(ctx, (size_t)N * OC)) schedule(static)
  for (int n = 0; n < N; n++) {
    float *row = out + (size_t)n * OC;
    for (int o = 0; o < OC; o++) row[o] += bias[o];
  }
}

/* dbias[o] = sum over rows of dout[:, o]: each thread owns a block of columns
 * and walks the rows in order, so the sum is the same for any thread count. */
static void bias_grad_rows(kn_ctx *ctx, float *dbias, const float *dout, int N, int OC) {
  const int block = 64;
  int n_blocks = (OC + block - 1) / block;
#pragma omp parallel for num_threads(kn_team(ctx, (size_t)N * OC)) schedule(static)
  for (int b = 0; b < n_blocks; b++) {
    int o0 = b * block, o1 = o0 + block < OC ? o0 + block : OC;
    float acc[64] = {0};
    for (int n = 0; n < N; n++) {
      const float *row = dout + (size_t)n * OC;
      for (int o = o0; o < o1; o++) acc[o - o0] += row[o];
    }
    for (int o = o0; o < o1; o++) dbias[o] += acc[o - o0];
  }
}

void kn_cpu_linear_backward(kn_ctx *ctx, float *dinp, float *dweight, float *dbias, const float *dout,
                            const float *inp, const float *weight, int N, int IC, int OC) {
  if (dinp) kn_gemm(ctx, 0, 0, N, IC, OC, 1.0f, dout, OC, weight, IC, 1.0f, dinp, IC);
  if (dweight) kn_gemm(ctx, 1, 0, OC, IC, N, 1.0f, dout, OC, inp, IC, 1.0f, dweight, IC);
  if (dbias) bias_grad_rows(ctx, dbias, dout, N, OC);
}
