/* Load driver for the local rating server: N concurrent clients, each a
 * rater (or several, one after another) who fetches the next item page and
 * votes on it, as fast as the server answers, for a fixed time.
 *
 * Every acknowledged vote (the server's 303 after the vote was committed) is
 * appended to the ack log as "token<TAB>item<TAB>answers" and flushed at
 * once, so the log can be compared with the database afterwards: nothing
 * acknowledged may be missing, nothing may be there twice. Connection errors
 * (the server killed and restarted under load) are retried after a short
 * pause: a vote whose answer never came back is not in the log, and a retry
 * sees either the next item (the vote had been committed) or the same item.
 *
 * usage: study_load --url http://127.0.0.1:PORT --tokens FILE --acks FILE
 *                   [--clients 50] [--seconds 30]
 * Prints one summary line: clients, seconds, acked votes, votes/s, the votes
 * of the slowest whole second, and the counts of conflicts (409),
 * connection errors and other errors. */
#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_TOKENS 100000
#define MAX_SECONDS 3600
#define ANSWERS "q1=left&q2=right&q3=left&edit=right"

typedef struct {
  char data[65536];
  size_t len;
} body_buf;

typedef struct {
  int index;
  char **tokens;   /* this client's raters, used one after another */
  int n_tokens;
  long acked, conflicts, conn_errors, other_errors;
} client;

static const char *base_url;
static double deadline;
static FILE *ack_log;
static pthread_mutex_t ack_lock = PTHREAD_MUTEX_INITIALIZER;
static double start_time;
static long acks_per_second[MAX_SECONDS];   /* for the slowest whole second */

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static size_t on_body(char *data, size_t size, size_t n, void *user) {
  body_buf *b = user;
  size_t len = size * n;
  size_t room = sizeof b->data - 1 - b->len;
  size_t take = len < room ? len : room;
  memcpy(b->data + b->len, data, take);
  b->len += take;
  b->data[b->len] = '\0';
  return len;
}

/* One request; returns the HTTP status or 0 on a connection error. */
static long request(CURL *curl, const char *url, const char *post, body_buf *body) {
  body->len = 0;
  body->data[0] = '\0';
  curl_easy_setopt(curl, CURLOPT_URL, url);
  if (post) {
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, post);
  } else {
    curl_easy_setopt(curl, CURLOPT_HTTPGET, 1L);
  }
  if (curl_easy_perform(curl) != CURLE_OK) return 0;
  long status = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
  return status;
}

static void pause_ms(int ms) {
  struct timespec ts = {0, (long)ms * 1000000L};
  nanosleep(&ts, NULL);
}

/* The item id in a rating page: name="item" value="...". */
static int page_item(const char *page, char *item, size_t n) {
  const char *p = strstr(page, "name=\"item\" value=\"");
  if (!p) return 0;
  p += strlen("name=\"item\" value=\"");
  const char *end = strchr(p, '"');
  if (!end || (size_t)(end - p) >= n) return 0;
  memcpy(item, p, (size_t)(end - p));
  item[end - p] = '\0';
  return 1;
}

static void *run_client(void *arg) {
  client *c = arg;
  CURL *curl = curl_easy_init();
  body_buf *body = malloc(sizeof *body);
  if (!curl || !body) {
    fprintf(stderr, "study_load: client %d: cannot start\n", c->index);
    return NULL;
  }
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, body);
  curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT, 30L);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  int t = 0;
  char url[512], item[128];
  while (t < c->n_tokens && now() < deadline) {
    snprintf(url, sizeof url, "%s/r/%s", base_url, c->tokens[t]);
    long status = request(curl, url, NULL, body);
    if (status == 0) {
      c->conn_errors++;
      pause_ms(20);
      continue;
    }
    if (status != 200) {
      c->other_errors++;
      pause_ms(20);
      continue;
    }
    if (strstr(body->data, "All items are rated")) {
      t++;
      continue;
    }
    if (!page_item(body->data, item, sizeof item)) {
      c->other_errors++;
      continue;
    }
    char post[256];
    snprintf(post, sizeof post, "item=%s&" ANSWERS, item);
    snprintf(url, sizeof url, "%s/r/%s/vote", base_url, c->tokens[t]);
    status = request(curl, url, post, body);
    if (status == 303) {
      c->acked++;
      pthread_mutex_lock(&ack_lock);
      fprintf(ack_log, "%s\t%s\n", c->tokens[t], item);
      fflush(ack_log);
      int second = (int)(now() - start_time);
      if (second >= 0 && second < MAX_SECONDS) acks_per_second[second]++;
      pthread_mutex_unlock(&ack_lock);
    } else if (status == 409) {
      c->conflicts++;   /* committed before, its answer lost: not acknowledged */
    } else if (status == 0) {
      c->conn_errors++;
      pause_ms(20);
    } else {
      c->other_errors++;
    }
  }
  curl_easy_cleanup(curl);
  free(body);
  return NULL;
}

