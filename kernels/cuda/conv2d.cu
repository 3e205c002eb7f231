/* 2-D convolution through cuDNN (NCHW), float32 or bf16 storage. Algorithms
 * come from cuDNN's heuristics (no timing runs, so a step's first call costs
 * nothing extra), keeping the first deterministic one that fits in 1 GiB of
 * workspace; backward accumulates with cuDNN's beta = 1. Descriptors are
 * built per call: cheap next to a convolution, and a cache keyed by shape is
 * the obvious next step once the UNet step runs on the device.
 *
 * bf16 (kn_cuda_conv2d_*_bf16): x, w and y tensors are CUDNN_DATA_BFLOAT16
 * with a float32 compute type (cuDNN's PSEUDO_BFLOAT16 configuration: float32
 * accumulation, tensor cores allowed). The legacy API gives every tensor of a
 * call one data type, so:
 *  - forward: the convolution is rounded to bf16, then the float32 bias is
 *    added in float32 and rounded again (two roundings with a bias, as
 *    kn_cuda_linear_forward_bf16 and PyTorch's conv-then-add);
 *  - dinp: cuDNN's beta = 1 blending into the bf16 dinp. cuDNN's scaling
 *    factors are float for bf16 data and its epilogue blends
 *    alpha * result + beta * prior in the float32 compute type before the one
 *    rounding (what we rely on; tests/device checks accumulation into a
 *    non-zero dinp);
 *  - dweight: cuDNN cannot write a float32 filter gradient from bf16 x and dy,
 *    so dW is computed in bf16 (float32 accumulation, one rounding) into the
 *    context's workspace and added into the float32 dweight by a kernel: what
 *    PyTorch autocast does (its bf16 weight's gradient is bf16, then cast);
 *  - dbias: one block per channel sums the bf16 dout over images and pixels
 *    in double, in a fixed order, and adds into the float32 dbias. */
#include <string.h>

#include "kernels/cuda/cuda_internal.cuh"

#define CONV_MAX_WORKSPACE ((size_t)1 << 30)

typedef struct {
  cudnnTensorDescriptor_t x, y, bias;
  cudnnFilterDescriptor_t w;
  cudnnConvolutionDescriptor_t conv;
} conv_descs;

static void descs_free(conv_descs *d) {
  if (d->x) cudnnDestroyTensorDescriptor(d->x);
  if (d->y) cudnnDestroyTensorDescriptor(d->y);
  if (d->bias) cudnnDestroyTensorDescriptor(d->bias);
  if (d->w) cudnnDestroyFilterDescriptor(d->w);
  if (d->conv) cudnnDestroyConvolutionDescriptor(d->conv);
}

/* float32: exact FMA math unless TF32 is allowed; bf16: tensor cores (their
 * products are exact and they accumulate in float32). */
static cudnnMathType_t math_type(const kn_cuda_ctx *ctx, cudnnDataType_t dt) {
  if (dt != CUDNN_DATA_FLOAT) return CUDNN_TENSOR_OP_MATH;
  return ctx->allow_tf32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH;
}

/* dt: the data type of x, w and y (float32 or bf16); the bias tensor and the
 * compute type are always float32. */
