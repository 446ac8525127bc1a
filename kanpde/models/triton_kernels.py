"""Triton kernels of a B-spline KAN layer's jet, forward and backward (launched by :mod:`.triton_jet`).

The same computation as the CPU kernel (``layer_jet.c``; its header states the formulas), laid out for
a GPU: one program per block of ``BLOCK`` points; inside it, a loop over the layer's inputs, and tiles
over the outputs (``OUT_P``), the derivative directions (``DIM_P``) and the carried pairs (``PAIR_P``),
each padded to a power of two and masked.  A point touches only its own cell's k + 2 coefficients per
edge, so the cost does not grow with the grid size.  The backward scatters each point's share of the
coefficient gradient into its cell with atomic adds.

Layouts (contiguous, batch last): h, sg (in, N) the inputs and their sigmoid; F (D, in, N); S (P, in, N);
Q (in, C + 1, k + 2, out) with C = G + 2k cells; value (out, N); first (D, out, N); second (P, out, N).
``left`` (in,) is each uniform grid's first padded knot, lo - k·step, computed by torch so that a point
on a knot lands in the cell torch picks.  Free knots (in, C + 1) are searched by binary lifting
(``POW`` the largest power of two <= C): the last knot t_c <= x, as ``torch.searchsorted`` finds it.
"""
import triton
import triton.language as tl


@triton.jit
def _locate(h, sg, left, step, knots, i, b, live, N, K: tl.constexpr, N_CELLS: tl.constexpr, FREE: tl.constexpr,
            POW: tl.constexpr, LOG: tl.constexpr):
    """Cell, offset xi from its left knot, and silu's first three derivatives of the block's points on input i."""
    x = tl.load(h + i * N + b, mask=live, other=0.0)
    g = tl.load(sg + i * N + b, mask=live, other=0.5)
    if FREE:
        row = knots + i * (N_CELLS + 1)
        inside = (x >= tl.load(row)) & (x < tl.load(row + N_CELLS))
        a = tl.zeros_like(b)
        for s in tl.static_range(LOG + 1):
            cand = a + (POW >> s)
            ok = cand < N_CELLS
            a = tl.where(ok & (tl.load(row + cand, mask=ok & live, other=0.0) <= x), cand, a)
        cell = tl.where(inside, a, N_CELLS)
        xi = tl.where(inside, x - tl.load(row + a, mask=live, other=0.0), 0.0)
    else:
        st = tl.load(step + i)
        u = (x - tl.load(left + i)) / st
        inside = (u >= 0) & (u < N_CELLS)
        uc = tl.where(inside, u, 0.0)
        c = uc.to(tl.int32)  # uc >= 0: truncation is the floor
        cell = tl.where(inside, c, N_CELLS)
        xi = (uc - c.to(uc.dtype)) * st
    ds = g * (1 - g)
    s0 = x * g
    s1 = g + x * ds
    s2 = ds * (2 + x * (1 - 2 * g))
    s3 = ds * (3 * (1 - 2 * g) + x * (1 - 6 * g + 6 * g * g))
    return cell, xi, s0, s1, s2, s3


@triton.jit
def _edges(Q, i, cell, xi, s0, s1, s2, s3, o, mask, N_OUT: tl.constexpr, K: tl.constexpr, N_CELLS: tl.constexpr,
           THIRD: tl.constexpr):
    """Every edge's value and derivatives e_0..e_3 (BLOCK, OUT_P) at the block's points on input i: the
    cell's coefficients gathered, Horner's rule for all derivatives at once, silu added."""
    base = Q + ((i * (N_CELLS + 1) + cell) * (K + 2))[:, None] * N_OUT + o[None, :]
    x = xi[:, None]
    e0 = tl.load(base + K * N_OUT, mask=mask, other=0.0)
    e1 = tl.zeros_like(e0)
    e2 = tl.zeros_like(e0)
    e3 = tl.zeros_like(e0)
    for r in tl.static_range(K):
        q = tl.load(base + (K - 1 - r) * N_OUT, mask=mask, other=0.0)
        if THIRD:
            e3 = e3 * x + e2
        e2 = e2 * x + e1
        e1 = e1 * x + e0
        e0 = e0 * x + q
    w = tl.load(base + (K + 1) * N_OUT, mask=mask, other=0.0)
    e0 = e0 + w * s0[:, None]
    e1 = e1 + w * s1[:, None]
    e2 = 2 * e2 + w * s2[:, None]
    e3 = 6 * e3 + w * s3[:, None]
    return e0, e1, e2, e3


