/* torchsort.c — the tie order of torch's non-stable CPU sort.
 *
 * mergekit's TIES keeps `torch.argsort(|δ|.float(), descending=True)[:k]`
 * and breadcrumbs slices `torch.sort(|δ|.float()).indices`. In bf16 many
 * magnitudes are equal, so which of the elements equal to the k-th largest
 * are kept decides the result. torch's CPU sort (SortingKernel.cpp,
 * sort_kernel_impl, stable=False; the x86-simd-sort path is not compiled
 * into the 2.x wheels this was checked against) calls the C++ library's
 * std::sort over (value, index) pairs with a comparator on the value only.
 * Linux wheels are built with GCC, so that is libstdc++'s introsort:
 *
 *   - introsort loop: while a range has more than 16 elements, take the
 *     median of (first+1, middle, last-1) into `first` as pivot, Hoare-
 *     partition (first+1, last) around it, recurse into the right part and
 *     loop on the left; after 2*floor(log2 n) levels the range is
 *     heap-sorted instead (make_heap + sort_heap);
 *   - a final insertion sort over the whole array (elements move left only
 *     past strictly greater ones).
 *
 * This file reproduces those steps exactly (the same comparisons, the same
 * swaps), so ties land where torch puts them. Insertion never moves an
 * element across a partition point (left part <= pivot <= right part), so a
 * range that holds none of the caller's boundaries never needs sorting:
 * pruned that way, the cost is that of a quickselect.
 *
 * Only the keys are compared, so the swaps depend on the keys alone and an
 * element's identity matters only where the caller cannot tell it from its
 * key: among the ties at the threshold. So an element is one 32-bit word,
 * its key (|v| bits, below 2^31), or for a tie CR_TORCHSORT_TIE | its
 * index — 4 bytes an element instead of 8 for (key, index) pairs.
 */
#include "torchsort.h"

#include "base.h"
#include "pool.h"

#include <stddef.h>
#include <string.h>

#define THRESHOLD 16   /* libstdc++'s _S_threshold */

typedef struct sorter {
    uint32_t *v;
    uint32_t tie_key;
    bool desc;
    bool tagging;              /* the first partition: tag each word as it is first read (tag_ties) */
    const uint64_t *bounds;
    unsigned n_bounds;
    uint32_t *(*partition)(const struct sorter *, uint32_t *, uint32_t *, const uint32_t *);
    const cr_kernels *kern;    /* stoppers of block_partition */
    const cr_torchsort_pager *pager;   /* NULL: w is in memory */
    const cr_torchsort_par *par;       /* NULL: every partition runs on this thread */
} sorter;

static inline uint32_t key_of(const sorter *s, uint32_t w) { return w & CR_TORCHSORT_TIE ? s->tie_key : w; }

/* torch's KeyValueCompAsc / KeyValueCompDesc on the keys */
static inline int less(const sorter *s, uint32_t a, uint32_t b)
{
    uint32_t x = key_of(s, a), y = key_of(s, b);
    return s->desc ? x > y : x < y;
}

static inline void swap(uint32_t *a, uint32_t *b)
{
    uint32_t t = *a;
    *a = *b;
    *b = t;
}

/* The caller may leave ties untagged: a word equal to tie_key is then the
 * tie at its index in w on entry (the TIES gather filled before the
 * threshold was known, interp_select.c). Comparisons read such a word as
 * tie_key either way, so only an element's identity needs the tag, and
 * only once the word moves: the first partition tags each word as it is
 * first read, a block at a time, which costs a compare over words in cache
 * instead of another pass over the gather. Tagging twice changes nothing
 * (a tagged word has bit 31 set; a raw key does not). Sixteen words are
 * tested at a time (a loop that vectorises): ties are a small part. */
static void tag_ties(uint32_t tie_key, uint32_t *w, uint64_t n, uint64_t index)
{
    for (uint64_t i = 0; i < n; i += 16) {
        unsigned len = (unsigned)CR_MIN(16, n - i), any = 0;
        for (unsigned j = 0; j < len; j++) any |= w[i + j] == tie_key;
        if (!any) continue;
        for (unsigned j = 0; j < len; j++)
            if (w[i + j] == tie_key) w[i + j] = CR_TORCHSORT_TIE | (uint32_t)(index + i + j);
    }
}

