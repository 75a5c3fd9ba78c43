"""numba kernels of the CPU tile rasterizer: binning, front-to-back compositing and its backward.

Every Gaussian carries four features: red, green, blue and camera-space depth (the depth image is the
fourth channel, composited with a zero background). Kernels run in float64 internally whatever the
storage dtype, parallel over 16x16 tiles (one tile per task, so writes never race). The forward pass is compiled
with fastmath (its inputs are finite: culled Gaussians get finite stand-ins, and no bound is infinite), which lets
the compiler reorder its arithmetic: a fifth faster on the avatar's frames, the same images.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

TILE = 16
ALPHA_MIN = 1.0 / 255.0  # a Gaussian fainter than this at a pixel is skipped there
ALPHA_MAX = 0.999  # alpha is clamped here so that 1 - alpha never vanishes
T_MIN = 1e-4  # compositing stops before transmittance would fall to this
N_FEAT = 4  # r, g, b, depth
N_GRAD = 6 + N_FEAT  # d mean2d (2), d conic (3), d opacity (1), d features (4)


@njit(cache=True, nogil=True)
def bin_tiles(order, rects, tiles_x, n_tiles):
    """Per-tile lists of Gaussian ids, each sorted front to back.

    order: [V] int64 ids of the visible Gaussians sorted by depth; rects: [N, 4] int64 tile ranges
    (x0, x1, y0, y1), end exclusive. Returns offsets [n_tiles + 1] int64 and ids [M] int32: tile t's
    list is ids[offsets[t]:offsets[t + 1]]. A counting sort, so the depth order survives.
    """
    offsets = np.zeros(n_tiles + 1, dtype=np.int64)  # [T + 1]
    for i in order:
        for ty in range(rects[i, 2], rects[i, 3]):
            for tx in range(rects[i, 0], rects[i, 1]):
                offsets[ty * tiles_x + tx + 1] += 1
    for t in range(n_tiles):
        offsets[t + 1] += offsets[t]
    ids = np.empty(offsets[n_tiles], dtype=np.int32)  # [M]
    fill = offsets[:n_tiles].copy()  # [T]
    for i in order:
        for ty in range(rects[i, 2], rects[i, 3]):
            for tx in range(rects[i, 0], rects[i, 1]):
                t = ty * tiles_x + tx
                ids[fill[t]] = i
                fill[t] += 1
    return offsets, ids


@njit(cache=True, nogil=True)
def _gather(xy, conic, opac, feat, ids, start, end, x0, y0):
    """One tile's list as contiguous rows [n, 15] float64.

    Per entry: x, y, a, b, c, opacity, r, g, b, depth, sigma_max, then the Gaussian's pixel box
    in tile coordinates (x from, x to, y from, y to; clipped to the tile). sigma_max bounds the
    sigma at which alpha can still reach 1/255, and the box bounds {sigma <= sigma_max}, both
    with a margin: a pixel outside the box, or past sigma_max, would be skipped by the exact test
    anyway, so the kernels evaluate only the pixels the Gaussian can touch.
    """
    g = np.empty((end - start, 15))  # [n, 15]
    for k in range(end - start):
        i = ids[start + k]
        a, b, c = conic[i, 0], conic[i, 1], conic[i, 2]
        g[k, 0] = xy[i, 0]
        g[k, 1] = xy[i, 1]
        g[k, 2] = a
        g[k, 3] = b
        g[k, 4] = c
        g[k, 5] = opac[i]
        for j in range(N_FEAT):
            g[k, 6 + j] = feat[i, j]
        s_max = np.log(opac[i] / ALPHA_MIN) * (1 + 1e-9) + 1e-9
        g[k, 10] = s_max
        det = a * c - b * b
        ext_x = ext_y = 1e9  # an underflowed conic: the whole tile (finite: the forward pass is fastmath)
        if det > 0.0:
            ext_x = np.sqrt(max(2.0 * s_max * c / det, 0.0)) * (1 + 1e-6) + 1e-3
            ext_y = np.sqrt(max(2.0 * s_max * a / det, 0.0)) * (1 + 1e-6) + 1e-3
        # pixel i is inside when |i + 0.5 - x| <= ext
        g[k, 11] = min(max(np.ceil(xy[i, 0] - ext_x - 0.5) - x0, 0.0), TILE)
        g[k, 12] = min(max(np.floor(xy[i, 0] + ext_x - 0.5) + 1.0 - x0, 0.0), TILE)
        g[k, 13] = min(max(np.ceil(xy[i, 1] - ext_y - 0.5) - y0, 0.0), TILE)
        g[k, 14] = min(max(np.floor(xy[i, 1] + ext_y - 0.5) + 1.0 - y0, 0.0), TILE)
    return g


@njit(inline="always")
def _row_span(mx, ca, cb, cc, s_max, dy, x0, lo, hi):
    """Tile columns [from, to) of one row where sigma <= s_max can hold, within [lo, hi).

    Solves 0.5 a dx^2 + b dy dx + 0.5 c dy^2 = s_max for dx = mx - pixel centre, with a margin of
    1e-3 px: columns outside the span would be skipped by the exact test anyway.
    """
    if not ca > 0.0:  # underflowed conic (an enormous Gaussian): the whole span
        return lo, hi
    disc = (cb * cb - ca * cc) * dy * dy + 2.0 * ca * s_max
    if disc < 0.0:
        return 0, 0
    root = np.sqrt(disc)
    left = mx - (root - cb * dy) / ca - x0 - 0.5  # smallest centre offset, px
    right = mx + (root + cb * dy) / ca - x0 - 0.5
    return max(lo, int(np.ceil(left - 1e-3))), min(hi, int(np.floor(right + 1e-3)) + 1)


@njit(parallel=True, cache=True, fastmath=True, nogil=True)
def composite_forward(xy, conic, opac, feat, bg, offsets, ids, width, height, img, t_final, n_used):
    """Front-to-back compositing of every pixel over its tile's list.

    xy [N, 2], conic [N, 3] (a, b, c of the inverse 2D covariance), opac [N], feat [N, 4], bg [3].
    Writes img [H, W, 4] (rgb + background, accumulated depth), t_final [H, W] (transmittance left)
    and n_used [H, W] int32 (list entries walked up to and including the last one that contributed).
    Each tile walks its list once, Gaussian by Gaussian, touching only the pixels in its box.
    """
    tiles_x = (width + TILE - 1) // TILE
    for t in prange(offsets.shape[0] - 1):
        x0 = (t % tiles_x) * TILE
        y0 = (t // tiles_x) * TILE
        g = _gather(xy, conic, opac, feat, ids, offsets[t], offsets[t + 1], x0, y0)  # [n, 15]
        trans = np.ones(TILE * TILE)  # [256] per pixel of the tile, row major
        acc = np.zeros((TILE * TILE, N_FEAT))  # [256, 4]
        last = np.zeros(TILE * TILE, dtype=np.int32)  # [256]
        done = np.zeros(TILE * TILE, dtype=np.bool_)  # [256] stopped, or outside the image
        alive = 0
        for p in range(TILE * TILE):
            done[p] = x0 + p % TILE >= width or y0 + p // TILE >= height
            alive += not done[p]
        for k in range(g.shape[0]):
            if alive == 0:
                break
            mx, my, ca, cb, cc, o, s_max = g[k, 0], g[k, 1], g[k, 2], g[k, 3], g[k, 4], g[k, 5], g[k, 10]
            f0, f1, f2, f3 = g[k, 6], g[k, 7], g[k, 8], g[k, 9]
            for ly in range(int(g[k, 13]), int(g[k, 14])):
                dy = my - (y0 + ly + 0.5)
                lx0, lx1 = _row_span(mx, ca, cb, cc, s_max, dy, x0, int(g[k, 11]), int(g[k, 12]))
                for lx in range(lx0, lx1):
                    p = ly * TILE + lx
                    if done[p]:
                        continue
                    dx = mx - (x0 + lx + 0.5)
                    sigma = 0.5 * (ca * dx * dx + cc * dy * dy) + cb * dx * dy
                    if sigma < 0.0 or sigma > s_max:
                        continue
                    alpha = min(ALPHA_MAX, o * np.exp(-sigma))
                    if alpha < ALPHA_MIN:
                        continue
                    t_p = trans[p]
                    next_t = t_p * (1.0 - alpha)
                    if next_t <= T_MIN:
                        done[p] = True
                        alive -= 1
                        continue
                    w = alpha * t_p
                    acc[p, 0] += f0 * w
                    acc[p, 1] += f1 * w
                    acc[p, 2] += f2 * w
                    acc[p, 3] += f3 * w
                    trans[p] = next_t
                    last[p] = k + 1
        for p in range(TILE * TILE):
            py = y0 + p // TILE
            px = x0 + p % TILE
            if py < height and px < width:
                for j in range(3):
                    img[py, px, j] = acc[p, j] + trans[p] * bg[j]
                img[py, px, 3] = acc[p, 3]
                t_final[py, px] = trans[p]
                n_used[py, px] = last[p]


@njit(parallel=True, cache=True, nogil=True)
def composite_backward(
    xy, conic, opac, feat, bg, offsets, ids, width, height, t_final, n_used, v_img, v_alpha, v_entry
):
    """Gradients of one compositing pass, walking each pixel's list back to front (as 3DGS does).

    v_img [H, W, 4] and v_alpha [H, W] are dL/d(outputs); writes v_entry [M, 10]: per list entry,
    dL/d(x, y, a, b, c, opacity, r, g, b, depth). Entries belong to one tile, so tiles never race.
    """
    tiles_x = (width + TILE - 1) // TILE
    for t in prange(offsets.shape[0] - 1):
        start = offsets[t]
        x0 = (t % tiles_x) * TILE
        y0 = (t // tiles_x) * TILE
        g = _gather(xy, conic, opac, feat, ids, start, offsets[t + 1], x0, y0)  # [n, 15]
        trans = np.ones(TILE * TILE)  # [256] transmittance in front of the current Gaussian
        t_end = np.ones(TILE * TILE)  # [256]
        last = np.zeros(TILE * TILE, dtype=np.int32)  # [256]
        v_out = np.zeros((TILE * TILE, N_FEAT + 1))  # [256, 5] dL/d(r, g, b, depth, alpha)
        # colour behind the current Gaussian, normalised by the transmittance in front of it
        behind = np.zeros((TILE * TILE, N_FEAT))  # [256, 4]
        n_last = 0
        for p in range(TILE * TILE):
            py = y0 + p // TILE
            px = x0 + p % TILE
            if py < height and px < width:
                trans[p] = t_end[p] = t_final[py, px]
                last[p] = n_used[py, px]
                n_last = max(n_last, last[p])
                for j in range(N_FEAT):
                    v_out[p, j] = v_img[py, px, j]
                v_out[p, N_FEAT] = v_alpha[py, px]
                for j in range(3):
                    behind[p, j] = bg[j]
        for k in range(n_last - 1, -1, -1):
            mx, my, ca, cb, cc, o, s_max = g[k, 0], g[k, 1], g[k, 2], g[k, 3], g[k, 4], g[k, 5], g[k, 10]
            f0, f1, f2, f3 = g[k, 6], g[k, 7], g[k, 8], g[k, 9]
            v_x = v_y = v_a2 = v_b2 = v_c2 = v_o = v_f0 = v_f1 = v_f2 = v_f3 = 0.0
            for ly in range(int(g[k, 13]), int(g[k, 14])):
                dy = my - (y0 + ly + 0.5)
                lx0, lx1 = _row_span(mx, ca, cb, cc, s_max, dy, x0, int(g[k, 11]), int(g[k, 12]))
                for lx in range(lx0, lx1):
                    p = ly * TILE + lx
                    if k >= last[p]:
                        continue
                    dx = mx - (x0 + lx + 0.5)
                    sigma = 0.5 * (ca * dx * dx + cc * dy * dy) + cb * dx * dy
                    if sigma < 0.0 or sigma > s_max:
                        continue
                    vis = np.exp(-sigma)
                    raw = o * vis
                    alpha = min(ALPHA_MAX, raw)
                    if alpha < ALPHA_MIN:
                        continue
                    ra = 1.0 / (1.0 - alpha)
                    t_p = trans[p] * ra
                    trans[p] = t_p
                    w = alpha * t_p
                    g0, g1, g2, g3 = v_out[p, 0], v_out[p, 1], v_out[p, 2], v_out[p, 3]
                    b0, b1, b2, b3 = behind[p, 0], behind[p, 1], behind[p, 2], behind[p, 3]
                    v_f0 += g0 * w
                    v_f1 += g1 * w
                    v_f2 += g2 * w
                    v_f3 += g3 * w
                    v_al = t_p * (g0 * (f0 - b0) + g1 * (f1 - b1) + g2 * (f2 - b2) + g3 * (f3 - b3))
                    v_al += v_out[p, 4] * t_end[p] * ra
                    behind[p, 0] = alpha * f0 + (1.0 - alpha) * b0
                    behind[p, 1] = alpha * f1 + (1.0 - alpha) * b1
                    behind[p, 2] = alpha * f2 + (1.0 - alpha) * b2
                    behind[p, 3] = alpha * f3 + (1.0 - alpha) * b3
                    if raw <= ALPHA_MAX:
                        v_sigma = -v_al * alpha
                        v_x += v_sigma * (ca * dx + cb * dy)
                        v_y += v_sigma * (cb * dx + cc * dy)
                        v_a2 += v_sigma * 0.5 * dx * dx
                        v_b2 += v_sigma * dx * dy
                        v_c2 += v_sigma * 0.5 * dy * dy
                        v_o += v_al * vis
            v = v_entry[start + k]  # [10]
            v[0], v[1], v[2], v[3], v[4] = v_x, v_y, v_a2, v_b2, v_c2
            v[5], v[6], v[7], v[8], v[9] = v_o, v_f0, v_f1, v_f2, v_f3
        v_entry[start + n_last : offsets[t + 1]] = 0.0


@njit(cache=True, nogil=True)
def sum_entries(ids, v_entry, n):
    """Per-Gaussian sums [n, 10] of the per-entry gradients v_entry [M, 10]."""
    out = np.zeros((n, N_GRAD))  # [N, 10]
    for m in range(ids.shape[0]):
        i = ids[m]
        for j in range(N_GRAD):
            out[i, j] += v_entry[m, j]
    return out
