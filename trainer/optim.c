/* AdamW and Adafactor over flat float32 parameters, gradient-norm clipping,
 * and the optimizer state as safetensors.
 *
 * Both follow their PyTorch references operation by operation (the order of
 * float32 operations is the reference's, scalars are computed in double as
 * Python does), so that a few steps agree with torch / transformers to float
 * rounding. The semantics are stated in trainer.h. */
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "trainer/trainer.h"

dpo_optim_param dpo_optim_param_of(const dpo_param *p, const char *name) {
  dpo_optim_param q;
  memset(&q, 0, sizeof q);
  q.name = name;
  q.ndim = p->ndim;
  for (int d = 0; d < p->ndim && d < DPO_ST_MAX_DIMS; d++) q.shape[d] = p->shape[d];
  q.data = p->data;
  q.grad = p->grad;
  q.data_bf16 = p->data_bf16;
  return q;
}

int64_t dpo_optim_param_numel(const dpo_optim_param *p) {
  int64_t n = 1;
  for (int d = 0; d < p->ndim; d++) n *= p->shape[d];
  return n;
}

void dpo_optim_config_default(dpo_optim_config *cfg, dpo_optim_kind kind) {
  memset(cfg, 0, sizeof *cfg);
  cfg->kind = kind;
  cfg->beta1 = 0.9;
  cfg->beta2 = 0.999;
  cfg->eps = 1e-8;
  cfg->eps1 = 1e-30;
  cfg->eps2 = 1e-3;
  cfg->clip_threshold = 1.0;
  cfg->decay_rate = -0.8;
  cfg->adafactor_beta1 = 0.0;
  /* torch.optim.AdamW's default weight decay; transformers' Adafactor has none. */
  cfg->weight_decay = kind == DPO_OPTIM_ADAMW ? 1e-2 : 0.0;
}

const char *dpo_optim_kind_name(dpo_optim_kind kind) {
  return kind == DPO_OPTIM_ADAFACTOR ? "adafactor" : "adamw";
}

int dpo_optim_kind_parse(const char *name, dpo_optim_kind *out, dpo_error *err) {
  if (strcmp(name, "adamw") == 0) *out = DPO_OPTIM_ADAMW;
  else if (strcmp(name, "adafactor") == 0) *out = DPO_OPTIM_ADAFACTOR;
  else return dpo_fail(err, DPO_ERR_USAGE, "unknown optimizer '%s' (expected adamw or adafactor)", name);
  return DPO_OK;
}

/* ------------------------------------------------------- factored shapes */

/* Adafactor factors a parameter of 2+ dims over its last two: `outer`
 * independent matrices of rows x cols. */
static int is_factored(const dpo_optimizer *opt, const dpo_optim_param *p) {
  return opt->cfg.kind == DPO_OPTIM_ADAFACTOR && p->ndim >= 2;
}

static void factored_dims(const dpo_optim_param *p, int64_t *outer, int64_t *rows, int64_t *cols) {
  *rows = p->shape[p->ndim - 2];
  *cols = p->shape[p->ndim - 1];
  *outer = dpo_optim_param_numel(p) / ((*rows) * (*cols) > 0 ? (*rows) * (*cols) : 1);
}

/* ------------------------------------------------------------------ init */

/* Zeroed moments: host memory, or the memory of the optimizer's context. */
static float *alloc_zeros(const dpo_optimizer *opt, int64_t n) {
  size_t count = (size_t)(n > 0 ? n : 1);
  if (opt->ctx) return kn_malloc(opt->ctx, count * sizeof(float));
  return calloc(count, sizeof(float));
}

static void free_moment(const dpo_optimizer *opt, float *p) {
  if (opt->ctx) kn_free(opt->backend, p);
  else free(p);
}

