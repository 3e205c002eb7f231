/* dpo prompts list | show | stats: the built-in prompt sets and user prompt files. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "prompts/prompts.h"

void cmd_prompts_help(FILE *out) {
  fprintf(out,
          "usage: dpo prompts list\n"
          "       dpo prompts show [--json] SET[:ID]\n"
          "       dpo prompts stats SET\n\n"
          "The built-in prompt sets (PartiPrompts, HPSv2, TEd-Bench) and user prompt files.\n\n"
          "subcommands:\n"
          "  list          the built-in sets with their counts and descriptions, and the\n"
          "                data directory they are read from\n"
          "  show SET      every prompt of SET, one per line, as TSV with a header line:\n"
          "                id<TAB>category<TAB>prompt. A backslash, newline, tab or CR in a\n"
          "                field is written as \\\\, \\n, \\t or \\r, so one prompt is one line\n"
          "  show SET:ID   one prompt in full with all its fields: source line, category,\n"
          "                the text in quotes (escaped as above) and its length, and the\n"
          "                extras (Parti: Challenge, Note; TEd-Bench: the image's absolute\n"
          "                path and its real format from the file's magic bytes)\n"
          "  stats SET     counts: in total and per category with distinct texts (Parti:\n"
          "                also per Challenge; HPSv2: per style; TEd-Bench: edits, images,\n"
          "                image formats by magic bytes, edits per image)\n\n"
          "options:\n"
          "  --json        (show) JSON Lines instead: one object per prompt with \"id\",\n"
          "                \"category\", \"prompt\" and the extras; the output of\n"
          "                'show --json' can be loaded back as a .jsonl prompt file\n"
          "  -h, --help    this help\n\n"
          "SET is a built-in name or a prompt file chosen by its extension:\n"
          "  parti       PartiPrompts: 1632 prompts, 12 categories, 11 challenges\n"
          "  hpsv2       HPSv2 benchmark: 3200 prompts, 800 per style (anime,\n"
          "              concept-art, paintings, photo), duplicates kept\n"
          "  tedbench    TEd-Bench: 100 text edits of 40 real images\n"
          "  FILE.txt    one prompt per line; empty and whitespace-only lines are\n"
          "              skipped, other lines kept verbatim (spaces included)\n"
          "  FILE.tsv    a header line with a \"prompt\" (or \"Prompt\") column and\n"
          "              optional \"category\" (or \"Category\") and \"id\" columns; split on\n"
          "              tabs only (no quoting); other columns become extras; every\n"
          "              row has as many columns as the header\n"
          "  FILE.jsonl  one JSON object per line: \"prompt\" (a string, required), \"id\"\n"
          "              and \"category\" (optional strings); other strings become extras\n"
          "Every file: UTF-8 without NUL bytes (a leading byte order mark is skipped),\n"
          "LF or CRLF line ends, at most 64 MiB, prompts non-empty and at most 64 KiB,\n"
          "ids unique. Empty lines are skipped in every format.\n\n"
          "Ids: parti:N and tedbench:N (N counts from 0 in file order), hpsv2:STYLE:N\n"
          "(N counts from 0 within the style, as the benchmark numbers its images),\n"
          "and STEM:LINE for a file's prompt (STEM: the file name without extension,\n"
          "LINE: its 1-based line), unless the file gives ids. In SET:ID the set's name\n"
          "may be left off the id: parti:17, hpsv2:anime:329, my.txt:3 (id my:3).\n\n"
          "Built-in data is read from $DPO_DATA_DIR if set, else from\n"
          "<directory of dpo>/../prompts/data, else from the source tree's prompts/data.\n\n"
          "examples:\n"
          "  dpo prompts stats parti\n"
          "  dpo prompts show hpsv2:anime:329\n"
          "  dpo prompts show tedbench:3\n"
          "  dpo prompts show --json my_prompts.tsv > my_prompts.jsonl\n\n"
          "Exit status: 0 success; 1 unreadable or malformed data (the message names\n"
          "file:line and what was expected) or an unknown id; 2 usage error.\n");
}

/* ------------------------------------------------------------ output */

/* Writes s with \\, \n, \t and \r escaped, so that it stays on one line. */
static void print_escaped(FILE *out, const char *s) {
  for (; *s; s++) {
    switch (*s) {
      case '\\': fputs("\\\\", out); break;
      case '\n': fputs("\\n", out); break;
      case '\t': fputs("\\t", out); break;
      case '\r': fputs("\\r", out); break;
      default: fputc(*s, out);
    }
  }
}

