/*
 * sdlens.epistemic._fastcount -- compiled counter of lexicon hits.
 *
 * The results equal sdlens.epistemic.count.count_text exactly; that Python function is the specification.
 * All matching happens on UTF-8 bytes with ASCII case folding: lexicon words are printable ASCII, and every
 * non-ASCII code point is one code point that is never a letter, never lower-cases to ASCII and never changes
 * length when lower-cased -- except U+0130 and U+212A (substring mode: lower() gives "i" U+0307 and "k") and
 * U+0130, U+0131, U+017F, U+212A (letter mode: re.IGNORECASE matches them to "i", "i", "s", "k", as letters
 * and in the [A-Za-z] boundary classes alike). When the scoped text of a response holds one of those, it is
 * rewritten with that replacement (the text Python matches) and counted again; word mode (re.ASCII) needs
 * neither. Only a lexicon with a word outside printable ASCII, or a string with a lone surrogate, falls back
 * to Python. Positions are code points (UTF-8 non-continuation bytes).
 *
 *   count_strings(texts, words, mode, scope, threads=1) -> {"stats": bytes, "fallback": [int, ...]}
 *   scan_jsonl(data, key, words, mode, scope, threads=2) -> {"line_no", "line_start", "line_end", "status",
 *                                                            "n_strings", "stats"}: bytes of int64
 *   _simd(level=None): the SIMD code path in use ("scalar", "sse2", "avx2", "avx512"; the best one this
 *                      machine has is picked at run time)
 *
 * stats rows (int64): counts per word, n_chars, n_words, N_BINS position bins.
 *
 * scan_jsonl: lines end at '\n'; blank lines (JSON whitespace only) get no entry. A line has status 0 when it
 * is one valid RFC 8259 JSON object (strict UTF-8, no raw control characters, trailing whitespace allowed)
 * whose top-level `key` occurs once, holding a string or an array of strings, none with a lone surrogate
 * escape and none needing the fallback above; its strings (escapes decoded) are counted as count_text would.
 * Anything else is status 1 (Python decides), including nesting deeper than MAX_DEPTH and NaN/Infinity.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#define FC_SSE2 1
#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
#define FC_AVX2 1
#endif
#endif

#define N_BINS 10
#define EXTRA_COLS (2 + N_BINS)
#define MAX_DEPTH 512
#define MAX_THREADS 64
#define NPOS ((size_t)-1)
#define MAX_BIG 24

enum { M_SUBSTRING = 0, M_WORD = 1, M_LETTER = 2 };
enum { S_FULL = 0, S_THINKING = 1, S_ANSWER = 2 };

/* the four code points that case-fold to or match ASCII letters */
#define SP_0130 1u
#define SP_0131 2u
#define SP_017F 4u
#define SP_212A 8u

static uint8_t FOLD[256], ALPHA[256], ALNUM[256], ASCII_WS[256], ESC[256], HEX[256];

/* Escape classes for the AVX2 string skipper, a "shufti": class bits of byte c = ESC_LO[c & 15] & ESC_HI[c >> 4].
   Each class is a product of a high-nibble set and a low-nibble set, so the lookup is exact. */
#define EC_ESC 0x0F /* a one-character escape: " / \ b f n r t */
#define EC_U 0x10
#define EC_HEX 0x60
static const char *const ESC_CLASSES[7] = {"\"/", "\\", "bfn", "rt", "u", "0123456789", "ABCDEFabcdef"};
static uint8_t ESC_LO[16], ESC_HI[16];