@triton.jit
def _block(pair_a, pair_b, N, N_OUT: tl.constexpr, N_DIM: tl.constexpr, N_PAIRS: tl.constexpr, OUT_P: tl.constexpr,
           DIM_P: tl.constexpr, PAIR_P: tl.constexpr, BLOCK: tl.constexpr):
    """This program's points b and their mask; the output, direction and pair ranges with their masks; the pairs."""
    b = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    live = b < N
    o = tl.arange(0, OUT_P)
    d = tl.arange(0, DIM_P)
    p = tl.arange(0, PAIR_P)
    m_o = live[:, None] & (o < N_OUT)[None, :]
    m_d = live[:, None] & (d < N_DIM)[None, :]
    m_p = live[:, None] & (p < N_PAIRS)[None, :]
    pa = tl.load(pair_a + p, mask=p < N_PAIRS, other=0)
    pb = tl.load(pair_b + p, mask=p < N_PAIRS, other=0)
    return b, live, o, d, p, m_o, m_d, m_p, pa, pb


@triton.jit
def layer_jet_forward(h, sg, F, S, Q, left, step, knots, pair_a, pair_b, value, first, second, N,
                      N_IN: tl.constexpr, N_OUT: tl.constexpr, K: tl.constexpr, N_CELLS: tl.constexpr,
                      N_DIM: tl.constexpr, N_PAIRS: tl.constexpr, HAS_S: tl.constexpr, FREE: tl.constexpr,
                      POW: tl.constexpr, LOG: tl.constexpr, OUT_P: tl.constexpr, DIM_P: tl.constexpr,
                      PAIR_P: tl.constexpr, BLOCK: tl.constexpr):
    b, live, o, d, p, m_o, m_d, m_p, pa, pb = _block(pair_a, pair_b, N, N_OUT, N_DIM, N_PAIRS, OUT_P, DIM_P, PAIR_P, BLOCK)
    acc_v = tl.zeros([BLOCK, OUT_P], dtype=value.dtype.element_ty)
    acc_f = tl.zeros([BLOCK, DIM_P, OUT_P], dtype=value.dtype.element_ty)
    acc_s = tl.zeros([BLOCK, PAIR_P, OUT_P], dtype=value.dtype.element_ty)
    for i in range(N_IN):
        cell, xi, s0, s1, s2, s3 = _locate(h, sg, left, step, knots, i, b, live, N, K, N_CELLS, FREE, POW, LOG)
        e0, e1, e2, e3 = _edges(Q, i, cell, xi, s0, s1, s2, s3, o, m_o, N_OUT, K, N_CELLS, False)
        acc_v += e0
        if N_DIM > 0:
            f = tl.load(F + (d[None, :] * N_IN + i) * N + b[:, None], mask=m_d, other=0.0)
            acc_f += f[:, :, None] * e1[:, None, :]
        if N_PAIRS > 0:
            fa = tl.load(F + (pa[None, :] * N_IN + i) * N + b[:, None], mask=m_p, other=0.0)
            fb = tl.load(F + (pb[None, :] * N_IN + i) * N + b[:, None], mask=m_p, other=0.0)
            acc_s += (fa * fb)[:, :, None] * e2[:, None, :]
            if HAS_S:
                sp = tl.load(S + (p[None, :] * N_IN + i) * N + b[:, None], mask=m_p, other=0.0)
                acc_s += sp[:, :, None] * e1[:, None, :]
    tl.store(value + o[None, :] * N + b[:, None], acc_v, mask=m_o)
    if N_DIM > 0:
        tl.store(first + (d[None, :, None] * N_OUT + o[None, None, :]) * N + b[:, None, None], acc_f,
                 mask=m_d[:, :, None] & (o < N_OUT)[None, None, :])
    if N_PAIRS > 0:
        tl.store(second + (p[None, :, None] * N_OUT + o[None, None, :]) * N + b[:, None, None], acc_s,
                 mask=m_p[:, :, None] & (o < N_OUT)[None, None, :])


