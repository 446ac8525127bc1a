/* One B-spline KAN layer applied to a jet (value, first partials, chosen second partials), and
 * its backward pass, each one loop over blocks of points.  Compiled on first use by
 * kanpde/models/native.py, once with REAL=float and once with REAL=double; where no compiler is
 * available the layer keeps its torch operations (KANLayer.forward_jet), which compute the same.
 *
 * Each edge i -> o is, on cell c of input i's padded grid, the polynomial
 *     sum_p Q[i, c, p, o] * xi**p  +  Q[i, c, k+1, o] * silu(h)
 * with xi the offset of h from the cell's left knot (KANLayer.cell_coefficients builds Q).  With
 * E_d the d-th derivative of an edge at its input, the layer's output jet is
 *     value[o]  = sum_i E0
 *     first[a]  = sum_i F[a, i] * E1
 *     second[p] = sum_i F[pa, i] * F[pb, i] * E2 + S[p, i] * E1      (pair p = (pa, pb))
 *
 * Layouts (row-major, contiguous, batch last so that the loops over points vectorise):
 * h, sg (in, N) the inputs and their sigmoid (torch computes it); F (D, in, N); S (P, in, N) or
 * NULL; Q (in, cells + 1, k + 2, out); value (out, N); first (D, out, N); second (P, out, N);
 * knots (in, cells + 1) the knot vectors of a non-uniform layer, or NULL on uniform grids (lo, step).
 * Both split the points over n_threads OpenMP threads when compiled with -fopenmp (loaded into a
 * process that has imported torch, the library then shares torch's OpenMP runtime and threads);
 * the backward accumulates dQ into one buffer per thread, (n_threads, in, cells + 1, k + 2, out),
 * which the caller sums.  Compile with -ffp-contract=off: a point on a knot then lands in the cell
 * torch picks.
 */
#include <stdint.h>

#ifndef REAL
#define REAL double
#endif

typedef int64_t idx;
#define BLOCK 128 /* points per block: the block's scratch arrays stay in the L1 cache */

/* on x86-64 with GCC, an AVX2 version next to the baseline one, chosen when the library loads */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define CLONES __attribute__((target_clones("avx2", "default")))
#else
#define CLONES
#endif

/* cell (n_cells: outside) and offset xi, and silu's derivatives s[d] from the sigmoid sg, for a block.
 * On a uniform grid (t NULL) the cell is found by a division; on non-uniform knots t (n_cells + 1 of
 * them, increasing) by a binary search for the last knot t_c <= h, as torch.searchsorted does. */
static inline void prepare(idx n, const REAL *restrict h, const REAL *restrict sg, REAL lo, REAL step,
                           const REAL *restrict t, idx k, idx n_cells,
                           int *restrict cell, REAL *restrict xi, REAL *restrict s0, REAL *restrict s1,
                           REAL *restrict s2, REAL *restrict s3) {
    if (t) {
        for (idx b = 0; b < n; ++b) {
            REAL x = h[b];
            int inside = x >= t[0] && x < t[n_cells];
            idx a = 0, len = n_cells; /* the last knot t[a] <= x among t[0 .. n_cells - 1], without branches */
            while (len > 1) {
                idx half = len / 2;
                a = t[a + half] <= x ? a + half : a;
                len -= half;
            }
            cell[b] = inside ? (int)a : (int)n_cells;
            xi[b] = inside ? x - t[a] : 0;
        }
    } else {
        REAL left = lo - (REAL)k * step, top = (REAL)n_cells;
        for (idx b = 0; b < n; ++b) {
            REAL u = (h[b] - left) / step;
            int inside = u >= 0 && u < top;
            REAL uc = inside ? u : 0;
            int c = (int)uc;
            cell[b] = inside ? c : (int)n_cells;
            xi[b] = (uc - (REAL)c) * step;
        }
    }
    for (idx b = 0; b < n; ++b) {
        REAL g = sg[b], x = h[b], ds = g * (1 - g);
        s0[b] = x * g;
        s1[b] = g + x * ds;
        s2[b] = ds * (2 + x * (1 - 2 * g));
    }
    if (s3)
        for (idx b = 0; b < n; ++b) {
            REAL g = sg[b], x = h[b], ds = g * (1 - g);
            s3[b] = ds * (3 * (1 - 2 * g) + x * (1 - 6 * g + 6 * g * g));
        }
}

#define MAX_K 15 /* highest spline degree the kernel takes (native.py checks) */