static int descs_init(kn_cuda_ctx *ctx, conv_descs *d, cudnnDataType_t dt, int B, int C, int H, int W, int OC,
                      int K, int stride, int pad) {
  memset(d, 0, sizeof *d);
  /* kn_conv2d_out_size's formula, written out: this library does not link
   * the CPU one (dpo_kernels links this library, not the reverse). */
  int Ho = (H + 2 * pad - K) / stride + 1, Wo = (W + 2 * pad - K) / stride + 1;
  int ok = kn_cudnn_ok(ctx, cudnnCreateTensorDescriptor(&d->x), "conv descriptor") &&
           kn_cudnn_ok(ctx, cudnnCreateTensorDescriptor(&d->y), "conv descriptor") &&
           kn_cudnn_ok(ctx, cudnnCreateTensorDescriptor(&d->bias), "conv descriptor") &&
           kn_cudnn_ok(ctx, cudnnCreateFilterDescriptor(&d->w), "conv descriptor") &&
           kn_cudnn_ok(ctx, cudnnCreateConvolutionDescriptor(&d->conv), "conv descriptor");
  ok = ok &&
       kn_cudnn_ok(ctx, cudnnSetTensor4dDescriptor(d->x, CUDNN_TENSOR_NCHW, dt, B, C, H, W),
                   "conv input shape") &&
       kn_cudnn_ok(ctx, cudnnSetTensor4dDescriptor(d->y, CUDNN_TENSOR_NCHW, dt, B, OC, Ho, Wo),
                   "conv output shape") &&
       kn_cudnn_ok(ctx, cudnnSetTensor4dDescriptor(d->bias, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, OC, 1, 1),
                   "conv bias shape") &&
       kn_cudnn_ok(ctx, cudnnSetFilter4dDescriptor(d->w, dt, CUDNN_TENSOR_NCHW, OC, C, K, K),
                   "conv filter shape") &&
       kn_cudnn_ok(ctx,
                   cudnnSetConvolution2dDescriptor(d->conv, pad, pad, stride, stride, 1, 1,
                                                   CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT),
                   "conv descriptor") &&
       kn_cudnn_ok(ctx, cudnnSetConvolutionMathType(d->conv, math_type(ctx, dt)), "conv math type");
  if (!ok) descs_free(d);
  return ok;
}

/* The first deterministic candidate within the workspace limit (cuDNN lists
 * them best first). One template for the three algorithm kinds. */
template <typename Perf, typename Algo>
static int pick_algo(const Perf *perf, int count, Algo *algo, size_t *ws) {
  for (int i = 0; i < count; i++) {
    if (perf[i].status != CUDNN_STATUS_SUCCESS) continue;
    if (perf[i].determinism != CUDNN_DETERMINISTIC) continue;
    if (perf[i].memory > CONV_MAX_WORKSPACE) continue;
    *algo = perf[i].algo;
    *ws = perf[i].memory;
    return 1;
  }
  return 0;
}

static int forward_algo(kn_cuda_ctx *ctx, const conv_descs *d, cudnnConvolutionFwdAlgo_t *algo, size_t *ws) {
  cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
  int count = 0, found = 0;
  if (!kn_cudnn_ok(ctx,
                   cudnnGetConvolutionForwardAlgorithm_v7(kn_cudnn(ctx), d->x, d->w, d->conv, d->y,
                                                          CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &count, perf),
                   "conv forward heuristics"))
    return 0;
  found = pick_algo(perf, count, algo, ws);
  if (!found) kn_cuda_fail(ctx, "conv forward", "no deterministic cuDNN algorithm");
  return found;
}

static int data_algo(kn_cuda_ctx *ctx, const conv_descs *d, cudnnConvolutionBwdDataAlgo_t *algo, size_t *ws) {
  cudnnConvolutionBwdDataAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
  int count = 0, found = 0;
  if (!kn_cudnn_ok(ctx,
                   cudnnGetConvolutionBackwardDataAlgorithm_v7(kn_cudnn(ctx), d->w, d->y, d->conv, d->x,
                                                               CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &count,
                                                               perf),
                   "conv data-gradient heuristics"))
    return 0;
  found = pick_algo(perf, count, algo, ws);
  if (!found) kn_cuda_fail(ctx, "conv data gradient", "no deterministic cuDNN algorithm");
  return found;
}

static int filter_algo(kn_cuda_ctx *ctx, const conv_descs *d, cudnnConvolutionBwdFilterAlgo_t *algo, size_t *ws) {
  cudnnConvolutionBwdFilterAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
  int count = 0, found = 0;
  if (!kn_cudnn_ok(ctx,
                   cudnnGetConvolutionBackwardFilterAlgorithm_v7(kn_cudnn(ctx), d->x, d->y, d->conv, d->w,
                                                                 CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT,
                                                                 &count, perf),
                   "conv filter-gradient heuristics"))
    return 0;
  found = pick_algo(perf, count, algo, ws);
  if (!found) kn_cuda_fail(ctx, "conv filter gradient", "no deterministic cuDNN algorithm");
  return found;
}

/* The convolution alone (out = conv, overwritten) and the two cuDNN
 * gradients with the given beta (1: accumulate into dinp / dweight), shared
 * by float32 and bf16; ws_offset leaves the workspace's first bytes to the
 * caller (the bf16 dW). */
