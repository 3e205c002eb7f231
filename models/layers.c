/* layers: parameter tables, activation plans and the layers the models share. */
#include "models/layers.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------- parameters */

void md_params_init(md_params *t) { memset(t, 0, sizeof *t); }

void md_param_add(md_params *t, md_tensor *slot, const char *prefix, const char *suffix, int ndim,
                  int64_t d0, int64_t d1, int64_t d2, int64_t d3) {
  if (t->failed) return;
  if (t->n == t->cap) {
    int cap = t->cap ? 2 * t->cap : 256;
    md_param *items = realloc(t->items, (size_t)cap * sizeof *items);
    if (!items) {
      t->failed = 1;
      return;
    }
    t->items = items;
    t->cap = cap;
  }
  md_param *p = &t->items[t->n++];
  memset(p, 0, sizeof *p);
  if (prefix && prefix[0]) snprintf(p->name, sizeof p->name, "%s.%s", prefix, suffix);
  else snprintf(p->name, sizeof p->name, "%s", suffix);
  int64_t dims[4] = {d0, d1, d2, d3};
  p->ndim = ndim;
  p->numel = 1;
  for (int i = 0; i < ndim; i++) {
    p->shape[i] = dims[i];
    p->numel *= (size_t)dims[i];
  }
  p->offset = t->total;
  /* Each parameter starts on a 16-float boundary, so every slot is 64-byte aligned. */
  t->total += (p->numel + 15) / 16 * 16;
  p->slot = slot;
}

static int alloc_floats(float **out, size_t n, const char *what, dpo_error *err) {
  size_t bytes = kn_arena_bytes(n ? n : 1);
  *out = aligned_alloc(KN_ALIGN, bytes);
  if (!*out) return dpo_fail(err, DPO_ERR_DATA, "cannot allocate %zu bytes for %s", bytes, what);
  memset(*out, 0, bytes);
  return DPO_OK;
}

int md_params_alloc(md_params *t, dpo_error *err) {
  if (t->failed) return dpo_fail(err, DPO_ERR_DATA, "out of memory while listing parameters");
  if (alloc_floats(&t->data, t->total, "parameters", err) != DPO_OK) return DPO_ERR_DATA;
  for (int i = 0; i < t->n; i++) {
    t->items[i].slot->v = t->data + t->items[i].offset;
    t->items[i].slot->g = NULL;
  }
  return DPO_OK;
}

int md_params_set_bf16(md_params *t, int frozen, dpo_error *err) {
  if (t->device || t->half || t->grad)
    return dpo_fail(err, DPO_ERR_USAGE, "a model's precision is set before its first plan");
  t->bf16 = 1;
  t->frozen = frozen != 0;
  return DPO_OK;
}

/* A weight of a frozen bf16 model lives on a device as its bf16 copy only. */
static int drops_float(const md_params *t, const md_param *p) { return t->bf16 && t->frozen && p->ndim >= 2; }

/* Uploads the float32 values (all of them, or a frozen bf16 model's 1-D
 * ones packed) and points the slots at them. */
static int place_floats(md_params *t, kn_ctx *ctx, dpo_error *err) {
  size_t total = 0;
  for (int i = 0; i < t->n; i++) {
    md_param *p = &t->items[i];
    if (drops_float(t, p)) continue;
    p->device_offset = total;
    total += (p->numel + 15) / 16 * 16;
  }
  size_t bytes = kn_arena_bytes(total ? total : 1);
  t->device = kn_malloc(ctx, bytes);
  if (!t->device)
    return dpo_fail(err, DPO_ERR_DATA, "cannot allocate %zu bytes for parameters on %s", bytes,
                    kn_backend_name(ctx->backend));
  if (total == t->total) {
    kn_upload(ctx, t->device, t->data, t->total * sizeof(float));
  } else {
    float *packed = calloc(total ? total : 1, sizeof(float));
    if (!packed) return dpo_fail(err, DPO_ERR_DATA, "out of memory packing the parameters");
    for (int i = 0; i < t->n; i++) {
      const md_param *p = &t->items[i];
      if (!drops_float(t, p)) memcpy(packed + p->device_offset, t->data + p->offset, p->numel * sizeof(float));
    }
    kn_upload(ctx, t->device, packed, total * sizeof(float));
    free(packed);
  }
  t->backend = ctx->backend;
  t->ctx = ctx;
  for (int i = 0; i < t->n; i++) {
    md_param *p = &t->items[i];
    p->slot->v = drops_float(t, p) ? NULL : t->device + p->device_offset;
  }
  return kn_ctx_check(ctx, err);
}

/* The bf16 copies of the weights (2+ dims), rounded from the host block. */
static int place_bf16(md_params *t, kn_ctx *ctx, dpo_error *err) {
  size_t total = 0;
  for (int i = 0; i < t->n; i++) {
    md_param *p = &t->items[i];
    if (p->ndim < 2) continue;
    p->half_offset = total;
    total += (p->numel + 31) / 32 * 32;   /* 64-byte aligned */
  }
  kn_bf16 *host = calloc(total ? total : 1, sizeof(kn_bf16));
  if (!host) return dpo_fail(err, DPO_ERR_DATA, "out of memory rounding the parameters to bf16");
  for (int i = 0; i < t->n; i++) {
    const md_param *p = &t->items[i];
    if (p->ndim < 2) continue;
    for (size_t j = 0; j < p->numel; j++) host[p->half_offset + j] = kn_bf16_from_float(t->data[p->offset + j]);
  }
  t->half = kn_malloc(ctx, (total ? total : 1) * sizeof(kn_bf16));
  if (!t->half) {
    free(host);
    return dpo_fail(err, DPO_ERR_DATA, "cannot allocate %zu bytes for bf16 parameters on %s",
                    total * sizeof(kn_bf16), kn_backend_name(ctx->backend));
  }
  kn_upload(ctx, t->half, host, total * sizeof(kn_bf16));
  free(host);
  t->half_total = total;
  t->backend = ctx->backend;
  t->ctx = ctx;
  for (int i = 0; i < t->n; i++) {
    md_param *p = &t->items[i];
    p->slot->bf16 = p->ndim >= 2 ? t->half + p->half_offset : NULL;
  }
  return kn_ctx_check(ctx, err);
}

int md_params_place(md_params *t, kn_ctx *ctx, dpo_error *err) {
  /* One model, one backend: a model placed on a device cannot be planned on
   * the CPU (its slots point at device memory), nor one with CPU gradients
   * moved to a device. */
  int placed = t->device || t->half;
  if (placed && ctx->backend != t->backend)
    return dpo_fail(err, DPO_ERR_USAGE, "model parameters live on %s; plan it on that backend, not %s",
                    kn_backend_name(t->backend), kn_backend_name(ctx->backend));
  if (placed) t->ctx = ctx; /* the latest context: an earlier one may be gone */
  if (ctx->backend != KN_BACKEND_CPU && !t->device) {
    if (t->grad)
      return dpo_fail(err, DPO_ERR_USAGE, "model was planned for training on the cpu; it cannot move to %s",
                      kn_backend_name(ctx->backend));
    if (place_floats(t, ctx, err) != DPO_OK) return DPO_ERR_DATA;
  }
  if (t->bf16 && !t->half) return place_bf16(t, ctx, err);
  return DPO_OK;
}