/* every word, up front (a spilled gather a window at a time, its pages
 * then dropped as the sort's scans drop them) */
static void tag_all(uint32_t tie_key, uint32_t *w, uint64_t n, const cr_torchsort_pager *pager)
{
    for (uint64_t i = 0; i < n; i += CR_TORCHSORT_PAGER_WORDS) {
        uint64_t len = CR_MIN(CR_TORCHSORT_PAGER_WORDS, n - i);
        tag_ties(tie_key, w + i, len, i);
        if (pager) pager->done(pager->ud, w + i, w + i + len, true);
    }
}

static void tag_range(const sorter *s, uint32_t *lo, uint32_t *hi)
{
    if (s->tagging && hi > lo) tag_ties(s->tie_key, lo, (uint64_t)(hi - lo), (uint64_t)(lo - s->v));
}

/* true when some boundary lies strictly inside [first, last) */
static int holds_bound(const sorter *s, uint64_t first, uint64_t last)
{
    for (unsigned i = 0; i < s->n_bounds; i++)
        if (s->bounds[i] > first && s->bounds[i] < last) return 1;
    return 0;
}

static void move_median_to_first(const sorter *s, uint32_t *r, uint32_t *a, uint32_t *b, uint32_t *c)
{
    if (less(s, *a, *b)) {
        if (less(s, *b, *c)) swap(r, b);
        else if (less(s, *a, *c)) swap(r, c);
        else swap(r, a);
    } else if (less(s, *a, *c)) {
        swap(r, a);
    } else if (less(s, *b, *c)) {
        swap(r, c);
    } else {
        swap(r, b);
    }
}

/* Hoare partition of [first, last) around *pivot; returns the cut */
static uint32_t *unguarded_partition(const sorter *s, uint32_t *first, uint32_t *last, const uint32_t *pivot)
{
    for (;;) {
        while (less(s, *first, *pivot)) ++first;
        --last;
        while (less(s, *pivot, *last)) --last;
        if (!(first < last)) return first;
        swap(first, last);
        ++first;
    }
}

/* The same partition without a branch per element (BlockQuicksort,
 * Edelkamp & Weiss 2016). The loop above swaps the t-th element from the
 * left that stops the left scan (!less(x, pivot)) with the t-th from the
 * right that stops the right scan (!less(pivot, x)), each judged on its
 * original value, for as long as the pair is still in order. So stoppers
 * can be found a block at a time from both ends, their offsets collected
 * without branches, and paired: while the scanned ends have not met, every
 * pair is in order and is swapped. When a side runs dry with less than a
 * block left between the ends, the loop above resumes from the last swap:
 * the state it would have reached itself, so the result is the same swaps
 * and the same cut. Whenever a side's queue is empty, every stopper before
 * its scan point has been swapped, so the element loop would scan on from
 * there: the resume point moves up to it, and the final element loop
 * covers under three blocks (which also bounds what a spilled gather
 * reads back). */
#define BLOCK 256