static int alloc_slot(dpo_optimizer *opt, int i) {
  const dpo_optim_param *p = &opt->params[i];
  dpo_optim_slot *s = &opt->slots[i];
  int64_t numel = dpo_optim_param_numel(p);
  if (opt->cfg.kind == DPO_OPTIM_ADAMW) {
    s->exp_avg = alloc_zeros(opt, numel);
    s->exp_avg_sq = alloc_zeros(opt, numel);
    return s->exp_avg && s->exp_avg_sq;
  }
  if (opt->cfg.adafactor_beta1 > 0) {
    s->exp_avg = alloc_zeros(opt, numel);
    if (!s->exp_avg) return 0;
  }
  if (is_factored(opt, p)) {
    int64_t outer, rows, cols;
    factored_dims(p, &outer, &rows, &cols);
    s->exp_avg_sq_row = alloc_zeros(opt, outer * rows);
    s->exp_avg_sq_col = alloc_zeros(opt, outer * cols);
    return s->exp_avg_sq_row && s->exp_avg_sq_col;
  }
  s->exp_avg_sq = alloc_zeros(opt, numel);
  return s->exp_avg_sq != NULL;
}

static int check_config(const dpo_optim_config *c, dpo_error *err) {
  if (c->kind == DPO_OPTIM_ADAMW) {
    if (!(c->beta1 >= 0 && c->beta1 < 1) || !(c->beta2 >= 0 && c->beta2 < 1))
      return dpo_fail(err, DPO_ERR_USAGE, "adamw: betas must be in [0, 1), got (%g, %g)", c->beta1, c->beta2);
    if (!(c->eps >= 0)) return dpo_fail(err, DPO_ERR_USAGE, "adamw: eps must be >= 0, got %g", c->eps);
  } else {
    if (!(c->adafactor_beta1 >= 0 && c->adafactor_beta1 < 1))
      return dpo_fail(err, DPO_ERR_USAGE, "adafactor: beta1 must be in [0, 1), got %g", c->adafactor_beta1);
    if (!(c->clip_threshold > 0))
      return dpo_fail(err, DPO_ERR_USAGE, "adafactor: clip threshold must be > 0, got %g", c->clip_threshold);
    if (!(c->decay_rate < 0))
      return dpo_fail(err, DPO_ERR_USAGE, "adafactor: decay rate must be < 0, got %g", c->decay_rate);
  }
  if (!(c->weight_decay >= 0))
    return dpo_fail(err, DPO_ERR_USAGE, "weight decay must be >= 0, got %g", c->weight_decay);
  return DPO_OK;
}

/* The kernels' table of the parameters (with AdamW's moments; Adafactor
 * updates per tensor and uses it for clipping only), on the context the
 * updates run on. */
static int make_table(dpo_optimizer *opt, dpo_error *err) {
  int n = opt->n_params, adamw = opt->cfg.kind == DPO_OPTIM_ADAMW;
  size_t *numel = malloc(sizeof *numel * (size_t)n);
  float **data = malloc(sizeof *data * (size_t)n), **grad = malloc(sizeof *grad * (size_t)n);
  float **m = malloc(sizeof *m * (size_t)n), **v = malloc(sizeof *v * (size_t)n);
  kn_bf16 **bf16 = malloc(sizeof *bf16 * (size_t)n);
  int rc = DPO_OK;
  if (!numel || !data || !grad || !m || !v || !bf16) {
    rc = dpo_fail(err, DPO_ERR_DATA, "optimizer: out of memory");
  } else {
    for (int i = 0; i < n; i++) {
      numel[i] = (size_t)dpo_optim_param_numel(&opt->params[i]);
      data[i] = opt->params[i].data;
      grad[i] = opt->params[i].grad;
      bf16[i] = opt->params[i].data_bf16;
      m[i] = opt->slots[i].exp_avg;
      v[i] = opt->slots[i].exp_avg_sq;
    }
    rc = kn_param_table_create(opt->ctx ? opt->ctx : &opt->host_ctx, n, numel, data, bf16, grad, adamw ? m : NULL,
                               adamw ? v : NULL, &opt->table, err);
  }
  free(numel);
  free(data);
  free(grad);
  free(m);
  free(v);
  free(bf16);
  return rc;
}

