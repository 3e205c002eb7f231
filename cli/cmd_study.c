/* dpo study: A/B human studies (studies/studies.h does the work). */
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "eval/eval.h"
#include "studies/studies.h"

/* Flags of all study verbs; each verb reads the ones it documents. */
typedef struct {
  const char *db, *name, *study, *run_a, *run_b, *questions, *format, *base_url, *out, *port_file, *bind, *scorer;
  uint64_t votes, gold, seed, raters, port;
  int allow_tie, have_seed;
  double min_work_seconds, noise, random_share, left_bias;
  const char *positional[4];
  int n_positional;
} study_flags;

static int parse_seconds(const char *cmd, const char *text, double *out) {
  char *end = NULL;
  double v = strtod(text, &end);
  if (!*text || *end || !(v >= 0) || v > 1e9)
    return cli_usage_error(cmd, "--min-work-seconds expects a non-negative number, got \"%s\"", text);
  *out = v;
  return EXIT_OK;
}

/* A number in [lo, hi] for the simulate flags. */
static int parse_number(const char *cmd, const char *flag, const char *text, double lo, double hi, double *out) {
  char *end = NULL;
  double v = strtod(text, &end);
  if (!*text || *end || !(v >= lo && v <= hi))
    return cli_usage_error(cmd, "%s expects a number from %g to %g, got \"%s\"", flag, lo, hi, text);
  *out = v;
  return EXIT_OK;
}

static int parse_flags(const char *cmd, int argc, char **argv, study_flags *f) {
  memset(f, 0, sizeof *f);
  f->votes = 5;
  f->questions = "q1,q2,q3";
  f->bind = "127.0.0.1";
  f->noise = 0.1;
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i];
    if (a[0] != '-' || strcmp(a, "-") == 0) {
      if (f->n_positional >= 4) return cli_usage_error(cmd, "too many arguments");
      f->positional[f->n_positional++] = a;
      continue;
    }
    if (strcmp(a, "--allow-tie") == 0) {
      f->allow_tie = 1;
      continue;
    }
    if (i + 1 >= argc) return cli_usage_error(cmd, "%s needs a value", a);
    const char *v = argv[++i];
    int rc = EXIT_OK;
    if (strcmp(a, "--db") == 0) f->db = v;
    else if (strcmp(a, "--name") == 0) f->name = v;
    else if (strcmp(a, "--study") == 0) f->study = v;
    else if (strcmp(a, "--a") == 0) f->run_a = v;
    else if (strcmp(a, "--b") == 0) f->run_b = v;
    else if (strcmp(a, "--questions") == 0) f->questions = v;
    else if (strcmp(a, "--format") == 0) f->format = v;
    else if (strcmp(a, "--image-base-url") == 0) f->base_url = v;
    else if (strcmp(a, "--out") == 0) f->out = v;
    else if (strcmp(a, "--port-file") == 0) f->port_file = v;
    else if (strcmp(a, "--bind") == 0) f->bind = v;
    else if (strcmp(a, "--scorer") == 0) f->scorer = v;
    else if (strcmp(a, "--noise") == 0) rc = parse_number(cmd, a, v, 0, 1e6, &f->noise);
    else if (strcmp(a, "--random-share") == 0) rc = parse_number(cmd, a, v, 0, 1, &f->random_share);
    else if (strcmp(a, "--left-bias") == 0) rc = parse_number(cmd, a, v, 0, 1, &f->left_bias);
    else if (strcmp(a, "--votes") == 0) rc = cli_parse_u64(cmd, a, v, &f->votes);
    else if (strcmp(a, "--gold") == 0) rc = cli_parse_u64(cmd, a, v, &f->gold);
    else if (strcmp(a, "--raters") == 0) rc = cli_parse_u64(cmd, a, v, &f->raters);
    else if (strcmp(a, "--port") == 0) rc = cli_parse_u64(cmd, a, v, &f->port);
    else if (strcmp(a, "--seed") == 0) {
      rc = cli_parse_u64(cmd, a, v, &f->seed);
      f->have_seed = 1;
    } else if (strcmp(a, "--min-work-seconds") == 0) rc = parse_seconds(cmd, v, &f->min_work_seconds);
    else return cli_usage_error(cmd, "unknown option \"%s\"", a);
    if (rc != EXIT_OK) return rc;
  }
  return EXIT_OK;
}