static void run_forward(kn_cuda_ctx *ctx, const conv_descs *d, void *out, const void *inp, const void *weight) {
  cudnnConvolutionFwdAlgo_t algo;
  size_t ws_bytes = 0;
  if (!forward_algo(ctx, d, &algo, &ws_bytes)) return;
  void *ws = ws_bytes ? kn_cuda_workspace(ctx, ws_bytes) : NULL;
  const float zero = 0.0f, one = 1.0f;
  if (ws_bytes && !ws) return;
  kn_cudnn_ok(ctx,
              cudnnConvolutionForward(kn_cudnn(ctx), &one, d->x, inp, d->w, weight, d->conv, algo, ws, ws_bytes,
                                      &zero, d->y, out),
              "conv forward");
}

static void run_data_gradient(kn_cuda_ctx *ctx, const conv_descs *d, void *dinp, const void *dout,
                              const void *weight) {
  cudnnConvolutionBwdDataAlgo_t algo;
  size_t ws_bytes = 0;
  if (!data_algo(ctx, d, &algo, &ws_bytes)) return;
  void *ws = ws_bytes ? kn_cuda_workspace(ctx, ws_bytes) : NULL;
  const float one = 1.0f;
  if (ws_bytes && !ws) return;
  kn_cudnn_ok(ctx,
              cudnnConvolutionBackwardData(kn_cudnn(ctx), &one, d->w, weight, d->y, dout, d->conv, algo, ws,
                                           ws_bytes, &one, d->x, dinp),
              "conv data gradient");
}

/* dweight = beta dweight + dW; dweight NULL means the workspace's first
 * ws_offset bytes (then beta is 0). */
static void run_filter_gradient(kn_cuda_ctx *ctx, const conv_descs *d, void *dweight, size_t ws_offset, float beta,
                                const void *dout, const void *inp) {
  cudnnConvolutionBwdFilterAlgo_t algo;
  size_t ws_bytes = 0;
  if (!filter_algo(ctx, d, &algo, &ws_bytes)) return;
  char *base = (ws_offset + ws_bytes) ? (char *)kn_cuda_workspace(ctx, ws_offset + ws_bytes) : NULL;
  if ((ws_offset + ws_bytes) && !base) return;
  void *ws = ws_bytes ? base + ws_offset : NULL;
  if (!dweight) dweight = base;
  const float one = 1.0f;
  kn_cudnn_ok(ctx,
              cudnnConvolutionBackwardFilter(kn_cudnn(ctx), &one, d->x, inp, d->y, dout, d->conv, algo, ws, ws_bytes,
                                             &beta, d->w, dweight),
              "conv filter gradient");
}

void kn_cuda_conv2d_forward(kn_cuda_ctx *ctx, float *out, const float *inp, const float *weight,
                            const float *bias, int B, int C, int H, int W, int OC, int K,
                            int stride, int pad) {
  conv_descs d;
  if (!descs_init(ctx, &d, CUDNN_DATA_FLOAT, B, C, H, W, OC, K, stride, pad)) return;
  int before = ctx->status;
  run_forward(ctx, &d, out, inp, weight);
  const float one = 1.0f;
  if (bias && ctx->status == before)
    kn_cudnn_ok(ctx, cudnnAddTensor(kn_cudnn(ctx), &one, d.bias, bias, &one, d.y, out), "conv bias");
  descs_free(&d);
}

void kn_cuda_conv2d_backward(kn_cuda_ctx *ctx, float *dinp, float *dweight, float *dbias,
                             const float *dout, const float *inp, const float *weight, int B,
                             int C, int H, int W, int OC, int K, int stride, int pad) {
  conv_descs d;
  if (!descs_init(ctx, &d, CUDNN_DATA_FLOAT, B, C, H, W, OC, K, stride, pad)) return;
  const float one = 1.0f;
  if (dinp) run_data_gradient(ctx, &d, dinp, dout, weight);
  if (dweight) run_filter_gradient(ctx, &d, dweight, 0, 1.0f, dout, inp);
  if (dbias)
    kn_cudnn_ok(ctx, cudnnConvolutionBackwardBias(kn_cudnn(ctx), &one, d.y, dout, &one, d.bias, dbias),
                "conv bias gradient");
  descs_free(&d);
}