@triton.jit
def layer_jet_backward(h, sg, F, S, Q, left, step, knots, pair_a, pair_b, g_value, g_first, g_second,
                       dQ, dh, dF, dS, N,
                       N_IN: tl.constexpr, N_OUT: tl.constexpr, K: tl.constexpr, N_CELLS: tl.constexpr,
                       N_DIM: tl.constexpr, N_PAIRS: tl.constexpr, HAS_S: tl.constexpr, FREE: tl.constexpr,
                       POW: tl.constexpr, LOG: tl.constexpr, OUT_P: tl.constexpr, DIM_P: tl.constexpr,
                       PAIR_P: tl.constexpr, BLOCK: tl.constexpr, HAS_GV: tl.constexpr, HAS_GF: tl.constexpr,
                       HAS_GS: tl.constexpr, NEED_INPUT: tl.constexpr):
    b, live, o, d, p, m_o, m_d, m_p, pa, pb = _block(pair_a, pair_b, N, N_OUT, N_DIM, N_PAIRS, OUT_P, DIM_P, PAIR_P, BLOCK)
    m_do = m_d[:, :, None] & (o < N_OUT)[None, None, :]
    m_po = m_p[:, :, None] & (o < N_OUT)[None, None, :]
    # the loss's gradients of the layer's outputs, the same for every input
    g0 = tl.zeros([BLOCK, OUT_P], dtype=dQ.dtype.element_ty)
    if HAS_GV:
        g0 += tl.load(g_value + o[None, :] * N + b[:, None], mask=m_o, other=0.0)
    gf = tl.zeros([BLOCK, DIM_P, OUT_P], dtype=dQ.dtype.element_ty)
    if HAS_GF:
        gf += tl.load(g_first + (d[None, :, None] * N_OUT + o[None, None, :]) * N + b[:, None, None], mask=m_do, other=0.0)
    gs = tl.zeros([BLOCK, PAIR_P, OUT_P], dtype=dQ.dtype.element_ty)
    if HAS_GS:
        gs += tl.load(g_second + (p[None, :, None] * N_OUT + o[None, None, :]) * N + b[:, None, None], mask=m_po, other=0.0)
    for i in range(N_IN):
        cell, xi, s0, s1, s2, s3 = _locate(h, sg, left, step, knots, i, b, live, N, K, N_CELLS, FREE, POW, LOG)
        e0, e1, e2, e3 = _edges(Q, i, cell, xi, s0, s1, s2, s3, o, m_o, N_OUT, K, N_CELLS, NEED_INPUT)
        # the loss's gradient with respect to this input's edges' E0, E1, E2
        f = tl.load(F + (d[None, :] * N_IN + i) * N + b[:, None], mask=m_d, other=0.0)
        g1 = tl.sum(gf * f[:, :, None], axis=1)
        g2 = tl.zeros_like(g1)
        fa = tl.zeros([BLOCK, PAIR_P], dtype=dQ.dtype.element_ty)
        fb = tl.zeros([BLOCK, PAIR_P], dtype=dQ.dtype.element_ty)
        if N_PAIRS > 0:
            fa += tl.load(F + (pa[None, :] * N_IN + i) * N + b[:, None], mask=m_p, other=0.0)
            fb += tl.load(F + (pb[None, :] * N_IN + i) * N + b[:, None], mask=m_p, other=0.0)
            g2 += tl.sum(gs * (fa * fb)[:, :, None], axis=1)
            if HAS_S:
                sp = tl.load(S + (p[None, :] * N_IN + i) * N + b[:, None], mask=m_p, other=0.0)
                g1 += tl.sum(gs * sp[:, :, None], axis=1)
        if NEED_INPUT:  # terms of absent output gradients are left out, not multiplied by 0 (a NaN edge stays out)
            tl.store(dh + i * N + b, tl.sum(g0 * e1 + g1 * e2 + g2 * e3, axis=1), mask=live)
            df = tl.zeros([BLOCK, DIM_P], dtype=dQ.dtype.element_ty)
            if HAS_GF:
                df += tl.sum(gf * e1[:, None, :], axis=2)
            if N_PAIRS > 0:
                ds = tl.zeros([BLOCK, PAIR_P], dtype=dQ.dtype.element_ty)
                if HAS_GS:
                    w = tl.sum(gs * e2[:, None, :], axis=2)  # (BLOCK, PAIR_P)
                    on_a = (pa[:, None] == d[None, :]).to(w.dtype)  # (PAIR_P, DIM_P): pair p's first direction is d
                    on_b = (pb[:, None] == d[None, :]).to(w.dtype)
                    df += tl.sum(w[:, :, None] * (on_a[None, :, :] * fb[:, :, None] + on_b[None, :, :] * fa[:, :, None]), axis=1)
                    ds += tl.sum(gs * e1[:, None, :], axis=2)
                if HAS_S:
                    tl.store(dS + (p[None, :] * N_IN + i) * N + b[:, None], ds, mask=m_p)
            if N_DIM > 0:
                tl.store(dF + (d[None, :] * N_IN + i) * N + b[:, None], df, mask=m_d)
        # dE_d/dQ[q] = q!/(q-d)! xi**(q-d), dE_d/dQ[k+1] = silu^(d): each point's share into its cell
        base = dQ + ((i * (N_CELLS + 1) + cell) * (K + 2))[:, None] * N_OUT + o[None, :]
        x = xi[:, None]
        pw0 = tl.full([BLOCK, 1], 1.0, dtype=dQ.dtype.element_ty)
        pw1 = tl.zeros_like(pw0)
        pw2 = tl.zeros_like(pw0)
        for q in tl.static_range(K + 1):
            tl.atomic_add(base + q * N_OUT, g0 * pw0 + g1 * (q * pw1) + g2 * ((q * (q - 1)) * pw2), mask=m_o)
            pw2 = pw1
            pw1 = pw0
            pw0 = pw0 * x
        tl.atomic_add(base + (K + 1) * N_OUT, g0 * s0[:, None] + g1 * s1[:, None] + g2 * s2[:, None], mask=m_o)