static int print_json_prompt(const prompt *p) {
  json_t *obj = json_object();
  json_object_set_new(obj, "id", json_string(p->id));
  json_object_set_new(obj, "category", json_string(p->category));
  json_object_set_new(obj, "prompt", json_string(p->text));
  for (int i = 0; i < p->n_extras; i++)
    if (!json_object_get(obj, p->extras[i].key))
      json_object_set_new(obj, p->extras[i].key, json_string(p->extras[i].value));
  char *text = json_dumps(obj, JSON_COMPACT);
  json_decref(obj);
  if (!text) {
    dpo_error err;
    dpo_fail(&err, DPO_ERR_DATA, "%s: cannot encode as JSON", p->id);
    return cli_report_error(&err);
  }
  puts(text);
  free(text);
  return EXIT_OK;
}

static const char *extension_format(const char *path) {
  const char *dot = strrchr(path, '.');
  if (!dot) return "";
  if (!strcasecmp(dot, ".png")) return "png";
  if (!strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg")) return "jpeg";
  return "";
}

static void print_one_prompt(const prompt_set *set, const prompt *p) {
  printf("id: %s\n", p->id);
  printf("set: %s\n", set->name);
  printf("source: %s", set->path);
  if (p->line > 0) printf(":%d", p->line);
  printf("\ncategory: ");
  if (p->category[0]) print_escaped(stdout, p->category);
  else fputs("(none)", stdout);
  printf("\nprompt: \"");
  print_escaped(stdout, p->text);
  printf("\"\nbytes: %zu\n", strlen(p->text));
  const char *image = prompt_extra_get(p, "image");
  for (int i = 0; i < p->n_extras; i++) {
    const prompt_extra *e = &p->extras[i];
    printf("%s: ", e->key);
    print_escaped(stdout, e->value);
    if (image && !strcmp(e->key, "format")) {
      const char *by_name = extension_format(image);
      if (strcmp(by_name, e->value) != 0)
        printf(" (from magic bytes; the file name says %s)", by_name[0] ? by_name : "nothing");
      else printf(" (from magic bytes)");
    }
    fputc('\n', stdout);
  }
}

/* ------------------------------------------------------------- specs */

static int is_regular_file(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Splits "SET:ID" into the set to load and the id. The whole argument is a
 * set when it names one; otherwise the shortest prefix before a ':' that is
 * a built-in name or an existing file is the set. */
static void split_set_and_id(const char *arg, char *set, size_t n, const char **id) {
  snprintf(set, n, "%s", arg);
  *id = NULL;
  if (prompt_builtin_find(arg) || is_regular_file(arg)) return;
  for (const char *c = strchr(arg, ':'); c; c = strchr(c + 1, ':')) {
    size_t len = (size_t)(c - arg);
    if (len >= n) break;
    memcpy(set, arg, len);
    set[len] = '\0';
    if (prompt_builtin_find(set) || is_regular_file(set)) {
      *id = c + 1;
      return;
    }
  }
  snprintf(set, n, "%s", arg);
}

/* ---------------------------------------------------------- commands */

static int prompts_list(void) {
  int n;
  const prompt_builtin *b = prompt_builtins(&n);
  printf("%-10s %-14s %s\n", "set", "size", "description");
  for (int i = 0; i < n; i++) {
    prompt_set set;
    dpo_error err;
    if (prompt_set_load(b[i].name, &set, &err)) return cli_report_error(&err);
    char count[64];
    snprintf(count, sizeof count, "%d %ss", set.n, b[i].item_noun);
    printf("%-10s %-14s %s\n", b[i].name, count, b[i].description);
    prompt_set_free(&set);
  }
  char dir[4096];
  prompt_data_dir(dir, sizeof dir);
  printf("\ndata directory: %s\n", dir);
  return EXIT_OK;
}

static int prompts_show(const char *arg, int json) {
  char spec[4096];
  const char *id;
  split_set_and_id(arg, spec, sizeof spec, &id);
  if (id && !*id) return cli_usage_error("prompts", "\"%s\": empty id after \"%s:\"", arg, spec);
  prompt_set set;
  dpo_error err;
  if (prompt_set_load(spec, &set, &err)) return cli_report_error(&err);
  int rc = EXIT_OK;
  if (id) {
    const prompt *p = prompt_set_find(&set, id);
    if (!p) {
      dpo_fail(&err, DPO_ERR_DATA, "%s: no prompt with id \"%s\" (ids run from %s to %s)", set.path, arg,
               set.items[0].id, set.items[set.n - 1].id);
      rc = cli_report_error(&err);
    } else if (json) {
      rc = print_json_prompt(p);
    } else {
      print_one_prompt(&set, p);
    }
  } else if (json) {
    for (int i = 0; i < set.n && rc == EXIT_OK; i++) rc = print_json_prompt(&set.items[i]);
  } else {
    printf("id\tcategory\tprompt\n");
    for (int i = 0; i < set.n; i++) {
      print_escaped(stdout, set.items[i].id);
      fputc('\t', stdout);
      print_escaped(stdout, set.items[i].category);
      fputc('\t', stdout);
      print_escaped(stdout, set.items[i].text);
      fputc('\n', stdout);
    }
  }
  prompt_set_free(&set);
  return rc;
}

/* --------------------------------------------------------------- stats */

typedef struct {
  const char *key;    /* the category or extra value counted */
  const char *text;
  int index;
} keyed_prompt;

typedef struct {
  const char *key;
  int count;
  int distinct;      /* distinct prompt texts */
  int first;         /* index of its first prompt */
} group;

static int compare_keyed(const void *a, const void *b) {
  const keyed_prompt *x = a, *y = b;
  int c = strcmp(x->key, y->key);
  if (c) return c;
  c = strcmp(x->text, y->text);
  if (c) return c;
  return (x->index > y->index) - (x->index < y->index);
}

/* Largest first, then by name, as the data sets' own tables list them. */
static int compare_groups(const void *a, const void *b) {
  const group *x = a, *y = b;
  if (x->count != y->count) return y->count - x->count;
  return strcmp(x->key, y->key);
}

/* Groups the set's prompts by category (extra_key NULL) or by an extra's
 * value; returns the number of groups in *groups (caller frees), -1 when out
 * of memory. */
static int group_prompts(const prompt_set *set, const char *extra_key, group **groups) {
  keyed_prompt *k = malloc(sizeof(keyed_prompt) * (size_t)set->n);
  *groups = malloc(sizeof(group) * (size_t)set->n);
  if (!k || !*groups) {
    free(k);
    free(*groups);
    return -1;
  }
  for (int i = 0; i < set->n; i++) {
    const prompt *p = &set->items[i];
    const char *key = extra_key ? prompt_extra_get(p, extra_key) : p->category;
    k[i] = (keyed_prompt){key ? key : "", p->text, i};
  }
  qsort(k, (size_t)set->n, sizeof *k, compare_keyed);
  int n = 0;
  for (int i = 0; i < set->n; i++) {
    if (i == 0 || strcmp(k[i].key, k[i - 1].key) != 0) {
      (*groups)[n++] = (group){k[i].key, 0, 0, k[i].index};
    }
    group *g = &(*groups)[n - 1];
    g->count++;
    if (g->count == 1 || strcmp(k[i].text, k[i - 1].text) != 0) g->distinct++;
    if (k[i].index < g->first) g->first = k[i].index;
  }
  free(k);
  qsort(*groups, (size_t)n, sizeof(group), compare_groups);
  return n;
}

static void print_group_table(const prompt_set *set, const group *g, int n, const char *label, const char *noun,
                              int show_format) {
  printf("\n%-36s %8s %9s%s\n", label, noun, "distinct", show_format ? "  format (magic bytes)" : "");
  for (int i = 0; i < n; i++) {
    printf("%-36s %8d %9d", g[i].key[0] ? g[i].key : "(none)", g[i].count, g[i].distinct);
    if (show_format) printf("  %s", prompt_extra_get(&set->items[g[i].first], "format"));
    fputc('\n', stdout);
  }
}

/* TEd-Bench: the images behind the edits, their real formats, edits per image. */
static void print_image_stats(const prompt_set *set, const group *images, int n) {
  int png = 0, jpeg = 0, unknown = 0;
  for (int i = 0; i < n; i++) {
    const char *format = prompt_extra_get(&set->items[images[i].first], "format");
    if (!strcmp(format, "png")) png++;
    else if (!strcmp(format, "jpeg")) jpeg++;
    else unknown++;
  }
  printf("image formats (magic bytes): jpeg %d, png %d", jpeg, png);
  if (unknown) printf(", unknown %d", unknown);
  fputc('\n', stdout);
  for (int i = 0; i < n; i++) {
    const prompt *p = &set->items[images[i].first];
    const char *format = prompt_extra_get(p, "format");
    const char *by_name = extension_format(p->category);
    if (strcmp(format, by_name) != 0)
      printf("  %s is really %s (the file name says %s)\n", p->category, format, by_name[0] ? by_name : "nothing");
  }
  printf("edits per image:");
  /* The groups are sorted by count, largest first: print smallest first. */
  for (int i = n - 1; i >= 0;) {
    int count = images[i].count, how_many = 0;
    while (i >= 0 && images[i].count == count) { how_many++; i--; }
    printf(" %d edit%s: %d image%s%s", count, count == 1 ? "" : "s", how_many, how_many == 1 ? "" : "s",
           i >= 0 ? ";" : "\n");
  }
}

static int compare_strings(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int count_distinct_texts(const prompt_set *set) {
  const char **texts = malloc(sizeof(char *) * (size_t)set->n);
  if (!texts) return -1;
  for (int i = 0; i < set->n; i++) texts[i] = set->items[i].text;
  qsort(texts, (size_t)set->n, sizeof *texts, compare_strings);
  int distinct = 0;
  for (int i = 0; i < set->n; i++)
    if (i == 0 || strcmp(texts[i], texts[i - 1]) != 0) distinct++;
  free(texts);
  return distinct;
}

static int prompts_stats(const char *spec) {
  prompt_set set;
  dpo_error err;
  if (prompt_set_load(spec, &set, &err)) return cli_report_error(&err);
  const prompt_builtin *b = prompt_builtin_find(set.name);
  if (b && strcmp(spec, b->name) != 0) b = NULL;   /* a user file called parti.txt */
  const char *noun = b ? b->item_noun : "prompt";
  const char *label = b ? b->category_label : "category";
  const char *plural = b ? b->category_plural : "categories";
  int has_images = set.n > 0 && prompt_extra_get(&set.items[0], "image") != NULL;
  group *groups;
  int n = group_prompts(&set, NULL, &groups);
  if (n < 0) {
    dpo_fail(&err, DPO_ERR_DATA, "out of memory counting %d prompts", set.n);
    prompt_set_free(&set);
    return cli_report_error(&err);
  }
  int distinct_texts = count_distinct_texts(&set);
  printf("set: %s\nsource: %s\n%ss: %d\n", set.name, set.path, noun, set.n);
  printf("distinct texts: %d\n", distinct_texts);
  int categorised = !(n == 1 && groups[0].key[0] == '\0');
  printf("%s: %d\n", plural, categorised ? n : 0);
  if (has_images) print_image_stats(&set, groups, n);
  char heading[128];
  char nouns[32];
  snprintf(nouns, sizeof nouns, "%ss", noun);
  if (categorised) {
    snprintf(heading, sizeof heading, "%s (%d)", label, n);
    print_group_table(&set, groups, n, heading, nouns, has_images);
  }
  free(groups);
  if (b && b->breakdown_key) {
    n = group_prompts(&set, b->breakdown_key, &groups);
    if (n > 0) {
      snprintf(heading, sizeof heading, "%s (%d)", b->breakdown_key, n);
      print_group_table(&set, groups, n, heading, nouns, 0);
    }
    free(groups);
  }
  prompt_set_free(&set);
  return EXIT_OK;
}

/* ------------------------------------------------------------- entry */

int cmd_prompts(int argc, char **argv) {
  if (argc < 2) return cli_usage_error("prompts", "expected a subcommand: list, show or stats");
  const char *sub = argv[1];
  if (cli_is_help(sub)) {
    cmd_prompts_help(stdout);
    return EXIT_OK;
  }
  const char *positional[2];
  int n_positional = 0, json = 0;
  for (int i = 2; i < argc; i++) {
    if (cli_is_help(argv[i])) {
      cmd_prompts_help(stdout);
      return EXIT_OK;
    }
    if (!strcmp(argv[i], "--json")) json = 1;
    else if (argv[i][0] == '-' && argv[i][1] != '\0') return cli_usage_error("prompts", "unknown option \"%s\"", argv[i]);
    else if (n_positional < 2) positional[n_positional++] = argv[i];
    else return cli_usage_error("prompts", "too many arguments");
  }
  if (json && strcmp(sub, "show") != 0) return cli_usage_error("prompts", "--json applies to 'show' only");
  if (!strcmp(sub, "list")) {
    if (n_positional) return cli_usage_error("prompts", "'list' takes no arguments");
    return prompts_list();
  }
  if (!strcmp(sub, "show") || !strcmp(sub, "stats")) {
    if (n_positional != 1) return cli_usage_error("prompts", "'%s' expects one SET%s", sub, sub[1] == 'h' ? "[:ID]" : "");
    return sub[1] == 'h' ? prompts_show(positional[0], json) : prompts_stats(positional[0]);
  }
  return cli_usage_error("prompts", "unknown subcommand \"%s\", expected list, show or stats", sub);
}