/* e_d (d = 0..top) of edge o: its cell's coefficients gathered, the polynomial part by Horner's
 * rule (as e_d = d-th derivative / d!), then scaled and silu added */
static inline void horner(idx n, idx top, const REAL *restrict Qi, idx cell_size, idx n_out, idx k, idx o,
                          const int *restrict cell, const REAL *restrict xi, const REAL *restrict s0,
                          const REAL *restrict s1, const REAL *restrict s2, const REAL *restrict s3,
                          REAL (*restrict cq)[BLOCK], REAL *restrict e0, REAL *restrict e1, REAL *restrict e2, REAL *restrict e3) {
    for (idx b = 0; b < n; ++b) {
        const REAL *q = Qi + cell[b] * cell_size + o;
        for (idx p = 0; p <= k + 1; ++p) cq[p][b] = q[p * n_out];
    }
    for (idx b = 0; b < n; ++b) {
        e0[b] = cq[k][b];
        e1[b] = e2[b] = e3[b] = 0;
    }
    for (idx p = k - 1; p >= 0; --p) {
        if (top >= 3)
            for (idx b = 0; b < n; ++b) e3[b] = e3[b] * xi[b] + e2[b];
        for (idx b = 0; b < n; ++b) {
            e2[b] = e2[b] * xi[b] + e1[b];
            e1[b] = e1[b] * xi[b] + e0[b];
            e0[b] = e0[b] * xi[b] + cq[p][b];
        }
    }
    for (idx b = 0; b < n; ++b) {
        REAL base = cq[k + 1][b];
        e0[b] += base * s0[b];
        e1[b] += base * s1[b];
        e2[b] = 2 * e2[b] + base * s2[b];
    }
    if (top >= 3)
        for (idx b = 0; b < n; ++b) e3[b] = 6 * e3[b] + cq[k + 1][b] * s3[b];
}

CLONES
static void forward_range(idx n_points, idx n_in, idx n_out, idx k, idx n_cells, idx n_dim, idx n_pairs,
                          const idx *pair_a, const idx *pair_b, const REAL *lo, const REAL *step, const REAL *knots,
                          const REAL *restrict h, const REAL *restrict sg, const REAL *restrict F, const REAL *restrict S,
                          const REAL *restrict Q, REAL *restrict value, REAL *restrict first, REAL *restrict second,
                          idx b0, idx b1) {
    idx N = n_points, cell_size = (k + 2) * n_out;
    int cell[BLOCK];
    REAL cq[MAX_K + 2][BLOCK];
    REAL xi[BLOCK], s0[BLOCK], s1[BLOCK], s2[BLOCK], e0[BLOCK], e1[BLOCK], e2[BLOCK], e3[BLOCK];
    REAL ff[n_pairs > 0 ? n_pairs : 1][BLOCK];
    for (idx start = b0; start < b1; start += BLOCK) {
        idx n = b1 - start < BLOCK ? b1 - start : BLOCK;
        for (idx o = 0; o < n_out; ++o) {
            for (idx b = 0; b < n; ++b) value[o * N + start + b] = 0;
            for (idx a = 0; a < n_dim; ++a)
                for (idx b = 0; b < n; ++b) first[(a * n_out + o) * N + start + b] = 0;
            for (idx p = 0; p < n_pairs; ++p)
                for (idx b = 0; b < n; ++b) second[(p * n_out + o) * N + start + b] = 0;
        }
        for (idx i = 0; i < n_in; ++i) {
            prepare(n, h + i * N + start, sg + i * N + start, lo[i], step[i], knots ? knots + i * (n_cells + 1) : 0, k, n_cells, cell, xi, s0, s1, s2, 0);
            for (idx p = 0; p < n_pairs; ++p) {
                const REAL *fa = F + (pair_a[p] * n_in + i) * N + start, *fb = F + (pair_b[p] * n_in + i) * N + start;
                for (idx b = 0; b < n; ++b) ff[p][b] = fa[b] * fb[b];
            }
            const REAL *Qi = Q + i * (n_cells + 1) * cell_size;
            for (idx o = 0; o < n_out; ++o) {
                horner(n, 2, Qi, cell_size, n_out, k, o, cell, xi, s0, s1, s2, 0, cq, e0, e1, e2, e3);
                REAL *v = value + o * N + start;
                for (idx b = 0; b < n; ++b) v[b] += e0[b];
                for (idx a = 0; a < n_dim; ++a) {
                    REAL *out = first + (a * n_out + o) * N + start;
                    const REAL *f = F + (a * n_in + i) * N + start;
                    for (idx b = 0; b < n; ++b) out[b] += f[b] * e1[b];
                }
                for (idx p = 0; p < n_pairs; ++p) {
                    REAL *out = second + (p * n_out + o) * N + start;
                    if (S) {
                        const REAL *sp = S + (p * n_in + i) * N + start;
                        for (idx b = 0; b < n; ++b) out[b] += ff[p][b] * e2[b] + sp[b] * e1[b];
                    } else {
                        for (idx b = 0; b < n; ++b) out[b] += ff[p][b] * e2[b];
                    }
                }
            }
        }
    }
}

