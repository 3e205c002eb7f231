#!/usr/bin/env python3
"""Generates trainer/unicode_tables.c: the Unicode facts the CLIP tokenizer needs.

transformers' CLIPTokenizer (without ftfy) cleans text with Python's own
`unicodedata` and `str` methods, then splits it with a pattern compiled by the
third-party `regex` module. The two carry different Unicode versions, so the
tables are not derived from a Unicode data file: each one is measured from the
very function the Python tokenizer calls, over every code point. That makes the
C tokenizer agree with Python character for character, for these pinned
versions:

  Python 3.11 (unicodedata 14.0.0)  -- _clean_text, NFC, str.split, str.lower
  regex 2026.11.19                  -- \\p{L}, \\p{N}, \\s under IGNORECASE

Run:  /work/venv-tok/bin/python trainer/gen_unicode_tables.py > trainer/unicode_tables.c
"""
import sys
import unicodedata

import regex

EXPECTED_UNIDATA = "14.0.0"
EXPECTED_REGEX = "2026.11.19"
assert unicodedata.unidata_version == EXPECTED_UNIDATA, unicodedata.unidata_version
assert regex.__version__ == EXPECTED_REGEX, regex.__version__

MAX_CP = 0x110000
SURROGATES = range(0xD800, 0xE000)
IC = regex.IGNORECASE


def code_points():
    for c in range(MAX_CP):
        if c not in SURROGATES:
            yield c


def ranges_of(pred):
    """Sorted inclusive [lo, hi] ranges of the code points where pred holds."""
    out = []
    for c in code_points():
        if pred(c):
            if out and out[-1][1] == c - 1:
                out[-1][1] = c
            else:
                out.append([c, c])
    return out


def emit_ranges(name, ranges):
    print(f"const clip_range {name}[] = {{")
    for lo, hi in ranges:
        print(f"  {{0x{lo:X}, 0x{hi:X}}},")
    print("};")
    print(f"const int {name}_count = {len(ranges)};\n")


# --- the split pattern's classes, measured with the pattern's own flags ----
letter = regex.compile(r"[\p{L}]", IC)
number = regex.compile(r"[\p{N}]", IC)
space = regex.compile(r"\s", IC)
other = regex.compile(r"[^\s\p{L}\p{N}]", IC)


def is_letter(c):
    return letter.fullmatch(chr(c)) is not None


def is_number(c):
    return number.fullmatch(chr(c)) is not None


def is_space(c):
    return space.fullmatch(chr(c)) is not None



def is_other_exception(c):
    """The negated class is not quite the complement under IGNORECASE (U+0345
    matches neither [\\p{L}] nor [^\\s\\p{L}\\p{N}]); the C code takes "other" as
    "none of the three" flipped on these code points."""
    plain = not (is_letter(c) or is_number(c) or is_space(c))
    return (other.fullmatch(chr(c)) is not None) != plain


# The literal alternatives ('s, 't, ..., <|startoftext|>) compare case-
# insensitively; the C code assumes ASCII case plus U+017F for 's'. Check.
for lit in set("startoftextendoftext'sretvemlld<|>"):
    folds = {c for c in code_points() if regex.fullmatch(regex.escape(lit), chr(c), IC)}
    expected = {ord(lit), ord(lit.upper())}
    if lit == "s":
        expected.add(0x17F)
    assert folds == expected, (lit, sorted(map(hex, folds)))


# --- BasicTokenizer._clean_text (transformers.tokenization_utils) ----------
def is_removed_by_clean(c):
    ch = chr(c)
    if c == 0 or c == 0xFFFD:
        return True
    if ch in "\t\n\r":
        return False
    return unicodedata.category(ch).startswith("C")


def is_clean_whitespace(c):
    ch = chr(c)
    return ch in " \t\n\r" or unicodedata.category(ch) == "Zs"


# --- str.split()/strip() whitespace ----------------------------------------
def is_py_space(c):
    return chr(c).isspace()


# --- str.lower(): full mappings, and the Final_Sigma context properties ----
# Python lowers U+03A3 to final sigma by context (cased letter before, no cased
# letter after, skipping case-ignorable ones). unicodedata does not expose the
# two properties, so they are measured from str.lower itself:
#   T1 = ("A" + c + "Σ") ends in final sigma  <=> ignorable(c) or cased(c)
#   T3 = ("AΣ" + c) has final sigma           <=> ignorable(c) or not cased(c)
#   T2 = (c + "Σ") ends in final sigma        <=> not ignorable(c) and cased(c)
# so ignorable = T1 and T3, and for the rest cased = T2.
SIGMA, FINAL = "\u03a3", "\u03c2"


