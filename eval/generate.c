/* dpo generate's library half: a resumable, shardable run folder of images
 * (see eval.h for the layout and the resume rules). */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "eval/eval.h"

#define MANIFEST_MAX_BYTES (512u << 20)

void eval_generate_config_default(eval_generate_config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  eval_sample_options_default(&cfg->sample);
  cfg->images_per_prompt = 1;
  cfg->batch_size = 1;
  cfg->shard_count = 1;
}

/* One image to make: prompt position and image index. */
typedef struct {
  int prompt;
  int image_index;
} work_item;

typedef struct {
  const eval_generate_config *cfg;
  eval_prompt_list list;
  char manifest[4200];
  int lock_fd;
  json_t *settings;         /* this run's settings, without source_image */
  char sampler_name[64];
  int resolution;
  /* from the manifest: images already done, as "file\tprompt_set\tprompt_id" */
  char **done_files;
  int n_done;
} run_state;

/* ------------------------------------------------------------ locking */

static int lock_run(run_state *r, dpo_error *err) {
  char path[4200];
  snprintf(path, sizeof path, "%s/.lock", r->cfg->out);
  r->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (r->lock_fd < 0) return dpo_fail(err, DPO_ERR_DATA, "%s: cannot open: %s", path, strerror(errno));
  return DPO_OK;
}

static void hold(run_state *r, int on) { flock(r->lock_fd, on ? LOCK_EX : LOCK_UN); }

/* ------------------------------------------------------------ names */

static void image_file(int prompt, int image_index, char *buf, size_t n) {
  snprintf(buf, n, "images/%06d-%d.png", prompt, image_index);
}

static void source_file(int prompt, char *buf, size_t n) { snprintf(buf, n, "sources/%06d.png", prompt); }

/* ------------------------------------------------------------ manifest scan */

/* The settings of a line without source_image, for comparison. */
static int same_settings(const json_t *line_settings, const json_t *ours) {
  json_t *copy = json_deep_copy(line_settings);
  if (!copy) return 0;
  json_object_del(copy, "source_image");
  int same = json_equal(copy, (json_t *)ours);
  json_decref(copy);
  return same;
}

/* Is the line's image present with its hash? */
static int line_image_valid(const run_state *r, const json_t *obj) {
  const char *file = json_string_value(json_object_get(obj, "file"));
  const char *sha = json_string_value(json_object_get(obj, "sha256"));
  if (!file || !sha || strstr(file, "..") || file[0] == '/') return 0;
  char path[4400], hex[65];
  snprintf(path, sizeof path, "%s/%s", r->cfg->out, file);
  dpo_error e;
  if (dpo_sha256_file(path, hex, &e) != DPO_OK) return 0;
  return strcmp(hex, sha) == 0;
}

/* The done entry of a file, or NULL. */
static const char *listed_entry(const run_state *r, const char *file) {
  size_t n = strlen(file);
  for (int i = 0; i < r->n_done; i++)
    if (strncmp(r->done_files[i], file, n) == 0 && r->done_files[i][n] == '\t') return r->done_files[i];
  return NULL;
}

static int already_listed(const run_state *r, const char *file) { return listed_entry(r, file) != NULL; }

/* Reads the manifest (under the lock), keeps the valid lines, rewrites it if
 * anything was dropped, and records the files already done. */