CLONES
static void backward_range(idx n_points, idx n_in, idx n_out, idx k, idx n_cells, idx n_dim, idx n_pairs,
                           const idx *pair_a, const idx *pair_b, const REAL *lo, const REAL *step, const REAL *knots,
                           const REAL *restrict h, const REAL *restrict sg, const REAL *restrict F, const REAL *restrict S,
                           const REAL *restrict Q, const REAL *restrict gv, const REAL *restrict gF, const REAL *restrict gS,
                           REAL *restrict dQ, REAL *restrict dh, REAL *restrict dF, REAL *restrict dS, idx b0, idx b1) {
    idx N = n_points, cell_size = (k + 2) * n_out, top = dh ? 3 : 2;
    int cell[BLOCK];
    REAL cq[MAX_K + 2][BLOCK];
    REAL xi[BLOCK], s0[BLOCK], s1[BLOCK], s2[BLOCK], s3[BLOCK], e0[BLOCK], e1[BLOCK], e2[BLOCK], e3[BLOCK];
    REAL g0[BLOCK], g1[BLOCK], g2[BLOCK];
    REAL ff[n_pairs > 0 ? n_pairs : 1][BLOCK];
    for (idx start = b0; start < b1; start += BLOCK) {
        idx n = b1 - start < BLOCK ? b1 - start : BLOCK;
        for (idx i = 0; i < n_in; ++i) {
            prepare(n, h + i * N + start, sg + i * N + start, lo[i], step[i], knots ? knots + i * (n_cells + 1) : 0, k, n_cells, cell, xi, s0, s1, s2, s3);
            for (idx p = 0; p < n_pairs; ++p) {
                const REAL *fa = F + (pair_a[p] * n_in + i) * N + start, *fb = F + (pair_b[p] * n_in + i) * N + start;
                for (idx b = 0; b < n; ++b) ff[p][b] = fa[b] * fb[b];
            }
            REAL *dx = dh ? dh + i * N + start : 0;
            if (dh) {
                for (idx b = 0; b < n; ++b) dx[b] = 0;
                for (idx a = 0; a < n_dim; ++a)
                    for (idx b = 0; b < n; ++b) dF[(a * n_in + i) * N + start + b] = 0;
                if (S)
                    for (idx p = 0; p < n_pairs; ++p)
                        for (idx b = 0; b < n; ++b) dS[(p * n_in + i) * N + start + b] = 0;
            }
            const REAL *Qi = Q + i * (n_cells + 1) * cell_size;
            REAL *dQi = dQ + i * (n_cells + 1) * cell_size;
            for (idx o = 0; o < n_out; ++o) {
                horner(n, top, Qi, cell_size, n_out, k, o, cell, xi, s0, s1, s2, s3, cq, e0, e1, e2, e3);
                /* the loss's gradient with respect to this edge's E0, E1, E2 */
                for (idx b = 0; b < n; ++b) {
                    g0[b] = gv ? gv[o * N + start + b] : 0;
                    g1[b] = g2[b] = 0;
                }
                for (idx a = 0; a < n_dim && gF; ++a) {
                    const REAL *g = gF + (a * n_out + o) * N + start, *f = F + (a * n_in + i) * N + start;
                    for (idx b = 0; b < n; ++b) g1[b] += g[b] * f[b];
                    if (dh) {
                        REAL *df = dF + (a * n_in + i) * N + start;
                        for (idx b = 0; b < n; ++b) df[b] += g[b] * e1[b];
                    }
                }
                for (idx p = 0; p < n_pairs && gS; ++p) {
                    const REAL *g = gS + (p * n_out + o) * N + start;
                    for (idx b = 0; b < n; ++b) g2[b] += g[b] * ff[p][b];
                    if (S) {
                        const REAL *sp = S + (p * n_in + i) * N + start;
                        for (idx b = 0; b < n; ++b) g1[b] += g[b] * sp[b];
                    }
                    if (dh) {
                        const REAL *fa = F + (pair_a[p] * n_in + i) * N + start, *fb = F + (pair_b[p] * n_in + i) * N + start;
                        REAL *da = dF + (pair_a[p] * n_in + i) * N + start, *db = dF + (pair_b[p] * n_in + i) * N + start;
                        for (idx b = 0; b < n; ++b) da[b] += g[b] * e2[b] * fb[b];
                        for (idx b = 0; b < n; ++b) db[b] += g[b] * e2[b] * fa[b];
                        if (S) {
                            REAL *ds = dS + (p * n_in + i) * N + start;
                            for (idx b = 0; b < n; ++b) ds[b] += g[b] * e1[b];
                        }
                    }
                }
                if (dh)
                    for (idx b = 0; b < n; ++b) dx[b] += g0[b] * e1[b] + g1[b] * e2[b] + g2[b] * e3[b];
                /* dE_d/dQ[p] = p!/(p-d)! xi**(p-d); dE_d/dQ[k+1] = silu^(d): scattered into each point's cell */
                for (idx b = 0; b < n; ++b) {
                    REAL x = xi[b], pw0 = 1, pw1 = 0, pw2 = 0; /* xi**p, xi**(p-1), xi**(p-2) */
                    REAL *q = dQi + cell[b] * cell_size + o;
                    for (idx p = 0; p <= k; ++p) {
                        q[p * n_out] += g0[b] * pw0 + g1[b] * (REAL)p * pw1 + g2[b] * (REAL)(p * (p - 1)) * pw2;
                        pw2 = pw1;
                        pw1 = pw0;
                        pw0 *= x;
                    }
                    q[(k + 1) * n_out] += g0[b] * s0[b] + g1[b] * s1[b] + g2[b] * s2[b];
                }
            }
        }
    }
}

