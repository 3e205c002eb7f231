/* 2-D convolution through cuDNN (NCHW, float32). Algorithms come from
 * cuDNN's heuristics (no timing runs, so a step's first call costs nothing
 * extra), keeping the first deterministic one that fits in 1 GiB of
 * workspace; backward accumulates with cuDNN's beta = 1. Descriptors are
 * built per call: cheap next to a convolution, and a cache keyed by shape is
 * the obvious next step once the UNet step runs on the device. */
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

static int descs_init(kn_cuda_ctx *ctx, conv_descs *d, int B, int C, int H, int W, int OC, int K,
                      int stride, int pad) {
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
       kn_cudnn_ok(ctx, cudnnSetTensor4dDescriptor(d->x, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, B, C, H, W),
                   "conv input shape") &&
       kn_cudnn_ok(ctx, cudnnSetTensor4dDescriptor(d->y, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, B, OC, Ho, Wo),
                   "conv output shape") &&
       kn_cudnn_ok(ctx, cudnnSetTensor4dDescriptor(d->bias, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, OC, 1, 1),
                   "conv bias shape") &&
       kn_cudnn_ok(ctx, cudnnSetFilter4dDescriptor(d->w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, OC, C, K, K),
                   "conv filter shape") &&
       kn_cudnn_ok(ctx,
                   cudnnSetConvolution2dDescriptor(d->conv, pad, pad, stride, stride, 1, 1,
                                                   CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT),
                   "conv descriptor") &&
       kn_cudnn_ok(ctx,
                   cudnnSetConvolutionMathType(d->conv, ctx->allow_tf32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH),
                   "conv math type");
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

void kn_cuda_conv2d_forward(kn_cuda_ctx *ctx, float *out, const float *inp, const float *weight,
                            const float *bias, int B, int C, int H, int W, int OC, int K,
                            int stride, int pad) {
  conv_descs d;
  if (!descs_init(ctx, &d, B, C, H, W, OC, K, stride, pad)) return;
  cudnnConvolutionFwdAlgo_t algo;
  size_t ws_bytes = 0;
  if (forward_algo(ctx, &d, &algo, &ws_bytes)) {
    void *ws = ws_bytes ? kn_cuda_workspace(ctx, ws_bytes) : NULL;
    const float zero = 0.0f, one = 1.0f;
    if (!ws_bytes || ws) {
      kn_cudnn_ok(ctx,
                  cudnnConvolutionForward(kn_cudnn(ctx), &one, d.x, inp, d.w, weight, d.conv, algo, ws,
                                          ws_bytes, &zero, d.y, out),
                  "conv forward");
      if (bias) kn_cudnn_ok(ctx, cudnnAddTensor(kn_cudnn(ctx), &one, d.bias, bias, &one, d.y, out), "conv bias");
    }
  }
  descs_free(&d);
}

void kn_cuda_conv2d_backward(kn_cuda_ctx *ctx, float *dinp, float *dweight, float *dbias,
                             const float *dout, const float *inp, const float *weight, int B,
                             int C, int H, int W, int OC, int K, int stride, int pad) {
  conv_descs d;
  if (!descs_init(ctx, &d, B, C, H, W, OC, K, stride, pad)) return;
  const float one = 1.0f;
  if (dinp) {
    cudnnConvolutionBwdDataAlgo_t algo;
    size_t ws_bytes = 0;
    if (data_algo(ctx, &d, &algo, &ws_bytes)) {
      void *ws = ws_bytes ? kn_cuda_workspace(ctx, ws_bytes) : NULL;
      if (!ws_bytes || ws)
        kn_cudnn_ok(ctx,
                    cudnnConvolutionBackwardData(kn_cudnn(ctx), &one, d.w, weight, d.y, dout, d.conv, algo, ws,
                                                 ws_bytes, &one, d.x, dinp),
                    "conv data gradient");
    }
  }
  if (dweight) {
    cudnnConvolutionBwdFilterAlgo_t algo;
    size_t ws_bytes = 0;
    if (filter_algo(ctx, &d, &algo, &ws_bytes)) {
      void *ws = ws_bytes ? kn_cuda_workspace(ctx, ws_bytes) : NULL;
      if (!ws_bytes || ws)
        kn_cudnn_ok(ctx,
                    cudnnConvolutionBackwardFilter(kn_cudnn(ctx), &one, d.x, inp, d.y, dout, d.conv, algo, ws,
                                                   ws_bytes, &one, d.w, dweight),
                    "conv filter gradient");
    }
  }
  if (dbias)
    kn_cudnn_ok(ctx, cudnnConvolutionBackwardBias(kn_cudnn(ctx), &one, d.y, dout, &one, d.bias, dbias),
                "conv bias gradient");
  descs_free(&d);
}
