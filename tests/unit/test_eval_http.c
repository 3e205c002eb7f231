/* The HTTP scorer against a loopback server (libmicrohttpd, started here):
 * the request schema is checked by the server (it decodes every PNG and
 * answers each image's mean luma), batches are split, and a slow, failing or
 * garbage-returning server gives a clear error after the configured retries,
 * never a score. A server that fails twice and then answers is retried into
 * success. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "eval/eval.h"
#include "tests/test.h"

typedef enum { MODE_OK, MODE_SLOW, MODE_500, MODE_GARBAGE, MODE_WRONG_COUNT, MODE_400, MODE_FLAKY } server_mode;

static server_mode mode;
static int requests;          /* requests seen */
static int max_items_seen;

typedef struct {
  char *data;
  size_t len;
} upload;

static int b64_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

static uint8_t *b64_decode(const char *s, size_t *n) {
  size_t len = strlen(s);
  uint8_t *out = malloc(len / 4 * 3 + 3);
  size_t o = 0;
  uint32_t acc = 0;
  int bits = 0;
  for (size_t i = 0; i < len && s[i] != '='; i++) {
    int v = b64_value(s[i]);
    if (v < 0) {
      free(out);
      return NULL;
    }
    acc = (acc << 6) | (uint32_t)v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (uint8_t)(acc >> bits);
    }
  }
  *n = o;
  return out;
}

/* The scores the server gives: mean luma of each decoded PNG, or NULL when
 * the request does not follow the schema. */
static json_t *score_request(const upload *u) {
  json_t *root = json_loadb(u->data, u->len, 0, NULL);
  json_t *items = root ? json_object_get(root, "items") : NULL;
  if (!json_is_array(items)) {
    if (root) json_decref(root);
    return NULL;
  }
  json_t *scores = json_array();
  if ((int)json_array_size(items) > max_items_seen) max_items_seen = (int)json_array_size(items);
  for (size_t i = 0; i < json_array_size(items); i++) {
    json_t *it = json_array_get(items, i);
    const char *prompt = json_string_value(json_object_get(it, "prompt"));
    const char *b64 = json_string_value(json_object_get(it, "image_png_base64"));
    size_t n;
    uint8_t *png = b64 ? b64_decode(b64, &n) : NULL;
    dpo_image im;
    dpo_error err;
    if (!prompt || !png || dpo_image_decode(png, n, "request", 0, &im, &err) != DPO_OK) {
      free(png);
      json_decref(scores);
      json_decref(root);
      return NULL;
    }
    json_array_append_new(scores, json_real(eval_mean_luma(&im)));
    dpo_image_free(&im);
    free(png);
  }
  json_decref(root);
  return scores;
}

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *text) {
  struct MHD_Response *r = MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_MUST_COPY);
  enum MHD_Result ok = MHD_queue_response(c, status, r);
  MHD_destroy_response(r);
  return ok;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                              const char *version, const char *data, size_t *size, void **state) {
  (void)cls, (void)url, (void)version;
  upload *u = *state;
  if (!u) {
    *state = calloc(1, sizeof(upload));
    return MHD_YES;
  }
  if (*size) {
    u->data = realloc(u->data, u->len + *size + 1);
    memcpy(u->data + u->len, data, *size);
    u->len += *size;
    *size = 0;
    return MHD_YES;
  }
  requests++;
  if (strcmp(method, "POST") != 0) return reply(c, 405, "POST only");
  switch (mode) {
    case MODE_SLOW: {
      struct timespec ts = {0, 600 * 1000 * 1000};
      nanosleep(&ts, NULL);
      break;
    }
    case MODE_500: return reply(c, 500, "internal error");
    case MODE_400: return reply(c, 400, "bad request: no model loaded");
    case MODE_GARBAGE: return reply(c, 200, "<html>not json</html>");
    case MODE_FLAKY:
      if (requests <= 2) return reply(c, 503, "warming up");
      break;
    default: break;
  }
  json_t *scores = score_request(u);
  if (!scores) return reply(c, 422, "request does not follow the schema");
  if (mode == MODE_WRONG_COUNT) json_array_append_new(scores, json_real(0.5));
  json_t *root = json_object();
  json_object_set_new(root, "scores", scores);
  char *text = json_dumps(root, 0);
  json_decref(root);
  enum MHD_Result ok = reply(c, 200, text);
  free(text);
  return ok;
}

static void done(void *cls, struct MHD_Connection *c, void **state, enum MHD_RequestTerminationCode toe) {
  (void)cls, (void)c, (void)toe;
  upload *u = *state;
  if (u) {
    free(u->data);
    free(u);
  }
  *state = NULL;
}