#define MIN_POINTS_PER_THREAD 1024

static idx threads_for(idx n_points, idx n_threads) {
    idx most = n_points / MIN_POINTS_PER_THREAD;
    idx t = n_threads < most ? n_threads : most;
    return t > 1 ? t : 1;
}

void layer_jet_forward(idx n_points, idx n_in, idx n_out, idx k, idx n_cells, idx n_dim, idx n_pairs,
                       const idx *pair_a, const idx *pair_b, const REAL *lo, const REAL *step, const REAL *knots,
                       const REAL *h, const REAL *sg, const REAL *F, const REAL *S, const REAL *Q,
                       REAL *value, REAL *first, REAL *second, idx n_threads) {
    idx T = threads_for(n_points, n_threads);
#ifdef _OPENMP
#pragma omp parallel for num_threads(T) schedule(static)
#endif
    for (idx j = 0; j < T; ++j)
        forward_range(n_points, n_in, n_out, k, n_cells, n_dim, n_pairs, pair_a, pair_b, lo, step, knots, h, sg, F, S, Q,
                      value, first, second, n_points * j / T, n_points * (j + 1) / T);
}

/* Gradients of a loss, given its gradients gv, gF, gS (each may be NULL: zero) of the outputs.
 * dQ (n_threads buffers) is accumulated into; dh, dF and dS (the input jet's gradients) are
 * written when dh is not NULL (dS only when S is not NULL). */
void layer_jet_backward(idx n_points, idx n_in, idx n_out, idx k, idx n_cells, idx n_dim, idx n_pairs,
                        const idx *pair_a, const idx *pair_b, const REAL *lo, const REAL *step, const REAL *knots,
                        const REAL *h, const REAL *sg, const REAL *F, const REAL *S, const REAL *Q,
                        const REAL *gv, const REAL *gF, const REAL *gS,
                        REAL *dQ, REAL *dh, REAL *dF, REAL *dS, idx n_threads) {
    idx T = threads_for(n_points, n_threads), q_size = n_in * (n_cells + 1) * (k + 2) * n_out;
#ifdef _OPENMP
#pragma omp parallel for num_threads(T) schedule(static)
#endif
    for (idx j = 0; j < T; ++j)
        backward_range(n_points, n_in, n_out, k, n_cells, n_dim, n_pairs, pair_a, pair_b, lo, step, knots, h, sg, F, S, Q,
                       gv, gF, gS, dQ + j * q_size, dh, dF, dS, n_points * j / T, n_points * (j + 1) / T);
}