static int optim_init(dpo_optimizer *opt, const dpo_optim_config *cfg, const dpo_optim_param *params, int n,
                      kn_ctx *ctx, dpo_error *err) {
  memset(opt, 0, sizeof *opt);
  opt->ctx = ctx;
  opt->backend = ctx ? ctx->backend : KN_BACKEND_CPU;
  int rc = check_config(cfg, err);
  if (rc != DPO_OK) return rc;
  if (n < 1) return dpo_fail(err, DPO_ERR_USAGE, "optimizer: no parameters");
  for (int i = 0; i < n; i++) {
    const dpo_optim_param *p = &params[i];
    if (!p->name || !p->data || !p->grad || p->ndim < 1 || p->ndim > DPO_ST_MAX_DIMS)
      return dpo_fail(err, DPO_ERR_USAGE, "optimizer: parameter %d is incomplete (name, data, grad, 1..%d dims)",
                      i, DPO_ST_MAX_DIMS);
    for (int d = 0; d < p->ndim; d++)
      if (p->shape[d] < 1)
        return dpo_fail(err, DPO_ERR_USAGE, "optimizer: parameter %s has dimension %d of size %" PRId64, p->name,
                        d, p->shape[d]);
    for (int j = 0; j < i; j++)
      if (strcmp(params[j].name, p->name) == 0)
        return dpo_fail(err, DPO_ERR_USAGE, "optimizer: parameter name %s appears twice", p->name);
  }
  opt->cfg = *cfg;
  opt->n_params = n;
  opt->params = malloc(sizeof(dpo_optim_param) * (size_t)n);
  opt->slots = calloc((size_t)n, sizeof(dpo_optim_slot));
  if (!opt->params || !opt->slots) {
    dpo_optim_free(opt);
    return dpo_fail(err, DPO_ERR_DATA, "optimizer: out of memory");
  }
  memcpy(opt->params, params, sizeof(dpo_optim_param) * (size_t)n);
  if (!ctx) {
    /* Host memory: the updates run on a CPU context of our own (one thread:
     * the ops are elementwise or fixed-order reductions, so any count gives
     * the same bits). */
    rc = kn_ctx_init(&opt->host_ctx, 1, err);
    if (rc != DPO_OK) {
      dpo_optim_free(opt);
      return rc;
    }
    opt->host_ctx_ok = 1;
  }
  for (int i = 0; i < n; i++) {
    if (!alloc_slot(opt, i)) {
      dpo_optim_free(opt);
      return dpo_fail(err, DPO_ERR_DATA, "optimizer: out of memory for the state of %s", params[i].name);
    }
  }
  rc = make_table(opt, err);
  if (rc != DPO_OK) dpo_optim_free(opt);
  return rc;
}

int dpo_optim_init(dpo_optimizer *opt, const dpo_optim_config *cfg, const dpo_optim_param *params, int n,
                   dpo_error *err) {
  return optim_init(opt, cfg, params, n, NULL, err);
}

int dpo_optim_init_on(dpo_optimizer *opt, const dpo_optim_config *cfg, const dpo_optim_param *params, int n,
                      kn_ctx *ctx, dpo_error *err) {
  int rc = optim_init(opt, cfg, params, n, ctx, err);
  if (rc == DPO_OK) rc = kn_ctx_check(ctx, err);
  if (rc != DPO_OK) dpo_optim_free(opt);
  return rc;
}

void dpo_optim_free(dpo_optimizer *opt) {
  if (opt->slots) {
    for (int i = 0; i < opt->n_params; i++) {
      free_moment(opt, opt->slots[i].exp_avg);
      free_moment(opt, opt->slots[i].exp_avg_sq);
      free_moment(opt, opt->slots[i].exp_avg_sq_row);
      free_moment(opt, opt->slots[i].exp_avg_sq_col);
    }
  }
  kn_param_table_free(opt->table);
  free(opt->slots);
  free(opt->params);
  if (opt->host_ctx_ok) kn_ctx_free(&opt->host_ctx);
  memset(opt, 0, sizeof *opt);
}

/* ---------------------------------------------------------------- update */