/* ---------------------------------------------------------------- bf16 */

typedef __nv_bfloat16 bf;

/* out[b, oc, p] = round(out + bias[oc]); one thread per value. */
__global__ void conv_bias_bf16_kernel(bf *out, const float *bias, int OC, size_t HW, size_t n) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    out[i] = __float2bfloat16_rn(__bfloat162float(out[i]) + bias[(i / HW) % OC]);
}

/* dweight[i] += dW16[i] (float32 master gradient). */
__global__ void conv_dweight_bf16_kernel(float *dst, const bf *src, size_t n) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    dst[i] += __bfloat162float(src[i]);
}

/* dbias[oc] += sum over b, p of dout[b, oc, p]: one block per channel, each
 * thread a fixed strided slice in double, then a fixed-order block sum. */
__global__ void conv_dbias_bf16_kernel(float *dbias, const bf *dout, int B, int OC, size_t HW) {
  __shared__ double shared[32];
  int oc = blockIdx.x;
  double acc = 0.0;
  for (int b = 0; b < B; b++) {
    const bf *row = dout + ((size_t)b * OC + oc) * HW;
    for (size_t p = threadIdx.x; p < HW; p += blockDim.x) acc += (double)__bfloat162float(row[p]);
  }
  acc = kn_block_sum_double(acc, shared);
  if (threadIdx.x == 0) dbias[oc] += (float)acc;
}

void kn_cuda_conv2d_forward_bf16(kn_cuda_ctx *ctx, kn_bf16 *out, const kn_bf16 *inp, const kn_bf16 *weight,
                                 const float *bias, int B, int C, int H, int W, int OC, int K, int stride, int pad) {
  conv_descs d;
  if (!descs_init(ctx, &d, CUDNN_DATA_BFLOAT16, B, C, H, W, OC, K, stride, pad)) return;
  int before = ctx->status;
  run_forward(ctx, &d, out, inp, weight);
  descs_free(&d);
  if (!bias || ctx->status != before) return;
  size_t HW = (size_t)((H + 2 * pad - K) / stride + 1) * ((W + 2 * pad - K) / stride + 1);
  size_t n = (size_t)B * OC * HW;
  if (n == 0) return;
  conv_bias_bf16_kernel<<<kn_blocks(n, 256), 256, 0, kn_stream(ctx)>>>((bf *)out, bias, OC, HW, n);
  kn_cuda_launched(ctx, "conv bias bf16");
}

void kn_cuda_conv2d_backward_bf16(kn_cuda_ctx *ctx, kn_bf16 *dinp, float *dweight, float *dbias,
                                  const kn_bf16 *dout, const kn_bf16 *inp, const kn_bf16 *weight, int B, int C,
                                  int H, int W, int OC, int K, int stride, int pad) {
  conv_descs d;
  if (!descs_init(ctx, &d, CUDNN_DATA_BFLOAT16, B, C, H, W, OC, K, stride, pad)) return;
  if (dinp) run_data_gradient(ctx, &d, dinp, dout, weight);
  if (dweight) {
    /* bf16 dW at the workspace's start (256-byte aligned for cuDNN's part),
     * then added into the float32 master gradient. */
    size_t nw = (size_t)OC * C * K * K, dw_bytes = (nw * sizeof(bf) + 255) & ~(size_t)255;
    int before = ctx->status;
    run_filter_gradient(ctx, &d, NULL, dw_bytes, 0.0f, dout, inp);
    if (ctx->status == before && nw) {
      conv_dweight_bf16_kernel<<<kn_blocks(nw, 256), 256, 0, kn_stream(ctx)>>>(dweight, (const bf *)ctx->workspace,
                                                                            nw);
      kn_cuda_launched(ctx, "conv filter gradient bf16");
    }
  }
  descs_free(&d);
  if (dbias && B > 0 && OC > 0) {
    size_t HW = (size_t)((H + 2 * pad - K) / stride + 1) * ((W + 2 * pad - K) / stride + 1);
    conv_dbias_bf16_kernel<<<OC, 256, 0, kn_stream(ctx)>>>(dbias, (const bf *)dout, B, OC, HW);
    kn_cuda_launched(ctx, "conv bias gradient bf16");
  }
}