int md_params_fetch(const md_params *t, dpo_error *err) {
  /* A frozen model's values never change: the host block is theirs. */
  if (!t->device || (t->bf16 && t->frozen)) return DPO_OK;
  kn_download(t->ctx, t->data, t->device, t->total * sizeof(float));
  return kn_ctx_check(t->ctx, err);
}

int md_params_alloc_grads(md_params *t, kn_ctx *ctx, dpo_error *err) {
  if (t->grad) return DPO_OK;
  if (t->frozen) return dpo_fail(err, DPO_ERR_USAGE, "a frozen model cannot be planned for training");
  if (md_params_place(t, ctx, err) != DPO_OK) return DPO_ERR_DATA;
  if (ctx->backend == KN_BACKEND_CPU) {
    if (alloc_floats(&t->grad, t->total, "parameter gradients", err) != DPO_OK) return DPO_ERR_DATA;
  } else {
    size_t bytes = kn_arena_bytes(t->total ? t->total : 1);
    t->grad = kn_malloc(ctx, bytes);
    if (!t->grad)
      return dpo_fail(err, DPO_ERR_DATA, "cannot allocate %zu bytes for parameter gradients on %s",
                      bytes, kn_backend_name(ctx->backend));
  }
  for (int i = 0; i < t->n; i++) t->items[i].slot->g = t->grad + t->items[i].offset;
  return DPO_OK;
}

void md_params_view(const md_params *t, int i, dpo_param *out) {
  const md_param *p = &t->items[i];
  out->name = p->name;
  out->ndim = p->ndim;
  out->shape = p->shape;
  out->numel = p->numel;
  out->data = p->slot->v;
  out->grad = p->slot->g;
  out->data_bf16 = p->slot->bf16;
}

void md_params_zero_grads(md_params *t) {
  if (!t->grad) return;
  if (t->device) kn_zero(t->ctx, t->grad, t->total * sizeof(float));
  else memset(t->grad, 0, t->total * sizeof(float));
}

void md_params_free(md_params *t) {
  free(t->items);
  free(t->data);
  /* Gradients live beside the parameters: on the device once placed. */
  kn_free(t->device ? t->backend : KN_BACKEND_CPU, t->grad);
  kn_free(t->backend, t->device);
  kn_free(t->backend, t->half);
  memset(t, 0, sizeof *t);
}

static void format_shape(char *buf, size_t n, int ndim, const int64_t *shape) {
  size_t used = 0;
  used += (size_t)snprintf(buf + used, n - used, "[");
  for (int i = 0; i < ndim && used < n; i++)
    used += (size_t)snprintf(buf + used, n - used, "%s%" PRId64, i ? ", " : "", shape[i]);
  if (used < n) snprintf(buf + used, n - used, "]");
}

static int shape_matches(const md_param *p, const dpo_tensor_view *v) {
  if (v->ndim != p->ndim) return 0;
  for (int i = 0; i < p->ndim; i++)
    if (v->shape[i] != p->shape[i]) return 0;
  return 1;
}

static int find_param(const md_params *t, const char *name) {
  for (int i = 0; i < t->n; i++)
    if (strcmp(t->items[i].name, name) == 0) return i;
  return -1;
}

static int is_ignored(const char *name, const char *const *ignored) {
  for (int i = 0; ignored && ignored[i]; i++)
    if (strcmp(name, ignored[i]) == 0) return 1;
  return 0;
}

int md_params_load(md_params *t, const char *path, const char *what, dpo_error *err) {
  return md_params_load_ignoring(t, path, what, NULL, err);
}

int md_params_load_ignoring(md_params *t, const char *path, const char *what,
                            const char *const *ignored, dpo_error *err) {
  dpo_safetensors st;
  if (dpo_st_open(&st, path, err) != DPO_OK) return DPO_ERR_DATA;
  int rc = DPO_OK;
  for (int i = 0; i < t->n && rc == DPO_OK; i++) {
    const md_param *p = &t->items[i];
    const dpo_tensor_view *v = dpo_st_find(&st, p->name);
    char want[96], have[96];
    format_shape(want, sizeof want, p->ndim, p->shape);
    if (!v) {
      rc = dpo_fail(err, DPO_ERR_DATA, "%s: missing tensor \"%s\" (shape %s) that this %s config needs",
                    path, p->name, want, what);
    } else if (!shape_matches(p, v)) {
      format_shape(have, sizeof have, v->ndim, v->shape);
      rc = dpo_fail(err, DPO_ERR_DATA, "%s: tensor \"%s\" has shape %s, expected %s from the %s config",
                    path, p->name, have, want, what);
    } else if (v->dtype != DPO_DTYPE_F32 && v->dtype != DPO_DTYPE_F16 && v->dtype != DPO_DTYPE_BF16) {
      rc = dpo_fail(err, DPO_ERR_DATA, "%s: tensor \"%s\" is %s; expected F32, F16 or BF16", path,
                    p->name, dpo_dtype_name(v->dtype));
    } else if (dpo_st_to_f32(v, p->slot->v, err) != DPO_OK) {
      rc = dpo_error_prefix(err, "%s: tensor \"%s\"", path, p->name);
    }
  }
  for (int i = 0; i < st.n_tensors && rc == DPO_OK; i++) {
    if (find_param(t, st.tensors[i].name) < 0 && !is_ignored(st.tensors[i].name, ignored))
      rc = dpo_fail(err, DPO_ERR_DATA, "%s: unexpected tensor \"%s\": no parameter of this %s config has that name",
                    path, st.tensors[i].name, what);
  }
  dpo_st_close(&st);
  return rc == DPO_OK ? DPO_OK : DPO_ERR_DATA;
}

static int ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* The weight registered with a bias: same name with "weight" for "bias". */
static const md_param *weight_of_bias(const md_params *t, const md_param *bias) {
  char name[MD_NAME_MAX];
  size_t n = strlen(bias->name);
  snprintf(name, sizeof name, "%.*sweight", (int)(n - 4), bias->name);
  int i = find_param(t, name);
  return i >= 0 ? &t->items[i] : NULL;
}

void md_params_init_default(md_params *t, uint64_t seed) {
  for (int i = 0; i < t->n; i++) {
    const md_param *p = &t->items[i];
    float *data = p->slot->v;
    const md_param *w = p;
    if (ends_with(p->name, ".bias")) w = weight_of_bias(t, p);
    if (ends_with(p->name, "embedding.weight")) {
      dpo_rng_normal_fill(seed, (uint64_t)i, 0, data, p->numel);
      for (size_t j = 0; j < p->numel; j++) data[j] *= 0.02f;
    } else if (!w || w->ndim < 2) {
      /* A norm's scale (1) or shift (0), or a bias without a weight. */
      float v = p == w ? 1.0f : 0.0f;
      for (size_t j = 0; j < p->numel; j++) data[j] = v;
    } else {
      float bound = 1.0f / sqrtf((float)(w->numel / (size_t)w->shape[0]));
      dpo_rng_uniform_fill(seed, (uint64_t)i, 0, data, p->numel);
      for (size_t j = 0; j < p->numel; j++) data[j] = bound * (2.0f * data[j] - 1.0f);
    }
  }
}

