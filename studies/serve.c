/* `dpo study serve` and `dpo study invite`: a local rating page.
 *
 * Every request is untrusted. A rater is known only by a secret token in the
 * URL (stored as its SHA-256); images are served by content hash from the
 * images table, so no file path ever comes from a request; prompts are
 * HTML-escaped; request bodies are size-limited. A vote is committed before
 * the next item is sent (the POST answers with a redirect to the next page).
 * Items come in a random order per rater, never twice, with sides randomised
 * per (rater, item) from the study seed and recorded with the vote.
 *
 * Requests run on a pool of threads, each with its own SQLite connection;
 * votes from all threads are committed together (group commit, see
 * record_vote), which is what lets it take over 1000 votes/s on a small
 * machine with every vote fsynced (bench/RESULTS.md). */
#include <arpa/inet.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "studies/internal.h"

#define SERVE_MAX_BODY 4096
#define SERVE_MAX_IMAGE_BYTES (64u * 1024u * 1024u)

/* ------------------------------------------------------------------ invite */

static int random_token(char hex[65], dpo_error *err) {
  uint8_t bytes[32];
  int fd = open("/dev/urandom", O_RDONLY);
  ssize_t got = fd >= 0 ? read(fd, bytes, sizeof bytes) : -1;
  if (fd >= 0) close(fd);
  if (got != (ssize_t)sizeof bytes) return dpo_fail(err, DPO_ERR_DATA, "cannot read /dev/urandom for rater tokens");
  for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", bytes[i]);
  return DPO_OK;
}

int studies_invite(studies_db *db, const char *study_name, int n_raters, char (*tokens)[65], dpo_error *err) {
  if (n_raters < 1 || n_raters > 100000) return dpo_fail(err, DPO_ERR_USAGE, "--raters: expected 1 to 100000");
  study_info study;
  if (db_find_study(db, study_name, &study, err)) return DPO_ERR_DATA;
  if (db_exec(db, "BEGIN IMMEDIATE", err)) return DPO_ERR_DATA;
  sqlite3_stmt *s;
  int rc = db_prepare(db, "INSERT INTO raters(study_id, source, external_id, token_sha256, created_at) VALUES(?1, 'local', "
                          "'local-' || (SELECT count(*) + 1 FROM raters WHERE study_id = ?1 AND source = 'local'), ?2, "
                          "strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))",
                      &s, err);
  for (int i = 0; i < n_raters && rc == DPO_OK; i++) {
    char hash[65];
    rc = random_token(tokens[i], err);
    if (rc) break;
    dpo_sha256_hex(tokens[i], 64, hash);
    sqlite3_reset(s);
    sqlite3_bind_int64(s, 1, study.id);
    db_bind_text(s, 2, hash);
    rc = db_step_done(db, s, "registering a rater", err);
  }
  sqlite3_finalize(s);
  if (rc == DPO_OK) rc = db_exec(db, "COMMIT", err);
  if (rc != DPO_OK) sqlite3_exec(db->db, "ROLLBACK", NULL, NULL, NULL);
  return rc;
}

/* ------------------------------------------------------------------ server */

#define SERVE_THREADS 16

typedef struct pending_vote pending_vote;

/* Each pool thread has its own SQLite connection (WAL lets them read at
 * once). Votes are written by group commit: a thread with a vote queues it;
 * whichever thread finds no commit running takes the whole queue, writes it
 * in one transaction and commits it with one fsync, then wakes the owners.
 * A vote is answered only after the commit that holds it, so an
 * acknowledged vote is on disk, and the disk sees one sync per batch
 * instead of one per vote. */
typedef struct {
  const char *db_path;
  pthread_mutex_t queue_lock;
  pthread_cond_t committed;
  pending_vote *queue;          /* waiting for the next commit */
  int committing;               /* a thread is writing a batch */
  pthread_mutex_t workers_lock;
  struct worker *workers[SERVE_THREADS + 1];   /* [0] is the main thread's */
  int n_workers;
} server;

/* What one thread keeps: its connection, and the item ids of the study it
 * served last (a study's items never change once created), sorted. */
typedef struct worker {
  studies_db *db;
  int64_t items_study;
  int64_t *items;
  int n_items;
} worker;

static _Thread_local server *thread_server;
static _Thread_local worker *thread_worker;

/* Server connections read through mmap (fewer copies) and leave WAL
 * checkpoints to the main loop of studies_serve, so that a checkpoint's
 * fsync never delays a vote's commit. */
static const char *const server_pragmas = "PRAGMA mmap_size = 268435456; PRAGMA wal_autocheckpoint = 0;";