static int need(const char *cmd, const char *value, const char *flag) {
  if (!value) return cli_usage_error(cmd, "%s is required", flag);
  return EXIT_OK;
}

static int open_db(const char *path, int create, studies_db **db) {
  dpo_error err = {0};
  if (studies_open(path, create, db, &err)) return cli_report_error(&err);
  return EXIT_OK;
}

static int study_create(const study_flags *f) {
  const char *cmd = "study create";
  int rc;
  if ((rc = need(cmd, f->db, "--db")) || (rc = need(cmd, f->name, "--name")) || (rc = need(cmd, f->run_a, "--a")) ||
      (rc = need(cmd, f->run_b, "--b")))
    return rc;
  if (f->n_positional) return cli_usage_error(cmd, "unexpected argument \"%s\"", f->positional[0]);
  if (f->votes < 1 || f->votes > 1000) return cli_usage_error(cmd, "--votes expects 1 to 1000");
  if (f->gold > 100000) return cli_usage_error(cmd, "--gold expects at most 100000");
  studies_db *db;
  if ((rc = open_db(f->db, 1, &db))) return rc;
  studies_create_options opt = {.name = f->name, .run_a = f->run_a, .run_b = f->run_b, .questions = f->questions,
                                .votes = (int)f->votes, .allow_tie = f->allow_tie, .gold = (int)f->gold,
                                .seed = f->have_seed ? f->seed : 0};
  studies_create_result res;
  dpo_error err = {0};
  rc = studies_create(db, &opt, &res, &err);
  studies_close(db);
  if (rc) return cli_report_error(&err);
  dpo_log_info("study %s: %d items (%d with A on the left), %d gold items, questions %s, %d votes each", f->name,
               res.n_items, res.n_a_left, res.n_gold, f->questions, (int)f->votes);
  return EXIT_OK;
}

static int study_export(const study_flags *f) {
  const char *cmd = "study export";
  int rc;
  if ((rc = need(cmd, f->db, "--db")) || (rc = need(cmd, f->study, "--study")) ||
      (rc = need(cmd, f->base_url, "--image-base-url")) || (rc = need(cmd, f->out, "--out")))
    return rc;
  if (f->format && strcmp(f->format, "mturk") != 0)
    return cli_usage_error(cmd, "--format: only \"mturk\" is supported, got \"%s\"", f->format);
  if (f->n_positional) return cli_usage_error(cmd, "unexpected argument \"%s\"", f->positional[0]);
  studies_db *db;
  if ((rc = open_db(f->db, 0, &db))) return rc;
  studies_export_result res;
  dpo_error err = {0};
  rc = studies_export_mturk(db, f->study, f->base_url, f->out, &res, &err);
  studies_close(db);
  if (rc) return cli_report_error(&err);
  dpo_log_info("wrote %s/batch.csv (%d HITs), %s/layout.html, %d image(s) to %s/images/", f->out, res.n_rows, f->out,
               res.n_images, f->out);
  return EXIT_OK;
}

static int study_ingest(const study_flags *f) {
  const char *cmd = "study ingest";
  int rc;
  if ((rc = need(cmd, f->db, "--db")) || (rc = need(cmd, f->study, "--study"))) return rc;
  if (f->n_positional != 1) return cli_usage_error(cmd, "expects one results file (FILE.csv)");
  studies_db *db;
  if ((rc = open_db(f->db, 0, &db))) return rc;
  studies_ingest_result res;
  dpo_error err = {0};
  rc = studies_ingest_mturk(db, f->study, f->positional[0], f->min_work_seconds, &res, &err);
  studies_close(db);
  if (rc) return cli_report_error(&err);
  if (res.already_imported) {
    dpo_log_info("%s: already ingested into study %s; nothing changed", f->positional[0], f->study);
    return EXIT_OK;
  }
  dpo_log_info("%s: %d rows: %d new assignments (%d votes), %d known, %d status changes; "
               "%d rejected, %d too fast (not counted), %d extra (flagged)",
               f->positional[0], res.rows, res.assignments_new, res.votes_new, res.assignments_known,
               res.status_changes, res.rejected, res.too_fast, res.extra);
  return EXIT_OK;
}