int md_params_save(const md_params *t, const char *path, dpo_error *err) {
  /* The host block is what is written: bring it up to date first. */
  if (md_params_fetch(t, err) != DPO_OK) return DPO_ERR_DATA;
  dpo_st_writer w;
  dpo_st_writer_init(&w);
  int rc = dpo_st_writer_meta(&w, "format", "pt", err);
  for (int i = 0; i < t->n && rc == DPO_OK; i++) {
    const md_param *p = &t->items[i];
    rc = dpo_st_writer_add(&w, p->name, DPO_DTYPE_F32, p->ndim, p->shape, t->data + p->offset, err);
  }
  if (rc == DPO_OK) rc = dpo_st_writer_write(&w, path, err);
  dpo_st_writer_free(&w);
  return rc;
}

/* ---------------------------------------------------------- activations */

void md_plan_init(md_plan *p, int train, int threads) {
  memset(p, 0, sizeof *p);
  p->train = train;
  p->threads = threads > 0 ? threads : 1;
}

void md_plan_tensor(md_plan *p, md_tensor *slot, size_t n) {
  if (p->failed) return;
  if (slot && p->dtype == KN_BF16) n = (n + 1) / 2;   /* storage in floats */
  if (p->n == p->cap) {
    int cap = p->cap ? 2 * p->cap : 512;
    md_request *req = realloc(p->req, (size_t)cap * sizeof *req);
    if (!req) {
      p->failed = 1;
      return;
    }
    p->req = req;
    p->cap = cap;
  }
  md_request *r = &p->req[p->n++];
  memset(r, 0, sizeof *r);
  r->slot = slot;
  r->n = n;
  if (p->group && slot && p->checkpoint) {
    r->shared_value = 1;
    r->value_offset = p->group_value_used;
    p->group_value_used += kn_arena_bytes(n);
  } else {
    p->act_bytes += kn_arena_bytes(n);
  }
  if (!p->train) return;
  if (p->group && slot) {
    r->group = p->group;
    r->group_offset = p->group_used;
    p->group_used += kn_arena_bytes(n);
  } else {
    p->grad_bytes += kn_arena_bytes(n);
  }
}

void md_plan_group_begin(md_plan *p, md_grad_group *g) {
  g->base = NULL;
  g->bytes = 0;
  g->recompute = 0;
  if (!p->train || p->failed) return;
  if (p->n_groups == p->cap_groups) {
    int cap = p->cap_groups ? 2 * p->cap_groups : 64;
    md_grad_group **groups = realloc(p->groups, (size_t)cap * sizeof *groups);
    size_t *sizes = realloc(p->group_sizes, (size_t)cap * sizeof *sizes);
    if (groups) p->groups = groups;
    if (sizes) p->group_sizes = sizes;
    if (!groups || !sizes) {
      p->failed = 1;
      return;
    }
    p->cap_groups = cap;
  }
  p->group = g;
  p->group_used = 0;
  p->group_value_used = 0;
  g->recompute = p->checkpoint;
}

void md_plan_group_end(md_plan *p) {
  if (!p->group) return;
  p->groups[p->n_groups] = p->group;
  p->group_sizes[p->n_groups] = p->group_used;
  p->n_groups++;
  if (p->group_used > p->shared_bytes) p->shared_bytes = p->group_used;
  if (p->group_value_used > p->shared_value_bytes) p->shared_value_bytes = p->group_value_used;
  p->group = NULL;
}

void md_grad_group_zero(kn_ctx *ctx, const md_grad_group *g) {
  if (g->base) kn_zero(ctx, g->base, g->bytes);
}

void md_plan_floats(md_plan *p, float **slot, size_t n) {
  md_grad_group *open = p->group;
  p->group = NULL;   /* plain floats take no gradient at all */
  md_plan_tensor(p, NULL, n);
  p->group = open;
  if (p->failed) return;
  p->req[p->n - 1].plain = slot;
  if (p->train) p->grad_bytes -= kn_arena_bytes(n);
}

void md_plan_scratch(md_plan *p, size_t bytes) {
  if (bytes > p->scratch_bytes) p->scratch_bytes = bytes;
}

int md_plan_alloc(md_plan *p, kn_ctx *ctx, dpo_error *err) {
  if (p->failed) return dpo_fail(err, DPO_ERR_DATA, "out of memory while planning activations");
  if (kn_arena_init_on(&p->acts, ctx, p->act_bytes + p->shared_value_bytes, err) != DPO_OK) return DPO_ERR_DATA;
  float *shared_values = NULL;
  if (p->shared_value_bytes > 0) {
    shared_values = kn_arena_floats(&p->acts, p->shared_value_bytes / sizeof(float));
    if (!shared_values) return dpo_fail(err, DPO_ERR_DATA, "activation plan too small for the shared values");
  }
  if (p->train && kn_arena_init_on(&p->grads, ctx, p->grad_bytes + p->shared_bytes, err) != DPO_OK)
    return DPO_ERR_DATA;
  float *shared = NULL;
  if (p->train && p->shared_bytes > 0) {
    shared = kn_arena_floats(&p->grads, p->shared_bytes / sizeof(float));
    if (!shared) return dpo_fail(err, DPO_ERR_DATA, "gradient plan too small for the shared region");
  }
  for (int i = 0; i < p->n_groups; i++) {
    p->groups[i]->base = shared;
    p->groups[i]->bytes = p->group_sizes[i];
  }
  for (int i = 0; i < p->n; i++) {
    md_request *r = &p->req[i];
    if (r->plain) {
      *r->plain = kn_arena_floats(&p->acts, r->n);
      if (!*r->plain) return dpo_fail(err, DPO_ERR_DATA, "activation plan too small (request %d)", i);
      continue;
    }
    r->slot->dtype = p->dtype;
    if (r->shared_value) r->slot->v = (float *)((uint8_t *)shared_values + r->value_offset);
    else r->slot->v = kn_arena_floats(&p->acts, r->n);
    if (r->group) r->slot->g = (float *)((uint8_t *)shared + r->group_offset);
    else r->slot->g = p->train ? kn_arena_floats(&p->grads, r->n) : NULL;
    if (!r->slot->v || (p->train && !r->slot->g))
      return dpo_fail(err, DPO_ERR_DATA, "activation plan too small (request %d)", i);
  }
  return DPO_OK;
}

void md_plan_zero_grads(kn_ctx *ctx, md_plan *p) {
  if (p->grads.base) kn_zero(ctx, p->grads.base, p->grads.used);
}

void md_plan_free(md_plan *p) {
  free(p->req);
  free(p->groups);
  free(p->group_sizes);
  kn_arena_free(&p->acts);
  kn_arena_free(&p->grads);
  memset(p, 0, sizeof *p);
}