static worker *open_worker(server *srv, dpo_error *err) {
  worker *w = calloc(1, sizeof *w);
  if (!w) {
    dpo_fail(err, DPO_ERR_DATA, "out of memory");
    return NULL;
  }
  if (studies_open(srv->db_path, 0, &w->db, err)) {
    free(w);
    return NULL;
  }
  dpo_error ignored;
  db_exec(w->db, server_pragmas, &ignored);   /* only speed: a failure changes nothing else */
  return w;
}

static void close_worker(worker *w) {
  studies_close(w->db);
  free(w->items);
  free(w);
}

/* This thread's worker, made on first use; NULL if the database cannot open. */
static worker *worker_for_thread(server *srv) {
  if (thread_server == srv && thread_worker) return thread_worker;
  dpo_error err;
  worker *w = NULL;
  pthread_mutex_lock(&srv->workers_lock);
  if (srv->n_workers < SERVE_THREADS + 1 && (w = open_worker(srv, &err))) srv->workers[srv->n_workers++] = w;
  pthread_mutex_unlock(&srv->workers_lock);
  if (!w) return NULL;
  thread_server = srv;
  thread_worker = w;
  return w;
}

/* The sorted item ids of a study, from the worker's cache. */
static int study_items(worker *w, int64_t study_id) {
  if (w->items && w->items_study == study_id) return 1;
  free(w->items);
  w->items = NULL;
  w->n_items = 0;
  sqlite3_stmt *s;
  dpo_error err;
  if (db_prepare(w->db, "SELECT id FROM items WHERE study_id = ?1 ORDER BY id", &s, &err)) return 0;
  sqlite3_bind_int64(s, 1, study_id);
  int cap = 0, ok = 1;
  while (ok && sqlite3_step(s) == SQLITE_ROW) {
    if (w->n_items == cap) {
      cap = cap ? 2 * cap : 256;
      int64_t *grown = realloc(w->items, (size_t)cap * sizeof *grown);
      if (!grown) ok = 0;
      else w->items = grown;
    }
    if (ok) w->items[w->n_items++] = sqlite3_column_int64(s, 0);
  }
  sqlite3_finalize(s);
  if (!ok || !w->items) {
    free(w->items);
    w->items = NULL;
    w->n_items = 0;
    return 0;
  }
  w->items_study = study_id;
  return 1;
}

/* Per-request state, for POST bodies that arrive in pieces. */
typedef struct {
  char body[SERVE_MAX_BODY + 1];
  size_t used;
  int too_large;
} request_state;

typedef struct {
  int64_t id;
  study_info study;
} rater;

static int is_hex(const char *s, size_t n) {
  if (strlen(s) != n) return 0;
  for (size_t i = 0; i < n; i++)
    if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
  return 1;
}

static int lookup_rater(studies_db *db, const char *hash, rater *r) {
  sqlite3_stmt *s;
  dpo_error err;
  if (db_prepare(db, "SELECT r.id, s.name FROM raters r JOIN studies s ON s.id = r.study_id "
                     "WHERE r.token_sha256 = ?1 AND r.source = 'local'",
                 &s, &err))
    return 0;
  db_bind_text(s, 1, hash);
  int found = sqlite3_step(s) == SQLITE_ROW;
  char name[256] = "";
  if (found) {
    r->id = sqlite3_column_int64(s, 0);
    db_column_copy(s, 1, name, sizeof name);
  }
  sqlite3_finalize(s);
  return found && db_find_study(db, name, &r->study, &err) == DPO_OK;
}

/* Raters and their studies never change while the server runs (invite only
 * adds raters), so each thread keeps the raters it has found, by token hash,
 * in a small direct-mapped cache: most requests then need no lookup. */
#define RATER_CACHE_SIZE 32
typedef struct {
  const void *owner;   /* the server (a cache never outlives its server's threads) */
  char hash[65];
  rater r;
} cached_rater;
static _Thread_local cached_rater rater_cache[RATER_CACHE_SIZE];

static int find_rater(const void *owner, studies_db *db, const char *token, rater *r) {
  if (!is_hex(token, 64)) return 0;
  char hash[65];
  dpo_sha256_hex(token, 64, hash);
  char head[3] = {hash[0], hash[1], '\0'};   /* the hash's first byte picks the slot */
  cached_rater *slot = &rater_cache[strtoul(head, NULL, 16) % RATER_CACHE_SIZE];
  if (slot->owner == owner && strcmp(slot->hash, hash) == 0) {
    *r = slot->r;
    return 1;
  }
  if (!lookup_rater(db, hash, r)) return 0;
  slot->owner = owner;
  memcpy(slot->hash, hash, sizeof hash);
  slot->r = *r;
  return 1;
}

