/* dpo inspect: what a safetensors, PNG or JPEG file holds, after full
 * validation; the quickest way to see why a checkpoint or image is refused. */
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

void cmd_inspect_help(FILE *out) {
  fprintf(out,
          "usage: dpo inspect [--json] FILE...\n\n"
          "Validates and describes each FILE: a safetensors file (tensors with dtype and\n"
          "shape, metadata, sizes) or an image (format by magic bytes, size, channels,\n"
          "PNG text chunks). A malformed file is reported with its byte offset or the\n"
          "tensor at fault, and the exit status is 1.\n\n"
          "options:\n"
          "  --json     one JSON object per file on stdout\n"
          "  -h, --help this help\n");
}

static void print_shape(FILE *out, const dpo_tensor_view *t) {
  fputc('[', out);
  for (int d = 0; d < t->ndim; d++) fprintf(out, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
  fputc(']', out);
}

static json_t *shape_json(const dpo_tensor_view *t) {
  json_t *shape = json_array();
  for (int d = 0; d < t->ndim; d++) json_array_append_new(shape, json_integer(t->shape[d]));
  return shape;
}

/* Prints one compact JSON object per line (JSON Lines) and releases it. */
static void print_json_line(json_t *o) {
  char *text = json_dumps(o, JSON_COMPACT);
  printf("%s\n", text ? text : "null");
  free(text);
  json_decref(o);
}

static int inspect_safetensors(const char *path, int as_json, dpo_error *err) {
  dpo_safetensors st;
  int rc = dpo_st_open(&st, path, err);
  if (rc) return rc;
  size_t total = 0;
  for (int i = 0; i < st.n_tensors; i++) total += st.tensors[i].nbytes;
  if (as_json) {
    json_t *o = json_pack("{s:s, s:s, s:i, s:I}", "file", path, "format", "safetensors", "tensors",
                          st.n_tensors, "data_bytes", (json_int_t)total);
    json_t *list = json_array(), *meta = json_object();
    for (int i = 0; i < st.n_tensors; i++) {
      const dpo_tensor_view *t = &st.tensors[i];
      json_array_append_new(list, json_pack("{s:s, s:s, s:o, s:I}", "name", t->name, "dtype",
                                            dpo_dtype_name(t->dtype), "shape", shape_json(t),
                                            "bytes", (json_int_t)t->nbytes));
    }
    for (int i = 0; i < st.n_meta; i++) json_object_set_new(meta, st.meta_keys[i], json_string(st.meta_values[i]));
    json_object_set_new(o, "tensor_list", list);
    json_object_set_new(o, "metadata", meta);
    print_json_line(o);
  } else {
    printf("%s: safetensors, %d tensors, %zu data bytes\n", path, st.n_tensors, total);
    for (int i = 0; i < st.n_meta; i++) printf("  metadata %s = %s\n", st.meta_keys[i], st.meta_values[i]);
    for (int i = 0; i < st.n_tensors; i++) {
      const dpo_tensor_view *t = &st.tensors[i];
      printf("  %-6s ", dpo_dtype_name(t->dtype));
      print_shape(stdout, t);
      printf(" %s\n", t->name);
    }
  }
  dpo_st_close(&st);
  return DPO_OK;
}

static int inspect_image(const char *path, dpo_image_format format, int as_json, dpo_error *err) {
  dpo_image img;
  int rc = dpo_image_read(path, 0, &img, err);
  if (rc) return rc;
  dpo_image_text *texts = NULL;
  int n_texts = 0;
  if (format == DPO_IMAGE_FORMAT_PNG && (rc = dpo_png_read_texts(path, &texts, &n_texts, err))) {
    dpo_image_free(&img);
    return rc;
  }
  const char *name = format == DPO_IMAGE_FORMAT_PNG ? "png" : "jpeg";
  if (as_json) {
    json_t *o = json_pack("{s:s, s:s, s:i, s:i, s:i}", "file", path, "format", name, "width", img.width,
                          "height", img.height, "channels", img.channels);
    json_t *t = json_object();
    for (int i = 0; i < n_texts; i++) json_object_set_new(t, texts[i].key, json_string(texts[i].value));
    json_object_set_new(o, "text", t);
    print_json_line(o);
  } else {
    printf("%s: %s, %dx%d, %d channel%s\n", path, name, img.width, img.height, img.channels,
           img.channels == 1 ? "" : "s");
    for (int i = 0; i < n_texts; i++) printf("  text %s = %s\n", texts[i].key, texts[i].value);
  }
  dpo_image_texts_free(texts, n_texts);
  dpo_image_free(&img);
  return DPO_OK;
}

static int inspect_file(const char *path, int as_json, dpo_error *err) {
  uint8_t magic[8] = {0};
  FILE *f = fopen(path, "rb");
  if (!f) return dpo_fail(err, DPO_ERR_DATA, "%s: cannot open", path);
  size_t got = fread(magic, 1, sizeof magic, f);
  fclose(f);
  dpo_image_format format = dpo_image_detect(magic, got);
  if (format != DPO_IMAGE_FORMAT_UNKNOWN) return inspect_image(path, format, as_json, err);
  /* Anything else is taken for safetensors, whose reader explains what is wrong. */
  return inspect_safetensors(path, as_json, err);
}

int cmd_inspect(int argc, char **argv) {
  int as_json = 0, n_files = 0, worst = EXIT_OK;
  for (int i = 1; i < argc; i++) {
    if (cli_is_help(argv[i])) {
      cmd_inspect_help(stdout);
      return EXIT_OK;
    }
    if (strcmp(argv[i], "--json") == 0) as_json = 1;
    else if (argv[i][0] == '-' && argv[i][1] != '\0') return cli_usage_error("inspect", "unknown option \"%s\"", argv[i]);
  }
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--json") == 0) continue;
    n_files++;
    dpo_error err = {0};
    if (inspect_file(argv[i], as_json, &err)) worst = cli_report_error(&err);
  }
  if (n_files == 0) return cli_usage_error("inspect", "expects at least one FILE");
  return worst;
}