static void init_tables(void) {
    for (int c = 0; c < 256; c++) {
        FOLD[c] = (uint8_t)((c >= 'A' && c <= 'Z') ? c + 32 : c);
        ALPHA[c] = (uint8_t)((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'));
        ALNUM[c] = (uint8_t)(ALPHA[c] || (c >= '0' && c <= '9'));
        ASCII_WS[c] = (uint8_t)((c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20));
        HEX[c] = 0xFF;
    }
    for (int c = '0'; c <= '9'; c++) HEX[c] = (uint8_t)(c - '0');
    for (int c = 'a'; c <= 'f'; c++) HEX[c] = (uint8_t)(c - 'a' + 10);
    for (int c = 'A'; c <= 'F'; c++) HEX[c] = (uint8_t)(c - 'A' + 10);
    ESC['"'] = '"';
    ESC['\\'] = '\\';
    ESC['/'] = '/';
    ESC['b'] = 0x08;
    ESC['f'] = 0x0C;
    ESC['n'] = 0x0A;
    ESC['r'] = 0x0D;
    ESC['t'] = 0x09;
    for (int k = 0; k < 7; k++)
        for (const char *c = ESC_CLASSES[k]; *c; c++) {
            ESC_LO[(uint8_t)*c & 15] |= (uint8_t)(1u << k);
            ESC_HI[(uint8_t)*c >> 4] |= (uint8_t)(1u << k);
        }
}

/* ------------------------------------------------------------------------------------------------------ */
/* growable buffers                                                                                         */

typedef struct {
    uint8_t *p;
    size_t len, cap;
} Buf;

static int buf_reserve(Buf *b, size_t need) {
    if (need <= b->cap) return 0;
    size_t nc = b->cap ? b->cap : 4096;
    while (nc < need) nc *= 2;
    uint8_t *q = (uint8_t *)realloc(b->p, nc);
    if (!q) return -1;
    b->p = q;
    b->cap = nc;
    return 0;
}

typedef struct {
    int64_t *p;
    size_t len, cap;
} Vec;

static int vec_reserve(Vec *v, size_t extra) {
    if (v->len + extra <= v->cap) return 0;
    size_t nc = v->cap ? v->cap : 256;
    while (nc < v->len + extra) nc *= 2;
    int64_t *q = (int64_t *)realloc(v->p, nc * sizeof(int64_t));
    if (!q) return -1;
    v->p = q;
    v->cap = nc;
    return 0;
}

static int vec_push(Vec *v, int64_t x) {
    if (vec_reserve(v, 1)) return -1;
    v->p[v->len++] = x;
    return 0;
}

/* ------------------------------------------------------------------------------------------------------ */
/* the compiled lexicon                                                                                     */

typedef struct {
    uint8_t ch;     /* folded letter or literal byte */
    uint8_t letter; /* 1: ch repeated at least `min` times (elongation), 0: exactly one ch */
    uint32_t min;
} Unit;

typedef struct {
    int mode, scope, unsupported;
    unsigned special_mask;
    size_t nw;
    uint8_t *wbytes; /* all words, concatenated (letter mode: folded) */
    size_t *woff, *wlen;
    Unit *units; /* word mode */
    size_t *uoff, *ulen;
    uint16_t *pair;      /* 65536 entries: candidate list index (0: none) for the first two bytes */
    uint32_t *loff;      /* list i holds lids[loff[i] .. loff[i + 1]) */
    uint32_t *lids;
    /* SSE2 prefilter on case-folded (| 0x20) bytes: a candidate starts with pair0[k] pair1[k] or first0[k] */
    int prefilter, npair, nfirst;
    uint8_t pair0[MAX_BIG], pair1[MAX_BIG], first0[MAX_BIG];
    /* AVX2 prefilter ("shufti"): words are put in buckets by their first byte | 0x20, up to 16 buckets (8 per
       table); bit b of lo1[c & 15] & hi1[c >> 4] says that byte c may start a word of bucket b, and lo2/hi2 do
       the same for the second byte. A position is a candidate when its two bytes share a bucket. The tables hold
       the raw variant bytes (both cases of a letter share the low nibble), so with one first letter per bucket
       (<= 16 distinct ones) the filter is as exact as the pair list above, and it costs a fixed handful of
       instructions per block whatever the lexicon. Tables: [0, 16) buckets 0-7, [16, 32) buckets 8-15.
       lo3/hi3 add the third byte in substring and letter modes (any byte in word mode, where a letter may
       repeat, and for words of 2 bytes): it drops most false candidates ("fact" for "actually", "which" for
       "check"), which cost far more to verify than the two lookups. */
    int nbucket;
    uint8_t sh_lo1[32], sh_hi1[32], sh_lo2[32], sh_hi2[32], sh_lo3[32], sh_hi3[32];
    /* substring and letter modes, per candidate list entry (parallel to lids): for a word w of <= 16 bytes
       (len, 0 for longer ones), the 16 text bytes t0 t1 (two memcpy loads, so the byte order is that of the
       arrays built here) match when ((t | fold) ^ want) & mask is 0; fold = 0x20 on letters, and ASCII case
       folding of a letter is exactly that */
    struct WordCmp {
        uint64_t fold[2], want[2], mask[2];
        uint32_t len, w;
    } *lcmp;
    int32_t *lone; /* per candidate list: its entry when it holds just one word of <= 16 bytes, else -1 */
} Lex;

static void lex_free(Lex *lx) {
    free(lx->wbytes);
    free(lx->woff);
    free(lx->wlen);
    free(lx->units);
    free(lx->uoff);
    free(lx->ulen);
    free(lx->pair);
    free(lx->loff);
    free(lx->lids);
    free(lx->lcmp);
    free(lx->lone);
    memset(lx, 0, sizeof(*lx));
}

typedef struct {
    uint32_t key, wid;
} KeyWord;

static int kw_cmp(const void *a, const void *b) {
    const KeyWord *x = (const KeyWord *)a, *y = (const KeyWord *)b;
    if (x->key != y->key) return x->key < y->key ? -1 : 1;
    if (x->wid != y->wid) return x->wid < y->wid ? -1 : 1;
    return 0;
}

/* bytes that can match word character c: substring mode compares the ASCII-lower-cased text to the word as
   given, the other modes compare case-insensitively */
static int variants(int mode, uint8_t c, uint8_t *out) {
    uint8_t target = mode == M_SUBSTRING ? c : FOLD[c];
    int n = 0;
    for (int b = 0; b < 128; b++)
        if (FOLD[b] == target) out[n++] = (uint8_t)b;
    return n;
}

static int parse_mode(const char *s) {
    if (!strcmp(s, "substring")) return M_SUBSTRING;
    if (!strcmp(s, "word")) return M_WORD;
    if (!strcmp(s, "letter")) return M_LETTER;
    return -1;
}

static int parse_scope(const char *s) {
    if (!strcmp(s, "full")) return S_FULL;
    if (!strcmp(s, "thinking")) return S_THINKING;
    if (!strcmp(s, "answer")) return S_ANSWER;
    return -1;
}

/* the prefilter is a superset of the candidate table: | 0x20 folds letters exactly and maps any other byte to
   one that it then also accepts */
static void prefilter_add(Lex *lx, int a, int b, int any) {
    if (any) {
        for (int k = 0; k < lx->nfirst; k++)
            if (lx->first0[k] == a) return;
        if (lx->nfirst == MAX_BIG || lx->npair + lx->nfirst >= MAX_BIG) {
            lx->prefilter = 0;
            return;
        }
        lx->first0[lx->nfirst++] = (uint8_t)a;
        return;
    }
    for (int k = 0; k < lx->npair; k++)
        if (lx->pair0[k] == a && lx->pair1[k] == b) return;
    if (lx->npair + lx->nfirst >= MAX_BIG) {
        lx->prefilter = 0;
        return;
    }
    lx->pair0[lx->npair] = (uint8_t)a;
    lx->pair1[lx->npair++] = (uint8_t)b;
}

/* Build with the GIL held; returns -1 with a Python exception set. */
static int lex_build(Lex *lx, PyObject *words, const char *mode, const char *scope) {
    memset(lx, 0, sizeof(*lx));
    lx->mode = parse_mode(mode);
    if (lx->mode < 0) {
        PyErr_Format(PyExc_ValueError, "unknown mode %s", mode);
        return -1;
    }
    lx->scope = parse_scope(scope);
    if (lx->scope < 0) {
        PyErr_Format(PyExc_ValueError, "unknown scope %s", scope);
        return -1;
    }
    lx->special_mask = lx->mode == M_SUBSTRING ? (SP_0130 | SP_212A)
                       : lx->mode == M_LETTER  ? (SP_0130 | SP_0131 | SP_017F | SP_212A)
                                               : 0u;
    PyObject *seq = PySequence_Fast(words, "words must be a sequence of str");
    if (!seq) return -1;
    Py_ssize_t nw = PySequence_Fast_GET_SIZE(seq);
    PyObject **items = PySequence_Fast_ITEMS(seq);
    size_t total = 0;
    for (Py_ssize_t i = 0; i < nw; i++) {
        if (!PyUnicode_Check(items[i])) {
            PyErr_SetString(PyExc_TypeError, "words must be str");
            goto fail;
        }
        Py_ssize_t L = PyUnicode_GET_LENGTH(items[i]);
        if (L == 0) {
            PyErr_SetString(PyExc_ValueError, "empty word");
            goto fail;
        }
        total += (size_t)L;
    }
    lx->nw = (size_t)nw;
    lx->wbytes = (uint8_t *)malloc(total + 1);
    lx->woff = (size_t *)calloc((size_t)nw + 1, sizeof(size_t));
    lx->wlen = (size_t *)calloc((size_t)nw + 1, sizeof(size_t));
    lx->units = (Unit *)calloc(total + 1, sizeof(Unit));
    lx->uoff = (size_t *)calloc((size_t)nw + 1, sizeof(size_t));
    lx->ulen = (size_t *)calloc((size_t)nw + 1, sizeof(size_t));
    if (!lx->wbytes || !lx->woff || !lx->wlen || !lx->units || !lx->uoff || !lx->ulen) {
        PyErr_NoMemory();
        goto fail;
    }
    size_t off = 0, uoff = 0;
    for (Py_ssize_t i = 0; i < nw; i++) {
        PyObject *w = items[i];
        Py_ssize_t L = PyUnicode_GET_LENGTH(w);
        int kind = PyUnicode_KIND(w);
        const void *data = PyUnicode_DATA(w);
        lx->woff[i] = off;
        lx->wlen[i] = (size_t)L;
        for (Py_ssize_t j = 0; j < L; j++) {
            Py_UCS4 c = PyUnicode_READ(kind, data, j);
            /* printable ASCII only: anything else (incl. newline, which the word-mode run regex skips) is
               left to Python */
            if (c < 0x20 || c > 0x7E) lx->unsupported = 1;
            lx->wbytes[off + (size_t)j] = (uint8_t)(c & 0x7F);
        }
        if (lx->mode == M_LETTER)
            for (Py_ssize_t j = 0; j < L; j++) lx->wbytes[off + (size_t)j] = FOLD[lx->wbytes[off + (size_t)j]];
        /* word mode: runs of one character (case-sensitive, as re's (.)\1*); a letter run becomes c{n,}
           under ASCII IGNORECASE, adjacent letter runs equal after folding merge (greedy, no backtracking
           can help since the next unit needs a different character) */
        lx->uoff[i] = uoff;
        size_t nu = 0;
        const uint8_t *wb = lx->wbytes + off;
        for (size_t j = 0; j < (size_t)L;) {
            size_t k = j;
            while (k < (size_t)L && wb[k] == wb[j]) k++;
            if (ALPHA[wb[j]]) {
                uint8_t f = FOLD[wb[j]];
                Unit *prev = nu ? &lx->units[uoff + nu - 1] : NULL;
                if (prev && prev->letter && prev->ch == f) {
                    prev->min += (uint32_t)(k - j);
                } else {
                    lx->units[uoff + nu].ch = f;
                    lx->units[uoff + nu].letter = 1;
                    lx->units[uoff + nu].min = (uint32_t)(k - j);
                    nu++;
                }
            } else {
                for (size_t t = j; t < k; t++) {
                    lx->units[uoff + nu].ch = wb[j];
                    lx->units[uoff + nu].letter = 0;
                    lx->units[uoff + nu].min = 1;
                    nu++;
                }
            }
            j = k;
        }
        lx->ulen[i] = nu;
        uoff += nu;
        off += (size_t)L;
    }
    Py_DECREF(seq);
    seq = NULL;
    if (lx->unsupported) return 0;

    /* candidate table on the first two bytes */
    lx->prefilter = 1;
    int16_t bucket_of[256]; /* first byte | 0x20 -> bucket */
    for (int c = 0; c < 256; c++) bucket_of[c] = -1;
    int ngroup = 0;
    size_t kcap = 1024, kn = 0;
    KeyWord *kw = (KeyWord *)malloc(kcap * sizeof(KeyWord));
    if (!kw) {
        PyErr_NoMemory();
        goto fail;
    }
    for (size_t w = 0; w < lx->nw; w++) {
        uint8_t first[128], second[256];
        int nf, ns = 0, all = 0;
        const uint8_t *wb = lx->wbytes + lx->woff[w];
        if (lx->mode == M_WORD) {
            const Unit *u = lx->units + lx->uoff[w];
            size_t nu = lx->ulen[w];
            nf = variants(lx->mode, u[0].ch, first);
            if (u[0].letter) {
                ns = variants(lx->mode, u[0].ch, second);
                if (u[0].min < 2) {
                    if (nu > 1)
                        ns += variants(lx->mode, u[1].ch, second + ns);
                    else
                        all = 1;
                }
            } else if (nu > 1) {
                ns = variants(lx->mode, u[1].ch, second);
            } else {
                all = 1;
            }
        } else {
            nf = variants(lx->mode, wb[0], first);
            if (lx->wlen[w] > 1)
                ns = variants(lx->mode, wb[1], second);
            else
                all = 1;
        }
        for (int a = 0; a < nf; a++) {
            if (all)
                prefilter_add(lx, first[a] | 0x20, 0, 1);
            else
                for (int b = 0; b < ns; b++) prefilter_add(lx, first[a] | 0x20, second[b] | 0x20, 0);
            int f = first[a], g = f | 0x20;
            if (bucket_of[g] < 0) bucket_of[g] = (int16_t)(ngroup++ % 16); /* past 16: shared, a superset */
            int bk = bucket_of[g], half = (bk / 8) * 16;
            uint8_t bit = (uint8_t)(1u << (bk % 8));
            lx->sh_lo1[half + (f & 15)] |= bit;
            lx->sh_hi1[half + (f >> 4)] |= bit;
            for (int b = 0; b < (all ? 16 : ns); b++) {
                int sb = all ? b : second[b]; /* all: every nibble, so every byte */
                lx->sh_lo2[half + (sb & 15)] |= bit;
                lx->sh_hi2[half + (all ? b : sb >> 4)] |= bit;
            }
            uint8_t third[128];
            int nt = lx->mode != M_WORD && lx->wlen[w] > 2 ? variants(lx->mode, wb[2], third) : 0;
            for (int b = 0; b < (nt ? nt : 16); b++) { /* none: every nibble, so every byte */
                lx->sh_lo3[half + (nt ? third[b] & 15 : b)] |= bit;
                lx->sh_hi3[half + (nt ? third[b] >> 4 : b)] |= bit;
            }
        }
        if (all) {
            for (int b = 0; b < 256; b++) second[b] = (uint8_t)b;
            ns = 256;
        }
        for (int a = 0; a < nf; a++)
            for (int b = 0; b < ns; b++) {
                if (kn == kcap) {
                    KeyWord *q = (KeyWord *)realloc(kw, 2 * kcap * sizeof(KeyWord));
                    if (!q) {
                        free(kw);
                        PyErr_NoMemory();
                        goto fail;
                    }
                    kw = q;
                    kcap *= 2;
                }
                /* the key is p[i] | p[i + 1] << 8, the same on every platform */
                kw[kn].key = (uint32_t)first[a] | ((uint32_t)second[b] << 8);
                kw[kn].wid = (uint32_t)w;
                kn++;
            }
    }
    lx->nbucket = ngroup < 16 ? ngroup : 16;
    qsort(kw, kn, sizeof(KeyWord), kw_cmp);
    lx->pair = (uint16_t *)calloc(65536, sizeof(uint16_t));
    lx->loff = (uint32_t *)calloc(kn + 2, sizeof(uint32_t));
    lx->lids = (uint32_t *)calloc(kn + 1, sizeof(uint32_t));
    if (!lx->pair || !lx->loff || !lx->lids) {
        free(kw);
        PyErr_NoMemory();
        goto fail;
    }
    uint32_t nl = 0, ni = 0;
    for (size_t i = 0; i < kn; i++) {
        if (i > 0 && kw[i].key == kw[i - 1].key && kw[i].wid == kw[i - 1].wid) continue;
        if (i == 0 || kw[i].key != kw[i - 1].key) {
            nl++;
            if (nl >= 65535) {
                lx->unsupported = 1;
                break;
            }
            lx->pair[kw[i].key] = (uint16_t)nl;
            lx->loff[nl] = ni;
        }
        lx->lids[ni++] = kw[i].wid;
    }
    lx->loff[nl + 1] = ni;
    free(kw);
    lx->lcmp = (struct WordCmp *)calloc(ni + 1, sizeof(struct WordCmp));
    lx->lone = (int32_t *)calloc(nl + 2, sizeof(int32_t));
    if (!lx->lcmp || !lx->lone) {
        PyErr_NoMemory();
        goto fail;
    }
    for (uint32_t x = 0; x < ni; x++) {
        size_t w = lx->lids[x], L = lx->wlen[w];
        const uint8_t *wb = lx->wbytes + lx->woff[w];
        uint8_t fold[16] = {0}, want[16] = {0}, mask[16] = {0};
        struct WordCmp *c = &lx->lcmp[x];
        c->w = (uint32_t)w;
        if (L > 16) continue;
        for (size_t j = 0; j < L; j++) {
            /* the text is compared folded: a lower-case letter matches both cases; an upper-case one (possible
               in substring mode) never matches, as the fold bit then stays in the difference */
            fold[j] = ALPHA[wb[j]] ? 0x20 : 0;
            want[j] = wb[j];
            mask[j] = 0xFF;
        }
        memcpy(c->fold, fold, 16);
        memcpy(c->want, want, 16);
        memcpy(c->mask, mask, 16);
        c->len = (uint32_t)L;
    }
    for (uint32_t l = 0; l <= nl; l++) {
        uint32_t x0 = lx->loff[l], x1 = lx->loff[l + 1];
        lx->lone[l] = x1 == x0 + 1 && lx->lcmp[x0].len ? (int32_t)x0 : -1;
    }
    return 0;
fail:
    Py_XDECREF(seq);
    lex_free(lx);
    return -1;
}

/* ------------------------------------------------------------------------------------------------------ */
/* counting one response (UTF-8 bytes, p[n] readable)                                                      */

typedef struct {
    size_t *mpos;
    size_t mcap;
    size_t *next_ok;
    Buf folded; /* a scoped text with its special code points replaced (see rewrite_special) */
} Scratch;

static void scratch_free(Scratch *sc) {
    free(sc->mpos);
    free(sc->next_ok);
    free(sc->folded.p);
    memset(sc, 0, sizeof(*sc));
}

static int scratch_init(Scratch *sc, size_t nw) {
    memset(sc, 0, sizeof(*sc));
    sc->mcap = 256;
    sc->mpos = (size_t *)malloc(sc->mcap * sizeof(size_t));
    sc->next_ok = (size_t *)calloc(nw + 1, sizeof(size_t));
    if (!sc->mpos || !sc->next_ok) {
        scratch_free(sc);
        return -1;
    }
    return 0;
}

/* first occurrence of tag lying entirely inside [from, to) */
static size_t find_tag(const uint8_t *p, size_t from, size_t to, const char *tag, size_t tl) {
    size_t i = from;
    while (i + tl <= to) {
        const uint8_t *q = (const uint8_t *)memchr(p + i, '<', to - tl + 1 - i);
        if (!q) return NPOS;
        size_t k = (size_t)(q - p);
        if (memcmp(q, tag, tl) == 0) return k;
        i = k + 1;
    }
    return NPOS;
}

/* state of one pass over the scoped text [s, e) */
typedef struct {
    const Lex *lx;
    const uint8_t *p;
    size_t s, e;
    int64_t cp, words; /* code points so far (= index of the current one), word starts so far */
    unsigned prev_ws, special;
    int64_t *row;
    Scratch *sc;
    size_t nm; /* matches recorded (their code point positions, in sc->mpos) */
    int oom;
} Scan;

/* end of the match of word w at i inside [s, e), or 0 */
static inline size_t match_at(const Lex *lx, size_t w, const uint8_t *p, size_t i, size_t s, size_t e) {
    if (lx->mode == M_WORD) {
        if (i > s && ALNUM[p[i - 1]]) return 0;
        const Unit *u = lx->units + lx->uoff[w];
        size_t nu = lx->ulen[w], pos = i;
        for (size_t k = 0; k < nu; k++) {
            if (u[k].letter) {
                size_t st = pos;
                while (pos < e && FOLD[p[pos]] == u[k].ch) pos++;
                if (pos - st < u[k].min) return 0;
            } else {
                if (pos >= e || p[pos] != u[k].ch) return 0;
                pos++;
            }
        }
        if (pos < e && ALNUM[p[pos]]) return 0;
        return pos;
    }
    size_t L = lx->wlen[w];
    if (L > e - i) return 0;
    if (lx->mode == M_LETTER && i > s && ALPHA[p[i - 1]]) return 0;
    const uint8_t *wb = lx->wbytes + lx->woff[w];
    for (size_t j = 0; j < L; j++)
        if (FOLD[p[i + j]] != wb[j]) return 0;
    if (lx->mode == M_LETTER && i + L < e && ALPHA[p[i + L]]) return 0;
    return i + L;
}

/* room for `more` match positions; 0 or -1 (out of memory) */
static inline int reserve_matches(Scan *S, size_t more) {
    if (S->nm + more <= S->sc->mcap) return 0;
    size_t cap = S->sc->mcap;
    while (cap < S->nm + more) cap *= 2;
    size_t *q = (size_t *)realloc(S->sc->mpos, cap * sizeof(size_t));
    if (!q) {
        S->oom = 1;
        return -1;
    }
    S->sc->mpos = q;
    S->sc->mcap = cap;
    return 0;
}

/* the words of candidate list li at byte i (code point cp); each word's matches do not overlap */
static inline void try_words(Scan *S, size_t i, int64_t cp, unsigned li) {
    const Lex *lx = S->lx;
    size_t *next_ok = S->sc->next_ok;
    for (uint32_t k = lx->loff[li]; k < lx->loff[li + 1]; k++) {
        uint32_t w = lx->lids[k];
        if (i < next_ok[w]) continue;
        size_t end = match_at(lx, w, S->p, i, S->s, S->e);
        if (!end) continue;
        if (reserve_matches(S, 1)) return;
        S->row[w]++;
        next_ok[w] = end;
        S->sc->mpos[S->nm++] = (size_t)cp;
    }
}

/* candidate positions found by a block run: the block at i (code point cp), its candidate bits and the bits of
   its continuation bytes (a candidate's code point index is cp + its offset - the continuations before it) */
typedef struct {
    size_t i;
    int64_t cp;
    uint32_t cand, cont;
} Pend;

/* Try the candidates of np blocks (used by the AVX2 run, hence popcnt). The common case, substring or letter
   mode and a candidate list of one word of <= 16 bytes, is straight-line code: one masked 16-byte compare, the
   outcome recorded without branches (a candidate is about as often a match as not, so a branch on it would
   mispredict a lot). Everything else goes through try_words, out of line. try_pending is not inlined into the
   block run either: there it would have to share the registers holding the vector constants. */
#ifdef FC_AVX2
__attribute__((noinline)) static void try_words_slow(Scan *S, size_t i, int64_t cp, unsigned li) {
    try_words(S, i, cp, li);
}

__attribute__((noinline, target("popcnt"))) static void try_pending(Scan *S, const Pend *pend, int np) {
    const Lex *lx = S->lx;
    const uint8_t *p = S->p;
    const size_t s = S->s, e = S->e;
    const int slow = lx->mode == M_WORD, letter = lx->mode == M_LETTER;
    /* the outputs in restrict locals: the compiler must not fear that the stores change S */
    int64_t *restrict row = S->row;
    size_t *restrict next_ok = S->sc->next_ok;
    size_t *restrict mpos = S->sc->mpos;
    size_t nm = S->nm, mcap = S->sc->mcap;
    for (int k = 0; k < np; k++) {
        uint32_t cand = pend[k].cand;
        while (cand) {
            unsigned j = (unsigned)__builtin_ctz(cand);
            cand &= cand - 1;
            size_t i = pend[k].i + j;
            unsigned li = lx->pair[(unsigned)p[i] | ((unsigned)p[i + 1] << 8)];
            if (!li) continue;
            int64_t cp = pend[k].cp + j - __builtin_popcount(pend[k].cont & ((1u << j) - 1u));
            int32_t x = lx->lone[li];
            if (slow || x < 0 || e - i < 16 || nm == mcap) {
                S->nm = nm;
                try_words_slow(S, i, cp, li);
                if (S->oom) return;
                nm = S->nm;
                mpos = S->sc->mpos;
                mcap = S->sc->mcap;
                continue;
            }
            const struct WordCmp *c = &lx->lcmp[x];
            uint64_t t0, t1;
            memcpy(&t0, p + i, 8);
            memcpy(&t1, p + i + 8, 8);
            size_t w = c->w, end = i + c->len;
            size_t ok = ((((t0 | c->fold[0]) ^ c->want[0]) & c->mask[0]) |
                         (((t1 | c->fold[1]) ^ c->want[1]) & c->mask[1])) == 0;
            ok &= i >= next_ok[w];
            if (letter) { /* no letter right before or after (p[i - (i > s)], p[end] <= p[e]: readable) */
                ok &= !((i > s) & ALPHA[p[i - (i > s)]]);
                ok &= !((end < e) & ALPHA[p[end]]);
            }
            size_t keep = ok - 1; /* all ones when it does not match */
            row[w] += (int64_t)ok;
            next_ok[w] = (next_ok[w] & keep) | (end & ~keep);
            mpos[nm] = (size_t)cp; /* kept only if it matched */
            nm += ok;
        }
    }
    S->nm = nm;
}
#endif

/* p[i + 1] is always readable: it is inside the text or its terminating byte */
static inline void try_pos(Scan *S, size_t i, int64_t cp) {
    unsigned li = S->lx->pair[(unsigned)S->p[i] | ((unsigned)S->p[i + 1] << 8)];
    if (li) try_words(S, i, cp, li);
}

/* one code point at i (valid UTF-8); returns the index after it */
static inline size_t scan_char(Scan *S, size_t i) {
    const uint8_t *p = S->p;
    uint8_t c = p[i];
    unsigned ws = 0;
    size_t len;
    if (c < 0x80) {
        ws = ASCII_WS[c];
        if (!ws && S->prev_ws) S->words++;
        S->prev_ws = ws;
        try_pos(S, i, S->cp);
        S->cp++;
        return i + 1;
    }
    if (c < 0xC0) {
        len = 1; /* not reached on valid UTF-8 */
    } else if (c < 0xE0) {
        uint8_t d = p[i + 1];
        len = 2;
        if (c == 0xC2)
            ws = d == 0x85 || d == 0xA0;
        else if (c == 0xC4)
            S->special |= d == 0xB0 ? SP_0130 : d == 0xB1 ? SP_0131 : 0u;
        else if (c == 0xC5 && d == 0xBF)
            S->special |= SP_017F;
    } else if (c < 0xF0) {
        uint8_t d = p[i + 1], f = p[i + 2];
        len = 3;
        if (c == 0xE1)
            ws = d == 0x9A && f == 0x80;
        else if (c == 0xE2) {
            if (d == 0x80)
                ws = f <= 0x8A || f == 0xA8 || f == 0xA9 || f == 0xAF;
            else if (d == 0x81)
                ws = f == 0x9F;
            else if (d == 0x84 && f == 0xAA)
                S->special |= SP_212A;
        } else if (c == 0xE3)
            ws = d == 0x80 && f == 0x80;
    } else {
        len = 4;
    }
    if (!ws && S->prev_ws) S->words++;
    S->prev_ws = ws;
    S->cp++;
    return i + len;
}

/* Block runs: from i, whole blocks (whitespace starts and code points counted with SIMD, candidate positions
   from the bigram prefilter); stops at a block holding a lead byte that may start non-ASCII whitespace or a
   special character, or near e. Returns the new i. */
typedef size_t (*run_fn)(Scan *, size_t);
static run_fn RUN = NULL;

#ifdef FC_SSE2
static uint8_t POP8[256];

static size_t run_sse2(Scan *S, size_t i) {
    const uint8_t *p = S->p;
    const size_t e = S->e;
    const Lex *lx = S->lx;
    __m128i P0[MAX_BIG], P1[MAX_BIG], F0[MAX_BIG];
    for (int k = 0; k < lx->npair; k++) {
        P0[k] = _mm_set1_epi8((char)lx->pair0[k]);
        P1[k] = _mm_set1_epi8((char)lx->pair1[k]);
    }
    for (int k = 0; k < lx->nfirst; k++) F0[k] = _mm_set1_epi8((char)lx->first0[k]);
    const __m128i x20 = _mm_set1_epi8(0x20), c08 = _mm_set1_epi8(0x08), c0e = _mm_set1_epi8(0x0E);
    const __m128i c1b = _mm_set1_epi8(0x1B), c21 = _mm_set1_epi8(0x21);
    const __m128i cfc = _mm_set1_epi8((char)0xFC), cc2 = _mm_set1_epi8((char)0xC2);
    const __m128i cc4 = _mm_set1_epi8((char)0xC4), ce0 = _mm_set1_epi8((char)0xE0), cm64 = _mm_set1_epi8(-64);
    while (e - i >= 16 && !S->oom) { /* p[i + 16] is readable */
        __m128i v = _mm_loadu_si128((const __m128i *)(p + i));
        unsigned cont = 0;
        if (_mm_movemask_epi8(v)) {
            /* non-ASCII: only lead bytes that may start whitespace or a special character need the scalar
               path (C2, C4-C7, E0-E3); other code points are counted by their non-continuation bytes */
            __m128i vfc = _mm_and_si128(v, cfc);
            __m128i lead = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, cc2), _mm_cmpeq_epi8(vfc, cc4)),
                                        _mm_cmpeq_epi8(vfc, ce0));
            if (_mm_movemask_epi8(lead)) break;
            cont = (unsigned)_mm_movemask_epi8(_mm_cmpgt_epi8(cm64, v)); /* 0x80..0xBF */
        }
        __m128i w1 = _mm_and_si128(_mm_cmpgt_epi8(v, c08), _mm_cmplt_epi8(v, c0e));
        __m128i w2 = _mm_and_si128(_mm_cmpgt_epi8(v, c1b), _mm_cmplt_epi8(v, c21));
        unsigned m = (unsigned)_mm_movemask_epi8(_mm_or_si128(w1, w2));
        unsigned starts = ~m & ((m << 1) | S->prev_ws) & 0xFFFFu;
        S->words += POP8[starts & 0xFF] + POP8[starts >> 8];
        S->prev_ws = (m >> 15) & 1u;
        unsigned cand = 0xFFFFu;
        if (lx->prefilter) {
            __m128i vf = _mm_or_si128(v, x20);
            __m128i v1 = _mm_or_si128(_mm_loadu_si128((const __m128i *)(p + i + 1)), x20);
            __m128i acc = _mm_setzero_si128();
            for (int k = 0; k < lx->npair; k++)
                acc = _mm_or_si128(acc, _mm_and_si128(_mm_cmpeq_epi8(vf, P0[k]), _mm_cmpeq_epi8(v1, P1[k])));
            for (int k = 0; k < lx->nfirst; k++) acc = _mm_or_si128(acc, _mm_cmpeq_epi8(vf, F0[k]));
            cand = (unsigned)_mm_movemask_epi8(acc);
        }
        while (cand) {
            unsigned j = (unsigned)__builtin_ctz(cand);
            cand &= cand - 1;
            unsigned before = cont & ((1u << j) - 1u);
            try_pos(S, i + j, S->cp + j - (POP8[before & 0xFF] + POP8[before >> 8]));
        }
        S->cp += 16 - (POP8[cont & 0xFF] + POP8[cont >> 8]);
        i += 16;
    }
    return i;
}
#endif

