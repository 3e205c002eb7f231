/* Unicode text handling for the CLIP tokenizer: UTF-8, the character classes
 * of CLIP's split pattern, NFC, and Python's str.lower.
 *
 * The goal is not "Unicode in general" but "exactly what transformers'
 * CLIPTokenizer does on this text in Python 3.11 with regex 2026.11.19". The
 * tables in unicode_tables.c are measured from those functions by
 * gen_unicode_tables.py, and the code here replays the algorithms over them. */
#include <stdlib.h>
#include <string.h>

#include "trainer/trainer_internal.h"

/* ------------------------------------------------------------ strings */

int cp_push(cp_string *s, uint32_t c) {
  if (s->n == s->cap) {
    size_t cap = s->cap ? s->cap * 2 : 64;
    uint32_t *grown = realloc(s->cp, cap * sizeof *grown);
    if (!grown) return -1;
    s->cp = grown;
    s->cap = cap;
  }
  s->cp[s->n++] = c;
  return 0;
}

void cp_free(cp_string *s) {
  free(s->cp);
  s->cp = NULL;
  s->n = s->cap = 0;
}

int utf8_decode(const char *text, size_t len, cp_string *out, dpo_error *err) {
  const uint8_t *p = (const uint8_t *)text;
  size_t i = 0;
  while (i < len) {
    uint32_t c = p[i];
    int extra;
    uint32_t min;
    if (c < 0x80) { extra = 0; min = 0; }
    else if ((c & 0xE0) == 0xC0) { extra = 1; min = 0x80; c &= 0x1F; }
    else if ((c & 0xF0) == 0xE0) { extra = 2; min = 0x800; c &= 0x0F; }
    else if ((c & 0xF8) == 0xF0) { extra = 3; min = 0x10000; c &= 0x07; }
    else return dpo_fail(err, DPO_ERR_DATA, "text is not UTF-8: bad lead byte 0x%02X at byte %zu", p[i], i);
    if (len - i <= (size_t)extra && extra > 0)
      return dpo_fail(err, DPO_ERR_DATA, "text is not UTF-8: truncated sequence at byte %zu", i);
    for (int k = 1; k <= extra; k++) {
      if ((p[i + k] & 0xC0) != 0x80)
        return dpo_fail(err, DPO_ERR_DATA, "text is not UTF-8: bad continuation byte at byte %zu", i + k);
      c = (c << 6) | (p[i + k] & 0x3F);
    }
    if (c < min || c > 0x10FFFF || (c >= 0xD800 && c < 0xE000))
      return dpo_fail(err, DPO_ERR_DATA, "text is not UTF-8: invalid code point U+%04X at byte %zu", c, i);
    if (cp_push(out, c)) return dpo_fail(err, DPO_ERR_DATA, "out of memory decoding text");
    i += 1 + (size_t)extra;
  }
  return DPO_OK;
}

int utf8_encode(uint32_t c, char *buf) {
  if (c < 0x80) { buf[0] = (char)c; return 1; }
  if (c < 0x800) {
    buf[0] = (char)(0xC0 | (c >> 6));
    buf[1] = (char)(0x80 | (c & 0x3F));
    return 2;
  }
  if (c < 0x10000) {
    buf[0] = (char)(0xE0 | (c >> 12));
    buf[1] = (char)(0x80 | ((c >> 6) & 0x3F));
    buf[2] = (char)(0x80 | (c & 0x3F));
    return 3;
  }
  buf[0] = (char)(0xF0 | (c >> 18));
  buf[1] = (char)(0x80 | ((c >> 12) & 0x3F));
  buf[2] = (char)(0x80 | ((c >> 6) & 0x3F));
  buf[3] = (char)(0x80 | (c & 0x3F));
  return 4;
}

/* ------------------------------------------------------------ lookups */

static int in_ranges(const clip_range *r, int n, uint32_t c) {
  int lo = 0, hi = n - 1;
  while (lo <= hi) {
    int mid = (lo + hi) / 2;
    if (c < r[mid].lo) hi = mid - 1;
    else if (c > r[mid].hi) lo = mid + 1;
    else return 1;
  }
  return 0;
}

static const clip_mapping *find_mapping(const clip_mapping *m, int n, uint32_t c) {
  int lo = 0, hi = n - 1;
  while (lo <= hi) {
    int mid = (lo + hi) / 2;
    if (c < m[mid].cp) hi = mid - 1;
    else if (c > m[mid].cp) lo = mid + 1;
    else return &m[mid];
  }
  return NULL;
}

int clip_is_letter(uint32_t c) {
  if (c < 0x80) return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
  return in_ranges(clip_letter_ranges, clip_letter_ranges_count, c);
}