static int scan_manifest(run_state *r, eval_generate_stats *stats, dpo_error *err) {
  struct stat st;
  if (stat(r->manifest, &st) != 0) return DPO_OK;   /* a new run */
  char *data;
  size_t len;
  int rc = dpo_read_file(r->manifest, MANIFEST_MAX_BYTES, &data, &len, err);
  if (rc) return rc;
  size_t cap = len + 1, used = 0;
  char *kept = malloc(cap);
  r->done_files = calloc(len / 16 + 1, sizeof *r->done_files);
  if (!kept || !r->done_files) {
    free(data);
    free(kept);
    return dpo_fail(err, DPO_ERR_DATA, "out of memory reading %s", r->manifest);
  }
  int line = 0, dropped = 0;
  char *p = data, *end = data + len;
  while (rc == DPO_OK && p < end) {
    char *nl = memchr(p, '\n', (size_t)(end - p));
    line++;
    if (!nl) {   /* a torn last line: the writer died mid-append */
      dropped++;
      break;
    }
    size_t n = (size_t)(nl - p);
    char where[4300];
    snprintf(where, sizeof where, "%s:%d", r->manifest, line);
    int blank = 1;
    for (size_t i = 0; i < n; i++) blank &= p[i] == ' ' || p[i] == '\t' || p[i] == '\r';
    if (!blank) {
      json_t *obj = dpo_json_parse(p, n, where, err);
      if (!obj) {
        rc = DPO_ERR_DATA;
        break;
      }
      const char *model = json_string_value(json_object_get(obj, "model"));
      json_t *settings = json_object_get(obj, "settings");
      const char *file = json_string_value(json_object_get(obj, "file"));
      json_int_t seed = json_integer_value(json_object_get(obj, "seed"));
      if (!model || !json_is_object(settings) || !file) {
        rc = dpo_fail(err, DPO_ERR_DATA, "%s: expected a manifest line with model, settings and file", where);
      } else if (strcmp(model, r->cfg->model) != 0 || !same_settings(settings, r->settings) ||
                 (uint64_t)seed != r->cfg->seed) {
        char *theirs = json_dumps(settings, JSON_COMPACT | JSON_SORT_KEYS);
        rc = dpo_fail(err, DPO_ERR_USAGE, "%s: this run folder was made with model %s, seed %lld and settings %s; "
                      "use another --out for other settings", where, model, (long long)seed, theirs ? theirs : "?");
        free(theirs);
      } else if (!line_image_valid(r, obj) || already_listed(r, file)) {
        dropped++;
      } else {
        const char *set = json_string_value(json_object_get(obj, "prompt_set"));
        const char *id = json_string_value(json_object_get(obj, "prompt_id"));
        size_t need = strlen(file) + (set ? strlen(set) : 0) + (id ? strlen(id) : 0) + 3;
        char *entry = malloc(need);
        if (entry) snprintf(entry, need, "%s\t%s\t%s", file, set ? set : "", id ? id : "");
        r->done_files[r->n_done++] = entry;
        memcpy(kept + used, p, n + 1);
        used += n + 1;
      }
      json_decref(obj);
    }
    p = nl + 1;
  }
  free(data);
  if (rc == DPO_OK && dropped > 0) rc = dpo_atomic_write(r->manifest, kept, used, err);
  free(kept);
  stats->dropped_lines = dropped;
  return rc;
}

/* 1 when the image is listed for this prompt, 0 when not listed; a file
 * listed for another prompt means the folder holds another prompt list. */
static int is_done(const run_state *r, const char *file, const eval_prompt_item *it, dpo_error *err) {
  const char *entry = listed_entry(r, file);
  if (!entry) return 0;
  const char *rest = entry + strlen(file) + 1;
  size_t n = strlen(r->list.set_name);
  if (strncmp(rest, r->list.set_name, n) == 0 && rest[n] == '\t' && strcmp(rest + n + 1, it->id) == 0) return 1;
  const char *tab = strchr(rest, '\t');
  dpo_fail(err, DPO_ERR_USAGE, "%s/%s is listed for prompt %s of set %.*s, not %s of set %s: the folder holds another "
           "prompt list; use another --out", r->cfg->out, file, tab ? tab + 1 : rest, tab ? (int)(tab - rest) : 0,
           rest, it->id, r->list.set_name);
  return -1;
}

/* ------------------------------------------------------------ writing */

static json_t *make_settings(const eval_generate_config *cfg, const char *sampler, int resolution, int edit) {
  json_t *s = json_object();
  json_object_set_new(s, "mode", json_string(edit ? "sdedit" : "txt2img"));
  json_object_set_new(s, "sampler", json_string(sampler));
  json_object_set_new(s, "steps", json_integer(cfg->sample.steps));
  json_object_set_new(s, "guidance", json_real(cfg->sample.guidance));
  json_object_set_new(s, "negative_prompt",
                      json_string(cfg->sample.negative_prompt ? cfg->sample.negative_prompt : ""));
  json_object_set_new(s, "resolution", json_integer(resolution));
  if (edit) json_object_set_new(s, "strength", json_real(cfg->sample.strength));
  /* Only when not the default, so float32 folders keep their settings. */
  if (cfg->sample.precision == KN_BF16) json_object_set_new(s, "precision", json_string("bf16"));
  return s;
}