#ifdef FC_AVX2
#define AVX2_FN __attribute__((target("avx2,popcnt")))

/* the same 16 bytes in both lanes (vpshufb looks up within each 128-bit lane) */
AVX2_FN static inline __m256i bcast16(const uint8_t *t) {
    return _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)t));
}

/* per byte: bucket bits lo[c & 15] & hi[c >> 4], given the nibbles */
AVX2_FN static inline __m256i shufti(__m256i lo, __m256i hi, __m256i nlo, __m256i nhi) {
    return _mm256_and_si256(_mm256_shuffle_epi8(lo, nlo), _mm256_shuffle_epi8(hi, nhi));
}

/* ASCII whitespace (0x09-0x0D, 0x1C-0x20) as a shufti: bit 0 = 0x09-0x0D, bit 1 = 0x1C-0x1F, bit 2 = 0x20 */
static const uint8_t WS_LO[16] = {4, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 3, 3, 2, 2};
static const uint8_t WS_HI[16] = {1, 2, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};

/* Candidates are collected for up to RUN_BATCH blocks and tried after the vector loop: a call inside the loop
   would make the compiler rematerialize every vector constant per block (the call clobbers them). */
#define RUN_BATCH 64

AVX2_FN static size_t run_avx2(Scan *S, size_t i) {
    const uint8_t *p = S->p;
    const size_t e = S->e;
    const Lex *lx = S->lx;
    const __m256i lo1a = bcast16(lx->sh_lo1), hi1a = bcast16(lx->sh_hi1);
    const __m256i lo2a = bcast16(lx->sh_lo2), hi2a = bcast16(lx->sh_hi2);
    const __m256i lo3a = bcast16(lx->sh_lo3), hi3a = bcast16(lx->sh_hi3);
    const __m256i lo3b = bcast16(lx->sh_lo3 + 16), hi3b = bcast16(lx->sh_hi3 + 16);
    const __m256i lo1b = bcast16(lx->sh_lo1 + 16), hi1b = bcast16(lx->sh_hi1 + 16);
    const __m256i lo2b = bcast16(lx->sh_lo2 + 16), hi2b = bcast16(lx->sh_hi2 + 16);
    const __m256i wslo = bcast16(WS_LO), wshi = bcast16(WS_HI);
    const int two_tables = lx->nbucket > 8;
    const __m256i x0f = _mm256_set1_epi8(0x0F);
    const __m256i cfc = _mm256_set1_epi8((char)0xFC), cc2 = _mm256_set1_epi8((char)0xC2);
    const __m256i cc4 = _mm256_set1_epi8((char)0xC4), ce0 = _mm256_set1_epi8((char)0xE0);
    const __m256i cm64 = _mm256_set1_epi8(-64), zero = _mm256_setzero_si256();
    Pend pend[RUN_BATCH];
    int64_t cp = S->cp, words = S->words;
    uint32_t prev_ws = S->prev_ws;
    int stopped = 0;
    while (!stopped && e - i >= 33 && !S->oom) {
        int np = 0;
        /* p[i + 33] is readable (inside the text or its terminating byte). A candidate whose third byte would be
           that terminator is dropped by the third-byte filter, correctly: a word of 3+ bytes cannot fit. */
        for (int blk = 0; blk < RUN_BATCH && e - i >= 33; blk++) {
            __m256i v = _mm256_loadu_si256((const __m256i *)(p + i));
            uint32_t cont = 0;
            if (_mm256_movemask_epi8(v)) {
                /* non-ASCII: only lead bytes that may start whitespace or a special character need the scalar
                   path (C2, C4-C7, E0-E3); other code points are counted by their non-continuation bytes */
                __m256i vfc = _mm256_and_si256(v, cfc);
                __m256i lead = _mm256_or_si256(_mm256_cmpeq_epi8(v, cc2), _mm256_cmpeq_epi8(vfc, cc4));
                lead = _mm256_or_si256(lead, _mm256_cmpeq_epi8(vfc, ce0));
                if (_mm256_movemask_epi8(lead)) {
                    stopped = 1;
                    break;
                }
                cont = (uint32_t)_mm256_movemask_epi8(_mm256_cmpgt_epi8(cm64, v));
            }
            __m256i nlo = _mm256_and_si256(v, x0f), nhi = _mm256_and_si256(_mm256_srli_epi16(v, 4), x0f);
            uint32_t m = ~(uint32_t)_mm256_movemask_epi8(_mm256_cmpeq_epi8(shufti(wslo, wshi, nlo, nhi), zero));
            words += __builtin_popcount(~m & ((m << 1) | prev_ws));
            prev_ws = m >> 31;
            __m256i v1 = _mm256_loadu_si256((const __m256i *)(p + i + 1));
            __m256i nlo1 = _mm256_and_si256(v1, x0f), nhi1 = _mm256_and_si256(_mm256_srli_epi16(v1, 4), x0f);
            __m256i v2 = _mm256_loadu_si256((const __m256i *)(p + i + 2));
            __m256i nlo2 = _mm256_and_si256(v2, x0f), nhi2 = _mm256_and_si256(_mm256_srli_epi16(v2, 4), x0f);
            /* bucket bits common to this byte (as a first byte), the next (second) and the one after (third) */
            __m256i hit = _mm256_and_si256(shufti(lo1a, hi1a, nlo, nhi), shufti(lo2a, hi2a, nlo1, nhi1));
            hit = _mm256_and_si256(hit, shufti(lo3a, hi3a, nlo2, nhi2));
            if (two_tables) {
                __m256i hit_b = _mm256_and_si256(shufti(lo1b, hi1b, nlo, nhi), shufti(lo2b, hi2b, nlo1, nhi1));
                hit = _mm256_or_si256(hit, _mm256_and_si256(hit_b, shufti(lo3b, hi3b, nlo2, nhi2)));
            }
            uint32_t cand = ~(uint32_t)_mm256_movemask_epi8(_mm256_cmpeq_epi8(hit, zero));
            /* appended unconditionally, kept only if it has candidates: about every other block has one, a
               branch on it would be mispredicted half the time */
            pend[np].i = i;
            pend[np].cp = cp;
            pend[np].cand = cand;
            pend[np].cont = cont;
            np += cand != 0;
            cp += 32 - __builtin_popcount(cont);
            i += 32;
        }
        try_pending(S, pend, np);
    }
    S->cp = cp;
    S->words = words;
    S->prev_ws = prev_ws;
    return i;
}
#endif