/* ----------------------------------------------------- plain layers */

void md_conv_init(md_conv *c, md_params *t, const char *prefix, const char *name, int C, int OC,
                  int K, int stride, int pad, int has_bias) {
  char buf[MD_NAME_MAX];
  c->C = C;
  c->OC = OC;
  c->K = K;
  c->stride = stride;
  c->pad = pad;
  c->has_bias = has_bias;
  snprintf(buf, sizeof buf, "%s.weight", name);
  md_param_add(t, &c->w, prefix, buf, 4, OC, C, K, K);
  if (has_bias) {
    snprintf(buf, sizeof buf, "%s.bias", name);
    md_param_add(t, &c->b, prefix, buf, 1, OC, 0, 0, 0);
  }
}

void md_linear_init(md_linear *l, md_params *t, const char *prefix, const char *name, int IC, int OC,
                    int has_bias) {
  char buf[MD_NAME_MAX];
  l->IC = IC;
  l->OC = OC;
  l->has_bias = has_bias;
  snprintf(buf, sizeof buf, "%s.weight", name);
  md_param_add(t, &l->w, prefix, buf, 2, OC, IC, 0, 0);
  if (has_bias) {
    snprintf(buf, sizeof buf, "%s.bias", name);
    md_param_add(t, &l->b, prefix, buf, 1, OC, 0, 0, 0);
  }
}

void md_norm_init(md_norm *n, md_params *t, const char *prefix, const char *name, int C, int G,
                  float eps) {
  char buf[MD_NAME_MAX];
  n->C = C;
  n->G = G;
  n->eps = eps;
  snprintf(buf, sizeof buf, "%s.weight", name);
  md_param_add(t, &n->gamma, prefix, buf, 1, C, 0, 0, 0);
  snprintf(buf, sizeof buf, "%s.bias", name);
  md_param_add(t, &n->beta, prefix, buf, 1, C, 0, 0, 0);
}

void md_conv_plan(md_plan *p, const md_conv *c, int H, int W) {
  md_plan_scratch(p, kn_conv2d_scratch_bytes(c->C, H, W, c->OC, c->K, c->stride, c->pad));
}

/* A layer computes in bf16 when its weight has a bf16 copy (a bf16 model);
 * its activations are then bf16 too (the plan's dtype). */
void md_conv_forward(kn_ctx *ctx, const md_conv *c, void *out, const void *in, int B, int H, int W) {
  const float *bias = c->has_bias ? c->b.v : NULL;
  if (c->w.bf16)
    kn_conv2d_forward_bf16(ctx, out, in, c->w.bf16, bias, B, c->C, H, W, c->OC, c->K, c->stride, c->pad);
  else
    kn_conv2d_forward(ctx, out, in, c->w.v, bias, B, c->C, H, W, c->OC, c->K, c->stride, c->pad);
}

void md_conv_backward(kn_ctx *ctx, const md_conv *c, void *din, const void *dout, const void *in,
                      int B, int H, int W) {
  float *dbias = c->has_bias ? c->b.g : NULL;
  if (c->w.bf16)
    kn_conv2d_backward_bf16(ctx, din, c->w.g, dbias, dout, in, c->w.bf16, B, c->C, H, W, c->OC, c->K,
                            c->stride, c->pad);
  else
    kn_conv2d_backward(ctx, din, c->w.g, dbias, dout, in, c->w.v, B, c->C, H, W, c->OC, c->K, c->stride,
                       c->pad);
}

void md_linear_forward(kn_ctx *ctx, const md_linear *l, void *out, const void *in, int N) {
  const float *bias = l->has_bias ? l->b.v : NULL;
  if (l->w.bf16) kn_linear_forward_bf16(ctx, out, in, l->w.bf16, bias, N, l->IC, l->OC);
  else kn_linear_forward(ctx, out, in, l->w.v, bias, N, l->IC, l->OC);
}

void md_linear_backward(kn_ctx *ctx, const md_linear *l, void *din, const void *dout,
                        const void *in, int N) {
  float *dbias = l->has_bias ? l->b.g : NULL;
  if (l->w.bf16) kn_linear_backward_bf16(ctx, din, l->w.g, dbias, dout, in, l->w.bf16, N, l->IC, l->OC);
  else kn_linear_backward(ctx, din, l->w.g, dbias, dout, in, l->w.v, N, l->IC, l->OC);
}

void md_norm_plan(md_plan *p, md_norm *n, int B, int HW) {
  n->rows = B;
  n->HW = HW;
  n->fuse_silu = 0;
  size_t stats = n->G > 0 ? (size_t)B * n->G : (size_t)B;
  md_plan_tensor(p, &n->out, (size_t)B * n->C * HW);
  md_plan_floats(p, &n->mean, stats);
  md_plan_floats(p, &n->rstd, stats);
}

void md_norm_forward(kn_ctx *ctx, md_norm *n, const void *in) {
  if (n->out.dtype == KN_BF16 && n->G > 0)
    kn_group_norm_forward_bf16(ctx, n->out.v, n->mean, n->rstd, in, n->gamma.v, n->beta.v, n->rows,
                               n->C, n->HW, n->G, n->eps, n->fuse_silu);
  else if (n->out.dtype == KN_BF16)
    kn_layer_norm_forward_bf16(ctx, n->out.v, n->mean, n->rstd, in, n->gamma.v, n->beta.v, n->rows,
                               n->C, n->eps);
  else if (n->G > 0)
    kn_group_norm_forward(ctx, n->out.v, n->mean, n->rstd, in, n->gamma.v, n->beta.v, n->rows, n->C,
                          n->HW, n->G, n->eps);
  else
    kn_layer_norm_forward(ctx, n->out.v, n->mean, n->rstd, in, n->gamma.v, n->beta.v, n->rows, n->C,
                          n->eps);
}

void md_norm_backward(kn_ctx *ctx, md_norm *n, void *din, const void *in) {
  if (n->out.dtype == KN_BF16 && n->G > 0)
    kn_group_norm_backward_bf16(ctx, din, n->gamma.g, n->beta.g, n->out.g, in, n->mean, n->rstd,
                                n->gamma.v, n->beta.v, n->rows, n->C, n->HW, n->G, n->fuse_silu);
  else if (n->out.dtype == KN_BF16)
    kn_layer_norm_backward_bf16(ctx, din, n->gamma.g, n->beta.g, n->out.g, in, n->mean, n->rstd,
                                n->gamma.v, n->rows, n->C);
  else if (n->G > 0)
    kn_group_norm_backward(ctx, din, n->gamma.g, n->beta.g, n->out.g, in, n->mean, n->rstd,
                           n->gamma.v, n->rows, n->C, n->HW, n->G);
  else
    kn_layer_norm_backward(ctx, din, n->gamma.g, n->beta.g, n->out.g, in, n->mean, n->rstd,
                           n->gamma.v, n->rows, n->C);
}