static enum MHD_Result send_text(struct MHD_Connection *c, unsigned status, const char *type, char *body, int owned) {
  struct MHD_Response *resp = MHD_create_response_from_buffer(strlen(body), body,
                                                              owned ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
  if (!resp) return MHD_NO;
  MHD_add_response_header(resp, "Content-Type", type);
  MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
  MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
  MHD_add_response_header(resp, "Cache-Control", "no-store");
  /* Scripts only from this server: an injected inline script would not run
   * even if escaping ever failed. */
  MHD_add_response_header(resp, "Content-Security-Policy",
                          "default-src 'none'; img-src 'self'; script-src 'self'; style-src 'unsafe-inline'; "
                          "form-action 'self'");
  enum MHD_Result ret = MHD_queue_response(c, status, resp);
  MHD_destroy_response(resp);
  return ret;
}

static enum MHD_Result send_error(struct MHD_Connection *c, unsigned status, const char *message) {
  return send_text(c, status, "text/plain; charset=utf-8", (char *)message, 0);
}

static enum MHD_Result send_redirect(struct MHD_Connection *c, const char *location) {
  struct MHD_Response *resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
  if (!resp) return MHD_NO;
  MHD_add_response_header(resp, "Location", location);
  MHD_add_response_header(resp, "Cache-Control", "no-store");
  enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_SEE_OTHER, resp);
  MHD_destroy_response(resp);
  return ret;
}

/* GET /img/<sha256>: only registered images, by hash. */
static enum MHD_Result serve_image(studies_db *db, struct MHD_Connection *c, const char *hash) {
  if (!is_hex(hash, 64)) return send_error(c, MHD_HTTP_NOT_FOUND, "not found\n");
  sqlite3_stmt *s;
  dpo_error err;
  if (db_prepare(db, "SELECT path, format FROM images WHERE sha256 = ?1", &s, &err))
    return send_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "database error\n");
  db_bind_text(s, 1, hash);
  char path[4096] = "", format[8] = "";
  if (sqlite3_step(s) == SQLITE_ROW) {
    db_column_copy(s, 0, path, sizeof path);
    db_column_copy(s, 1, format, sizeof format);
  }
  sqlite3_finalize(s);
  if (!path[0]) return send_error(c, MHD_HTTP_NOT_FOUND, "not found\n");
  char *data;
  size_t len;
  if (dpo_read_file(path, SERVE_MAX_IMAGE_BYTES, &data, &len, &err))
    return send_error(c, MHD_HTTP_NOT_FOUND, "image file missing\n");
  struct MHD_Response *resp = MHD_create_response_from_buffer(len, data, MHD_RESPMEM_MUST_FREE);
  if (!resp) {
    free(data);
    return MHD_NO;
  }
  MHD_add_response_header(resp, "Content-Type", strcmp(format, "png") == 0 ? "image/png" : "image/jpeg");
  MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
  MHD_add_response_header(resp, "Cache-Control", "private, max-age=3600");
  enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_OK, resp);
  MHD_destroy_response(resp);
  return ret;
}

/* The rater's next item: the unrated item with the smallest key in this
 * rater's random order. Returns 1 and fills *item_id, 0 when all are done,
 * -1 on a database error. The study's items come from the worker's cache and
 * the rater's rated items from one range of the (rater, item) index, both
 * sorted by id, so a page costs no lookup per item. */
static int next_item(worker *w, const rater *r, int64_t *item_id, int *done, int *total) {
  *done = *total = 0;
  if (!study_items(w, r->study.id)) return -1;
  sqlite3_stmt *s;
  dpo_error err;
  if (db_prepare(w->db, "SELECT item_id FROM assignments WHERE rater_id = ?1 ORDER BY item_id", &s, &err)) return -1;
  sqlite3_bind_int64(s, 1, r->id);
  int has_rated = sqlite3_step(s) == SQLITE_ROW;
  int64_t rated = has_rated ? sqlite3_column_int64(s, 0) : 0;
  uint64_t order_stream = dpo_rng_stream_id("rater-order", (uint64_t)r->id, 0);
  uint64_t best_key = UINT64_MAX;
  int found = 0;
  for (int i = 0; i < w->n_items; i++) {
    int64_t id = w->items[i];
    while (has_rated && rated < id) {
      has_rated = sqlite3_step(s) == SQLITE_ROW;
      rated = has_rated ? sqlite3_column_int64(s, 0) : 0;
    }
    (*total)++;
    if (has_rated && rated == id) {
      (*done)++;
      continue;
    }
    uint64_t key = studies_seed63(r->study.seed ^ (uint64_t)id, order_stream);
    if (!found || key < best_key) {
      best_key = key;
      *item_id = id;
      found = 1;
    }
  }
  sqlite3_finalize(s);
  return found;
}