static uint32_t *block_partition(const sorter *s, uint32_t *first, uint32_t *last, const uint32_t *pivot)
{
    const uint32_t pk = key_of(s, *pivot), tk = s->tie_key;
    /* desc: the left scan stops at !(key > pk), the right one at !(pk > key) */
    const bool left_le = s->desc, right_le = !s->desc;
    uint16_t lofs[BLOCK + 8], rofs[BLOCK + 8], fwd[BLOCK + 8];
    unsigned nl = 0, nr = 0, hl = 0, hr = 0;   /* counts and heads of the queues */
    uint32_t *lb = first, *rb = last;          /* block bases: lb + ofs, rb - 1 - ofs */
    uint32_t *L = first, *R = last;            /* [L, R) not yet scanned */
    uint32_t *resume_first = first, *resume_last = last;
    uint32_t *kept_lo = first, *kept_hi = last;   /* a pager has not been told about [kept_lo, kept_hi) */
    for (;;) {
        if (hl == nl) {
            resume_first = L;
            if (R - L < BLOCK) break;
            if (s->pager && (uint64_t)(L - kept_lo) >= CR_TORCHSORT_PAGER_WORDS) {
                s->pager->done(s->pager->ud, kept_lo, L, true);
                kept_lo = L;
            }
            lb = L;
            hl = 0;
            tag_range(s, L, L + BLOCK);
            nl = s->kern->stoppers(L, BLOCK, pk, tk, left_le, lofs);
            L += BLOCK;
        }
        if (hr == nr) {
            resume_last = R;
            if (R - L < BLOCK) break;
            if (s->pager && (uint64_t)(kept_hi - R) >= CR_TORCHSORT_PAGER_WORDS) {
                s->pager->done(s->pager->ud, R, kept_hi, false);
                kept_hi = R;
            }
            R -= BLOCK;
            rb = R + BLOCK;
            hr = 0;
            tag_range(s, R, R + BLOCK);
            /* found in ascending order; the queue runs from the right end */
            nr = s->kern->stoppers(R, BLOCK, pk, tk, right_le, fwd);
            for (unsigned t = 0; t < nr; t++) rofs[t] = (uint16_t)(BLOCK - 1 - fwd[nr - 1 - t]);
        }
        unsigned pairs = CR_MIN(nl - hl, nr - hr);
        for (unsigned t = 0; t < pairs; t++) {
            uint32_t *a = lb + lofs[hl + t], *b = rb - 1 - rofs[hr + t];
            uint32_t tmp = *a;
            *a = *b;
            *b = tmp;
        }
        if (pairs) {
            hl += pairs;
            hr += pairs;
            resume_first = lb + lofs[hl - 1] + 1;
            resume_last = rb - 1 - rofs[hr - 1];
        }
    }
    tag_range(s, L, R);   /* the words no block scan read: every word is tagged from here on */
    uint32_t *cut = unguarded_partition(s, resume_first, resume_last, pivot);
    if (s->pager) {   /* all but the block at the cut, where the next level starts */
        s->pager->done(s->pager->ud, kept_lo, cut, true);
        s->pager->done(s->pager->ud, cut, kept_hi, false);
    }
    return cut;
}

/* ---- heap sort (std::__partial_sort(first, last, last)) ----------------- */

static void push_heap(const sorter *s, uint32_t *first, uint64_t hole, uint64_t top, uint32_t value)
{
    uint64_t parent = (hole - 1) / 2;
    while (hole > top && less(s, first[parent], value)) {
        first[hole] = first[parent];
        hole = parent;
        parent = (hole - 1) / 2;
    }
    first[hole] = value;
}

static void adjust_heap(const sorter *s, uint32_t *first, uint64_t hole, uint64_t len, uint32_t value)
{
    uint64_t top = hole, child = hole;
    while (child < (len - 1) / 2) {
        child = 2 * (child + 1);
        if (less(s, first[child], first[child - 1])) child--;
        first[hole] = first[child];
        hole = child;
    }
    if ((len & 1) == 0 && child == (len - 2) / 2) {
        child = 2 * (child + 1);
        first[hole] = first[child - 1];
        hole = child - 1;
    }
    push_heap(s, first, hole, top, value);
}

static void heap_sort(const sorter *s, uint32_t *first, uint64_t len)
{
    if (len < 2) return;
    for (uint64_t parent = (len - 2) / 2;; parent--) {
        adjust_heap(s, first, parent, len, first[parent]);
        if (parent == 0) break;
    }
    for (uint64_t last = len; last > 1;) {
        --last;
        uint32_t value = first[last];
        first[last] = first[0];
        adjust_heap(s, first, 0, last, value);
    }
}

/* ---- insertion sort (one short range of the final pass) ------------------ */

static void insertion_sort(const sorter *s, uint32_t *first, uint32_t *last)
{
    if (first == last) return;
    for (uint32_t *i = first + 1; i != last; ++i) {
        uint32_t val = *i;
        if (less(s, val, *first)) {
            memmove(first + 1, first, (size_t)(i - first) * sizeof *first);
            *first = val;
        } else {
            uint32_t *hole = i, *next = i - 1;
            while (less(s, val, *next)) { *hole = *next; hole = next; --next; }
            *hole = val;
        }
    }
}