int clip_is_number(uint32_t c) {
  if (c < 0x80) return c >= '0' && c <= '9';
  return in_ranges(clip_number_ranges, clip_number_ranges_count, c);
}

static int is_regex_space(uint32_t c) {
  return in_ranges(clip_regex_space_ranges, clip_regex_space_ranges_count, c);
}

int clip_is_other(uint32_t c) {
  int plain = !clip_is_letter(c) && !clip_is_number(c) && !is_regex_space(c);
  return plain != in_ranges(clip_other_exception_ranges, clip_other_exception_ranges_count, c);
}

static int is_py_space(uint32_t c) {
  return in_ranges(clip_py_space_ranges, clip_py_space_ranges_count, c);
}

/* The CJK blocks BasicTokenizer._is_chinese_char surrounds with spaces. */
static int is_cjk(uint32_t c) {
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
         (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B820 && c <= 0x2CEAF) ||
         (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

/* ---------------------------------------------------------------- NFC */

enum { HANGUL_S = 0xAC00, HANGUL_L = 0x1100, HANGUL_V = 0x1161, HANGUL_T = 0x11A7,
       HANGUL_LCOUNT = 19, HANGUL_VCOUNT = 21, HANGUL_TCOUNT = 28,
       HANGUL_NCOUNT = HANGUL_VCOUNT * HANGUL_TCOUNT, HANGUL_SCOUNT = HANGUL_LCOUNT * HANGUL_NCOUNT };

static int ccc_of(uint32_t c) {
  if (c < 0x300) return 0;
  int lo = 0, hi = clip_ccc_ranges_count - 1;
  while (lo <= hi) {
    int mid = (lo + hi) / 2;
    if (c < clip_ccc_ranges[mid].lo) hi = mid - 1;
    else if (c > clip_ccc_ranges[mid].hi) lo = mid + 1;
    else return clip_ccc_ranges[mid].ccc;
  }
  return 0;
}

static int decompose_into(uint32_t c, cp_string *out) {
  if (c >= HANGUL_S && c < HANGUL_S + HANGUL_SCOUNT) {
    uint32_t s = c - HANGUL_S;
    if (cp_push(out, HANGUL_L + s / HANGUL_NCOUNT)) return -1;
    if (cp_push(out, HANGUL_V + (s % HANGUL_NCOUNT) / HANGUL_TCOUNT)) return -1;
    if (s % HANGUL_TCOUNT && cp_push(out, HANGUL_T + s % HANGUL_TCOUNT)) return -1;
    return 0;
  }
  const clip_mapping *m = c < 0xC0 ? NULL : find_mapping(clip_nfd_map, clip_nfd_map_count, c);
  if (!m) return cp_push(out, c);
  for (int k = 0; k < m->n; k++)
    if (cp_push(out, m->v[k])) return -1;
  return 0;
}

/* Returns the primary composite of (a, b), or 0 when there is none. */
static uint32_t compose_pair(uint32_t a, uint32_t b) {
  if (a >= HANGUL_L && a < HANGUL_L + HANGUL_LCOUNT && b >= HANGUL_V && b < HANGUL_V + HANGUL_VCOUNT)
    return HANGUL_S + ((a - HANGUL_L) * HANGUL_VCOUNT + (b - HANGUL_V)) * HANGUL_TCOUNT;
  if (a >= HANGUL_S && a < HANGUL_S + HANGUL_SCOUNT && (a - HANGUL_S) % HANGUL_TCOUNT == 0 &&
      b > HANGUL_T && b < HANGUL_T + HANGUL_TCOUNT)
    return a + (b - HANGUL_T);
  int lo = 0, hi = clip_compositions_count - 1;
  while (lo <= hi) {
    int mid = (lo + hi) / 2;
    const clip_composition *p = &clip_compositions[mid];
    if (a < p->first || (a == p->first && b < p->second)) hi = mid - 1;
    else if (a > p->first || b > p->second) lo = mid + 1;
    else return p->composite;
  }
  return 0;
}

/* Canonical ordering: a stable sort by combining class of each run of
 * non-starters (runs are short, so insertion sort). */
static void canonical_order(cp_string *s) {
  for (size_t i = 1; i < s->n; i++) {
    int cc = ccc_of(s->cp[i]);
    if (cc == 0) continue;
    size_t j = i;
    uint32_t c = s->cp[i];
    while (j > 0) {
      int prev = ccc_of(s->cp[j - 1]);
      if (prev <= cc) break;   /* starters (0) stop the run */
      s->cp[j] = s->cp[j - 1];
      j--;
    }
    s->cp[j] = c;
  }
}

/* Canonical composition as in UAX #15: a character joins the last starter
 * unless a character of equal or higher class (or a starter) stands between. */
static void canonical_compose(cp_string *s) {
  size_t starter = 0, out = 0;
  int have_starter = 0, last_class = 0;
  for (size_t i = 0; i < s->n; i++) {
    uint32_t c = s->cp[i];
    int cls = ccc_of(c);
    if (have_starter && (last_class < cls || last_class == 0) && out > 0) {
      uint32_t composite = compose_pair(s->cp[starter], c);
      /* last_class == 0 means nothing stands between the starter and c */
      if (composite && (last_class != 0 || out == starter + 1)) {
        s->cp[starter] = composite;
        continue;
      }
    }
    if (cls == 0) {
      starter = out;
      have_starter = 1;
    }
    last_class = cls;
    s->cp[out++] = c;
  }
  s->n = out;
}

int clip_nfc(const cp_string *s, cp_string *out) {
  for (size_t i = 0; i < s->n; i++)
    if (decompose_into(s->cp[i], out)) return -1;
  canonical_order(out);
  canonical_compose(out);
  return 0;
}

/* ------------------------------------------------------------- lower */

static int is_case_ignorable(uint32_t c) {
  return in_ranges(clip_case_ignorable_ranges, clip_case_ignorable_ranges_count, c);
}

static int is_cased(uint32_t c) {
  return in_ranges(clip_cased_ranges, clip_cased_ranges_count, c);
}

/* Python's rule for U+03A3: final sigma when a cased letter precedes and none
 * follows, skipping case-ignorable characters both ways. */
static uint32_t lower_sigma(const uint32_t *w, size_t n, size_t i) {
  size_t j = i;
  while (j > 0 && is_case_ignorable(w[j - 1])) j--;
  if (j == 0 || !is_cased(w[j - 1])) return 0x3C3;
  size_t k = i + 1;
  while (k < n && is_case_ignorable(w[k])) k++;
  return (k == n || !is_cased(w[k])) ? 0x3C2 : 0x3C3;
}

/* Appends str.lower() of the word w[0..n) to out. */
static int lower_word(const uint32_t *w, size_t n, cp_string *out) {
  for (size_t i = 0; i < n; i++) {
    uint32_t c = w[i];
    if (c < 0x80) {
      if (cp_push(out, (c >= 'A' && c <= 'Z') ? c + 32 : c)) return -1;
      continue;
    }
    if (c == 0x3A3) {
      if (cp_push(out, lower_sigma(w, n, i))) return -1;
      continue;
    }
    const clip_mapping *m = find_mapping(clip_lower_map, clip_lower_map_count, c);
    if (!m) {
      if (cp_push(out, c)) return -1;
      continue;
    }
    for (int k = 0; k < m->n; k++)
      if (cp_push(out, m->v[k])) return -1;
  }
  return 0;
}

/* ---------------------------------------------------- BasicTokenizer */

/* _clean_text then _tokenize_chinese_chars. */
static int clean_and_space_cjk(const cp_string *in, cp_string *out) {
  for (size_t i = 0; i < in->n; i++) {
    uint32_t c = in->cp[i];
    if (in_ranges(clip_clean_removed_ranges, clip_clean_removed_ranges_count, c)) continue;
    if (in_ranges(clip_clean_space_ranges, clip_clean_space_ranges_count, c)) c = ' ';
    if (is_cjk(c)) {
      if (cp_push(out, ' ') || cp_push(out, c) || cp_push(out, ' ')) return -1;
    } else if (cp_push(out, c)) {
      return -1;
    }
  }
  return 0;
}

/* Whitespace split (str.split()), lower-case each word, join with spaces. */
static int split_lower_join(const cp_string *in, cp_string *out) {
  size_t i = 0;
  while (i < in->n) {
    while (i < in->n && is_py_space(in->cp[i])) i++;
    size_t start = i;
    while (i < in->n && !is_py_space(in->cp[i])) i++;
    if (i == start) break;
    if (out->n && cp_push(out, ' ')) return -1;
    if (lower_word(in->cp + start, i - start, out)) return -1;
  }
  return 0;
}

int clip_basic_clean(const cp_string *in, cp_string *out) {
  cp_string cleaned = {0}, normal = {0};
  int rc = clean_and_space_cjk(in, &cleaned);
  if (!rc) rc = clip_nfc(&cleaned, &normal);
  if (!rc) rc = split_lower_join(&normal, out);
  cp_free(&cleaned);
  cp_free(&normal);
  return rc;
}