int main(void) {
  struct MHD_Daemon *d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION, 0, NULL,
                                          NULL, handle, NULL, MHD_OPTION_NOTIFY_COMPLETED, done, NULL,
                                          MHD_OPTION_SOCK_ADDR, NULL, MHD_OPTION_END);
  CHECK(d != NULL);
  if (!d) return test_finish();
  const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
  char url[128];
  snprintf(url, sizeof url, "http://127.0.0.1:%u/score", info->port);

  /* Five images of different brightness. */
  dpo_error err = {0};
  dpo_image images[5];
  eval_pair pairs[5];
  for (int i = 0; i < 5; i++) {
    CHECK_INT(dpo_image_alloc(&images[i], 4, 3, 3, &err), DPO_OK);
    memset(images[i].pixels, 40 * i + 10, 4 * 3 * 3);
    pairs[i].image = &images[i];
    pairs[i].prompt = i == 3 ? "un \"quoted\" prompt\n" : "a prompt";
  }
  eval_http_options opt;
  eval_http_options_default(&opt, url);
  opt.batch = 2;
  opt.timeout_s = 0.3;
  opt.retries = 2;
  opt.backoff_s = 0.01;
  eval_scorer *s;
  CHECK_INT(eval_http_scorer_create(&opt, &s, &err), DPO_OK);
  CHECK_CONTAINS(s->name, "http:http://127.0.0.1:");
  double scores[5], expect[5];
  const eval_scorer *brightness = eval_find_scorer("brightness");
  CHECK_INT(eval_score(brightness, pairs, 5, expect, &err), DPO_OK);

  mode = MODE_OK;
  requests = 0;
  CHECK_INT(eval_score(s, pairs, 5, scores, &err), DPO_OK);
  for (int i = 0; i < 5; i++) CHECK_NEAR(scores[i], expect[i], 1e-9);
  CHECK_INT(requests, 3);          /* batches of 2, 2, 1 */
  CHECK_INT(max_items_seen, 2);

  struct {
    server_mode mode;
    const char *message;
    int requests;
  } failures[] = {
      {MODE_SLOW, "Timeout", 3},               /* 1 try + 2 retries */
      {MODE_500, "HTTP status 500", 3},
      {MODE_GARBAGE, "expected JSON {\"scores\": [...]}", 3},
      {MODE_WRONG_COUNT, "expected 2 scores (one per item), got 3", 3},
      {MODE_400, "HTTP status 400", 1},        /* a client error is not retried */
  };
  for (size_t k = 0; k < sizeof failures / sizeof failures[0]; k++) {
    mode = failures[k].mode;
    requests = 0;
    for (int i = 0; i < 5; i++) scores[i] = -1;
    dpo_error_clear(&err);
    CHECK_INT(eval_score(s, pairs, 5, scores, &err), DPO_ERR_DATA);
    CHECK_CONTAINS(err.msg, failures[k].message);
    CHECK_CONTAINS(err.msg, failures[k].requests == 1 ? "gave up after 1 try" : "gave up after 3 tries");
    CHECK_CONTAINS(err.msg, "pairs 0..1");
    CHECK_INT(requests, failures[k].requests);
    CHECK(scores[0] == -1 && scores[1] == -1);   /* nothing made up */
  }
  /* Two 503s, then an answer: retried into success. */
  mode = MODE_FLAKY;
  requests = 0;
  CHECK_INT(eval_score(s, pairs, 2, scores, &err), DPO_OK);
  CHECK_NEAR(scores[1], expect[1], 1e-9);
  CHECK_INT(requests, 3);
  eval_http_scorer_free(s);

  /* Nothing listening: a connection error after the retries. */
  MHD_stop_daemon(d);
  dpo_error_clear(&err);
  CHECK_INT(eval_http_scorer_create(&opt, &s, &err), DPO_OK);
  CHECK_INT(eval_score(s, pairs, 1, scores, &err), DPO_ERR_DATA);
  CHECK_CONTAINS(err.msg, "gave up after 3 tries");
  CHECK_CONTAINS(err.msg, "onnect");
  eval_http_scorer_free(s);

  /* Bad options. */
  eval_http_options bad;
  eval_http_options_default(&bad, "ftp://example.org");
  CHECK_INT(eval_http_scorer_create(&bad, &s, &err), DPO_ERR_USAGE);
  eval_http_options_default(&bad, url);
  bad.batch = 0;
  CHECK_INT(eval_http_scorer_create(&bad, &s, &err), DPO_ERR_USAGE);
  /* Registration by name, once. */
  const eval_scorer *r1 = eval_http_scorer_register(&opt, &err);
  const eval_scorer *r2 = eval_http_scorer_register(&opt, &err);
  CHECK(r1 != NULL && r1 == r2 && eval_find_scorer(r1->name) == r1);
  for (int i = 0; i < 5; i++) dpo_image_free(&images[i]);
  return test_finish();
}