/* Stops early at a special code point of the mode (found only by scan_char: block runs stop at their lead bytes),
   since the text is then counted again, rewritten (see count_one). */
static void scan_range(Scan *S) {
    size_t i = S->s;
    const size_t e = S->e;
    const unsigned mask = S->lx->special_mask;
    while (i < e && !S->oom && !(S->special & mask)) {
        if (RUN) {
            i = RUN(S, i);
            if (i >= e) break;
        }
        /* a block run may stop inside a code point it has already counted */
        while (i < e && (S->p[i] & 0xC0) == 0x80) i++;
        size_t stop = e - i > 16 ? i + 16 : e;
        while (i < stop) i = scan_char(S, i);
    }
}

/* Count the text [s, e) of p (p[e] readable) into row (nw + EXTRA_COLS int64). Returns 0, 1 (it holds a special
   code point of this mode: row is incomplete) or -1 (out of memory). */
static int count_range(const Lex *lx, const uint8_t *p, size_t s, size_t e, int64_t *row, Scratch *sc) {
    size_t nw = lx->nw;
    memset(row, 0, (nw + EXTRA_COLS) * sizeof(int64_t));
    memset(sc->next_ok, 0, nw * sizeof(size_t));
    Scan S;
    memset(&S, 0, sizeof(S));
    S.lx = lx;
    S.p = p;
    S.s = s;
    S.e = e;
    S.prev_ws = 1u;
    S.row = row;
    S.sc = sc;
    scan_range(&S);
    if (S.oom) return -1;
    if (S.special & lx->special_mask) return 1;
    row[nw] = S.cp;
    row[nw + 1] = S.words;
    for (size_t k = 0; k < S.nm; k++) row[nw + 2 + (size_t)((int64_t)sc->mpos[k] * N_BINS / S.cp)]++;
    return 0;
}

/* [s, e) of p (valid UTF-8) into out (NUL-terminated) as Python matches it: substring mode lower-cases U+0130 to
   "i" U+0307 and U+212A to "k"; letter mode (re.IGNORECASE) treats U+0130 and U+0131 exactly like "i", U+017F
   like "s" and U+212A like "k", in its [A-Za-z] boundary classes too. Every other byte is copied. Whitespace
   stays whitespace and each code point becomes one (U+0130 two in substring mode, as lower() makes it), so the
   positions, lengths and word counts of the result are Python's. The scope was applied to the original text:
   "<thin\u212a>" is no tag. */
static int rewrite_special(const Lex *lx, const uint8_t *p, size_t s, size_t e, Buf *out) {
    if (buf_reserve(out, 2 * (e - s) + 1)) return -1; /* U+0130: 2 bytes -> 3 at most */
    const int letter = lx->mode == M_LETTER;
    uint8_t *o = out->p;
    size_t n = 0, i = s;
    while (i < e) {
        uint8_t c = p[i];
        if (c == 0xC4 && e - i >= 2 && p[i + 1] == 0xB0) { /* U+0130 */
            o[n++] = 'i';
            if (!letter) {
                o[n++] = 0xCC; /* U+0307 */
                o[n++] = 0x87;
            }
            i += 2;
        } else if (letter && e - i >= 2 && ((c == 0xC4 && p[i + 1] == 0xB1) || (c == 0xC5 && p[i + 1] == 0xBF))) {
            o[n++] = c == 0xC4 ? 'i' : 's'; /* U+0131, U+017F */
            i += 2;
        } else if (c == 0xE2 && e - i >= 3 && p[i + 1] == 0x84 && p[i + 2] == 0xAA) { /* U+212A */
            o[n++] = 'k';
            i += 3;
        } else {
            o[n++] = c;
            i++;
        }
    }
    o[n] = 0;
    out->len = n;
    return 0;
}

/* Count one response into row (nw + EXTRA_COLS int64). Returns 0 or -1 (out of memory). */
static int count_one(const Lex *lx, const uint8_t *p, size_t n, int64_t *row, Scratch *sc) {
    size_t s = 0, e = n;
    if (lx->scope != S_FULL) {
        size_t ts, te, as, ae;
        size_t close = find_tag(p, 0, n, "</think>", 8);
        if (close != NPOS) {
            size_t op = find_tag(p, 0, close, "<think>", 7);
            ts = op != NPOS ? op + 7 : 0;
            te = close;
            as = close + 8;
            ae = n;
        } else {
            size_t op = find_tag(p, 0, n, "<think>", 7);
            if (op != NPOS) {
                ts = op + 7;
                te = n;
                as = ae = n;
            } else {
                ts = te = 0;
                as = 0;
                ae = n;
            }
        }
        if (lx->scope == S_THINKING) {
            s = ts;
            e = te;
        } else {
            s = as;
            e = ae;
        }
    }
    int rc = count_range(lx, p, s, e, row, sc);
    if (rc != 1) return rc;
    /* a special code point: count the text Python matches against instead (it holds none of them) */
    if (rewrite_special(lx, p, s, e, &sc->folded)) return -1;
    return count_range(lx, sc->folded.p, 0, sc->folded.len, row, sc);
}

/* ------------------------------------------------------------------------------------------------------ */
/* count_strings                                                                                            */

typedef struct {
    const Lex *lx;
    const uint8_t **ptrs;
    const size_t *lens;
    char *fb;
    int64_t *stats;
    size_t r0, r1;
    int oom;
} CTask;

static void *count_worker(void *arg) {
    CTask *t = (CTask *)arg;
    size_t cols = t->lx->nw + EXTRA_COLS;
    Scratch sc;
    if (scratch_init(&sc, t->lx->nw)) {
        t->oom = 1;
        return NULL;
    }
    for (size_t r = t->r0; r < t->r1; r++) {
        int64_t *row = t->stats + r * cols;
        if (t->fb[r]) continue;
        int rc = count_one(t->lx, t->ptrs[r], t->lens[r], row, &sc);
        if (rc < 0) {
            t->oom = 1;
            break;
        }
        if (rc) t->fb[r] = 1;
    }
    scratch_free(&sc);
    return NULL;
}

static int clamp_threads(Py_ssize_t threads) {
    if (threads < 1) return 1;
    if (threads > MAX_THREADS) return MAX_THREADS;
    return (int)threads;
}