static uint64_t rater_side_seed(const rater *r, int64_t item_id) {
  return studies_seed63(r->study.seed, dpo_rng_stream_id("rater-side", (uint64_t)r->id, (uint64_t)item_id));
}

/* Appends formatted text to a growing buffer. */
typedef struct {
  char *data;
  size_t len, cap;
  int failed;
} text_buf;

__attribute__((format(printf, 2, 3))) static void tb_printf(text_buf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0 || b->failed) return;
  if (b->len + (size_t)n + 1 > b->cap) {
    size_t cap = (b->cap + (size_t)n + 1) * 2;
    char *grown = realloc(b->data, cap);
    if (!grown) {
      b->failed = 1;
      return;
    }
    b->data = grown;
    b->cap = cap;
  }
  va_start(ap, fmt);
  vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
  va_end(ap);
  b->len += (size_t)n;
}

static const char *page_head =
    "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Image preference</title>\n"
    "<meta name=\"viewport\" content=\"width=device-width\">\n"
    "<style>body{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em}"
    ".pair{display:flex;gap:16px}.pair figure{flex:1;margin:0;text-align:center}"
    "img{max-width:100%;max-height:480px}fieldset{margin:10px 0}.prompt{font-size:1.2em}</style>\n"
    "</head><body>\n";

static enum MHD_Result serve_page(worker *w, struct MHD_Connection *c, const char *token, const rater *r) {
  studies_db *db = w->db;
  int64_t item_id = 0;
  int done, total;
  int found = next_item(w, r, &item_id, &done, &total);
  if (found < 0) return send_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "database error\n");
  text_buf b = {0};
  tb_printf(&b, "%s", page_head);
  tb_printf(&b, "<p class=\"progress\" id=\"progress\">%d of %d rated</p>\n", done, total);
  if (!found) {
    tb_printf(&b, "<p id=\"done\">All items are rated. Thank you!</p>\n</body></html>\n");
    return b.failed ? MHD_NO : send_text(c, MHD_HTTP_OK, "text/html; charset=utf-8", b.data, 1);
  }
  sqlite3_stmt *s;
  dpo_error err;
  if (db_prepare(db, "SELECT i.public_id, i.prompt, ia.sha256, ib.sha256, isrc.sha256 FROM items i "
                          "JOIN images ia ON ia.id = i.image_a JOIN images ib ON ib.id = i.image_b "
                          "LEFT JOIN images isrc ON isrc.id = i.image_source WHERE i.id = ?1",
                 &s, &err)) {
    free(b.data);
    return send_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "database error\n");
  }
  sqlite3_bind_int64(s, 1, item_id);
  if (sqlite3_step(s) != SQLITE_ROW) {
    sqlite3_finalize(s);
    free(b.data);
    return send_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "database error\n");
  }
  int a_left = strcmp(studies_side_from_seed(rater_side_seed(r, item_id)), "left") == 0;
  const char *image_a = (const char *)sqlite3_column_text(s, 2), *image_b = (const char *)sqlite3_column_text(s, 3);
  const char *source = (const char *)sqlite3_column_text(s, 4);
  char *prompt = studies_html_escape((const char *)sqlite3_column_text(s, 1));
  int edit = source != NULL;
  tb_printf(&b, "<p class=\"prompt\"><strong>%s</strong> <span id=\"prompt\">%s</span></p>\n",
            edit ? "Edit instruction:" : "Prompt:", prompt ? prompt : "");
  free(prompt);
  if (edit) tb_printf(&b, "<figure><img src=\"/img/%s\" alt=\"original image\"><figcaption>Original</figcaption></figure>\n", source);
  tb_printf(&b,
            "<div class=\"pair\"><figure><img id=\"left\" src=\"/img/%s\" alt=\"left image\"><figcaption>Left (key 1)</figcaption></figure>\n"
            "<figure><img id=\"right\" src=\"/img/%s\" alt=\"right image\"><figcaption>Right (key 2)</figcaption></figure></div>\n",
            a_left ? image_a : image_b, a_left ? image_b : image_a);
  tb_printf(&b, "<form method=\"post\" action=\"/r/%s/vote\" id=\"vote\">\n"
                "<input type=\"hidden\" name=\"item\" value=\"%s\">\n"
                "<input type=\"hidden\" name=\"elapsed_ms\" id=\"elapsed\" value=\"0\">\n",
            token, (const char *)sqlite3_column_text(s, 0));
  sqlite3_finalize(s);
  for (int q = 0; q < r->study.n_questions; q++) {
    const char *key = r->study.questions[q].key;
    char *text = studies_html_escape(studies_question_text(key));
    tb_printf(&b, "<fieldset class=\"question\" data-key=\"%s\"><legend>%s</legend>\n", key, text ? text : key);
    free(text);
    tb_printf(&b, "<label><input type=\"radio\" name=\"%s\" value=\"left\" required> Left (1)</label>\n", key);
    tb_printf(&b, "<label><input type=\"radio\" name=\"%s\" value=\"right\"> Right (2)</label>\n", key);
    if (r->study.allow_tie)
      tb_printf(&b, "<label><input type=\"radio\" name=\"%s\" value=\"tie\"> No preference (0)</label>\n", key);
    tb_printf(&b, "</fieldset>\n");
  }
  tb_printf(&b, "<button type=\"submit\" id=\"submit\">Submit</button>\n</form>\n"
                "<script src=\"/static/rate.js\"></script>\n</body></html>\n");
  if (b.failed) {
    free(b.data);
    return MHD_NO;
  }
  return send_text(c, MHD_HTTP_OK, "text/html; charset=utf-8", b.data, 1);
}

