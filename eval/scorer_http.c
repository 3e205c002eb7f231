/* The HTTP scorer: a batch of (prompt, PNG) pairs POSTed as JSON to a URL
 * that answers with one score per pair (schema in eval.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "eval/eval.h"

#define HTTP_MAX_RESPONSE_BYTES (16u << 20)

typedef struct {
  eval_http_options opt;
  char name[EVAL_HTTP_MAX_URL + 8];
  eval_scorer scorer;
} http_scorer;

void eval_http_options_default(eval_http_options *opt, const char *url) {
  memset(opt, 0, sizeof *opt);
  snprintf(opt->url, sizeof opt->url, "%s", url ? url : "");
  opt->timeout_s = 60;
  opt->retries = 3;
  opt->backoff_s = 1;
  opt->batch = 16;
}

/* ------------------------------------------------------------ base64 */

static char *base64(const uint8_t *data, size_t n) {
  static const char table[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  size_t out_len = 4 * ((n + 2) / 3);
  char *out = malloc(out_len + 1);
  if (!out) return NULL;
  size_t o = 0;
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = (uint32_t)data[i] << 16;
    if (i + 1 < n) v |= (uint32_t)data[i + 1] << 8;
    if (i + 2 < n) v |= data[i + 2];
    out[o++] = table[(v >> 18) & 63];
    out[o++] = table[(v >> 12) & 63];
    out[o++] = i + 1 < n ? table[(v >> 6) & 63] : '=';
    out[o++] = i + 2 < n ? table[v & 63] : '=';
  }
  out[o] = '\0';
  return out;
}

/* ------------------------------------------------------------ request */

static char *request_body(const eval_pair *pairs, int n, dpo_error *err) {
  json_t *items = json_array();
  for (int i = 0; i < n; i++) {
    uint8_t *png;
    size_t size;
    if (dpo_png_encode(pairs[i].image, NULL, 0, &png, &size, err)) {
      json_decref(items);
      return NULL;
    }
    char *b64 = base64(png, size);
    free(png);
    if (!b64) {
      json_decref(items);
      dpo_fail(err, DPO_ERR_DATA, "out of memory encoding image %d", i);
      return NULL;
    }
    json_t *item = json_object();
    json_object_set_new(item, "prompt", json_string(pairs[i].prompt ? pairs[i].prompt : ""));
    json_object_set_new(item, "image_png_base64", json_string(b64));
    free(b64);
    json_array_append_new(items, item);
  }
  json_t *root = json_object();
  json_object_set_new(root, "items", items);
  char *body = json_dumps(root, JSON_COMPACT);
  json_decref(root);
  if (!body) dpo_fail(err, DPO_ERR_DATA, "out of memory for the request body");
  return body;
}

typedef struct {
  char *data;
  size_t len;
  int too_big;
} response_buffer;

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *user) {
  response_buffer *r = user;
  size_t n = size * nmemb;
  if (r->len + n > HTTP_MAX_RESPONSE_BYTES) {
    r->too_big = 1;
    return 0;   /* aborts the transfer */
  }
  char *grown = realloc(r->data, r->len + n + 1);
  if (!grown) return 0;
  memcpy(grown + r->len, ptr, n);
  r->data = grown;
  r->len += n;
  r->data[r->len] = '\0';
  return n;
}

/* A short, printable excerpt of a response for error messages. */
static void excerpt(const response_buffer *r, char *buf, size_t n) {
  size_t k = 0;
  for (size_t i = 0; r->data && i < r->len && k + 1 < n && i < 120; i++) {
    char c = r->data[i];
    buf[k++] = c >= 32 && c < 127 ? c : '?';
  }
  buf[k] = '\0';
}

/* Parses {"scores": [n finite numbers]}. */
static int parse_scores(const http_scorer *h, const response_buffer *r, int n, double *scores, dpo_error *err) {
  char where[EVAL_HTTP_MAX_URL + 32], text[128];
  snprintf(where, sizeof where, "response of %s", h->opt.url);
  excerpt(r, text, sizeof text);
  dpo_error perr;
  json_t *root = r->data ? dpo_json_parse(r->data, r->len, where, &perr) : NULL;
  if (!root) return dpo_fail(err, DPO_ERR_DATA, "%s: expected JSON {\"scores\": [...]}, got \"%s\"", where, text);
  json_t *arr = json_object_get(root, "scores");
  int rc = DPO_OK;
  if (!json_is_array(arr)) {
    rc = dpo_fail(err, DPO_ERR_DATA, "%s: expected a \"scores\" array, got \"%s\"", where, text);
  } else if ((int)json_array_size(arr) != n) {
    rc = dpo_fail(err, DPO_ERR_DATA, "%s: expected %d scores (one per item), got %d", where, n,
                  (int)json_array_size(arr));
  } else {
    for (int i = 0; i < n && rc == DPO_OK; i++) {
      json_t *v = json_array_get(arr, (size_t)i);
      double x = json_is_number(v) ? json_number_value(v) : NAN;
      if (!isfinite(x)) rc = dpo_fail(err, DPO_ERR_DATA, "%s: score %d is not a finite number", where, i);
      else scores[i] = x;
    }
  }
  json_decref(root);
  return rc;
}