/* Appends one line (+ newline) and fsyncs, under the lock. */
static int append_line(run_state *r, const char *text, dpo_error *err) {
  hold(r, 1);
  int fd = open(r->manifest, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  int rc = DPO_OK;
  if (fd < 0) {
    rc = dpo_fail(err, DPO_ERR_DATA, "%s: cannot open for appending: %s", r->manifest, strerror(errno));
  } else {
    size_t n = strlen(text);
    char *buf = malloc(n + 1);
    if (!buf) rc = dpo_fail(err, DPO_ERR_DATA, "out of memory");
    else {
      memcpy(buf, text, n);
      buf[n] = '\n';
      ssize_t w = write(fd, buf, n + 1);
      if (w != (ssize_t)(n + 1) || fsync(fd) != 0)
        rc = dpo_fail(err, DPO_ERR_DATA, "%s: write failed: %s", r->manifest, strerror(errno));
      free(buf);
    }
    close(fd);
  }
  hold(r, 0);
  return rc;
}

static int write_image(run_state *r, const work_item *w, const dpo_image *image, dpo_error *err) {
  const eval_prompt_item *it = &r->list.items[w->prompt];
  char file[64], path[4400], hex[65], seed_text[32], index_text[32];
  image_file(w->prompt, w->image_index, file, sizeof file);
  snprintf(path, sizeof path, "%s/%s", r->cfg->out, file);
  json_t *settings = json_deep_copy(r->settings);
  if (it->source_image) {
    char src[64];
    source_file(w->prompt, src, sizeof src);
    json_object_set_new(settings, "source_image", json_string(src));
  }
  char *settings_text = json_dumps(settings, JSON_COMPACT | JSON_SORT_KEYS);
  snprintf(seed_text, sizeof seed_text, "%llu", (unsigned long long)r->cfg->seed);
  snprintf(index_text, sizeof index_text, "%d", w->image_index);
  dpo_image_text texts[] = {{"prompt", it->text},       {"prompt_id", it->id},         {"seed", seed_text},
                            {"image_index", index_text}, {"model", (char *)r->cfg->model}, {"settings", settings_text}};
  int rc = dpo_png_write(path, image, texts, (int)(sizeof texts / sizeof texts[0]), err);
  if (!rc) rc = dpo_sha256_file(path, hex, err);
  if (!rc) {
    json_t *line = json_object();
    json_object_set_new(line, "prompt_set", json_string(r->list.set_name));
    json_object_set_new(line, "prompt_id", json_string(it->id));
    json_object_set_new(line, "prompt", json_string(it->text));
    json_object_set_new(line, "category", json_string(it->category));
    json_object_set_new(line, "seed", json_integer((json_int_t)r->cfg->seed));
    json_object_set_new(line, "image_index", json_integer(w->image_index));
    json_object_set_new(line, "file", json_string(file));
    json_object_set_new(line, "sha256", json_string(hex));
    json_object_set_new(line, "model", json_string(r->cfg->model));
    json_object_set_new(line, "settings", json_incref(settings));
    char *text = json_dumps(line, JSON_COMPACT | JSON_SORT_KEYS);
    rc = text ? append_line(r, text, err) : dpo_fail(err, DPO_ERR_DATA, "out of memory");
    free(text);
    json_decref(line);
  }
  free(settings_text);
  json_decref(settings);
  return rc;
}

/* The source of an edit, resized and cropped, from RUN/sources/ when there
 * (an earlier run or image of the same prompt wrote it) or made now. */
static int load_source(run_state *r, int prompt, dpo_image *out, dpo_error *err) {
  char file[64], path[4400];
  source_file(prompt, file, sizeof file);
  snprintf(path, sizeof path, "%s/%s", r->cfg->out, file);
  struct stat st;
  if (stat(path, &st) == 0 && dpo_image_read(path, 3, out, err) == DPO_OK && out->width == r->resolution &&
      out->height == r->resolution)
    return DPO_OK;
  dpo_image original;
  int rc = dpo_image_read(r->list.items[prompt].source_image, 3, &original, err);
  if (rc) return rc;
  rc = eval_resize_center_crop(&original, r->resolution, out, err);
  dpo_image_free(&original);
  if (!rc) rc = dpo_png_write(path, out, NULL, 0, err);
  return rc;
}

/* ------------------------------------------------------------ the run */

static int plan_work(run_state *r, work_item **items, int *n, dpo_error *err) {
  const eval_generate_config *cfg = r->cfg;
  int n_prompts = r->list.n;
  if (cfg->limit > 0 && cfg->limit < n_prompts) n_prompts = cfg->limit;
  *items = malloc(((size_t)n_prompts * (size_t)cfg->images_per_prompt + 1) * sizeof **items);
  if (!*items) return dpo_fail(err, DPO_ERR_DATA, "out of memory");
  *n = 0;
  for (int p = 0; p < n_prompts; p++) {
    if (p % cfg->shard_count != cfg->shard_index) continue;
    for (int k = 0; k < cfg->images_per_prompt; k++) (*items)[(*n)++] = (work_item){p, k};
  }
  return DPO_OK;
}

static int check_config(const eval_generate_config *cfg, dpo_error *err) {
  if (!cfg->model || !cfg->prompts || !cfg->out)
    return dpo_fail(err, DPO_ERR_USAGE, "generate needs a model, prompts and an output folder");
  if (cfg->images_per_prompt < 1 || cfg->images_per_prompt > 100000)
    return dpo_fail(err, DPO_ERR_USAGE, "images per prompt %d: expected 1..100000", cfg->images_per_prompt);
  if (cfg->shard_count < 1 || cfg->shard_index < 0 || cfg->shard_index >= cfg->shard_count)
    return dpo_fail(err, DPO_ERR_USAGE, "shard %d/%d: expected i/n with 0 <= i < n", cfg->shard_index,
                    cfg->shard_count);
  if (cfg->limit < 0) return dpo_fail(err, DPO_ERR_USAGE, "limit %d: expected >= 0", cfg->limit);
  return DPO_OK;
}

static int run_batches(run_state *r, dpo_pipeline *pipe, const work_item *todo, int n_todo,
                       eval_generate_stats *stats, dpo_error *err) {
  const eval_generate_config *cfg = r->cfg;
  int batch = cfg->batch_size < n_todo ? cfg->batch_size : n_todo;
  eval_sampler *s;
  int rc = eval_sampler_open(&s, pipe, &cfg->sample, batch, cfg->threads, err);
  if (rc) return rc;
  size_t lat = eval_sampler_latent_numel(s);
  float *noise = malloc((size_t)batch * lat * sizeof(float));
  const char **texts = malloc((size_t)batch * sizeof *texts);
  dpo_image *images = calloc((size_t)batch, sizeof *images);
  dpo_image *sources = calloc((size_t)batch, sizeof *sources);
  if (!noise || !texts || !images || !sources) rc = dpo_fail(err, DPO_ERR_DATA, "out of memory");
  dpo_progress progress;
  if (!cfg->quiet) dpo_progress_begin(&progress, "generate", (uint64_t)n_todo, "img");
  for (int start = 0; rc == DPO_OK && start < n_todo; start += batch) {
    int n = n_todo - start < batch ? n_todo - start : batch;
    for (int i = 0; i < n; i++) {
      const work_item *w = &todo[start + i];
      texts[i] = r->list.items[w->prompt].text;
      eval_initial_noise(cfg->seed, r->list.items[w->prompt].id, w->image_index, noise + (size_t)i * lat, lat);
      if (r->list.is_edit && rc == DPO_OK) rc = load_source(r, w->prompt, &sources[i], err);
    }
    if (rc == DPO_OK)
      rc = r->list.is_edit ? eval_img2img(s, texts, n, sources, noise, NULL, images, err)
                           : eval_txt2img(s, texts, n, noise, NULL, images, err);
    for (int i = 0; i < n; i++) dpo_image_free(&sources[i]);
    if (rc) break;
    for (int i = 0; i < n; i++) {
      if (rc == DPO_OK) rc = write_image(r, &todo[start + i], &images[i], err);
      if (rc == DPO_OK) stats->generated++;
      dpo_image_free(&images[i]);
    }
    if (!cfg->quiet) dpo_progress_advance(&progress, (uint64_t)n);
  }
  if (!cfg->quiet) dpo_progress_end(&progress);
  free(noise);
  free(texts);
  free(images);
  free(sources);
  eval_sampler_close(s);
  return rc;
}

static int generate_in_process(const eval_generate_config *cfg, eval_generate_stats *stats, dpo_error *err) {
  memset(stats, 0, sizeof *stats);
  int rc = check_config(cfg, err);
  if (rc) return rc;
  run_state r;
  memset(&r, 0, sizeof r);
  r.cfg = cfg;
  r.lock_fd = -1;
  rc = eval_prompt_list_load(cfg->prompts, &r.list, err);
  if (rc) return rc;
  dpo_pipeline pipe;
  memset(&pipe, 0, sizeof pipe);
  work_item *items = NULL, *todo = NULL;
  int n_items = 0, n_todo = 0;
  char dir[4200];
  rc = dpo_pipeline_load(cfg->model, &pipe, err);
  if (!rc) {
    /* The resolution as the sampler will choose it (it checks it too). */
    const dpo_unet_config *u = dpo_unet_get_config(pipe.unet);
    int factor = pipe.vae ? 1 << (dpo_vae_get_config(pipe.vae)->n_blocks - 1) : 1;
    r.resolution = cfg->sample.resolution > 0 ? cfg->sample.resolution : u->sample_size * factor;
    int kind = cfg->sample.sampler >= 0 ? cfg->sample.sampler : (int)pipe.scheduler.kind;
    snprintf(r.sampler_name, sizeof r.sampler_name, "%s", dpo_scheduler_kind_name((dpo_scheduler_kind)kind));
    r.settings = make_settings(cfg, r.sampler_name, r.resolution, r.list.is_edit);
    snprintf(dir, sizeof dir, "%s/images", cfg->out);
    rc = dpo_mkdir_p(dir, err);
  }
  if (!rc && r.list.is_edit) {
    snprintf(dir, sizeof dir, "%s/sources", cfg->out);
    rc = dpo_mkdir_p(dir, err);
  }
  snprintf(r.manifest, sizeof r.manifest, "%s/manifest.jsonl", cfg->out);
  if (!rc) rc = lock_run(&r, err);
  if (!rc) {
    hold(&r, 1);
    rc = scan_manifest(&r, stats, err);
    hold(&r, 0);
  }
  if (!rc) rc = plan_work(&r, &items, &n_items, err);
  if (!rc) {
    todo = malloc(((size_t)n_items + 1) * sizeof *todo);
    if (!todo) rc = dpo_fail(err, DPO_ERR_DATA, "out of memory");
  }
  for (int i = 0; !rc && i < n_items; i++) {
    char file[64];
    image_file(items[i].prompt, items[i].image_index, file, sizeof file);
    int done = is_done(&r, file, &r.list.items[items[i].prompt], err);
    if (done < 0) rc = DPO_ERR_USAGE;
    else if (done) stats->skipped++;
    else todo[n_todo++] = items[i];
  }
  stats->planned = n_items;
  if (!rc && n_todo > 0) rc = run_batches(&r, &pipe, todo, n_todo, stats, err);
  free(items);
  free(todo);
  for (int i = 0; i < r.n_done; i++) free(r.done_files[i]);
  free(r.done_files);
  if (r.settings) json_decref(r.settings);
  if (r.lock_fd >= 0) close(r.lock_fd);
  dpo_pipeline_free(&pipe);
  eval_prompt_list_free(&r.list);
  return rc;
}

/* ------------------------------------------------------- worker processes */

/* Worker i of a parallel run: shard i of jobs, its stats sent up the pipe.
 * It never returns; its exit status is 0 on success. */
static void run_worker(const eval_generate_config *cfg, int i, int jobs, int stats_fd) {
  eval_generate_config c = *cfg;
  c.jobs = 1;
  c.shard_index = i;
  c.shard_count = jobs;
  c.quiet = cfg->quiet || i != 0;
  eval_generate_stats st;
  dpo_error err = {0};
  int rc = generate_in_process(&c, &st, &err);
  if (rc) fprintf(stderr, "generate worker %d of %d: %s\n", i + 1, jobs, err.msg);
  if (rc == DPO_OK && write(stats_fd, &st, sizeof st) != (ssize_t)sizeof st) rc = DPO_ERR_DATA;
  close(stats_fd);
  fflush(NULL);
  _exit(rc == DPO_OK ? 0 : 1);
}

/* Forks `jobs` workers, waits for all of them, and adds up their stats. A
 * final pass in this process then checks that the run is complete (and
 * repairs the manifest as any resume does); it loads the pipeline once more,
 * which is cheap for the small models this is meant for. */
static int generate_in_workers(const eval_generate_config *cfg, eval_generate_stats *stats, dpo_error *err) {
  int jobs = cfg->jobs;
  pid_t pids[EVAL_MAX_JOBS];
  int fds[EVAL_MAX_JOBS];
  int started = 0, rc = DPO_OK;
  memset(stats, 0, sizeof *stats);
  fflush(NULL);   /* buffered output would be written again by each child */
  for (; started < jobs; started++) {
    int p[2];
    if (pipe(p) != 0) {
      rc = dpo_fail(err, DPO_ERR_DATA, "%s: cannot create a pipe for generate workers: %s", cfg->out, strerror(errno));
      break;
    }
    pid_t pid = fork();
    if (pid < 0) {
      close(p[0]);
      close(p[1]);
      rc = dpo_fail(err, DPO_ERR_DATA, "%s: cannot start generate worker %d: %s", cfg->out, started + 1,
                    strerror(errno));
      break;
    }
    if (pid == 0) {
      close(p[0]);
      for (int k = 0; k < started; k++) close(fds[k]);
      run_worker(cfg, started, jobs, p[1]);
    }
    close(p[1]);
    pids[started] = pid;
    fds[started] = p[0];
  }
  int failed = 0;
  for (int k = 0; k < started; k++) {
    eval_generate_stats st;
    ssize_t got = read(fds[k], &st, sizeof st);
    close(fds[k]);
    int status = 0;
    while (waitpid(pids[k], &status, 0) < 0 && errno == EINTR) {
    }
    if (got != (ssize_t)sizeof st || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      if (!failed) failed = k + 1;
      continue;
    }
    stats->planned += st.planned;
    stats->skipped += st.skipped;
    stats->generated += st.generated;
    stats->dropped_lines += st.dropped_lines;
  }
  if (rc) return rc;
  if (failed)
    return dpo_fail(err, DPO_ERR_DATA, "%s: generate worker %d of %d failed (its message is above); a rerun resumes",
                    cfg->out, failed, jobs);
  eval_generate_config check = *cfg;
  check.jobs = 1;
  check.quiet = 1;
  eval_generate_stats final;
  rc = generate_in_process(&check, &final, err);
  stats->generated += final.generated;   /* 0 unless a file vanished meanwhile */
  return rc;
}

int eval_generate(const eval_generate_config *cfg, eval_generate_stats *stats, dpo_error *err) {
  if (cfg->jobs > 1 && cfg->shard_count <= 1) {
    if (cfg->jobs > EVAL_MAX_JOBS)
      return dpo_fail(err, DPO_ERR_USAGE, "generate: --jobs %d is more than %d", cfg->jobs, EVAL_MAX_JOBS);
    return generate_in_workers(cfg, stats, err);
  }
  return generate_in_process(cfg, stats, err);
}