/* Keys 1/2/0 answer the first unanswered question (left/right/tie); when all
 * are answered the form is sent. Clicks work as usual. */
static const char *rate_js =
    "(function () {\n"
    "  var start = Date.now();\n"
    "  var form = document.getElementById('vote');\n"
    "  if (!form) return;\n"
    "  form.addEventListener('submit', function () {\n"
    "    document.getElementById('elapsed').value = String(Date.now() - start);\n"
    "  });\n"
    "  document.addEventListener('keydown', function (e) {\n"
    "    var value = {'1': 'left', '2': 'right', '0': 'tie'}[e.key];\n"
    "    if (!value) return;\n"
    "    var sets = form.querySelectorAll('fieldset.question');\n"
    "    for (var i = 0; i < sets.length; i++) {\n"
    "      var key = sets[i].getAttribute('data-key');\n"
    "      if (form.querySelector('input[name=\"' + key + '\"]:checked')) continue;\n"
    "      var input = form.querySelector('input[name=\"' + key + '\"][value=\"' + value + '\"]');\n"
    "      if (!input) return;\n"
    "      input.checked = true;\n"
    "      if (i === sets.length - 1) { form.requestSubmit ? form.requestSubmit() : form.submit(); }\n"
    "      return;\n"
    "    }\n"
    "  });\n"
    "})();\n";

/* Decodes one application/x-www-form-urlencoded value in place. */
static int url_decode(char *s) {
  char *o = s;
  for (char *p = s; *p; p++) {
    if (*p == '+') {
      *o++ = ' ';
    } else if (*p == '%') {
      int hi, lo;
      char h = p[1], l = h ? p[2] : 0;
      hi = h >= '0' && h <= '9' ? h - '0' : h >= 'a' && h <= 'f' ? h - 'a' + 10 : h >= 'A' && h <= 'F' ? h - 'A' + 10 : -1;
      lo = l >= '0' && l <= '9' ? l - '0' : l >= 'a' && l <= 'f' ? l - 'a' + 10 : l >= 'A' && l <= 'F' ? l - 'A' + 10 : -1;
      if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) return 0;
      *o++ = (char)(hi * 16 + lo);
      p += 2;
    } else {
      *o++ = *p;
    }
  }
  *o = '\0';
  return 1;
}

/* Finds a form field; the body is split in place into key/value strings. */
typedef struct {
  char *keys[16];
  char *values[16];
  int n;
} form_fields;

static int parse_form(char *body, form_fields *f) {
  f->n = 0;
  char *save = NULL;
  for (char *pair = strtok_r(body, "&", &save); pair; pair = strtok_r(NULL, "&", &save)) {
    if (f->n >= 16) return 0;
    char *eq = strchr(pair, '=');
    if (!eq) return 0;
    *eq = '\0';
    if (!url_decode(pair) || !url_decode(eq + 1)) return 0;
    f->keys[f->n] = pair;
    f->values[f->n] = eq + 1;
    f->n++;
  }
  return 1;
}

static const char *form_get(const form_fields *f, const char *key) {
  for (int i = 0; i < f->n; i++)
    if (strcmp(f->keys[i], key) == 0) return f->values[i];
  return NULL;
}

/* A vote as read from the form, checked against the study. */
typedef struct {
  const char *public_id;
  const char *shown[STUDIES_MAX_QUESTIONS];
  double seconds;
} vote_form;