static PyObject *count_strings(PyObject *self, PyObject *args, PyObject *kwargs) {
    (void)self;
    static char *kwlist[] = {"texts", "words", "mode", "scope", "threads", NULL};
    PyObject *texts, *words;
    const char *mode, *scope;
    Py_ssize_t threads = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOss|n", kwlist, &texts, &words, &mode, &scope, &threads))
        return NULL;
    Lex lx;
    if (lex_build(&lx, words, mode, scope)) return NULL;
    PyObject *result = NULL, *stats = NULL, *fblist = NULL;
    PyObject **refs = NULL;
    const uint8_t **ptrs = NULL;
    size_t *lens = NULL;
    char *fb = NULL;
    Py_ssize_t n = 0;
    PyObject *seq = PySequence_Fast(texts, "texts must be a sequence of str");
    if (!seq) goto done;
    n = PySequence_Fast_GET_SIZE(seq);
    size_t cols = lx.nw + EXTRA_COLS;
    refs = (PyObject **)calloc((size_t)n + 1, sizeof(PyObject *));
    ptrs = (const uint8_t **)calloc((size_t)n + 1, sizeof(uint8_t *));
    lens = (size_t *)calloc((size_t)n + 1, sizeof(size_t));
    fb = (char *)calloc((size_t)n + 1, 1);
    if (!refs || !ptrs || !lens || !fb) {
        PyErr_NoMemory();
        goto done;
    }
    size_t total = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *o = PySequence_Fast_GET_ITEM(seq, i);
        if (!PyUnicode_Check(o)) {
            PyErr_Format(PyExc_TypeError, "texts[%zd] is not a str", i);
            goto done;
        }
        Py_INCREF(o);
        refs[i] = o;
        Py_ssize_t len;
        const char *u = PyUnicode_AsUTF8AndSize(o, &len);
        if (!u) {
            if (!PyErr_ExceptionMatches(PyExc_UnicodeEncodeError)) goto done;
            PyErr_Clear(); /* lone surrogates: Python counts it */
            fb[i] = 1;
            continue;
        }
        ptrs[i] = (const uint8_t *)u;
        lens[i] = (size_t)len;
        total += (size_t)len;
        if (lx.unsupported) fb[i] = 1;
    }
    stats = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)((size_t)n * cols * sizeof(int64_t)));
    if (!stats) goto done;
    int64_t *st = (int64_t *)PyBytes_AS_STRING(stats);
    memset(st, 0, (size_t)n * cols * sizeof(int64_t));
    int nt = clamp_threads(threads);
    if ((size_t)nt > (size_t)n) nt = n > 0 ? (int)n : 1;
    if (total < ((size_t)1 << 16)) nt = 1;
    CTask tasks[MAX_THREADS];
    pthread_t tids[MAX_THREADS];
    int started[MAX_THREADS];
    /* contiguous row ranges of about equal bytes */
    size_t r = 0, acc = 0;
    for (int k = 0; k < nt; k++) {
        tasks[k].lx = &lx;
        tasks[k].ptrs = ptrs;
        tasks[k].lens = lens;
        tasks[k].fb = fb;
        tasks[k].stats = st;
        tasks[k].oom = 0;
        tasks[k].r0 = r;
        size_t goal = (size_t)(((double)total * (k + 1)) / nt);
        if (k == nt - 1) {
            r = (size_t)n;
        } else {
            while (r < (size_t)n && acc + lens[r] / 2 < goal) acc += lens[r++];
        }
        tasks[k].r1 = r;
    }
    Py_BEGIN_ALLOW_THREADS
    for (int k = 1; k < nt; k++) started[k] = pthread_create(&tids[k], NULL, count_worker, &tasks[k]) == 0;
    count_worker(&tasks[0]);
    for (int k = 1; k < nt; k++) {
        if (started[k])
            pthread_join(tids[k], NULL);
        else
            count_worker(&tasks[k]);
    }
    Py_END_ALLOW_THREADS
    for (int k = 0; k < nt; k++)
        if (tasks[k].oom) {
            PyErr_NoMemory();
            goto done;
        }
    fblist = PyList_New(0);
    if (!fblist) goto done;
    for (Py_ssize_t i = 0; i < n; i++)
        if (fb[i]) {
            PyObject *x = PyLong_FromSsize_t(i);
            if (!x || PyList_Append(fblist, x)) {
                Py_XDECREF(x);
                goto done;
            }
            Py_DECREF(x);
        }
    result = PyDict_New();
    if (!result) goto done;
    if (PyDict_SetItemString(result, "stats", stats) || PyDict_SetItemString(result, "fallback", fblist)) {
        Py_CLEAR(result);
        goto done;
    }
done:
    if (refs)
        for (Py_ssize_t i = 0; i < n; i++) Py_XDECREF(refs[i]);
    free(refs);
    free(ptrs);
    free(lens);
    free(fb);
    Py_XDECREF(seq);
    Py_XDECREF(stats);
    Py_XDECREF(fblist);
    lex_free(&lx);
    return result;
}

/* ------------------------------------------------------------------------------------------------------ */
/* JSON validation and string decoding                                                                      */
/*
 * A line is checked in two passes. The line scan finds its newline and validates all of it as UTF-8 (on AVX2
 * with the lookup algorithm of Keiser & Lemire, "Validating UTF-8 in less than one instruction per byte", as in
 * simdjson). The parser then only has to stop inside strings at '"', '\\' and control bytes: a byte >= 0x80
 * is known to belong to a valid sequence, and no multi-byte sequence contains an ASCII byte. Each pass has a
 * scalar, an SSE2 and an AVX2 version, and the string decoder an AVX-512 one (see set_level); they give
 * identical results.
 */

/* length of the valid UTF-8 sequence at q (q[0] >= 0x80), 0 if invalid */
static inline size_t utf8_valid(const uint8_t *q, const uint8_t *end) {
    uint8_t c = q[0];
    size_t avail = (size_t)(end - q);
    if (c < 0xC2) return 0;
    if (c < 0xE0) return (avail >= 2 && (q[1] & 0xC0) == 0x80) ? 2 : 0;
    if (c < 0xF0) {
        if (avail < 3) return 0;
        uint8_t d = q[1];
        if (c == 0xE0 ? (d < 0xA0 || d > 0xBF) : c == 0xED ? (d < 0x80 || d > 0x9F) : (d & 0xC0) != 0x80)
            return 0;
        return (q[2] & 0xC0) == 0x80 ? 3 : 0;
    }
    if (c < 0xF5) {
        if (avail < 4) return 0;
        uint8_t d = q[1];
        if (c == 0xF0 ? (d < 0x90 || d > 0xBF) : c == 0xF4 ? (d < 0x80 || d > 0x8F) : (d & 0xC0) != 0x80)
            return 0;
        return ((q[2] & 0xC0) == 0x80 && (q[3] & 0xC0) == 0x80) ? 4 : 0;
    }
    return 0;
}

/* [q, e) is valid UTF-8; ASCII runs go 8 bytes at a time */
static int utf8_check(const uint8_t *q, const uint8_t *e) {
    while (q < e) {
        if (e - q >= 8) {
            uint64_t x;
            memcpy(&x, q, 8);
            if (!(x & 0x8080808080808080ull)) {
                q += 8;
                continue;
            }
        }
        if (*q < 0x80) {
            q++;
            continue;
        }
        size_t k = utf8_valid(q, e);
        if (!k) return 0;
        q += k;
    }
    return 1;
}

/* Line scans: the end of the line that starts at pos (the index of its '\n', or ce) and *ok = whether the
   line is valid UTF-8. */
typedef size_t (*line_fn)(const uint8_t *b, size_t pos, size_t ce, int *ok);

static size_t line_scalar(const uint8_t *b, size_t pos, size_t ce, int *ok) {
    const uint8_t *nl = (const uint8_t *)memchr(b + pos, '\n', ce - pos);
    size_t le = nl ? (size_t)(nl - b) : ce;
    *ok = utf8_check(b + pos, b + le);
    return le;
}

#ifdef FC_SSE2
static size_t line_sse2(const uint8_t *b, size_t pos, size_t ce, int *ok) {
    const uint8_t *nl = (const uint8_t *)memchr(b + pos, '\n', ce - pos);
    size_t le = nl ? (size_t)(nl - b) : ce;
    const uint8_t *q = b + pos, *e = b + le;
    *ok = 1;
    while (e - q >= 16) {
        unsigned m = (unsigned)_mm_movemask_epi8(_mm_loadu_si128((const __m128i *)q));
        if (!m) {
            q += 16;
            continue;
        }
        q += __builtin_ctz(m); /* a lead byte: validate the sequence from here */
        size_t k = utf8_valid(q, e);
        if (!k) {
            *ok = 0;
            return le;
        }
        q += k;
    }
    *ok = utf8_check(q, e);
    return le;
}
#endif

#ifdef FC_AVX2
/* UTF-8 lookup tables (simdjson's names): errors of the byte pair (prev1, input) are the AND of three lookups;
   bit 7 marks two continuations in a row, which is an error unless a 3- or 4-byte lead came before */
enum {
    U8_TOO_SHORT = 1, U8_TOO_LONG = 2, U8_OVERLONG_3 = 4, U8_TOO_LARGE = 8, U8_SURROGATE = 16, U8_OVERLONG_2 = 32,
    U8_TOO_LARGE_1000 = 64, U8_OVERLONG_4 = 64, U8_TWO_CONTS = 128,
    U8_CARRY = U8_TOO_SHORT | U8_TOO_LONG | U8_TWO_CONTS,
};
static const uint8_t U8_BYTE1_HIGH[16] = {
    U8_TOO_LONG, U8_TOO_LONG, U8_TOO_LONG, U8_TOO_LONG, U8_TOO_LONG, U8_TOO_LONG, U8_TOO_LONG, U8_TOO_LONG,
    U8_TWO_CONTS, U8_TWO_CONTS, U8_TWO_CONTS, U8_TWO_CONTS,
    U8_TOO_SHORT | U8_OVERLONG_2,
    U8_TOO_SHORT,
    U8_TOO_SHORT | U8_OVERLONG_3 | U8_SURROGATE,
    U8_TOO_SHORT | U8_TOO_LARGE | U8_TOO_LARGE_1000 | U8_OVERLONG_4,
};
static const uint8_t U8_BYTE1_LOW[16] = {
    U8_CARRY | U8_OVERLONG_3 | U8_OVERLONG_2 | U8_OVERLONG_4,
    U8_CARRY | U8_OVERLONG_2,
    U8_CARRY,
    U8_CARRY,
    U8_CARRY | U8_TOO_LARGE,
    U8_CARRY | U8_TOO_LARGE | U8_TOO_LARGE_1000,
    U8_CARRY | U8_TOO_LARGE | U8_TOO_LARGE_1000,
    U8_CARRY | U8_TOO_LARGE | U8_TOO_LARGE_1000,
    U8_CARRY | U8_TOO_LARGE | U8_TOO_LARGE_1000,
    U8_CARRY | U8_TOO_LARGE | U8_TOO_LARGE_1000,
    U8_CARRY | U8_TOO_LARGE | U8_TOO_LARGE_1000,
    U8_CARRY | U8_TOO_LARGE | U8_TOO_LARGE_1000,
    U8_CARRY | U8_TOO_LARGE | U8_TOO_LARGE_1000,
    U8_CARRY | U8_TOO_LARGE | U8_TOO_LARGE_1000 | U8_SURROGATE,
    U8_CARRY | U8_TOO_LARGE | U8_TOO_LARGE_1000,
    U8_CARRY | U8_TOO_LARGE | U8_TOO_LARGE_1000,
};
static const uint8_t U8_BYTE2_HIGH[16] = {
    U8_TOO_SHORT, U8_TOO_SHORT, U8_TOO_SHORT, U8_TOO_SHORT, U8_TOO_SHORT, U8_TOO_SHORT, U8_TOO_SHORT, U8_TOO_SHORT,
    U8_TOO_LONG | U8_OVERLONG_2 | U8_TWO_CONTS | U8_OVERLONG_3 | U8_TOO_LARGE_1000 | U8_OVERLONG_4,
    U8_TOO_LONG | U8_OVERLONG_2 | U8_TWO_CONTS | U8_OVERLONG_3 | U8_TOO_LARGE,
    U8_TOO_LONG | U8_OVERLONG_2 | U8_TWO_CONTS | U8_SURROGATE | U8_TOO_LARGE,
    U8_TOO_LONG | U8_OVERLONG_2 | U8_TWO_CONTS | U8_SURROGATE | U8_TOO_LARGE,
    U8_TOO_SHORT, U8_TOO_SHORT, U8_TOO_SHORT, U8_TOO_SHORT,
};
/* a block ending in these would continue into the next one: the last 3 bytes against F0, E0, C0 */
static const uint8_t U8_INCOMPLETE_MAX[32] = {
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 0xF0 - 1, 0xE0 - 1, 0xC0 - 1,
};

/* the block `in` shifted by n bytes, the first n taken from the end of `prev` */
#define PREV_BYTES(in, prev, n) _mm256_alignr_epi8(in, _mm256_permute2x128_si256(prev, in, 0x21), 16 - (n))

/* non-zero bytes where the 32 bytes of `in` (after those of `prev`) are not valid UTF-8 */
AVX2_FN static inline __m256i utf8_errors(__m256i in, __m256i prev) {
    const __m256i x0f = _mm256_set1_epi8(0x0F);
    __m256i prev1 = PREV_BYTES(in, prev, 1);
    __m256i b1h = _mm256_shuffle_epi8(bcast16(U8_BYTE1_HIGH), _mm256_and_si256(_mm256_srli_epi16(prev1, 4), x0f));
    __m256i b1l = _mm256_shuffle_epi8(bcast16(U8_BYTE1_LOW), _mm256_and_si256(prev1, x0f));
    __m256i b2h = _mm256_shuffle_epi8(bcast16(U8_BYTE2_HIGH), _mm256_and_si256(_mm256_srli_epi16(in, 4), x0f));
    __m256i sc = _mm256_and_si256(_mm256_and_si256(b1h, b1l), b2h);
    /* must be the 2nd/3rd continuation of a 3- or 4-byte sequence: high bit set only for E0+ two back, F0+
       three back */
    __m256i third = _mm256_subs_epu8(PREV_BYTES(in, prev, 2), _mm256_set1_epi8((char)(0xE0 - 0x80)));
    __m256i fourth = _mm256_subs_epu8(PREV_BYTES(in, prev, 3), _mm256_set1_epi8((char)(0xF0 - 0x80)));
    __m256i must23 = _mm256_and_si256(_mm256_or_si256(third, fourth), _mm256_set1_epi8((char)0x80));
    return _mm256_xor_si256(must23, sc);
}