/* ---- one partition on the pool ------------------------------------------ */

/* A large partition (at the top of a selection, most of the sort's time)
 * runs on every thread of the pool and makes the same swaps. The loop
 * above pairs the m-th left stopper L_m with the m-th right stopper R_m,
 * both judged on their original values, for as long as L_m < R_m; the
 * positions between the two scan heads are untouched. So:
 *  1. count each segment's left and right stoppers (in parallel; the first
 *     partition also tags the segment's ties here);
 *  2. prefix sums say in which segment each L_m and R_m lies; M0, the
 *     largest m with L_m's segment before R_m's, is a pair the loop surely
 *     swaps, and so are all before it;
 *  3. cut the ordinals 1..M0 into pieces and find each piece's first L and
 *     R (read-only, before any swap), then each piece swaps its pairs, reading
 *     only the words between its own stoppers (in parallel: the pieces'
 *     words are disjoint, since every L_m (m <= M0) lies before R_M0);
 *  4. the loop resumes after pair M0 (block_partition from L_M0 + 1 to
 *     R_M0), the state it would have reached itself: the same cut.
 * Each word is read twice instead of once (1.4-1.7 times the serial
 * sort's CPU), so it pays only where several threads would otherwise idle
 * (interp_select.c says where; on two threads it measured slower). */
#define PAR_SEGS 4096u     /* at most this many counted segments */
#define PAR_PIECES 64u     /* at most this many pieces of pairs */

typedef struct par_job {
    const sorter *s;
    uint32_t *first, *last;
    uint32_t pk;
    bool left_le, right_le;
    uint64_t seg, n_seg;                /* words a segment, segments */
    uint32_t lpre[PAR_SEGS + 1];        /* left stoppers in segments before i (counts first) */
    uint32_t rpre[PAR_SEGS + 1];        /* right stoppers in segments i and after (counts first) */
    unsigned n_pieces;
    uint32_t ord[PAR_PIECES + 1];       /* each piece's first ordinal; ord[n_pieces] = M0 */
    uint32_t *lpos[PAR_PIECES + 1], *rpos[PAR_PIECES + 1];   /* L and R of those ordinals */
} par_job;

/* the stoppers kernel on any length (the kernel takes multiples of 8) */
static unsigned stoppers_any(const par_job *j, const uint32_t *w, unsigned n, bool le, uint16_t *ofs)
{
    unsigned body = n & ~7u, cnt = body ? j->s->kern->stoppers(w, body, j->pk, j->s->tie_key, le, ofs) : 0;
    for (unsigned i = body; i < n; i++) {
        uint32_t key = key_of(j->s, w[i]);
        if (le ? key <= j->pk : key >= j->pk) ofs[cnt++] = (uint16_t)i;
    }
    return cnt;
}

static uint32_t *seg_begin(const par_job *j, uint64_t i) { return j->first + i * j->seg; }
static uint32_t *seg_end(const par_job *j, uint64_t i)
{
    return (uint64_t)(j->last - j->first) - i * j->seg > j->seg ? j->first + (i + 1) * j->seg : j->last;
}

static int count_task(void *ud, uint64_t t, unsigned thread)
{
    (void)thread;
    par_job *j = ud;
    uint32_t *p = seg_begin(j, t), *e = seg_end(j, t);
    const uint32_t tk = j->s->tie_key, pk = j->pk;
    tag_range(j->s, p, e);
    uint32_t le = 0, ge = 0;
    for (const uint32_t *q = p; q < e; q++) {   /* vectorises: a select and two compares */
        uint32_t key = *q & CR_TORCHSORT_TIE ? tk : *q;
        le += key <= pk;
        ge += key >= pk;
    }
    j->lpre[t] = j->left_le ? le : ge;
    j->rpre[t] = j->right_le ? le : ge;
    return 0;
}

/* the segment of the m-th left stopper (1 <= m <= total): the last i with
 * lpre[i] < m */