static unsigned read_vote(const rater *r, const form_fields *form, vote_form *v, const char **why) {
  v->public_id = form_get(form, "item");
  *why = "bad request\n";
  if (!v->public_id || strlen(v->public_id) > 64) return MHD_HTTP_BAD_REQUEST;
  for (int q = 0; q < r->study.n_questions; q++) {
    const char *shown = form_get(form, r->study.questions[q].key);
    int ok = shown && (strcmp(shown, "left") == 0 || strcmp(shown, "right") == 0 ||
                       (r->study.allow_tie && strcmp(shown, "tie") == 0));
    if (!ok) {
      *why = "missing or invalid answer\n";
      return MHD_HTTP_BAD_REQUEST;
    }
    v->shown[q] = shown;
  }
  v->seconds = 0;
  const char *elapsed = form_get(form, "elapsed_ms");
  if (elapsed) {
    char *end;
    double ms = strtod(elapsed, &end);
    if (*end == '\0' && ms >= 0 && ms < 1e10) v->seconds = ms / 1000.0;
  }
  return MHD_HTTP_SEE_OTHER;
}

/* Inserts the assignment and its votes; the caller holds the transaction.
 * The assignment is flagged extra when the item already has votes_per_item
 * counted assignments (the rule of db_flag_extra_votes, for the newest row). */
static unsigned insert_vote(studies_db *db, const rater *r, const vote_form *v, const char **why) {
  dpo_error err;
  sqlite3_stmt *s = NULL;
  int64_t item_id = 0;
  if (db_prepare(db, "SELECT id FROM items WHERE study_id = ?1 AND public_id = ?2", &s, &err) == DPO_OK) {
    sqlite3_bind_int64(s, 1, r->study.id);
    db_bind_text(s, 2, v->public_id);
    if (sqlite3_step(s) == SQLITE_ROW) item_id = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
  }
  if (!item_id) {
    *why = "unknown item\n";
    return MHD_HTTP_NOT_FOUND;
  }
  uint64_t side_seed = rater_side_seed(r, item_id);
  const char *a_side = studies_side_from_seed(side_seed);
  char external[64];
  snprintf(external, sizeof external, "local-%lld-%lld", (long long)r->id, (long long)item_id);
  int rc = db_prepare(db, "INSERT INTO assignments(study_id, item_id, rater_id, external_id, status, work_seconds, a_side, "
                          "side_seed, created_at, extra) VALUES(?1, ?2, ?3, ?4, 'Submitted', ?5, ?6, ?7, "
                          "strftime('%Y-%m-%dT%H:%M:%SZ', 'now'), "
                          "(SELECT count(*) >= ?8 FROM assignments WHERE item_id = ?2 AND excluded IS NULL)) "
                          "ON CONFLICT(study_id, external_id) DO NOTHING",
                      &s, &err);
  if (rc == DPO_OK) {
    sqlite3_bind_int64(s, 1, r->study.id);
    sqlite3_bind_int64(s, 2, item_id);
    sqlite3_bind_int64(s, 3, r->id);
    db_bind_text(s, 4, external);
    sqlite3_bind_double(s, 5, v->seconds);
    db_bind_text(s, 6, a_side);
    sqlite3_bind_int64(s, 7, (int64_t)side_seed);
    sqlite3_bind_int(s, 8, r->study.votes_per_item);
    rc = db_step_done(db, s, "recording a vote", &err);
    sqlite3_finalize(s);
  }
  if (rc == DPO_OK && sqlite3_changes(db->db) == 0) {
    *why = "this item was already rated\n";
    return MHD_HTTP_CONFLICT;
  }
  int64_t assignment = sqlite3_last_insert_rowid(db->db);
  sqlite3_stmt *vote = NULL;
  if (rc == DPO_OK)
    rc = db_prepare(db, "INSERT INTO votes(assignment_id, question_id, shown, choice) VALUES(?1, ?2, ?3, ?4)", &vote, &err);
  for (int q = 0; q < r->study.n_questions && rc == DPO_OK; q++) {
    sqlite3_reset(vote);
    sqlite3_bind_int64(vote, 1, assignment);
    sqlite3_bind_int64(vote, 2, r->study.questions[q].id);
    db_bind_text(vote, 3, v->shown[q]);
    db_bind_text(vote, 4, studies_unswap(v->shown[q], a_side));
    rc = db_step_done(db, vote, "recording a vote", &err);
  }
  sqlite3_finalize(vote);
  if (rc != DPO_OK) {
    *why = "database error\n";
    return MHD_HTTP_INTERNAL_SERVER_ERROR;
  }
  return MHD_HTTP_SEE_OTHER;
}

struct pending_vote {
  const rater *r;
  const vote_form *v;
  unsigned status;      /* the HTTP answer, set when done */
  const char *why;
  int done;
  pending_vote *next;
};

/* Writes a batch in one transaction; each vote in a savepoint, so that a
 * refused vote (already rated, unknown item) leaves the others in. */