/* The Adafactor update of one parameter through the kernels' op on ctx, in
 * its memory (asynchronous on a device). The CPU ops are torch's arithmetic
 * in torch's order (kernels/cpu/optim.c), the reference the CUDA ones
 * match. */
static void adafactor_update_on(dpo_optimizer *opt, kn_ctx *ctx, int i, double lr) {
  const dpo_optim_config *c = &opt->cfg;
  dpo_optim_param *p = &opt->params[i];
  dpo_optim_slot *s = &opt->slots[i];
  int64_t n = dpo_optim_param_numel(p);
  int64_t outer = 1, rows = 1, cols = n;
  if (is_factored(opt, p)) factored_dims(p, &outer, &rows, &cols);
  kn_adafactor_update(ctx, p->data, p->data_bf16, p->grad, s->exp_avg, s->exp_avg_sq, s->exp_avg_sq_row,
                      s->exp_avg_sq_col, outer, rows, cols, opt->step, lr, c->eps1, c->clip_threshold,
                      c->decay_rate, c->adafactor_beta1, c->weight_decay);
}

void dpo_optim_step(dpo_optimizer *opt, double lr) {
  opt->step++;
  kn_ctx *ctx = opt->ctx ? opt->ctx : &opt->host_ctx;
  const dpo_optim_config *c = &opt->cfg;
  if (c->kind == DPO_OPTIM_ADAMW) {
    /* Every parameter at once: kn_adamw_update's bits for each. */
    kn_multi_adamw_update(ctx, opt->table, opt->step, lr, c->beta1, c->beta2, c->eps, c->weight_decay);
    return;
  }
  for (int i = 0; i < opt->n_params; i++) adafactor_update_on(opt, ctx, i, lr);
}

/* --------------------------------------------------------------- clipping */

double dpo_clip_grad_norm(dpo_optim_param *params, int n, double max_norm) {
  double total = 0;
  for (int i = 0; i < n; i++) {
    int64_t numel = dpo_optim_param_numel(&params[i]);
    for (int64_t j = 0; j < numel; j++) total += (double)params[i].grad[j] * params[i].grad[j];
  }
  double norm = sqrt(total);
  if (max_norm > 0) {
    double coef = max_norm / (norm + 1e-6);
    if (coef < 1.0) {
      float c = (float)coef;
      for (int i = 0; i < n; i++) {
        int64_t numel = dpo_optim_param_numel(&params[i]);
        for (int64_t j = 0; j < numel; j++) params[i].grad[j] *= c;
      }
    }
  }
  return norm;
}

int dpo_optim_clip_grad_norm(dpo_optimizer *opt, double max_norm, float *sum_squares, float *out) {
  kn_ctx *ctx = opt->ctx ? opt->ctx : &opt->host_ctx;
  kn_multi_sum_squares(ctx, sum_squares, opt->table);
  kn_clip_coefficient(ctx, out, sum_squares, opt->n_params, max_norm);
  if (max_norm > 0) kn_multi_scale_by(ctx, opt->table, out + 1);
  return opt->n_params;
}

/* ------------------------------------------------------------ save / load */

typedef struct {
  const char *suffix;
  float *data;
  int ndim;
  int64_t shape[DPO_ST_MAX_DIMS];
} moment;

/* The moments of one parameter with their shapes; returns how many. */
static int slot_moments(const dpo_optimizer *opt, int i, moment out[4]) {
  const dpo_optim_param *p = &opt->params[i];
  const dpo_optim_slot *s = &opt->slots[i];
  int k = 0;
  if (s->exp_avg) {
    out[k] = (moment){".exp_avg", s->exp_avg, p->ndim, {0}};
    memcpy(out[k].shape, p->shape, sizeof p->shape);
    k++;
  }
  if (s->exp_avg_sq) {
    out[k] = (moment){".exp_avg_sq", s->exp_avg_sq, p->ndim, {0}};
    memcpy(out[k].shape, p->shape, sizeof p->shape);
    k++;
  }
  if (s->exp_avg_sq_row) {
    /* As transformers stores them: row shape[:-1], col shape[:-2] + shape[-1:]. */
    out[k] = (moment){".exp_avg_sq_row", s->exp_avg_sq_row, p->ndim - 1, {0}};
    memcpy(out[k].shape, p->shape, sizeof(int64_t) * (size_t)(p->ndim - 1));
    k++;
    out[k] = (moment){".exp_avg_sq_col", s->exp_avg_sq_col, p->ndim - 1, {0}};
    memcpy(out[k].shape, p->shape, sizeof(int64_t) * (size_t)(p->ndim - 2));
    out[k].shape[p->ndim - 2] = p->shape[p->ndim - 1];
    k++;
  }
  return k;
}