void md_norm_silu_plan(md_plan *p, md_norm *n, md_tensor *act, int B, int HW) {
  md_norm_plan(p, n, B, HW);
  n->fuse_silu = p->dtype == KN_BF16 && n->G > 0;
  if (!n->fuse_silu) md_plan_tensor(p, act, (size_t)B * n->C * HW);
}

md_tensor *md_norm_silu_output(md_norm *n, md_tensor *act) { return n->fuse_silu ? &n->out : act; }

md_tensor *md_norm_silu_forward(kn_ctx *ctx, md_norm *n, md_tensor *act, const void *in) {
  md_norm_forward(ctx, n, in);
  if (n->fuse_silu) return &n->out;
  md_silu_forward(ctx, act->dtype, act->v, n->out.v, (size_t)n->rows * n->C * n->HW);
  return act;
}

void md_norm_silu_backward(kn_ctx *ctx, md_norm *n, md_tensor *act, void *din, const void *in) {
  if (!n->fuse_silu)
    md_silu_backward(ctx, act->dtype, n->out.g, act->g, n->out.v, (size_t)n->rows * n->C * n->HW);
  md_norm_backward(ctx, n, din, in);
}

/* ------------------------------------------------- dtype-switching ops */

void md_silu_forward(kn_ctx *ctx, kn_dtype dtype, void *out, const void *in, size_t n) {
  if (dtype == KN_BF16) kn_activation_forward_bf16(ctx, KN_ACT_SILU, out, in, n);
  else kn_activation_forward(ctx, KN_ACT_SILU, out, in, n);
}

void md_silu_backward(kn_ctx *ctx, kn_dtype dtype, void *din, const void *dout, const void *in,
                      size_t n) {
  if (dtype == KN_BF16) kn_activation_backward_bf16(ctx, KN_ACT_SILU, din, dout, in, n);
  else kn_activation_backward(ctx, KN_ACT_SILU, din, dout, in, n);
}

void md_add_forward(kn_ctx *ctx, kn_dtype dtype, void *out, const void *a, const void *b, size_t n) {
  if (dtype == KN_BF16) kn_add_forward_bf16(ctx, out, a, b, n);
  else kn_add_forward(ctx, out, a, b, n);
}

void md_add_backward(kn_ctx *ctx, kn_dtype dtype, void *da, void *db, const void *dout, size_t n) {
  if (dtype == KN_BF16) kn_add_backward_bf16(ctx, da, db, dout, n);
  else kn_add_backward(ctx, da, db, dout, n);
}

void md_transpose_forward(kn_ctx *ctx, kn_dtype dtype, void *out, const void *in, int B, int C,
                          int A) {
  if (dtype == KN_BF16) kn_transpose_forward_bf16(ctx, out, in, B, C, A);
  else kn_transpose_forward(ctx, out, in, B, C, A);
}

void md_transpose_backward(kn_ctx *ctx, kn_dtype dtype, void *din, const void *dout, int B, int C,
                           int A) {
  if (dtype == KN_BF16) kn_transpose_backward_bf16(ctx, din, dout, B, C, A);
  else kn_transpose_backward(ctx, din, dout, B, C, A);
}

void md_concat_forward(kn_ctx *ctx, kn_dtype dtype, void *out, const void *a, const void *b,
                       int outer, int Ca, int Cb, int inner) {
  if (dtype == KN_BF16) kn_concat_forward_bf16(ctx, out, a, b, outer, Ca, Cb, inner);
  else kn_concat_forward(ctx, out, a, b, outer, Ca, Cb, inner);
}

void md_concat_backward(kn_ctx *ctx, kn_dtype dtype, void *da, void *db, const void *dout,
                        int outer, int Ca, int Cb, int inner) {
  if (dtype == KN_BF16) kn_concat_backward_bf16(ctx, da, db, dout, outer, Ca, Cb, inner);
  else kn_concat_backward(ctx, da, db, dout, outer, Ca, Cb, inner);
}

void md_upsample2x_forward(kn_ctx *ctx, kn_dtype dtype, void *out, const void *in, int B, int C,
                           int H, int W) {
  if (dtype == KN_BF16) kn_upsample2x_forward_bf16(ctx, out, in, B, C, H, W);
  else kn_upsample2x_forward(ctx, out, in, B, C, H, W);
}

void md_upsample2x_backward(kn_ctx *ctx, kn_dtype dtype, void *din, const void *dout, int B, int C,
                            int H, int W) {
  if (dtype == KN_BF16) kn_upsample2x_backward_bf16(ctx, din, dout, B, C, H, W);
  else kn_upsample2x_backward(ctx, din, dout, B, C, H, W);
}

static void add_channel_forward(kn_ctx *ctx, kn_dtype dtype, void *x, const void *v, int B, int C, int HW) {
  if (dtype == KN_BF16) kn_add_channel_forward_bf16(ctx, x, v, B, C, HW);
  else kn_add_channel_forward(ctx, x, v, B, C, HW);
}

static void add_channel_backward(kn_ctx *ctx, kn_dtype dtype, void *dv, const void *dx, int B, int C,
                                 int HW) {
  if (dtype == KN_BF16) kn_add_channel_backward_bf16(ctx, dv, dx, B, C, HW);
  else kn_add_channel_backward(ctx, dv, dx, B, C, HW);
}

static void geglu_forward(kn_ctx *ctx, kn_dtype dtype, void *out, const void *in, int N, int D) {
  if (dtype == KN_BF16) kn_geglu_forward_bf16(ctx, out, in, N, D);
  else kn_geglu_forward(ctx, out, in, N, D);
}

static void geglu_backward(kn_ctx *ctx, kn_dtype dtype, void *din, const void *dout, const void *in,
                           int N, int D) {
  if (dtype == KN_BF16) kn_geglu_backward_bf16(ctx, din, dout, in, N, D);
  else kn_geglu_backward(ctx, din, dout, in, N, D);
}

/* --------------------------------------------------------------- resnet */

void md_resnet_init(md_resnet *r, md_params *t, const char *prefix, int Cin, int Cout, int temb_dim,
                    int groups, float eps) {
  memset(r, 0, sizeof *r);
  r->Cin = Cin;
  r->Cout = Cout;
  r->temb_dim = temb_dim;
  r->has_shortcut = Cin != Cout;
  md_norm_init(&r->norm1, t, prefix, "norm1", Cin, groups, eps);
  md_conv_init(&r->conv1, t, prefix, "conv1", Cin, Cout, 3, 1, 1, 1);
  if (temb_dim > 0) md_linear_init(&r->temb_proj, t, prefix, "time_emb_proj", temb_dim, Cout, 1);
  md_norm_init(&r->norm2, t, prefix, "norm2", Cout, groups, eps);
  md_conv_init(&r->conv2, t, prefix, "conv2", Cout, Cout, 3, 1, 1, 1);
  if (r->has_shortcut) md_conv_init(&r->shortcut, t, prefix, "conv_shortcut", Cin, Cout, 1, 1, 0, 1);
}