static int study_review(const study_flags *f) {
  const char *cmd = "study review";
  int rc;
  if ((rc = need(cmd, f->db, "--db")) || (rc = need(cmd, f->study, "--study")) || (rc = need(cmd, f->out, "--out")))
    return rc;
  if (f->n_positional != 1) return cli_usage_error(cmd, "expects one results file (FILE.csv)");
  studies_db *db;
  if ((rc = open_db(f->db, 0, &db))) return rc;
  studies_review_result res;
  dpo_error err = {0};
  rc = studies_review_mturk(db, f->study, f->positional[0], f->min_work_seconds, f->out, &res, &err);
  studies_close(db);
  if (rc) return cli_report_error(&err);
  dpo_log_info("wrote %s: %d approved, %d rejected for gold failures, %d rejected as too fast, %d already decided",
               f->out, res.approved, res.rejected_gold, res.rejected_fast, res.untouched);
  return EXIT_OK;
}

static int study_status(const study_flags *f) {
  const char *cmd = "study status";
  int rc;
  if ((rc = need(cmd, f->db, "--db")) || (rc = need(cmd, f->study, "--study"))) return rc;
  if (f->n_positional) return cli_usage_error(cmd, "unexpected argument \"%s\"", f->positional[0]);
  studies_db *db;
  if ((rc = open_db(f->db, 0, &db))) return rc;
  studies_status st;
  dpo_error err = {0};
  rc = studies_get_status(db, f->study, &st, &err);
  studies_close(db);
  if (rc) return cli_report_error(&err);
  printf("study %s\n", st.name);
  printf("questions %s, %d votes per item, ties %s\n", st.questions, st.votes_per_item,
         st.allow_tie ? "allowed" : "not allowed");
  printf("items %d (+%d gold), complete %d (%.1f%%)\n", st.n_items, st.n_gold, st.n_complete,
         st.n_items ? 100.0 * st.n_complete / st.n_items : 0.0);
  printf("assignments %d (%d excluded, %d extra), imports %d\n", st.n_assignments, st.n_excluded, st.n_extra,
         st.n_imports);
  for (int q = 0; q < st.n_questions; q++) {
    const studies_question_status *qs = &st.questions_status[q];
    printf("  %-5s votes %d: A %d, B %d, tie %d\n", qs->key, qs->votes, qs->a, qs->b, qs->tie);
  }
  printf("raters %d\n", st.n_raters);
  for (int r = 0; r < st.n_raters; r++) {
    const studies_rater_status *rs = &st.raters[r];
    printf("  %-6s %-24s assignments %d, gold passed %d/%d", rs->source, rs->external_id, rs->assignments,
           rs->gold_passed, rs->gold_checks);
    if (rs->gold_checks) printf(" (%.0f%%)", 100.0 * rs->gold_passed / rs->gold_checks);
    printf("\n");
  }
  studies_status_free(&st);
  return EXIT_OK;
}

static int study_invite(const study_flags *f) {
  const char *cmd = "study invite";
  int rc;
  if ((rc = need(cmd, f->db, "--db")) || (rc = need(cmd, f->study, "--study"))) return rc;
  if (f->raters < 1 || f->raters > 100000) return cli_usage_error(cmd, "--raters expects 1 to 100000");
  if (f->port > 65535) return cli_usage_error(cmd, "--port expects 0 to 65535");
  if (f->n_positional) return cli_usage_error(cmd, "unexpected argument \"%s\"", f->positional[0]);
  char (*tokens)[65] = calloc((size_t)f->raters, sizeof *tokens);
  if (!tokens) return EXIT_DATA;
  studies_db *db;
  if ((rc = open_db(f->db, 0, &db))) {
    free(tokens);
    return rc;
  }
  dpo_error err = {0};
  rc = studies_invite(db, f->study, (int)f->raters, tokens, &err);
  studies_close(db);
  if (rc == DPO_OK) {
    /* The tokens are shown once and stored only as hashes. */
    for (uint64_t i = 0; i < f->raters; i++)
      printf("http://%s:%d/r/%s\n", f->bind, f->port ? (int)f->port : 8080, tokens[i]);
  }
  free(tokens);
  return rc ? cli_report_error(&err) : EXIT_OK;
}