def is_case_ignorable(c):
    ch = chr(c)
    t1 = ("A" + ch + SIGMA).lower()[-1] == FINAL
    t3 = ("A" + SIGMA + ch).lower()[1] == FINAL
    return t1 and t3


def is_cased(c):
    ch = chr(c)
    return not is_case_ignorable(c) and (ch + SIGMA).lower()[-1] == FINAL


def lower_map():
    out = []
    for c in code_points():
        if c == 0x3A3:
            continue  # contextual, handled in C
        low = chr(c).lower()
        if low != chr(c):
            assert 1 <= len(low) <= 3
            out.append((c, [ord(x) for x in low]))
    return out


# --- NFC (unicodedata.normalize) -------------------------------------------
def is_hangul_syllable(c):
    return 0xAC00 <= c <= 0xD7A3


def decompositions():
    out = []
    for c in code_points():
        if is_hangul_syllable(c):
            continue
        d = unicodedata.normalize("NFD", chr(c))
        if d != chr(c):
            assert len(d) <= 4
            out.append((c, [ord(x) for x in d]))
    return out


def compositions():
    """Primary composites: a canonical two-code-point decomposition that NFC
    keeps (not excluded). Hangul is algorithmic in C."""
    out = []
    for c in code_points():
        if is_hangul_syllable(c):
            continue
        d = unicodedata.decomposition(chr(c))
        if not d or d.startswith("<"):
            continue
        parts = [int(x, 16) for x in d.split()]
        if len(parts) != 2:
            continue
        if unicodedata.normalize("NFC", chr(c)) != chr(c):
            continue  # composition exclusion
        out.append((parts[0], parts[1], c))
    out.sort()
    return out


def ccc_ranges():
    out = []
    for c in code_points():
        k = unicodedata.combining(chr(c))
        if k == 0:
            continue
        if out and out[-1][1] == c - 1 and out[-1][2] == k:
            out[-1][1] = c
        else:
            out.append([c, c, k])
    return out


def main():
    print("/* Generated by trainer/gen_unicode_tables.py -- do not edit.")
    print(f" * Python unicodedata {unicodedata.unidata_version}, regex {regex.__version__}. */")
    print('#include "trainer_internal.h"\n')
    emit_ranges("clip_letter_ranges", ranges_of(is_letter))
    emit_ranges("clip_number_ranges", ranges_of(is_number))
    emit_ranges("clip_regex_space_ranges", ranges_of(is_space))
    emit_ranges("clip_other_exception_ranges", ranges_of(is_other_exception))
    emit_ranges("clip_clean_removed_ranges", ranges_of(is_removed_by_clean))
    emit_ranges("clip_clean_space_ranges", ranges_of(is_clean_whitespace))
    emit_ranges("clip_py_space_ranges", ranges_of(is_py_space))
    emit_ranges("clip_case_ignorable_ranges", ranges_of(is_case_ignorable))
    emit_ranges("clip_cased_ranges", ranges_of(is_cased))

    lows = lower_map()
    print("const clip_mapping clip_lower_map[] = {")
    for c, m in lows:
        vals = ", ".join(f"0x{x:X}" for x in m)
        print(f"  {{0x{c:X}, {len(m)}, {{{vals}}}}},")
    print("};")
    print(f"const int clip_lower_map_count = {len(lows)};\n")

    decs = decompositions()
    print("const clip_mapping clip_nfd_map[] = {")
    for c, m in decs:
        vals = ", ".join(f"0x{x:X}" for x in m)
        print(f"  {{0x{c:X}, {len(m)}, {{{vals}}}}},")
    print("};")
    print(f"const int clip_nfd_map_count = {len(decs)};\n")

    comps = compositions()
    print("const clip_composition clip_compositions[] = {")
    for a, b, c in comps:
        print(f"  {{0x{a:X}, 0x{b:X}, 0x{c:X}}},")
    print("};")
    print(f"const int clip_compositions_count = {len(comps)};\n")

    cccs = ccc_ranges()
    print("const clip_ccc_range clip_ccc_ranges[] = {")
    for lo, hi, k in cccs:
        print(f"  {{0x{lo:X}, 0x{hi:X}, {k}}},")
    print("};")
    print(f"const int clip_ccc_ranges_count = {len(cccs)};")


if __name__ == "__main__":
    sys.exit(main())