void md_resnet_plan(md_plan *p, md_resnet *r, int B, int H, int W) {
  size_t HW = (size_t)H * W;
  r->B = B;
  r->H = H;
  r->W = W;
  md_plan_tensor(p, &r->out, (size_t)B * r->Cout * HW);
  md_plan_group_begin(p, &r->grads);
  md_norm_silu_plan(p, &r->norm1, &r->a1, B, (int)HW);
  md_plan_tensor(p, &r->h1, (size_t)B * r->Cout * HW);
  if (r->temb_dim > 0) md_plan_tensor(p, &r->tproj, (size_t)B * r->Cout);
  md_norm_silu_plan(p, &r->norm2, &r->a2, B, (int)HW);
  md_plan_tensor(p, &r->h2, (size_t)B * r->Cout * HW);
  if (r->has_shortcut) md_plan_tensor(p, &r->sc, (size_t)B * r->Cout * HW);
  md_plan_group_end(p);
  md_conv_plan(p, &r->conv1, H, W);
  md_conv_plan(p, &r->conv2, H, W);
  if (r->has_shortcut) md_conv_plan(p, &r->shortcut, H, W);
}

void md_resnet_forward(kn_ctx *ctx, md_resnet *r, const void *in, const void *temb_act) {
  int B = r->B, H = r->H, W = r->W, HW = H * W;
  size_t n_out = (size_t)B * r->Cout * HW;
  kn_dtype dt = r->out.dtype;
  md_tensor *a1 = md_norm_silu_forward(ctx, &r->norm1, &r->a1, in);
  md_conv_forward(ctx, &r->conv1, r->h1.v, a1->v, B, H, W);
  if (r->temb_dim > 0) {
    md_linear_forward(ctx, &r->temb_proj, r->tproj.v, temb_act, B);
    add_channel_forward(ctx, dt, r->h1.v, r->tproj.v, B, r->Cout, HW);
  }
  md_tensor *a2 = md_norm_silu_forward(ctx, &r->norm2, &r->a2, r->h1.v);
  md_conv_forward(ctx, &r->conv2, r->h2.v, a2->v, B, H, W);
  if (r->has_shortcut) {
    md_conv_forward(ctx, &r->shortcut, r->sc.v, in, B, H, W);
    md_add_forward(ctx, dt, r->out.v, r->h2.v, r->sc.v, n_out);
  } else {
    md_add_forward(ctx, dt, r->out.v, r->h2.v, in, n_out);
  }
}

void md_resnet_backward(kn_ctx *ctx, md_resnet *r, void *din, const void *in, void *dtemb_act,
                        const void *temb_act) {
  int B = r->B, H = r->H, W = r->W, HW = H * W;
  size_t n_out = (size_t)B * r->Cout * HW;
  kn_dtype dt = r->out.dtype;
  if (r->grads.recompute) md_resnet_forward(ctx, r, in, temb_act); /* checkpointing */
  md_grad_group_zero(ctx, &r->grads);
  if (r->has_shortcut) {
    md_add_backward(ctx, dt, r->h2.g, r->sc.g, r->out.g, n_out);
    md_conv_backward(ctx, &r->shortcut, din, r->sc.g, in, B, H, W);
  } else {
    md_add_backward(ctx, dt, r->h2.g, din, r->out.g, n_out);
  }
  md_tensor *a2 = md_norm_silu_output(&r->norm2, &r->a2);
  md_conv_backward(ctx, &r->conv2, a2->g, r->h2.g, a2->v, B, H, W);
  md_norm_silu_backward(ctx, &r->norm2, &r->a2, r->h1.g, r->h1.v);
  if (r->temb_dim > 0) {
    add_channel_backward(ctx, dt, r->tproj.g, r->h1.g, B, r->Cout, HW);
    md_linear_backward(ctx, &r->temb_proj, dtemb_act, r->tproj.g, temb_act, B);
  }
  md_tensor *a1 = md_norm_silu_output(&r->norm1, &r->a1);
  md_conv_backward(ctx, &r->conv1, a1->g, r->h1.g, a1->v, B, H, W);
  md_norm_silu_backward(ctx, &r->norm1, &r->a1, din, in);
}

/* ------------------------------------------------------------ attention */

void md_attention_init(md_attention *a, md_params *t, const char *prefix, const char *q_name,
                       const char *k_name, const char *v_name, const char *o_name, int query_dim,
                       int kv_dim, int heads, int dim_head, int qkv_bias) {
  memset(a, 0, sizeof *a);
  a->heads = heads;
  a->dim_head = dim_head;
  a->inner = heads * dim_head;
  a->query_dim = query_dim;
  a->kv_dim = kv_dim;
  md_linear_init(&a->q, t, prefix, q_name, query_dim, a->inner, qkv_bias);
  md_linear_init(&a->k, t, prefix, k_name, kv_dim, a->inner, qkv_bias);
  md_linear_init(&a->v, t, prefix, v_name, kv_dim, a->inner, qkv_bias);
  md_linear_init(&a->o, t, prefix, o_name, a->inner, query_dim, 1);
}

void md_attention_plan(md_plan *p, md_attention *a, int B, int N, int M) {
  a->B = B;
  a->N = N;
  a->M = M;
  md_plan_tensor(p, &a->qo, (size_t)B * N * a->inner);
  md_plan_tensor(p, &a->ko, (size_t)B * M * a->inner);
  md_plan_tensor(p, &a->vo, (size_t)B * M * a->inner);
  md_plan_tensor(p, &a->ao, (size_t)B * N * a->inner);
  md_plan_floats(p, &a->lse, (size_t)B * a->heads * N);
  md_plan_tensor(p, &a->out, (size_t)B * N * a->query_dim);
  md_plan_scratch(p, kn_attention_scratch_bytes(p->threads, N, M));
}

static float attention_scale(const md_attention *a) { return 1.0f / sqrtf((float)a->dim_head); }

void md_attention_forward(kn_ctx *ctx, md_attention *a, const void *x, const void *c) {
  int B = a->B;
  md_linear_forward(ctx, &a->q, a->qo.v, x, B * a->N);
  md_linear_forward(ctx, &a->k, a->ko.v, c, B * a->M);
  md_linear_forward(ctx, &a->v, a->vo.v, c, B * a->M);
  if (a->out.dtype == KN_BF16)
    kn_attention_forward_bf16(ctx, a->ao.v, a->lse, a->qo.v, a->ko.v, a->vo.v, B, a->heads, a->N, a->M,
                              a->dim_head, attention_scale(a), a->causal);
  else
    kn_attention_forward(ctx, a->ao.v, a->lse, a->qo.v, a->ko.v, a->vo.v, B, a->heads, a->N, a->M,
                         a->dim_head, attention_scale(a), a->causal);
  md_linear_forward(ctx, &a->o, a->out.v, a->ao.v, B * a->N);
}