static int study_simulate(const study_flags *f) {
  const char *cmd = "study simulate";
  int rc;
  if ((rc = need(cmd, f->db, "--db")) || (rc = need(cmd, f->study, "--study")) || (rc = need(cmd, f->scorer, "--scorer")))
    return rc;
  if (f->raters < 1 || f->raters > 100000) return cli_usage_error(cmd, "--raters expects 1 to 100000");
  if (f->n_positional) return cli_usage_error(cmd, "unexpected argument \"%s\"", f->positional[0]);
  studies_db *db;
  if ((rc = open_db(f->db, 0, &db))) return rc;
  studies_simulate_options opt = {.study = f->study, .raters = (int)f->raters, .scorer = f->scorer,
                                  .seed = f->have_seed ? f->seed : 0, .noise = f->noise,
                                  .random_share = f->random_share, .left_bias = f->left_bias};
  studies_simulate_result res;
  dpo_error err = {0};
  rc = studies_simulate(db, &opt, &res, &err);
  studies_close(db);
  if (rc) return cli_report_error(&err);
  dpo_log_info("study %s: %d simulated raters (%d random clickers) cast %d votes in %d assignments over %d items "
               "(%.1f%% for the left image)",
               f->study, res.n_raters, res.n_random, res.n_votes, res.n_assignments, res.n_items,
               res.n_votes ? 100.0 * res.n_left / res.n_votes : 0.0);
  return EXIT_OK;
}

static volatile sig_atomic_t stop_requested;
static void on_stop_signal(int sig) {
  (void)sig;
  stop_requested = 1;
}

static int study_serve(const study_flags *f) {
  const char *cmd = "study serve";
  int rc;
  if ((rc = need(cmd, f->db, "--db"))) return rc;
  if (f->port > 65535) return cli_usage_error(cmd, "--port expects 0 to 65535");
  if (f->n_positional) return cli_usage_error(cmd, "unexpected argument \"%s\"", f->positional[0]);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_stop_signal;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  studies_serve_options opt = {.db_path = f->db, .bind_address = f->bind, .port = (int)f->port,
                               .port_file = f->port_file, .stop = &stop_requested};
  dpo_error err = {0};
  if (studies_serve(&opt, &err)) return cli_report_error(&err);
  return EXIT_OK;
}

int cmd_study(int argc, char **argv) {
  if (argc < 2) return cli_usage_error("study", "expects a verb: create, export, ingest, review, status, invite, serve or simulate");
  if (cli_is_help(argv[1])) {
    cmd_study_help(stdout);
    return EXIT_OK;
  }
  for (int i = 2; i < argc; i++)
    if (cli_is_help(argv[i])) {
      cmd_study_help(stdout);
      return EXIT_OK;
    }
  char cmd[64];
  snprintf(cmd, sizeof cmd, "study %s", argv[1]);
  study_flags f;
  int rc = parse_flags(cmd, argc, argv, &f);
  if (rc) return rc;
  const char *verb = argv[1];
  if (strcmp(verb, "create") == 0) return study_create(&f);
  if (strcmp(verb, "export") == 0) return study_export(&f);
  if (strcmp(verb, "ingest") == 0) return study_ingest(&f);
  if (strcmp(verb, "review") == 0) return study_review(&f);
  if (strcmp(verb, "status") == 0) return study_status(&f);
  if (strcmp(verb, "invite") == 0) return study_invite(&f);
  if (strcmp(verb, "serve") == 0) return study_serve(&f);
  if (strcmp(verb, "simulate") == 0) return study_simulate(&f);
  return cli_usage_error("study", "unknown verb \"%s\"", verb);
}