/* 64-byte blocks: the newline compare and an all-ASCII test are the whole cost of an ASCII block. The line's
   last block is copied into a buffer padded with spaces, so that a sequence cut off by the line end shows as
   an error like any other. */
AVX2_FN static size_t line_avx2(const uint8_t *b, size_t pos, size_t ce, int *ok) {
    const __m256i nlv = _mm256_set1_epi8('\n'), incmax = _mm256_loadu_si256((const __m256i *)U8_INCOMPLETE_MAX);
    __m256i prev = _mm256_setzero_si256(), err = _mm256_setzero_si256(), inc = _mm256_setzero_si256();
    uint8_t tmp[64];
    size_t i = pos;
    for (;;) {
        const uint8_t *q = b + i;
        size_t k = 64; /* bytes of this block inside the line */
        int last = 0;
        __m256i x, y;
        if (ce - i >= 64) {
            /* the line scan is the first to read the file's bytes, and the hardware prefetcher stops at the end
               of each 4 KB page: asking for the next page's block now is ~5% of a scan (docs/benchmarks.md) */
            _mm_prefetch((const char *)q + 4096, _MM_HINT_T0);
            x = _mm256_loadu_si256((const __m256i *)q);
            y = _mm256_loadu_si256((const __m256i *)(q + 32));
            uint64_t nl = (uint32_t)_mm256_movemask_epi8(_mm256_cmpeq_epi8(x, nlv)) |
                          (uint64_t)(uint32_t)_mm256_movemask_epi8(_mm256_cmpeq_epi8(y, nlv)) << 32;
            if (nl) {
                k = (size_t)__builtin_ctzll(nl);
                last = 1;
            }
        } else {
            const uint8_t *nl = (const uint8_t *)memchr(q, '\n', ce - i);
            k = nl ? (size_t)(nl - q) : ce - i;
            last = 1;
        }
        if (last) {
            memset(tmp, ' ', sizeof(tmp));
            memcpy(tmp, q, k);
            x = _mm256_loadu_si256((const __m256i *)tmp);
            y = _mm256_loadu_si256((const __m256i *)(tmp + 32));
        }
        if (!_mm256_movemask_epi8(_mm256_or_si256(x, y))) {
            err = _mm256_or_si256(err, inc); /* ASCII right after a sequence that wanted more bytes */
            inc = _mm256_setzero_si256();
        } else {
            err = _mm256_or_si256(err, _mm256_or_si256(utf8_errors(x, prev), utf8_errors(y, x)));
            inc = _mm256_subs_epu8(y, incmax);
        }
        prev = y;
        if (last) {
            *ok = _mm256_testz_si256(err, err);
            return i + k;
        }
        i += 64;
    }
}
#endif

static inline int hex4(const uint8_t *q, const uint8_t *end, unsigned *out) {
    if (end - q < 4) return -1;
    unsigned a = HEX[q[0]], b = HEX[q[1]], c = HEX[q[2]], d = HEX[q[3]];
    if ((a | b | c | d) & 0xF0) return -1;
    *out = (a << 12) | (b << 8) | (c << 4) | d;
    return 0;
}