static int read_tokens(const char *path, char **tokens, int *n) {
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  char line[256];
  *n = 0;
  while (fgets(line, sizeof line, f) && *n < MAX_TOKENS) {
    line[strcspn(line, "\r\n")] = '\0';
    if (!line[0]) continue;
    char *slash = strrchr(line, '/');   /* a whole invitation URL or a bare token */
    tokens[(*n)++] = strdup(slash ? slash + 1 : line);
  }
  fclose(f);
  return *n > 0;
}

int main(int argc, char **argv) {
  const char *tokens_path = NULL, *acks_path = NULL;
  int n_clients = 50;
  double seconds = 30;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--url") == 0) base_url = argv[i + 1];
    else if (strcmp(argv[i], "--tokens") == 0) tokens_path = argv[i + 1];
    else if (strcmp(argv[i], "--acks") == 0) acks_path = argv[i + 1];
    else if (strcmp(argv[i], "--clients") == 0) n_clients = atoi(argv[i + 1]);
    else if (strcmp(argv[i], "--seconds") == 0) seconds = atof(argv[i + 1]);
    else {
      fprintf(stderr, "study_load: unknown option %s\n", argv[i]);
      return 2;
    }
  }
  if (!base_url || !tokens_path || !acks_path || n_clients < 1 || n_clients > 1000 || !(seconds > 0)) {
    fprintf(stderr, "usage: study_load --url URL --tokens FILE --acks FILE [--clients 50] [--seconds 30]\n");
    return 2;
  }
  static char *tokens[MAX_TOKENS];
  int n_tokens;
  if (!read_tokens(tokens_path, tokens, &n_tokens) || n_tokens < n_clients) {
    fprintf(stderr, "study_load: %s: need at least %d tokens\n", tokens_path, n_clients);
    return 1;
  }
  ack_log = fopen(acks_path, "w");
  if (!ack_log) {
    fprintf(stderr, "study_load: cannot write %s\n", acks_path);
    return 1;
  }
  curl_global_init(CURL_GLOBAL_DEFAULT);
  client *clients = calloc((size_t)n_clients, sizeof *clients);
  pthread_t *threads = calloc((size_t)n_clients, sizeof *threads);
  /* Client c takes tokens c, c + N, c + 2N, ... */
  for (int c = 0; c < n_clients; c++) {
    clients[c].index = c;
    clients[c].tokens = calloc((size_t)(n_tokens / n_clients + 1), sizeof(char *));
    for (int t = c; t < n_tokens; t += n_clients) clients[c].tokens[clients[c].n_tokens++] = tokens[t];
  }
  double start = now();
  start_time = start;
  deadline = start + seconds;
  for (int c = 0; c < n_clients; c++) pthread_create(&threads[c], NULL, run_client, &clients[c]);
  long acked = 0, conflicts = 0, conn_errors = 0, other_errors = 0;
  for (int c = 0; c < n_clients; c++) {
    pthread_join(threads[c], NULL);
    acked += clients[c].acked;
    conflicts += clients[c].conflicts;
    conn_errors += clients[c].conn_errors;
    other_errors += clients[c].other_errors;
  }
  double elapsed = now() - start;
  fclose(ack_log);
  /* The slowest whole second (the last, partial one left out). */
  long slowest = -1;
  for (int s = 0; s < (int)seconds && s < MAX_SECONDS; s++)
    if (slowest < 0 || acks_per_second[s] < slowest) slowest = acks_per_second[s];
  printf("clients %d seconds %.1f acked %ld votes_per_s %.0f slowest_second %ld conflicts %ld conn_errors %ld "
         "other_errors %ld\n",
         n_clients, elapsed, acked, acked / elapsed, slowest, conflicts, conn_errors, other_errors);
  curl_global_cleanup();
  for (int c = 0; c < n_clients; c++) free(clients[c].tokens);
  for (int t = 0; t < n_tokens; t++) free(tokens[t]);
  free(clients);
  free(threads);
  return other_errors ? 1 : 0;
}