static int add_config_meta(dpo_st_writer *w, const dpo_optimizer *opt, dpo_error *err) {
  char buf[64];
  const dpo_optim_config *c = &opt->cfg;
  int rc = dpo_st_writer_meta(w, "optimizer", dpo_optim_kind_name(c->kind), err);
  snprintf(buf, sizeof buf, "%" PRId64, opt->step);
  if (rc == DPO_OK) rc = dpo_st_writer_meta(w, "step", buf, err);
  snprintf(buf, sizeof buf, "%.17g", c->weight_decay);
  if (rc == DPO_OK) rc = dpo_st_writer_meta(w, "weight_decay", buf, err);
  if (c->kind == DPO_OPTIM_ADAMW) {
    snprintf(buf, sizeof buf, "%.17g,%.17g", c->beta1, c->beta2);
    if (rc == DPO_OK) rc = dpo_st_writer_meta(w, "betas", buf, err);
    snprintf(buf, sizeof buf, "%.17g", c->eps);
    if (rc == DPO_OK) rc = dpo_st_writer_meta(w, "eps", buf, err);
  } else {
    snprintf(buf, sizeof buf, "%.17g,%.17g", c->eps1, c->eps2);
    if (rc == DPO_OK) rc = dpo_st_writer_meta(w, "eps", buf, err);
    snprintf(buf, sizeof buf, "%.17g", c->clip_threshold);
    if (rc == DPO_OK) rc = dpo_st_writer_meta(w, "clip_threshold", buf, err);
    snprintf(buf, sizeof buf, "%.17g", c->decay_rate);
    if (rc == DPO_OK) rc = dpo_st_writer_meta(w, "decay_rate", buf, err);
    snprintf(buf, sizeof buf, "%.17g", c->adafactor_beta1);
    if (rc == DPO_OK) rc = dpo_st_writer_meta(w, "beta1", buf, err);
  }
  return rc;
}

static int64_t moment_numel(const moment *m) {
  int64_t n = 1;
  for (int d = 0; d < m->ndim; d++) n *= m->shape[d];
  return n;
}

/* Floats of every moment together (the host copy a device state is saved from). */
static size_t moments_total(const dpo_optimizer *opt) {
  size_t total = 0;
  for (int i = 0; i < opt->n_params; i++) {
    moment m[4];
    int k = slot_moments(opt, i, m);
    for (int j = 0; j < k; j++) total += (size_t)moment_numel(&m[j]);
  }
  return total;
}

int dpo_optim_save(const dpo_optimizer *opt, const char *path, dpo_error *err) {
  /* A device optimizer's moments are downloaded into one host block first:
   * the writer borrows the data until it writes. */
  float *host = NULL;
  size_t at = 0;
  if (opt->ctx) {
    size_t total = moments_total(opt);
    host = malloc((total ? total : 1) * sizeof(float));
    if (!host) return dpo_fail(err, DPO_ERR_DATA, "%s: out of memory for a host copy of %zu floats of optimizer state",
                               path, total);
  }
  dpo_st_writer w;
  dpo_st_writer_init(&w);
  int rc = add_config_meta(&w, opt, err);
  for (int i = 0; i < opt->n_params && rc == DPO_OK; i++) {
    moment m[4];
    int k = slot_moments(opt, i, m);
    for (int j = 0; j < k && rc == DPO_OK; j++) {
      char name[1024];
      snprintf(name, sizeof name, "%s%s", opt->params[i].name, m[j].suffix);
      const float *data = m[j].data;
      if (host) {
        size_t count = (size_t)moment_numel(&m[j]);
        kn_download(opt->ctx, host + at, m[j].data, count * sizeof(float));
        data = host + at;
        at += count;
      }
      rc = dpo_st_writer_add(&w, name, DPO_DTYPE_F32, m[j].ndim, m[j].shape, data, err);
    }
  }
  if (rc == DPO_OK && opt->ctx) rc = kn_ctx_check(opt->ctx, err);
  if (rc == DPO_OK) rc = dpo_st_writer_write(&w, path, err);
  dpo_st_writer_free(&w);
  free(host);
  return rc;
}