static inline size_t put_utf8(uint8_t *o, unsigned cp) {
    if (cp < 0x80) {
        o[0] = (uint8_t)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (uint8_t)(0xC0 | (cp >> 6));
        o[1] = (uint8_t)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (uint8_t)(0xE0 | (cp >> 12));
        o[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (uint8_t)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (uint8_t)(0xF0 | (cp >> 18));
    o[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (uint8_t)(0x80 | (cp & 0x3F));
    return 4;
}

#define DEC_OK 0
#define DEC_INVALID 1 /* not valid JSON */
#define DEC_PYTHON 2  /* valid, but left to Python (lone surrogate) */
#define DEC_NOMEM 3

/* the escape at q (on the backslash): the position after it, or NULL if invalid */
static inline const uint8_t *skip_escape(const uint8_t *q, const uint8_t *end) {
    if (end - q < 2) return NULL;
    uint8_t d = q[1];
    if (ESC[d]) return q + 2;
    unsigned cp;
    if (d == 'u' && !hex4(q + 2, end, &cp)) return q + 6;
    return NULL;
}

/* decode the escape at q (on the backslash) to *op, advancing it; the position after it, or NULL if invalid.
   A lone surrogate sets *rc = DEC_PYTHON. */
static inline const uint8_t *decode_escape(const uint8_t *q, const uint8_t *end, uint8_t **op, int *rc) {
    if (end - q < 2) return NULL;
    uint8_t d = q[1];
    if (ESC[d]) {
        *(*op)++ = ESC[d];
        return q + 2;
    }
    unsigned cp;
    if (d != 'u' || hex4(q + 2, end, &cp)) return NULL;
    q += 6;
    if (cp >= 0xD800 && cp < 0xDC00) {
        unsigned lo;
        if (end - q >= 6 && q[0] == '\\' && q[1] == 'u' && !hex4(q + 2, end, &lo) && lo >= 0xDC00 && lo < 0xE000) {
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            q += 6;
        } else {
            *rc = DEC_PYTHON; /* lone high surrogate */
        }
    } else if (cp >= 0xDC00 && cp < 0xE000) {
        *rc = DEC_PYTHON; /* lone low surrogate */
    }
    *op += put_utf8(*op, cp);
    return q;
}

/* String scanners, all on a line already validated as UTF-8, q just after the opening quote.
   skip: the position after the closing quote, NULL if invalid.
   decode: the body, escapes decoded, into out (NUL-terminated, out->len = length); *qend = position after the
   closing quote. Vector versions store whole blocks speculatively: the output never outgrows the input, so
   reserving the rest of the line plus one block is enough. */
typedef const uint8_t *(*skip_fn)(const uint8_t *q, const uint8_t *end);
typedef int (*decode_fn)(const uint8_t *q, const uint8_t *end, Buf *out, const uint8_t **qend);

static const uint8_t *skip_string_scalar(const uint8_t *q, const uint8_t *end) {
    while (q < end) {
        uint8_t c = *q;
        if (c == '"') return q + 1;
        if (c == '\\') {
            q = skip_escape(q, end);
            if (!q) return NULL;
        } else if (c < 0x20) {
            return NULL;
        } else {
            q++;
        }
    }
    return NULL;
}

/* the common end of the decoders, at q (not a plain byte) with output o */
#define DECODE_SPECIAL()                                                                                        \
    do {                                                                                                        \
        if (*q == '"') {                                                                                        \
            *o = 0;                                                                                             \
            out->len = (size_t)(o - out->p);                                                                    \
            *qend = q + 1;                                                                                      \
            return rc;                                                                                          \
        }                                                                                                       \
        if (*q != '\\') return DEC_INVALID; /* control byte */                                                  \
        q = decode_escape(q, end, &o, &rc);                                                                     \
        if (!q) return DEC_INVALID;                                                                             \
    } while (0)

static int decode_string_scalar(const uint8_t *q, const uint8_t *end, Buf *out, const uint8_t **qend) {
    if (buf_reserve(out, (size_t)(end - q) + 64)) return DEC_NOMEM;
    uint8_t *o = out->p;
    int rc = DEC_OK;
    for (;;) {
        while (q < end && *q != '"' && *q != '\\' && *q >= 0x20) *o++ = *q++;
        if (q >= end) return DEC_INVALID;
        DECODE_SPECIAL();
    }
}

#ifdef FC_SSE2
/* mask of the bytes that end a plain run inside a JSON string: '"', '\\' and control bytes */
static inline unsigned stop_mask16(__m128i v) {
    __m128i q = _mm_cmpeq_epi8(v, _mm_set1_epi8('"'));
    __m128i b = _mm_cmpeq_epi8(v, _mm_set1_epi8('\\'));
    __m128i c = _mm_cmpeq_epi8(_mm_subs_epu8(v, _mm_set1_epi8(0x1F)), _mm_setzero_si128()); /* v <= 0x1F */
    return (unsigned)_mm_movemask_epi8(_mm_or_si128(_mm_or_si128(q, b), c));
}

static const uint8_t *skip_string_sse2(const uint8_t *q, const uint8_t *end) {
    while (end - q >= 16) {
        unsigned m = stop_mask16(_mm_loadu_si128((const __m128i *)q));
        if (!m) {
            q += 16;
            continue;
        }
        q += __builtin_ctz(m);
        if (*q == '"') return q + 1;
        if (*q != '\\') return NULL;
        q = skip_escape(q, end);
        if (!q) return NULL;
    }
    return skip_string_scalar(q, end);
}

static int decode_string_sse2(const uint8_t *q, const uint8_t *end, Buf *out, const uint8_t **qend) {
    if (buf_reserve(out, (size_t)(end - q) + 64)) return DEC_NOMEM;
    uint8_t *o = out->p;
    int rc = DEC_OK;
    for (;;) {
        unsigned m = 0;
        while (end - q >= 16) {
            __m128i v = _mm_loadu_si128((const __m128i *)q);
            _mm_storeu_si128((__m128i *)o, v);
            m = stop_mask16(v);
            if (m) break;
            q += 16;
            o += 16;
        }
        if (m) {
            unsigned k = (unsigned)__builtin_ctz(m);
            q += k;
            o += k;
        } else {
            while (q < end && *q != '"' && *q != '\\' && *q >= 0x20) *o++ = *q++;
            if (q >= end) return DEC_INVALID;
        }
        DECODE_SPECIAL();
    }
}
#endif

#ifdef FC_AVX2
AVX2_FN static inline uint32_t stop_mask32(__m256i v) {
    __m256i q = _mm256_cmpeq_epi8(v, _mm256_set1_epi8('"'));
    __m256i b = _mm256_cmpeq_epi8(v, _mm256_set1_epi8('\\'));
    __m256i c = _mm256_cmpeq_epi8(_mm256_subs_epu8(v, _mm256_set1_epi8(0x1F)), _mm256_setzero_si256());
    return (uint32_t)_mm256_movemask_epi8(_mm256_or_si256(_mm256_or_si256(q, b), c));
}

AVX2_FN static inline uint64_t eq_mask64(__m256i a, __m256i b, __m256i c) {
    return (uint32_t)_mm256_movemask_epi8(_mm256_cmpeq_epi8(a, c)) |
           (uint64_t)(uint32_t)_mm256_movemask_epi8(_mm256_cmpeq_epi8(b, c)) << 32;
}

/* Bits of the characters escaped by a backslash in a 64-byte block (simdjson's branchless version): in a run
   of backslashes, every second one is escaped, counting from the run's start; *carry is 1 when the block ends
   in an unfinished escape (its first byte of the next block is escaped). */
static inline uint64_t escaped_bits(uint64_t bs, uint64_t *carry) {
    const uint64_t even = 0x5555555555555555ull;
    bs &= ~*carry;
    uint64_t follows = bs << 1 | *carry;
    uint64_t odd_starts = bs & ~even & ~follows;
    uint64_t seq_even;
    *carry = __builtin_add_overflow(odd_starts, bs, &seq_even);
    return (even ^ (seq_even << 1)) & follows;
}


/* Skipped strings (other fields, e.g. the thinking/answer copies, half the file) go 64 bytes at a time even
   when escapes are dense: the escaped characters are found with the carry trick and checked against the
   escape classes in the same block, the four hex digits after each \u included (they may run into the next
   block), so only the end quote or an error leaves the loop. */
AVX2_FN static const uint8_t *skip_string_avx2(const uint8_t *q, const uint8_t *end) {
    const __m256i dq = _mm256_set1_epi8('"'), bsl = _mm256_set1_epi8('\\'), c1f = _mm256_set1_epi8(0x1F);
    const __m256i zero = _mm256_setzero_si256(), x0f = _mm256_set1_epi8(0x0F);
    const __m256i elo = bcast16(ESC_LO), ehi = bcast16(ESC_HI);
    const __m256i k_esc = _mm256_set1_epi8(EC_ESC), k_u = _mm256_set1_epi8(EC_U), k_hex = _mm256_set1_epi8(EC_HEX);
    uint64_t carry = 0, hexcarry = 0;
    while (end - q >= 64) {
        __m256i a = _mm256_loadu_si256((const __m256i *)q), b = _mm256_loadu_si256((const __m256i *)(q + 32));
        uint64_t quote = eq_mask64(a, b, dq), bs = eq_mask64(a, b, bsl);
        uint64_t ctrl = eq_mask64(_mm256_subs_epu8(a, c1f), _mm256_subs_epu8(b, c1f), zero);
        uint64_t bad = 0;
        if (bs | carry | hexcarry) {
            uint64_t esc = escaped_bits(bs, &carry);
            quote &= ~esc;
            __m256i ca = shufti(elo, ehi, _mm256_and_si256(a, x0f), _mm256_and_si256(_mm256_srli_epi16(a, 4), x0f));
            __m256i cb = shufti(elo, ehi, _mm256_and_si256(b, x0f), _mm256_and_si256(_mm256_srli_epi16(b, 4), x0f));
            uint64_t not_esc = eq_mask64(_mm256_and_si256(ca, k_esc), _mm256_and_si256(cb, k_esc), zero);
            uint64_t not_u = eq_mask64(_mm256_and_si256(ca, k_u), _mm256_and_si256(cb, k_u), zero);
            uint64_t not_hex = eq_mask64(_mm256_and_si256(ca, k_hex), _mm256_and_si256(cb, k_hex), zero);
            uint64_t u = esc & ~not_u;
            /* the 4 bytes after each escaped u, past the block too: u * 0b11110 (the copies cannot overlap,
               escaped u's are at least 6 bytes apart, so the sum is an OR) */
            unsigned __int128 h = (unsigned __int128)u * 30u;
            uint64_t hex = (uint64_t)h | hexcarry;
            hexcarry = (uint64_t)(h >> 64);
            bad = (esc & not_esc & not_u) | (hex & not_hex);
        }
        uint64_t stop = quote | ctrl;
        uint64_t upto = stop ? stop ^ (stop - 1) : ~0ull; /* bits up to and including the first stop */
        if (bad & upto) return NULL;
        if (stop) {
            unsigned j = (unsigned)__builtin_ctzll(stop);
            return (ctrl >> j) & 1 ? NULL : q + j + 1;
        }
        q += 64;
    }
    if (carry) return skip_string_scalar(q - 1, end); /* an escape cut by the block end: from its backslash */
    for (; hexcarry; hexcarry >>= 1, q++) /* hex digits of a \u cut by the block end */
        if (q >= end || HEX[*q] > 15) return NULL;
    return skip_string_scalar(q, end);
}

/* Decoded strings go 32 bytes at a time (a window): the window is copied whole, then each one-character escape
   in it is decoded in place and the rest of the window re-copied one byte further left, with the stop mask
   shifted along (no new compares). Only the closing quote, \u escapes and errors leave this loop. */
AVX2_FN static int decode_string_avx2(const uint8_t *q, const uint8_t *end, Buf *out, const uint8_t **qend) {
    if (buf_reserve(out, (size_t)(end - q) + 64)) return DEC_NOMEM;
    uint8_t *o = out->p;
    int rc = DEC_OK;
    for (;;) {
        int special = 0;
        /* a re-copied tail starts at most at q + 33 (an escape at the window's last byte) and is 32 bytes */
        while (end - q >= 65) {
            __m256i v = _mm256_loadu_si256((const __m256i *)q);
            _mm256_storeu_si256((__m256i *)o, v);
            uint64_t m = stop_mask32(v);
            unsigned left = 32; /* bytes of the window not yet passed */
            while (m) {
                unsigned k = (unsigned)__builtin_ctzll(m);
                uint8_t x = q[k] == '\\' ? ESC[q[k + 1]] : 0;
                if (!x) { /* the quote, a \u escape or an error */
                    q += k;
                    o += k;
                    special = 1;
                    break;
                }
                o[k] = x;
                q += k + 2;
                o += k + 1;
                m >>= k + 2; /* k + 2 <= 33, m is 64 bits wide */
                left -= k + 2 < left ? k + 2 : left;
                _mm256_storeu_si256((__m256i *)o, _mm256_loadu_si256((const __m256i *)q));
            }
            if (special) break;
            q += left;
            o += left;
        }
        if (!special) {
            while (q < end && *q != '"' && *q != '\\' && *q >= 0x20) *o++ = *q++;
            if (q >= end) return DEC_INVALID;
        }
        DECODE_SPECIAL();
    }
}
#endif

#ifdef FC_AVX2
#define AVX512_FN __attribute__((target("avx512f,avx512bw,avx512vbmi,avx512vbmi2,popcnt")))

/* Decoded strings with AVX-512 (VBMI2), 64 bytes at a time whatever the escapes in them: the escaped bytes are
   found with the carry trick, replaced by what they decode to (a lookup in the ESC table) and the backslashes
   before them squeezed out with one compress. The block stops before anything else (the closing quote, a control
   byte, a \u or invalid escape, an escape cut by the block end), which the common end decodes one at a time. */
AVX512_FN static int decode_string_avx512(const uint8_t *q, const uint8_t *end, Buf *out, const uint8_t **qend) {
    if (buf_reserve(out, (size_t)(end - q) + 64)) return DEC_NOMEM;
    const __m512i dq = _mm512_set1_epi8('"'), bsl = _mm512_set1_epi8('\\'), c20 = _mm512_set1_epi8(0x20);
    const __m512i esc_lo = _mm512_loadu_si512((const void *)ESC), esc_hi = _mm512_loadu_si512((const void *)(ESC + 64));
    uint8_t *o = out->p;
    int rc = DEC_OK;
    for (;;) {
        int special = 0;
        while (end - q >= 64) {
            __m512i v = _mm512_loadu_si512((const void *)q);
            uint64_t bs = _mm512_cmpeq_epi8_mask(v, bsl);
            uint64_t stop = _mm512_cmpeq_epi8_mask(v, dq) | _mm512_cmplt_epu8_mask(v, c20);
            if (!(bs | stop)) {
                _mm512_storeu_si512((void *)o, v);
                q += 64;
                o += 64;
                continue;
            }
            uint64_t carry = 0;
            uint64_t esc = escaped_bits(bs, &carry);
            /* what each byte decodes to when escaped (its ESC entry by its low 7 bits; 0: not a one-character
               escape, as is any byte >= 0x80) */
            __m512i dec = _mm512_permutex2var_epi8(esc_lo, v, esc_hi);
            uint64_t simple = _mm512_test_epi8_mask(dec, dec) & ~_mm512_movepi8_mask(v);
            /* the first byte the block leaves to the common end: an unescaped quote or control byte, the backslash
               of any other escape, or a backslash whose escaped byte is in the next block */
            uint64_t halt = (stop & ~esc) | ((esc & ~simple) >> 1) | (carry << 63);
            unsigned n = halt ? (unsigned)__builtin_ctzll(halt) : 64;
            uint64_t keep = ~(bs & ~esc) & (n == 64 ? ~0ull : (1ull << n) - 1);
            _mm512_storeu_si512((void *)o, _mm512_maskz_compress_epi8(keep, _mm512_mask_mov_epi8(v, esc, dec)));
            o += __builtin_popcountll(keep);
            q += n;
            if (halt) {
                special = 1;
                break;
            }
        }
        if (!special) {
            while (q < end && *q != '"' && *q != '\\' && *q >= 0x20) *o++ = *q++;
            if (q >= end) return DEC_INVALID;
        }
        DECODE_SPECIAL();
    }
}

static int have_avx512(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vbmi") && __builtin_cpu_supports("avx512vbmi2");
}
#endif

/* the string scanners of the selected SIMD level (set_level) */
static line_fn LINE_SCAN = line_scalar;
static skip_fn SKIP_STRING = skip_string_scalar;
static decode_fn DECODE_STRING = decode_string_scalar;

static inline const uint8_t *skip_string(const uint8_t *q, const uint8_t *end) { return SKIP_STRING(q, end); }

static inline int decode_string(const uint8_t *q, const uint8_t *end, Buf *out, const uint8_t **qend) {
    return DECODE_STRING(q, end, out, qend);
}

static inline const uint8_t *skip_ws(const uint8_t *q, const uint8_t *end) {
    while (q < end && (*q == ' ' || *q == '\t' || *q == '\r' || *q == '\n')) q++;
    return q;
}

static const uint8_t *skip_number(const uint8_t *q, const uint8_t *end) {
    if (q < end && *q == '-') q++;
    if (q >= end) return NULL;
    if (*q == '0') {
        q++;
    } else if (*q >= '1' && *q <= '9') {
        while (q < end && *q >= '0' && *q <= '9') q++;
    } else {
        return NULL;
    }
    if (q < end && *q == '.') {
        q++;
        if (q >= end || *q < '0' || *q > '9') return NULL;
        while (q < end && *q >= '0' && *q <= '9') q++;
    }
    if (q < end && (*q == 'e' || *q == 'E')) {
        q++;
        if (q < end && (*q == '+' || *q == '-')) q++;
        if (q >= end || *q < '0' || *q > '9') return NULL;
        while (q < end && *q >= '0' && *q <= '9') q++;
    }
    return q;
}

static inline const uint8_t *skip_lit(const uint8_t *q, const uint8_t *end, const char *lit, size_t n) {
    if ((size_t)(end - q) < n || memcmp(q, lit, n) != 0) return NULL;
    return q + n;
}

static const uint8_t *skip_value(const uint8_t *q, const uint8_t *end, int depth) {
    if (q >= end) return NULL;
    switch (*q) {
    case '"':
        return skip_string(q + 1, end);
    case '{':
        if (depth >= MAX_DEPTH) return NULL;
        q = skip_ws(q + 1, end);
        if (q < end && *q == '}') return q + 1;
        for (;;) {
            if (q >= end || *q != '"') return NULL;
            q = skip_string(q + 1, end);
            if (!q) return NULL;
            q = skip_ws(q, end);
            if (q >= end || *q != ':') return NULL;
            q = skip_value(skip_ws(q + 1, end), end, depth + 1);
            if (!q) return NULL;
            q = skip_ws(q, end);
            if (q >= end) return NULL;
            if (*q == '}') return q + 1;
            if (*q != ',') return NULL;
            q = skip_ws(q + 1, end);
        }
    case '[':
        if (depth >= MAX_DEPTH) return NULL;
        q = skip_ws(q + 1, end);
        if (q < end && *q == ']') return q + 1;
        for (;;) {
            q = skip_value(q, end, depth + 1);
            if (!q) return NULL;
            q = skip_ws(q, end);
            if (q >= end) return NULL;
            if (*q == ']') return q + 1;
            if (*q != ',') return NULL;
            q = skip_ws(q + 1, end);
        }
    case 't':
        return skip_lit(q, end, "true", 4);
    case 'f':
        return skip_lit(q, end, "false", 5);
    case 'n':
        return skip_lit(q, end, "null", 4);
    default:
        if (*q == '-' || (*q >= '0' && *q <= '9')) return skip_number(q, end);
        return NULL;
    }
}

/* ------------------------------------------------------------------------------------------------------ */
/* scan_jsonl                                                                                               */

typedef struct {
    const Lex *lx;
    const uint8_t *base;
    size_t cs, ce;
    const uint8_t *key;
    size_t keylen;
    Buf dbuf, kbuf;
    Scratch sc;
    Vec line_no, line_start, line_end, status, n_strings, stats;
    int64_t newlines;
    int oom;
} JTask;

/* one target string at q (on the opening quote): decode and count it. Returns the position after it, or
   NULL (status 1; oom flagged separately) */
static const uint8_t *count_json_string(JTask *t, const uint8_t *q, const uint8_t *end) {
    const uint8_t *after;
    int rc = decode_string(q + 1, end, &t->dbuf, &after);
    if (rc == DEC_NOMEM) t->oom = 1;
    if (rc != DEC_OK) return NULL;
    size_t cols = t->lx->nw + EXTRA_COLS;
    if (vec_reserve(&t->stats, cols)) {
        t->oom = 1;
        return NULL;
    }
    int64_t *row = t->stats.p + t->stats.len;
    int c = count_one(t->lx, t->dbuf.p, t->dbuf.len, row, &t->sc);
    if (c < 0) t->oom = 1;
    if (c != 0) return NULL;
    t->stats.len += cols;
    return after;
}

/* status of one line [q, end) (not blank); appends its rows; *nstr = number of rows */
static int parse_line(JTask *t, const uint8_t *q, const uint8_t *end, int64_t *nstr) {
    size_t rows0 = t->stats.len;
    int found = 0;
    int64_t ns = 0;
    q = skip_ws(q, end);
    if (q >= end || *q != '{') goto fail;
    q = skip_ws(q + 1, end);
    if (q < end && *q == '}') {
        q++;
    } else {
        for (;;) {
            if (q >= end || *q != '"') goto fail;
            const uint8_t *k0 = q + 1;
            q = skip_string(k0, end);
            if (!q) goto fail;
            const uint8_t *k1 = q - 1;
            int is_key;
            if (memchr(k0, '\\', (size_t)(k1 - k0))) {
                const uint8_t *after;
                int rc = decode_string(k0, end, &t->kbuf, &after);
                if (rc == DEC_NOMEM) t->oom = 1;
                if (rc != DEC_OK) goto fail;
                is_key = t->kbuf.len == t->keylen && memcmp(t->kbuf.p, t->key, t->keylen) == 0;
            } else {
                is_key = (size_t)(k1 - k0) == t->keylen && memcmp(k0, t->key, t->keylen) == 0;
            }
            q = skip_ws(q, end);
            if (q >= end || *q != ':') goto fail;
            q = skip_ws(q + 1, end);
            if (q >= end) goto fail;
            if (is_key) {
                if (found) goto fail; /* duplicate key: json.loads keeps the last one; let Python decide */
                found = 1;
                if (*q == '"') {
                    q = count_json_string(t, q, end);
                    if (!q) goto fail;
                    ns = 1;
                } else if (*q == '[') {
                    q = skip_ws(q + 1, end);
                    if (q < end && *q == ']') {
                        q++;
                    } else {
                        for (;;) {
                            if (q >= end || *q != '"') goto fail;
                            q = count_json_string(t, q, end);
                            if (!q) goto fail;
                            ns++;
                            q = skip_ws(q, end);
                            if (q >= end) goto fail;
                            if (*q == ']') {
                                q++;
                                break;
                            }
                            if (*q != ',') goto fail;
                            q = skip_ws(q + 1, end);
                        }
                    }
                } else {
                    goto fail;
                }
            } else {
                q = skip_value(q, end, 1);
                if (!q) goto fail;
            }
            q = skip_ws(q, end);
            if (q >= end) goto fail;
            if (*q == '}') {
                q++;
                break;
            }
            if (*q != ',') goto fail;
            q = skip_ws(q + 1, end);
        }
    }
    q = skip_ws(q, end);
    if (q != end || !found) goto fail;
    *nstr = ns;
    return 0;
fail:
    t->stats.len = rows0;
    *nstr = 0;
    return 1;
}

static void *jsonl_worker(void *arg) {
    JTask *t = (JTask *)arg;
    if (scratch_init(&t->sc, t->lx->nw)) {
        t->oom = 1;
        return NULL;
    }
    const uint8_t *base = t->base;
    size_t pos = t->cs, ce = t->ce;
    int64_t line = 0;
    while (pos < ce && !t->oom) {
        int utf8_ok;
        size_t le = LINE_SCAN(base, pos, ce, &utf8_ok);
        const uint8_t *q = skip_ws(base + pos, base + le);
        if (q < base + le) {
            int64_t ns = 0;
            int st = t->lx->unsupported || !utf8_ok ? 1 : parse_line(t, base + pos, base + le, &ns);
            if (vec_push(&t->line_no, line + 1) || vec_push(&t->line_start, (int64_t)pos) ||
                vec_push(&t->line_end, (int64_t)le) || vec_push(&t->status, st) || vec_push(&t->n_strings, ns)) {
                t->oom = 1;
                break;
            }
        }
        line++;
        if (le >= ce) break; /* no newline */
        t->newlines++;
        pos = le + 1;
    }
    scratch_free(&t->sc);
    return NULL;
}

static PyObject *vec_bytes(const Vec *v) {
    return PyBytes_FromStringAndSize((const char *)v->p, (Py_ssize_t)(v->len * sizeof(int64_t)));
}

static PyObject *scan_jsonl(PyObject *self, PyObject *args, PyObject *kwargs) {
    (void)self;
    static char *kwlist[] = {"data", "key", "words", "mode", "scope", "threads", NULL};
    PyObject *data, *keyobj, *words;
    const char *mode, *scope;
    Py_ssize_t threads = 2;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OUOss|n", kwlist, &data, &keyobj, &words, &mode, &scope,
                                     &threads))
        return NULL;
    Py_ssize_t keylen;
    const char *key = PyUnicode_AsUTF8AndSize(keyobj, &keylen);
    if (!key) return NULL;
    Lex lx;
    if (lex_build(&lx, words, mode, scope)) return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)) {
        lex_free(&lx);
        return NULL;
    }
    const uint8_t *base = (const uint8_t *)view.buf;
    size_t n = (size_t)view.len;
    int nt = clamp_threads(threads);
    if (n < ((size_t)1 << 20)) nt = 1;
    JTask tasks[MAX_THREADS];
    pthread_t tids[MAX_THREADS];
    int started[MAX_THREADS];
    memset(tasks, 0, sizeof(tasks));
    size_t start = 0;
    for (int k = 0; k < nt; k++) {
        size_t stop = n;
        if (k < nt - 1) {
            stop = (size_t)(((double)n * (k + 1)) / nt);
            if (stop < start) stop = start;
            const uint8_t *nl = stop < n ? (const uint8_t *)memchr(base + stop, '\n', n - stop) : NULL;
            stop = nl ? (size_t)(nl - base) + 1 : n;
        }
        tasks[k].lx = &lx;
        tasks[k].base = base;
        tasks[k].cs = start;
        tasks[k].ce = stop;
        tasks[k].key = (const uint8_t *)key;
        tasks[k].keylen = (size_t)keylen;
        start = stop;
    }
    Py_BEGIN_ALLOW_THREADS
    for (int k = 1; k < nt; k++) started[k] = pthread_create(&tids[k], NULL, jsonl_worker, &tasks[k]) == 0;
    jsonl_worker(&tasks[0]);
    for (int k = 1; k < nt; k++) {
        if (started[k])
            pthread_join(tids[k], NULL);
        else
            jsonl_worker(&tasks[k]);
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);

    PyObject *result = NULL;
    int oom = 0;
    for (int k = 0; k < nt; k++) oom |= tasks[k].oom;
    if (oom) {
        PyErr_NoMemory();
        goto done;
    }
    /* concatenate in order (into task 0), shifting line numbers */
    int64_t offset = tasks[0].newlines;
    JTask *t0 = &tasks[0];
    for (int k = 1; k < nt; k++) {
        JTask *t = &tasks[k];
        Vec *dst[6] = {&t0->line_no, &t0->line_start, &t0->line_end, &t0->status, &t0->n_strings, &t0->stats};
        Vec *src[6] = {&t->line_no, &t->line_start, &t->line_end, &t->status, &t->n_strings, &t->stats};
        for (size_t i = 0; i < t->line_no.len; i++) t->line_no.p[i] += offset;
        offset += t->newlines;
        for (int j = 0; j < 6; j++) {
            if (vec_reserve(dst[j], src[j]->len)) {
                PyErr_NoMemory();
                goto done;
            }
            if (src[j]->len) memcpy(dst[j]->p + dst[j]->len, src[j]->p, src[j]->len * sizeof(int64_t));
            dst[j]->len += src[j]->len;
        }
    }
    result = PyDict_New();
    if (!result) goto done;
    const char *names[6] = {"line_no", "line_start", "line_end", "status", "n_strings", "stats"};
    Vec *vecs[6] = {&t0->line_no, &t0->line_start, &t0->line_end, &t0->status, &t0->n_strings, &t0->stats};
    for (int j = 0; j < 6; j++) {
        PyObject *b = vec_bytes(vecs[j]);
        if (!b || PyDict_SetItemString(result, names[j], b)) {
            Py_XDECREF(b);
            Py_CLEAR(result);
            goto done;
        }
        Py_DECREF(b);
    }