void cmd_study_help(FILE *out) {
  fprintf(out,
          "usage: dpo study create --db DB --name NAME --a RUN_A --b RUN_B [--questions q1,q2,q3]\n"
          "                        [--votes 5] [--allow-tie] [--gold N] [--seed S]\n"
          "       dpo study export --format mturk --db DB --study NAME --image-base-url URL --out DIR\n"
          "       dpo study ingest --db DB --study NAME [--min-work-seconds S] FILE.csv\n"
          "       dpo study review --db DB --study NAME [--min-work-seconds S] --out approve.csv FILE.csv\n"
          "       dpo study status --db DB --study NAME\n"
          "       dpo study invite --db DB --study NAME --raters N [--port P] [--bind ADDR]\n"
          "       dpo study serve --db DB [--port P] [--bind 127.0.0.1] [--port-file FILE]\n"
          "       dpo study simulate --db DB --study NAME --raters R --scorer NAME [--seed S]\n"
          "                          [--noise 0.1] [--random-share F] [--left-bias B]\n"
          "\n"
          "A/B human preference studies between two run folders (dpo generate).\n"
          "\n"
          "create  pairs images by (prompt set, prompt id, seed, image index); runs that do\n"
          "        not match are refused with what each side lacks. Sides are randomised per\n"
          "        item from --seed and recorded. Questions (the paper's wording):\n"
          "          q1   Which image do you prefer given the prompt?\n"
          "          q2   Which image is more visually appealing?\n"
          "          q3   Which image better fits the text description?\n"
          "          edit Which edit do you prefer given the text? (TEd-Bench; shows the original,\n"
          "               settings.source_image in the manifest)\n"
          "        --gold N mixes in N items where one side shows another prompt's image.\n"
          "        --seed (default 0) decides sides, gold items and their order; --votes default 5.\n"
          "export  DIR/batch.csv (item_id, prompt, image_left_url, image_right_url[, image_source_url]),\n"
          "        DIR/layout.html (Crowd HTML; answers q1/q2/q3/edit = left|right|tie) and\n"
          "        DIR/images/ named by content hash, to upload under URL.\n"
          "ingest  reads a results CSV from the requester site. A wrong header, an unknown item\n"
          "        id, a missing or invalid answer, or one AssignmentId with two different answers\n"
          "        refuses the whole file (with its row) and changes nothing. The same file twice\n"
          "        is a no-op. Rejected assignments and those under --min-work-seconds are kept\n"
          "        but not counted; votes beyond --votes are kept and flagged.\n"
          "review  writes the results file back with Approve/Reject filled (gold failures and\n"
          "        too-fast work rejected), ready to upload.\n"
          "status  items, completion, votes per question, raters and their gold pass rates.\n"
          "invite  registers N local raters and prints one URL each, with a secret token\n"
          "        (stored only as a hash; the URL uses --bind and --port, default 8080).\n"
          "serve   the local rating page (binds 127.0.0.1 unless --bind says otherwise; --port 0\n"
          "        picks a free port, written to --port-file). Each rater gets every item once in\n"
          "        a random order, sides randomised per (rater, item); keys 1/2/0 or clicks; each\n"
          "        vote is committed before the next item is sent.\n"
          "simulate simulated raters, to test reports and quality checks against a known truth.\n"
          "        A Bradley-Terry rater picks A with P = 1/(1+exp(-(sA-sB)/T)), s the scorer's\n"
          "        score for the question (q2 appeal, q3/edit alignment, q1 overall or else the\n"
          "        mean of alignment and appeal; otherwise the first score) and T = --noise x\n"
          "        exp(0.5 z) per rater. --random-share F of the raters click at random; each\n"
          "        vote is with probability --left-bias B a reflex click on the left. Raters are\n"
          "        named sim-N-bt / sim-N-random; sides are randomised and recorded as for real\n"
          "        raters; never ties. Every draw comes from --seed (default 0). Scorers:\n");
  for (int i = 0; i < eval_scorer_count(); i++)
    fprintf(out, "          %-11s %s\n", eval_scorer_at(i)->name, eval_scorer_at(i)->description);
}