/* Reads a moment into m->data, through a host copy when the optimizer's
 * state lives in a device's memory. */
static int load_moment(const dpo_optimizer *opt, const dpo_safetensors *st, const char *name, const moment *m,
                       dpo_error *err) {
  const dpo_tensor_view *t = dpo_st_find(st, name);
  if (!t) return dpo_fail(err, DPO_ERR_DATA, "%s: tensor %s is missing", st->path, name);
  int same = t->dtype == DPO_DTYPE_F32 && t->ndim == m->ndim;
  for (int d = 0; same && d < m->ndim; d++) same = t->shape[d] == m->shape[d];
  if (!same) return dpo_fail(err, DPO_ERR_DATA, "%s: tensor %s has another dtype or shape than the parameter's state", st->path, name);
  if (!opt->ctx) return dpo_st_to_f32(t, m->data, err);
  size_t count = (size_t)moment_numel(m);
  float *host = malloc((count ? count : 1) * sizeof(float));
  if (!host) return dpo_fail(err, DPO_ERR_DATA, "%s: out of memory reading %s", st->path, name);
  int rc = dpo_st_to_f32(t, host, err);
  if (rc == DPO_OK) kn_upload(opt->ctx, m->data, host, count * sizeof(float));
  free(host);
  return rc;
}

static int parse_step(const dpo_safetensors *st, int64_t *step, dpo_error *err) {
  const char *s = dpo_st_meta(st, "step");
  if (!s) return dpo_fail(err, DPO_ERR_DATA, "%s: metadata 'step' is missing", st->path);
  char *end = NULL;
  long long v = strtoll(s, &end, 10);
  if (end == s || *end != '\0' || v < 0)
    return dpo_fail(err, DPO_ERR_DATA, "%s: metadata 'step' is '%s', expected a count", st->path, s);
  *step = v;
  return DPO_OK;
}

int dpo_optim_load(dpo_optimizer *opt, const char *path, dpo_error *err) {
  dpo_safetensors st;
  int rc = dpo_st_open(&st, path, err);
  if (rc != DPO_OK) return rc;
  const char *kind = dpo_st_meta(&st, "optimizer");
  int64_t step = 0;
  int expected = 0;
  if (!kind || strcmp(kind, dpo_optim_kind_name(opt->cfg.kind)) != 0) {
    rc = dpo_fail(err, DPO_ERR_DATA, "%s: optimizer state is for '%s', this run uses %s", path, kind ? kind : "(none)",
                  dpo_optim_kind_name(opt->cfg.kind));
  } else {
    rc = parse_step(&st, &step, err);
  }
  for (int i = 0; i < opt->n_params && rc == DPO_OK; i++) {
    moment m[4];
    int k = slot_moments(opt, i, m);
    expected += k;
    for (int j = 0; j < k && rc == DPO_OK; j++) {
      char name[1024];
      snprintf(name, sizeof name, "%s%s", opt->params[i].name, m[j].suffix);
      rc = load_moment(opt, &st, name, &m[j], err);
    }
  }
  if (rc == DPO_OK && st.n_tensors != expected)
    rc = dpo_fail(err, DPO_ERR_DATA, "%s: %d tensors, expected %d (the parameters differ from this run's)", path,
                  st.n_tensors, expected);
  if (rc == DPO_OK && opt->ctx) rc = kn_ctx_check(opt->ctx, err);
  if (rc == DPO_OK) opt->step = step;
  dpo_st_close(&st);
  return rc;
}