static void commit_batch(studies_db *db, pending_vote *batch) {
  dpo_error err;
  if (db_exec(db, "BEGIN IMMEDIATE", &err)) {
    for (pending_vote *p = batch; p; p = p->next) {
      p->status = MHD_HTTP_SERVICE_UNAVAILABLE;
      p->why = "database busy\n";
    }
    return;
  }
  for (pending_vote *p = batch; p; p = p->next) {
    if (db_exec(db, "SAVEPOINT vote", &err)) {
      p->status = MHD_HTTP_INTERNAL_SERVER_ERROR;
      p->why = "database error\n";
      continue;
    }
    p->status = insert_vote(db, p->r, p->v, &p->why);
    if (p->status != MHD_HTTP_SEE_OTHER) sqlite3_exec(db->db, "ROLLBACK TO vote", NULL, NULL, NULL);
    sqlite3_exec(db->db, "RELEASE vote", NULL, NULL, NULL);
  }
  if (db_exec(db, "COMMIT", &err)) {
    sqlite3_exec(db->db, "ROLLBACK", NULL, NULL, NULL);
    for (pending_vote *p = batch; p; p = p->next) {
      if (p->status != MHD_HTTP_SEE_OTHER) continue;
      p->status = MHD_HTTP_INTERNAL_SERVER_ERROR;
      p->why = "database error\n";
    }
  }
}

/* Records one vote, committed (synchronous = FULL) before this returns 303.
 * Returns an HTTP status. */