void md_attention_backward(kn_ctx *ctx, md_attention *a, void *dx, void *dc, const void *x,
                           const void *c) {
  int B = a->B;
  md_linear_backward(ctx, &a->o, a->ao.g, a->out.g, a->ao.v, B * a->N);
  if (a->out.dtype == KN_BF16)
    kn_attention_backward_bf16(ctx, a->qo.g, a->ko.g, a->vo.g, a->ao.g, a->qo.v, a->ko.v, a->vo.v,
                               a->ao.v, a->lse, B, a->heads, a->N, a->M, a->dim_head,
                               attention_scale(a), a->causal);
  else
    kn_attention_backward(ctx, a->qo.g, a->ko.g, a->vo.g, a->ao.g, a->qo.v, a->ko.v, a->vo.v, a->ao.v,
                          a->lse, B, a->heads, a->N, a->M, a->dim_head, attention_scale(a), a->causal);
  md_linear_backward(ctx, &a->q, dx, a->qo.g, x, B * a->N);
  md_linear_backward(ctx, &a->k, dc, a->ko.g, c, B * a->M);
  md_linear_backward(ctx, &a->v, dc, a->vo.g, c, B * a->M);
}

/* ---------------------------------------------------------- transformer */

static void tblock_init(md_tblock *b, md_params *t, const char *prefix, int dim, int heads,
                        int dim_head, int cross_dim) {
  memset(b, 0, sizeof *b);
  b->dim = dim;
  b->ff_inner = 4 * dim;
  md_norm_init(&b->norm1, t, prefix, "norm1", dim, 0, 1e-5f);
  md_attention_init(&b->attn1, t, prefix, "attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0",
                    dim, dim, heads, dim_head, 0);
  md_norm_init(&b->norm2, t, prefix, "norm2", dim, 0, 1e-5f);
  md_attention_init(&b->attn2, t, prefix, "attn2.to_q", "attn2.to_k", "attn2.to_v", "attn2.to_out.0",
                    dim, cross_dim, heads, dim_head, 0);
  md_norm_init(&b->norm3, t, prefix, "norm3", dim, 0, 1e-5f);
  md_linear_init(&b->ff_in, t, prefix, "ff.net.0.proj", dim, 2 * b->ff_inner, 1);
  md_linear_init(&b->ff_out, t, prefix, "ff.net.2", b->ff_inner, dim, 1);
}

static void tblock_plan(md_plan *p, md_tblock *b, int B, int N, int M) {
  size_t rows = (size_t)B * N;
  b->N = N;
  md_plan_tensor(p, &b->out, rows * b->dim);
  md_plan_group_begin(p, &b->grads);
  md_norm_plan(p, &b->norm1, (int)rows, 1);
  md_attention_plan(p, &b->attn1, B, N, N);
  md_plan_tensor(p, &b->x1, rows * b->dim);
  md_norm_plan(p, &b->norm2, (int)rows, 1);
  md_attention_plan(p, &b->attn2, B, N, M);
  md_plan_tensor(p, &b->x2, rows * b->dim);
  md_norm_plan(p, &b->norm3, (int)rows, 1);
  md_plan_tensor(p, &b->ffp, rows * 2 * b->ff_inner);
  md_plan_tensor(p, &b->ffg, rows * b->ff_inner);
  md_plan_tensor(p, &b->ffo, rows * b->dim);
  md_plan_group_end(p);
}

static void tblock_forward(kn_ctx *ctx, md_tblock *b, const void *x, const void *enc) {
  int rows = b->attn1.B * b->N;
  size_t n = (size_t)rows * b->dim;
  kn_dtype dt = b->out.dtype;
  md_norm_forward(ctx, &b->norm1, x);
  md_attention_forward(ctx, &b->attn1, b->norm1.out.v, b->norm1.out.v);
  md_add_forward(ctx, dt, b->x1.v, b->attn1.out.v, x, n);
  md_norm_forward(ctx, &b->norm2, b->x1.v);
  md_attention_forward(ctx, &b->attn2, b->norm2.out.v, enc);
  md_add_forward(ctx, dt, b->x2.v, b->attn2.out.v, b->x1.v, n);
  md_norm_forward(ctx, &b->norm3, b->x2.v);
  md_linear_forward(ctx, &b->ff_in, b->ffp.v, b->norm3.out.v, rows);
  geglu_forward(ctx, dt, b->ffg.v, b->ffp.v, rows, b->ff_inner);
  md_linear_forward(ctx, &b->ff_out, b->ffo.v, b->ffg.v, rows);
  md_add_forward(ctx, dt, b->out.v, b->ffo.v, b->x2.v, n);
}

static void tblock_backward(kn_ctx *ctx, md_tblock *b, void *dx, const void *x, void *denc,
                            const void *enc) {
  int rows = b->attn1.B * b->N;
  size_t n = (size_t)rows * b->dim;
  kn_dtype dt = b->out.dtype;
  if (b->grads.recompute) tblock_forward(ctx, b, x, enc); /* checkpointing */
  md_grad_group_zero(ctx, &b->grads);
  md_add_backward(ctx, dt, b->ffo.g, b->x2.g, b->out.g, n);
  md_linear_backward(ctx, &b->ff_out, b->ffg.g, b->ffo.g, b->ffg.v, rows);
  geglu_backward(ctx, dt, b->ffp.g, b->ffg.g, b->ffp.v, rows, b->ff_inner);
  md_linear_backward(ctx, &b->ff_in, b->norm3.out.g, b->ffp.g, b->norm3.out.v, rows);
  md_norm_backward(ctx, &b->norm3, b->x2.g, b->x2.v);
  md_add_backward(ctx, dt, b->attn2.out.g, b->x1.g, b->x2.g, n);
  md_attention_backward(ctx, &b->attn2, b->norm2.out.g, denc, b->norm2.out.v, enc);
  md_norm_backward(ctx, &b->norm2, b->x1.g, b->x1.v);
  md_add_backward(ctx, dt, b->attn1.out.g, dx, b->x1.g, n);
  md_attention_backward(ctx, &b->attn1, b->norm1.out.g, b->norm1.out.g, b->norm1.out.v,
                        b->norm1.out.v);
  md_norm_backward(ctx, &b->norm1, dx, x);
}

int md_transformer_init(md_transformer *tr, md_params *t, const char *prefix, int C, int heads,
                        int n_blocks, int cross_dim, int groups, int linear_proj, dpo_error *err) {
  memset(tr, 0, sizeof *tr);
  if (heads <= 0 || C % heads != 0)
    return dpo_fail(err, DPO_ERR_DATA, "%s: %d channels do not split into %d attention heads", prefix,
                    C, heads);
  tr->C = C;
  tr->inner = C;
  tr->n_blocks = n_blocks;
  tr->linear_proj = linear_proj;
  md_norm_init(&tr->norm, t, prefix, "norm", C, groups, 1e-6f);
  if (linear_proj) md_linear_init(&tr->proj_in_lin, t, prefix, "proj_in", C, C, 1);
  else md_conv_init(&tr->proj_in_conv, t, prefix, "proj_in", C, C, 1, 1, 0, 1);
  tr->blocks = calloc((size_t)n_blocks, sizeof *tr->blocks);
  if (!tr->blocks) return dpo_fail(err, DPO_ERR_DATA, "out of memory");
  for (int i = 0; i < n_blocks; i++) {
    char name[MD_NAME_MAX];
    snprintf(name, sizeof name, "%s.transformer_blocks.%d", prefix, i);
    tblock_init(&tr->blocks[i], t, name, C, heads, C / heads, cross_dim);
  }
  if (linear_proj) md_linear_init(&tr->proj_out_lin, t, prefix, "proj_out", C, C, 1);
  else md_conv_init(&tr->proj_out_conv, t, prefix, "proj_out", C, C, 1, 1, 0, 1);
  return DPO_OK;
}