static uint64_t seg_of_left(const par_job *j, uint32_t m)
{
    uint64_t lo = 0, hi = j->n_seg - 1;
    while (lo < hi) {
        uint64_t mid = (lo + hi + 1) / 2;
        if (j->lpre[mid] < m) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

/* the segment of the m-th right stopper from the right: the last i with
 * rpre[i] >= m */
static uint64_t seg_of_right(const par_job *j, uint32_t m)
{
    uint64_t lo = 0, hi = j->n_seg - 1;
    while (lo < hi) {
        uint64_t mid = (lo + hi + 1) / 2;
        if (j->rpre[mid] >= m) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

static uint32_t *locate_left(const par_job *j, uint32_t m)
{
    uint64_t i = seg_of_left(j, m);
    uint32_t r = m - j->lpre[i];
    uint16_t ofs[BLOCK + 16];
    for (uint32_t *p = seg_begin(j, i), *e = seg_end(j, i); p < e; p += BLOCK) {
        unsigned len = (unsigned)CR_MIN(BLOCK, e - p);
        unsigned c = stoppers_any(j, p, len, j->left_le, ofs);
        if (r <= c) return p + ofs[r - 1];
        r -= c;
    }
    return NULL;   /* not reached: the counts say it is there */
}

static uint32_t *locate_right(const par_job *j, uint32_t m)
{
    uint64_t i = seg_of_right(j, m);
    uint32_t r = m - j->rpre[i + 1];
    uint16_t ofs[BLOCK + 16];
    for (uint32_t *b = seg_begin(j, i), *e = seg_end(j, i); e > b;) {
        unsigned len = (unsigned)CR_MIN(BLOCK, e - b);
        e -= len;
        unsigned c = stoppers_any(j, e, len, j->right_le, ofs);
        if (r <= c) return e + ofs[c - r];
        r -= c;
    }
    return NULL;
}

/* piece t: its pairs, a block of stoppers at a time from both ends (as
 * block_partition, without the crossing: every pair here is swapped) */
static int swap_task(void *ud, uint64_t t, unsigned thread)
{
    (void)thread;
    par_job *j = ud;
    const bool last_piece = t + 1 == j->n_pieces;
    uint64_t need = (last_piece ? (uint64_t)j->ord[t + 1] + 1 : j->ord[t + 1]) - j->ord[t];
    /* the words this piece reads: [L, lend) and [rlo, R), between the
     * other pieces' stoppers */
    uint32_t *L = j->lpos[t], *lend = last_piece ? j->lpos[t + 1] + 1 : j->lpos[t + 1];
    uint32_t *R = j->rpos[t] + 1, *rlo = last_piece ? j->rpos[t + 1] : j->rpos[t + 1] + 1;
    uint16_t lofs[BLOCK + 16], rofs[BLOCK + 16], fwd[BLOCK + 16];
    unsigned nl = 0, nr = 0, hl = 0, hr = 0;
    uint32_t *lb = L, *rb = R;
    while (need) {
        if (hl == nl) {
            unsigned len = (unsigned)CR_MIN(BLOCK, lend - L);
            if (!len) break;   /* not reached: the piece holds its pairs */
            lb = L;
            hl = 0;
            nl = stoppers_any(j, L, len, j->left_le, lofs);
            L += len;
        }
        if (hr == nr) {
            unsigned len = (unsigned)CR_MIN(BLOCK, R - rlo);
            if (!len) break;
            R -= len;
            rb = R;
            hr = 0;
            nr = stoppers_any(j, R, len, j->right_le, fwd);
            for (unsigned q = 0; q < nr; q++) rofs[q] = fwd[nr - 1 - q];
        }
        unsigned pairs = (unsigned)CR_MIN(CR_MIN(nl - hl, nr - hr), need);
        for (unsigned q = 0; q < pairs; q++) swap(lb + lofs[hl + q], rb + rofs[hr + q]);
        hl += pairs;
        hr += pairs;
        need -= pairs;
    }
    return 0;
}

static uint32_t *par_partition(const sorter *s, uint32_t *first, uint32_t *last, const uint32_t *pivot)
{
    cr_pool *pool = s->par->pool;
    const uint64_t n = (uint64_t)(last - first);
    par_job *j = &(par_job){ .s = s, .first = first, .last = last, .pk = key_of(s, *pivot),
                             .left_le = s->desc, .right_le = !s->desc };
    uint64_t want = s->par->seg_words ? s->par->seg_words : CR_TORCHSORT_PAR_SEG;
    j->seg = CR_MAX(want, (n + PAR_SEGS - 1) / PAR_SEGS);
    j->n_seg = (n + j->seg - 1) / j->seg;
    cr_pool_run(pool, j->n_seg, count_task, j);
    sorter rest = *s;
    rest.tagging = false;   /* every word is tagged now */
    /* counts to prefix sums */
    uint32_t acc = 0;
    for (uint64_t i = 0; i < j->n_seg; i++) {
        uint32_t c = j->lpre[i];
        j->lpre[i] = acc;
        acc += c;
    }
    j->lpre[j->n_seg] = acc;
    const uint32_t total_l = acc;
    acc = 0;
    j->rpre[j->n_seg] = 0;
    for (uint64_t i = j->n_seg; i-- > 0;) {
        acc += j->rpre[i];
        j->rpre[i] = acc;
    }
    const uint32_t total_r = acc;
    /* M0: the last m whose L_m lies in an earlier segment than R_m */
    uint32_t lo = 0, hi = CR_MIN(total_l, total_r);
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo + 1) / 2;
        if (seg_of_left(j, mid) < seg_of_right(j, mid)) lo = mid;
        else hi = mid - 1;
    }
    const uint32_t m0 = lo;
    if (m0 == 0) return block_partition(&rest, first, last, pivot);
    j->n_pieces = (unsigned)CR_MIN(CR_MIN((uint64_t)PAR_PIECES, 2u * (uint64_t)cr_pool_threads(pool)), m0);
    for (unsigned t = 0; t < j->n_pieces; t++) j->ord[t] = 1 + (uint32_t)((uint64_t)t * m0 / j->n_pieces);
    j->ord[j->n_pieces] = m0;
    /* here, not as a pool job: each reads under a segment, and a job costs
     * a wake-up of every worker */
    for (unsigned t = 0; t <= j->n_pieces; t++) {
        j->lpos[t] = locate_left(j, j->ord[t]);
        j->rpos[t] = locate_right(j, j->ord[t]);
    }
    cr_pool_run(pool, j->n_pieces, swap_task, j);
    return block_partition(&rest, j->lpos[j->n_pieces] + 1, j->rpos[j->n_pieces], pivot);
}

/* the partition of [first, last): on the pool when it is large */
static uint32_t *par_or_serial(const sorter *s, uint32_t *first, uint32_t *last, const uint32_t *pivot)
{
    const cr_torchsort_par *par = s->par;
    if (par && par->pool && cr_pool_threads(par->pool) > 1 &&
        (uint64_t)(last - first) >= (par->min_words ? par->min_words : CR_TORCHSORT_PAR_MIN))
        return par_partition(s, first, last, pivot);
    return s->partition(s, first, last, pivot);
}

static void introsort(sorter *s, uint64_t first, uint64_t last, unsigned depth)
{
    while (last - first > THRESHOLD) {
        if (!holds_bound(s, first, last)) return;
        if (depth == 0) {
            heap_sort(s, s->v + first, last - first);
            return;
        }
        --depth;
        uint32_t *f = s->v + first, *l = s->v + last, *mid = f + (last - first) / 2;
        if (s->tagging) {   /* the median's swap moves these before the scan reads them */
            tag_range(s, f, f + 2);
            tag_range(s, mid, mid + 1);
            tag_range(s, l - 1, l);
        }
        move_median_to_first(s, f, f + 1, mid, l - 1);
        uint64_t cut = (uint64_t)(par_or_serial(s, f + 1, l, f) - s->v);
        s->tagging = false;   /* the partition read (and tagged) every word */
        introsort(s, cut, last, depth);
        last = cut;
    }
    /* a short range: the final insertion sort orders it in place */
    if (holds_bound(s, first, last)) insertion_sort(s, s->v + first, s->v + last);
}

static unsigned lg(uint64_t n)
{
    unsigned r = 0;
    while (n >>= 1) r++;
    return r;
}

static void partition_with(const cr_kernels *kern, uint32_t *w, uint64_t n, bool descending, uint32_t tie_key,
                           const uint64_t *bounds, unsigned n_bounds, const cr_torchsort_pager *pager,
                           const cr_torchsort_par *par)
{
    sorter s = { w, tie_key, descending, true, bounds, n_bounds, block_partition, kern, pager, par };
    /* no partition will read every word: tag them all first (short or
     * unbounded ranges; never a large gather in practice) */
    if (n <= THRESHOLD || !holds_bound(&s, 0, n)) {
        tag_all(tie_key, w, n, pager);
        s.tagging = false;
    }
    if (n < 2) return;
    introsort(&s, 0, n, 2 * lg(n));
}

void cr_torchsort_partition(const cr_kernels *kern, uint32_t *w, uint64_t n, bool descending, uint32_t tie_key,
                            const uint64_t *bounds, unsigned n_bounds, const cr_torchsort_pager *pager)
{
    partition_with(kern, w, n, descending, tie_key, bounds, n_bounds, pager, NULL);
}

void cr_torchsort_partition_par(const cr_kernels *kern, uint32_t *w, uint64_t n, bool descending, uint32_t tie_key,
                                const uint64_t *bounds, unsigned n_bounds, const cr_torchsort_par *par)
{
    partition_with(kern, w, n, descending, tie_key, bounds, n_bounds, NULL, par);
}

/* std::__heap_select(first, middle, last): a max-heap (under `less`) of the
 * first len elements, then each later element that is less than its top
 * replaces the top (__pop_heap) */
static void heap_select(const sorter *s, uint32_t *first, uint64_t len, uint64_t n)
{
    if (len >= 2)
        for (uint64_t parent = (len - 2) / 2;; parent--) {
            adjust_heap(s, first, parent, len, first[parent]);
            if (parent == 0) break;
        }
    uint64_t kept = len;   /* a pager has not been told about [kept, i) */
    for (uint64_t i = len; i < n; i++) {
        if (s->pager && i - kept >= CR_TORCHSORT_PAGER_WORDS) {
            s->pager->done(s->pager->ud, first + kept, first + i, true);
            kept = i;
        }
        if (less(s, first[i], first[0])) {
            uint32_t value = first[i];
            first[i] = first[0];
            adjust_heap(s, first, 0, len, value);
        }
    }
}

void cr_torchsort_topk(const cr_kernels *kern, uint32_t *w, uint64_t n, uint64_t k, uint32_t tie_key,
                       const cr_torchsort_pager *pager)
{
    tag_all(tie_key, w, n, pager);   /* topk (SCE's) tags up front: a pass it can afford */
    if (k == 0 || n < 2) return;
    sorter s = { w, tie_key, true, false, NULL, 0, block_partition, kern, pager, NULL };
    if (k * 64 <= n) {   /* std::partial_sort: __heap_select, then __sort_heap (same set) */
        heap_select(&s, w, k, n);
        return;
    }
    /* std::nth_element(first, first + k - 1, last): __introselect */
    const uint64_t nth = k - 1;
    uint64_t first = 0, last = n;
    unsigned depth = 2 * lg(n);
    while (last - first > 3) {
        if (depth == 0) {
            heap_select(&s, w + first, nth + 1 - first, last - first);
            swap(w + first, w + nth);
            return;
        }
        --depth;
        uint32_t *f = w + first, *l = w + last;
        move_median_to_first(&s, f, f + 1, f + (last - first) / 2, l - 1);
        uint64_t cut = (uint64_t)(s.partition(&s, f + 1, l, f) - w);
        if (cut <= nth) first = cut;
        else last = cut;
    }
    insertion_sort(&s, w + first, w + last);
}

void cr_torchsort_partition_plain(uint32_t *w, uint64_t n, bool descending, uint32_t tie_key,
                                  const uint64_t *bounds, unsigned n_bounds)
{
    tag_all(tie_key, w, n, NULL);
    if (n < 2) return;
    sorter s = { w, tie_key, descending, false, bounds, n_bounds, unguarded_partition, NULL, NULL, NULL };
    introsort(&s, 0, n, 2 * lg(n));
}