static unsigned record_vote(server *srv, studies_db *db, const rater *r, const form_fields *form, const char **why) {
  vote_form v;
  unsigned status = read_vote(r, form, &v, why);
  if (status != MHD_HTTP_SEE_OTHER) return status;
  pending_vote mine = {.r = r, .v = &v};
  pthread_mutex_lock(&srv->queue_lock);
  /* Appended at the tail: votes commit in arrival order. */
  pending_vote **tail = &srv->queue;
  while (*tail) tail = &(*tail)->next;
  *tail = &mine;
  while (!mine.done) {
    if (srv->committing) {
      pthread_cond_wait(&srv->committed, &srv->queue_lock);
      continue;
    }
    srv->committing = 1;
    pending_vote *batch = srv->queue;
    srv->queue = NULL;
    pthread_mutex_unlock(&srv->queue_lock);
    commit_batch(db, batch);
    pthread_mutex_lock(&srv->queue_lock);
    for (pending_vote *p = batch, *next; p; p = next) {
      next = p->next;   /* read before done: the owner may return at once */
      p->done = 1;
    }
    srv->committing = 0;
    pthread_cond_broadcast(&srv->committed);
  }
  pthread_mutex_unlock(&srv->queue_lock);
  *why = mine.why;
  return mine.status;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                              const char *version, const char *upload_data, size_t *upload_data_size, void **con_cls) {
  (void)version;
  server *srv = cls;
  int is_post = strcmp(method, "POST") == 0;
  if (!is_post && strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
    return send_error(c, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed\n");
  if (is_post) {
    request_state *st = *con_cls;
    if (!st) {
      st = calloc(1, sizeof *st);
      if (!st) return MHD_NO;
      const char *length = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
      if (length && strtoull(length, NULL, 10) > SERVE_MAX_BODY) st->too_large = 1;
      *con_cls = st;
      return MHD_YES;
    }
    if (*upload_data_size) {
      if (!st->too_large && st->used + *upload_data_size <= SERVE_MAX_BODY) {
        memcpy(st->body + st->used, upload_data, *upload_data_size);
        st->used += *upload_data_size;
      } else {
        st->too_large = 1;
      }
      *upload_data_size = 0;
      return MHD_YES;
    }
    if (st->too_large) return send_error(c, MHD_HTTP_CONTENT_TOO_LARGE, "request body too large\n");
    st->body[st->used] = '\0';
  }
  if (strcmp(url, "/static/rate.js") == 0 && !is_post)
    return send_text(c, MHD_HTTP_OK, "text/javascript; charset=utf-8", (char *)rate_js, 0);
  int wants_db = (strncmp(url, "/img/", 5) == 0 && !is_post) || strncmp(url, "/r/", 3) == 0;
  worker *w = wants_db ? worker_for_thread(srv) : NULL;
  if (wants_db && !w) return send_error(c, MHD_HTTP_SERVICE_UNAVAILABLE, "database unavailable\n");
  studies_db *db = w ? w->db : NULL;
  if (strncmp(url, "/img/", 5) == 0 && !is_post) return serve_image(db, c, url + 5);
  if (strncmp(url, "/r/", 3) == 0) {
    char token[80];
    const char *rest = url + 3;
    const char *slash = strchr(rest, '/');
    size_t n = slash ? (size_t)(slash - rest) : strlen(rest);
    if (n >= sizeof token) return send_error(c, MHD_HTTP_FORBIDDEN, "invalid or unknown invitation\n");
    memcpy(token, rest, n);
    token[n] = '\0';
    rater r;
    if (!find_rater(srv, db, token, &r)) return send_error(c, MHD_HTTP_FORBIDDEN, "invalid or unknown invitation\n");
    if (!slash && !is_post) return serve_page(w, c, token, &r);
    if (slash && strcmp(slash, "/vote") == 0 && is_post) {
      request_state *st = *con_cls;
      form_fields form;
      if (!parse_form(st->body, &form)) return send_error(c, MHD_HTTP_BAD_REQUEST, "malformed form\n");
      const char *why;
      unsigned status = record_vote(srv, db, &r, &form, &why);
      if (status != MHD_HTTP_SEE_OTHER) return send_error(c, status, why);
      char location[128];
      snprintf(location, sizeof location, "/r/%s", token);
      return send_redirect(c, location);
    }
    return send_error(c, MHD_HTTP_NOT_FOUND, "not found\n");
  }
  if (strcmp(url, "/") == 0 && !is_post)
    return send_text(c, MHD_HTTP_OK, "text/plain; charset=utf-8", (char *)"dpo rating server: open your invitation link\n", 0);
  return send_error(c, MHD_HTTP_NOT_FOUND, "not found\n");
}

static void request_done(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode code) {
  (void)cls;
  (void)c;
  (void)code;
  free(*con_cls);
  *con_cls = NULL;
}

int studies_serve(const studies_serve_options *opt, dpo_error *err) {
  if (opt->port < 0 || opt->port > 65535) return dpo_fail(err, DPO_ERR_USAGE, "--port: expected 0 to 65535");
  struct sockaddr_in addr;
  memset(&addr, 0, sizeof addr);
  addr.sin_family = AF_INET;
  addr.sin_port = htons((uint16_t)opt->port);
  const char *bind_address = opt->bind_address ? opt->bind_address : "127.0.0.1";
  if (inet_pton(AF_INET, bind_address, &addr.sin_addr) != 1)
    return dpo_fail(err, DPO_ERR_USAGE, "--bind: expected an IPv4 address, got \"%s\"", bind_address);
  server srv = {.db_path = opt->db_path};
  pthread_mutex_init(&srv.queue_lock, NULL);
  pthread_cond_init(&srv.committed, NULL);
  pthread_mutex_init(&srv.workers_lock, NULL);
  /* Opened here first so that a missing or too new database fails at once
   * (and migrations run before any request). */
  if (!(srv.workers[0] = open_worker(&srv, err))) return DPO_ERR_DATA;
  srv.n_workers = 1;
  /* A pool of threads, each with its own connection: pages are built in
   * parallel, votes are committed in batches (record_vote). */
  struct MHD_Daemon *d = MHD_start_daemon(
      MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, (uint16_t)opt->port, NULL, NULL, handle, &srv,
      MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr, MHD_OPTION_NOTIFY_COMPLETED, request_done, NULL,
      MHD_OPTION_THREAD_POOL_SIZE, (unsigned)SERVE_THREADS, MHD_OPTION_CONNECTION_LIMIT, (unsigned)256,
      MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)30, MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(64 * 1024),
      MHD_OPTION_END);
  if (!d) {
    close_worker(srv.workers[0]);
    return dpo_fail(err, DPO_ERR_DATA, "cannot listen on %s:%d (in use, or not allowed)", bind_address, opt->port);
  }
  const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
  int port = info ? info->port : opt->port;
  dpo_log_info("rating server on http://%s:%d/ (Ctrl-C stops it)", bind_address, port);
  int rc = DPO_OK;
  if (opt->port_file) {
    char text[16];
    snprintf(text, sizeof text, "%d\n", port);
    rc = dpo_atomic_write(opt->port_file, text, strlen(text), err);
  }
  for (int tick = 0; rc == DPO_OK && !(opt->stop && *opt->stop); tick++) {
    struct timespec ts = {0, 100 * 1000 * 1000};
    nanosleep(&ts, NULL);
    /* Once a second: copy committed votes from the WAL into the database
     * (PASSIVE never blocks the threads that serve). */
    if (tick % 10 == 9) sqlite3_wal_checkpoint_v2(srv.workers[0]->db->db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
  }
  MHD_stop_daemon(d);   /* joins the pool threads: no request is running after this */
  for (int i = 0; i < srv.n_workers; i++) close_worker(srv.workers[i]);
  pthread_mutex_destroy(&srv.queue_lock);
  pthread_cond_destroy(&srv.committed);
  pthread_mutex_destroy(&srv.workers_lock);
  return rc;
}