/* One POST. *retry says whether another try may help. */
static int post_once(const http_scorer *h, const char *body, int n, double *scores, int *retry, dpo_error *err) {
  *retry = 1;
  CURL *curl = curl_easy_init();
  if (!curl) return dpo_fail(err, DPO_ERR_DATA, "%s: cannot start libcurl", h->opt.url);
  response_buffer r = {0};
  char curl_err[CURL_ERROR_SIZE] = "";
  struct curl_slist *headers = curl_slist_append(NULL, "Content-Type: application/json");
  headers = curl_slist_append(headers, "Accept: application/json");
  curl_easy_setopt(curl, CURLOPT_URL, h->opt.url);
  curl_easy_setopt(curl, CURLOPT_POST, 1L);
  curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
  curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_data);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &r);
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, curl_err);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long)(h->opt.timeout_s * 1000));
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, (long)(h->opt.timeout_s * 1000));
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
  CURLcode cc = curl_easy_perform(curl);
  long status = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
  int rc;
  if (r.too_big) {
    rc = dpo_fail(err, DPO_ERR_DATA, "%s: response larger than %u bytes", h->opt.url, HTTP_MAX_RESPONSE_BYTES);
  } else if (cc != CURLE_OK) {
    rc = dpo_fail(err, DPO_ERR_DATA, "%s: %s%s%s", h->opt.url, curl_easy_strerror(cc), curl_err[0] ? ": " : "",
                  curl_err);
  } else if (status != 200) {
    char text[128];
    excerpt(&r, text, sizeof text);
    rc = dpo_fail(err, DPO_ERR_DATA, "%s: HTTP status %ld (expected 200): \"%s\"", h->opt.url, status, text);
    /* Client errors other than timeouts and rate limits will not change. */
    if (status >= 400 && status < 500 && status != 408 && status != 429) *retry = 0;
  } else {
    rc = parse_scores(h, &r, n, scores, err);
  }
  curl_slist_free_all(headers);
  curl_easy_cleanup(curl);
  free(r.data);
  return rc;
}

static void sleep_seconds(double s) {
  if (s <= 0) return;
  struct timespec ts = {(time_t)s, (long)((s - floor(s)) * 1e9)};
  nanosleep(&ts, NULL);
}

/* POSTs one chunk with retries and exponential backoff. */
static int post_chunk(const http_scorer *h, const eval_pair *pairs, int n, double *scores, dpo_error *err) {
  char *body = request_body(pairs, n, err);
  if (!body) return DPO_ERR_DATA;
  int rc = DPO_ERR_DATA, retry = 1, tries = 0;
  double wait = h->opt.backoff_s;
  while (retry && tries <= h->opt.retries) {
    if (tries > 0) {
      sleep_seconds(wait);
      wait *= 2;
    }
    tries++;
    rc = post_once(h, body, n, scores, &retry, err);
    if (rc == DPO_OK) break;
  }
  free(body);
  if (rc != DPO_OK) dpo_error_prefix(err, "HTTP scorer: gave up after %d tr%s", tries, tries == 1 ? "y" : "ies");
  return rc;
}

static int score_http(const eval_scorer *scorer, const eval_pair *pairs, int n, double *scores, dpo_error *err) {
  const http_scorer *h = scorer->state;
  for (int start = 0; start < n; start += h->opt.batch) {
    int m = n - start < h->opt.batch ? n - start : h->opt.batch;
    int rc = post_chunk(h, pairs + start, m, scores + start, err);
    if (rc) return dpo_error_prefix(err, "pairs %d..%d", start, start + m - 1);
  }
  return DPO_OK;
}

int eval_http_scorer_create(const eval_http_options *opt, eval_scorer **out, dpo_error *err) {
  *out = NULL;
  if (strncmp(opt->url, "http://", 7) != 0 && strncmp(opt->url, "https://", 8) != 0)
    return dpo_fail(err, DPO_ERR_USAGE, "HTTP scorer: URL \"%s\" must start with http:// or https://", opt->url);
  if (!(opt->timeout_s > 0) || opt->retries < 0 || opt->retries > 100 || opt->backoff_s < 0 || opt->batch < 1)
    return dpo_fail(err, DPO_ERR_USAGE, "HTTP scorer: expected timeout > 0, retries 0..100, backoff >= 0, batch >= 1");
  static int curl_ready;
  if (!curl_ready) {
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0) return dpo_fail(err, DPO_ERR_DATA, "cannot initialise libcurl");
    curl_ready = 1;
  }
  http_scorer *h = calloc(1, sizeof *h);
  if (!h) return dpo_fail(err, DPO_ERR_DATA, "out of memory");
  h->opt = *opt;
  snprintf(h->name, sizeof h->name, "http:%s", opt->url);
  h->scorer.name = h->name;
  h->scorer.description = "HTTP scorer: POST {\"items\": [{\"prompt\", \"image_png_base64\"}]} -> {\"scores\": [...]}";
  h->scorer.n_scores = 1;
  h->scorer.score_names[0] = "score";
  h->scorer.score = score_http;
  h->scorer.state = h;
  *out = &h->scorer;
  return DPO_OK;
}

void eval_http_scorer_free(eval_scorer *scorer) {
  if (scorer) free(scorer->state);
}

const eval_scorer *eval_http_scorer_register(const eval_http_options *opt, dpo_error *err) {
  char name[EVAL_HTTP_MAX_URL + 8];
  snprintf(name, sizeof name, "http:%s", opt->url);
  const eval_scorer *found = eval_find_scorer(name);
  if (found) return found;
  eval_scorer *s;
  if (eval_http_scorer_create(opt, &s, err)) return NULL;
  if (eval_register_scorer(s, err)) {
    eval_http_scorer_free(s);
    return NULL;
  }
  return s;
}