done:
    for (int k = 0; k < nt; k++) {
        JTask *t = &tasks[k];
        free(t->dbuf.p);
        free(t->kbuf.p);
        free(t->line_no.p);
        free(t->line_start.p);
        free(t->line_end.p);
        free(t->status.p);
        free(t->n_strings.p);
        free(t->stats.p);
    }
    lex_free(&lx);
    return result;
}

/* ------------------------------------------------------------------------------------------------------ */

#ifdef FC_AVX2
static int have_avx2(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("popcnt");
}
#endif

/* SIMD levels: the counting block run and the three JSON passes (avx512: AVX2's, with the AVX-512 decoder,
   where the CPU has VBMI2's byte compress; a 64-byte line scan measured no faster than AVX2's) */
enum { L_SCALAR = 0, L_SSE2 = 1, L_AVX2 = 2, L_AVX512 = 3, N_LEVELS = 4 };
static const char *LEVEL_NAMES[] = {"scalar", "sse2", "avx2", "avx512"};
static int LEVEL = L_SCALAR;

/* 0 if this machine and build have the level */
static int set_level(int level) {
    switch (level) {
    case L_SCALAR:
        RUN = NULL;
        LINE_SCAN = line_scalar;
        SKIP_STRING = skip_string_scalar;
        DECODE_STRING = decode_string_scalar;
        break;
#ifdef FC_SSE2
    case L_SSE2:
        RUN = run_sse2;
        LINE_SCAN = line_sse2;
        SKIP_STRING = skip_string_sse2;
        DECODE_STRING = decode_string_sse2;
        break;
#endif
#ifdef FC_AVX2
    case L_AVX2:
        if (!have_avx2()) return -1;
        RUN = run_avx2;
        LINE_SCAN = line_avx2;
        SKIP_STRING = skip_string_avx2;
        DECODE_STRING = decode_string_avx2;
        break;
    case L_AVX512: /* AVX2 but for the decoder */
        if (!have_avx2() || !have_avx512()) return -1;
        RUN = run_avx2;
        LINE_SCAN = line_avx2;
        SKIP_STRING = skip_string_avx2;
        DECODE_STRING = decode_string_avx512;
        break;
#endif
    default:
        return -1;
    }
    LEVEL = level;
    return 0;
}

/* for tests and benchmarks: _simd() -> current level; _simd("scalar" | "sse2" | "avx2" | "avx512") selects one if
   this machine and build have it (ValueError otherwise) and returns the previous one. Not thread-safe. */
static PyObject *simd(PyObject *self, PyObject *args) {
    (void)self;
    const char *level = NULL;
    if (!PyArg_ParseTuple(args, "|s", &level)) return NULL;
    PyObject *prev = PyUnicode_FromString(LEVEL_NAMES[LEVEL]);
    if (!prev || !level) return prev;
    int want = -1;
    for (int k = 0; k < N_LEVELS; k++)
        if (!strcmp(level, LEVEL_NAMES[k])) want = k;
    if (want < 0 || set_level(want)) {
        Py_DECREF(prev);
        PyErr_Format(PyExc_ValueError, "SIMD level %s is not available here", level);
        return NULL;
    }
    return prev;
}

static PyMethodDef methods[] = {
    {"count_strings", (PyCFunction)(void (*)(void))count_strings, METH_VARARGS | METH_KEYWORDS,
     "count_strings(texts, words, mode, scope, threads=1) -> {'stats': bytes, 'fallback': [int]}\n\n"
     "stats: int64 [len(texts), len(words) + 2 + 10]: counts per word, n_chars, n_words, position bins.\n"
     "Rows listed in fallback must be recomputed in Python."},
    {"scan_jsonl", (PyCFunction)(void (*)(void))scan_jsonl, METH_VARARGS | METH_KEYWORDS,
     "scan_jsonl(data, key, words, mode, scope, threads=2) -> dict of int64 bytes\n\n"
     "line_no, line_start, line_end, status (0 counted, 1 left to Python) and n_strings per non-blank line;\n"
     "stats rows (count_strings layout) for every string of every status-0 line, in order."},
    {"_simd", simd, METH_VARARGS, "_simd(level=None) -> previous level ('scalar', 'sse2', 'avx2' or 'avx512')"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "_fastcount", "Compiled lexicon counter (see sdlens.epistemic.count).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__fastcount(void) {
    init_tables();
#ifdef FC_SSE2
    for (int x = 0; x < 256; x++) POP8[x] = (uint8_t)((x & 1) + ((x >> 1) & 1) + ((x >> 2) & 1) + ((x >> 3) & 1) +
                                                     ((x >> 4) & 1) + ((x >> 5) & 1) + ((x >> 6) & 1) + (x >> 7));
#endif
    if (set_level(L_AVX512) && set_level(L_AVX2)) set_level(L_SSE2);
    PyObject *m = PyModule_Create(&moduledef);
    if (!m) return NULL;
    if (PyModule_AddIntConstant(m, "N_BINS", N_BINS)) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