void md_transformer_free(md_transformer *tr) {
  free(tr->blocks);
  tr->blocks = NULL;
}

void md_transformer_plan(md_plan *p, md_transformer *tr, int B, int H, int W, int M) {
  size_t n = (size_t)B * tr->C * H * W;
  tr->B = B;
  tr->H = H;
  tr->W = W;
  tr->M = M;
  md_norm_plan(p, &tr->norm, B, H * W);
  md_plan_tensor(p, &tr->pin, n);
  md_plan_tensor(p, &tr->tok, n);
  for (int i = 0; i < tr->n_blocks; i++) tblock_plan(p, &tr->blocks[i], B, H * W, M);
  md_plan_tensor(p, &tr->pre_out, n);
  md_plan_tensor(p, &tr->pout, n);
  md_plan_tensor(p, &tr->out, n);
  if (!tr->linear_proj) {
    md_conv_plan(p, &tr->proj_in_conv, H, W);
    md_conv_plan(p, &tr->proj_out_conv, H, W);
  }
}

/* The tokens entering the first block: tok (conv projection) or pin (linear). */
static md_tensor *transformer_tokens(md_transformer *tr) {
  return tr->linear_proj ? &tr->pin : &tr->tok;
}

void md_transformer_forward(kn_ctx *ctx, md_transformer *tr, const void *in, const void *enc) {
  int B = tr->B, HW = tr->H * tr->W, C = tr->C;
  kn_dtype dt = tr->out.dtype;
  md_norm_forward(ctx, &tr->norm, in);
  if (tr->linear_proj) {
    md_transpose_forward(ctx, dt, tr->tok.v, tr->norm.out.v, B, C, HW);
    md_linear_forward(ctx, &tr->proj_in_lin, tr->pin.v, tr->tok.v, B * HW);
  } else {
    md_conv_forward(ctx, &tr->proj_in_conv, tr->pin.v, tr->norm.out.v, B, tr->H, tr->W);
    md_transpose_forward(ctx, dt, tr->tok.v, tr->pin.v, B, C, HW);
  }
  const void *x = transformer_tokens(tr)->v;
  for (int i = 0; i < tr->n_blocks; i++) {
    tblock_forward(ctx, &tr->blocks[i], x, enc);
    x = tr->blocks[i].out.v;
  }
  if (tr->linear_proj) {
    md_linear_forward(ctx, &tr->proj_out_lin, tr->pre_out.v, x, B * HW);
    md_transpose_forward(ctx, dt, tr->pout.v, tr->pre_out.v, B, HW, C);
  } else {
    md_transpose_forward(ctx, dt, tr->pre_out.v, x, B, HW, C);
    md_conv_forward(ctx, &tr->proj_out_conv, tr->pout.v, tr->pre_out.v, B, tr->H, tr->W);
  }
  md_add_forward(ctx, dt, tr->out.v, tr->pout.v, in, (size_t)B * C * HW);
}

void md_transformer_backward(kn_ctx *ctx, md_transformer *tr, void *din, const void *in,
                             void *denc, const void *enc) {
  int B = tr->B, HW = tr->H * tr->W, C = tr->C;
  kn_dtype dt = tr->out.dtype;
  md_tblock *last = &tr->blocks[tr->n_blocks - 1];
  md_add_backward(ctx, dt, tr->pout.g, din, tr->out.g, (size_t)B * C * HW);
  if (tr->linear_proj) {
    md_transpose_backward(ctx, dt, tr->pre_out.g, tr->pout.g, B, HW, C);
    md_linear_backward(ctx, &tr->proj_out_lin, last->out.g, tr->pre_out.g, last->out.v, B * HW);
  } else {
    md_conv_backward(ctx, &tr->proj_out_conv, tr->pre_out.g, tr->pout.g, tr->pre_out.v, B, tr->H,
                     tr->W);
    md_transpose_backward(ctx, dt, last->out.g, tr->pre_out.g, B, HW, C);
  }
  md_tensor *tokens = transformer_tokens(tr);
  for (int i = tr->n_blocks - 1; i >= 0; i--) {
    md_tensor *x = i > 0 ? &tr->blocks[i - 1].out : tokens;
    tblock_backward(ctx, &tr->blocks[i], x->g, x->v, denc, enc);
  }
  if (tr->linear_proj) {
    md_linear_backward(ctx, &tr->proj_in_lin, tr->tok.g, tr->pin.g, tr->tok.v, B * HW);
    md_transpose_backward(ctx, dt, tr->norm.out.g, tr->tok.g, B, C, HW);
  } else {
    md_transpose_backward(ctx, dt, tr->pin.g, tr->tok.g, B, C, HW);
    md_conv_backward(ctx, &tr->proj_in_conv, tr->norm.out.g, tr->pin.g, tr->norm.out.v, B, tr->H,
                     tr->W);
  }
  md_norm_backward(ctx, &tr->norm, din, in);
}

/* ------------------------------------------------------- config checks */

int md_json_equals_text(const json_t *value, const char *text) {
  json_t *want = json_loads(text, JSON_DECODE_ANY, NULL);
  if (!want) return 0;
  int same;
  if (json_is_number(value) && json_is_number(want))
    same = json_number_value(value) == json_number_value(want);
  else
    same = json_equal((json_t *)value, want);
  json_decref(want);
  return same;
}

int md_json_int_or_list(const json_t *cfg, const char *key, int n, int def, int *out,
                        const char *where, dpo_error *err) {
  const json_t *v = json_object_get(cfg, key);
  if (!v || json_is_null(v)) {
    for (int i = 0; i < n; i++) out[i] = def;
    return DPO_OK;
  }
  if (json_is_integer(v)) {
    for (int i = 0; i < n; i++) out[i] = (int)json_integer_value(v);
  } else if (json_is_array(v) && (int)json_array_size(v) == n) {
    for (int i = 0; i < n; i++) {
      const json_t *e = json_array_get(v, (size_t)i);
      if (!json_is_integer(e))
        return dpo_fail(err, DPO_ERR_DATA, "%s: \"%s\"[%d] must be an integer", where, key, i);
      out[i] = (int)json_integer_value(e);
    }
  } else {
    return dpo_fail(err, DPO_ERR_DATA, "%s: \"%s\" must be an integer or a list of %d integers", where,
                    key, n);
  }
  for (int i = 0; i < n; i++)
    if (out[i] <= 0 || out[i] > 65536)
      return dpo_fail(err, DPO_ERR_DATA, "%s: \"%s\" must be positive (and at most 65536), got %d",
                      where, key, out[i]);
  return DPO_OK;
}
