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


NEAR, FAR = 0.01, 1e10  # camera-space z a Gaussian must lie within (core.render.cpu's bounds)
EPS2D = 0.3  # the anti-aliasing low-pass added to every 2D covariance
SH = (0.28209479177387814, 0.48860251190292, 1.0925484305920792, 0.31539156525252005, 0.5462742152960396,
      0.5900435899266435, 2.890611442640554, 0.4570457994644658, 0.3731763325901154, 1.445305721320277)


@njit(cache=True, nogil=True)
def project_forward(means, quats, scales, opac, sh, view, centre, fx, fy, cx, cy, width, height):
    """The projection, colours and tile ranges of ``core.render.cpu`` for a forward pass only (no autograd), in one
    pass over the Gaussians: the same rules as ``project``, ``sh_to_rgb``, ``_conics`` and ``_tile_lists``.

    means [N, 3], quats [N, 4], scales [N, 3], opac [N], sh [N, K, 3] (K = 0: the caller sets the colours),
    view [4, 4], centre [3]. Returns xy [N, 2], conic [N, 3], feat [N, 4] (rgb, depth), rects [N, 4] int64 (tile
    ranges x0, x1, y0, y1) and order [V] int64: the Gaussians that can reach 1/255 somewhere in the image, front
    to back.
    """
    n = means.shape[0]
    k_sh = sh.shape[1]
    tiles_x = (width + TILE - 1) // TILE
    tiles_y = (height + TILE - 1) // TILE
    lim_x_pos = (width - cx) / fx + 0.3 * (0.5 * width / fx)
    lim_x_neg = cx / fx + 0.3 * (0.5 * width / fx)
    lim_y_pos = (height - cy) / fy + 0.3 * (0.5 * height / fy)
    lim_y_neg = cy / fy + 0.3 * (0.5 * height / fy)
    xy = np.zeros((n, 2))
    conic = np.zeros((n, 3))
    feat = np.zeros((n, N_FEAT))
    rects = np.zeros((n, 4), dtype=np.int64)
    depth = np.zeros(n)
    bright = np.zeros(n, dtype=np.bool_)
    r = np.zeros((3, 3))
    m = np.zeros((3, 3))
    for i in range(n):
        px, py, pz = means[i, 0], means[i, 1], means[i, 2]
        x = view[0, 0] * px + view[0, 1] * py + view[0, 2] * pz + view[0, 3]
        y = view[1, 0] * px + view[1, 1] * py + view[1, 2] * pz + view[1, 3]
        z = view[2, 0] * px + view[2, 1] * py + view[2, 2] * pz + view[2, 3]
        in_front = z >= NEAR and z <= FAR
        if not in_front:
            z = 1.0
        depth[i] = z
        # rotation of the normalised quaternion (w, x, y, z), times the scales, in camera space
        qn = max(np.sqrt(quats[i, 0] ** 2 + quats[i, 1] ** 2 + quats[i, 2] ** 2 + quats[i, 3] ** 2), 1e-12)
        w, a, b, c = quats[i, 0] / qn, quats[i, 1] / qn, quats[i, 2] / qn, quats[i, 3] / qn
        r[0, 0], r[0, 1], r[0, 2] = 1 - 2 * (b * b + c * c), 2 * (a * b - w * c), 2 * (a * c + w * b)
        r[1, 0], r[1, 1], r[1, 2] = 2 * (a * b + w * c), 1 - 2 * (a * a + c * c), 2 * (b * c - w * a)
        r[2, 0], r[2, 1], r[2, 2] = 2 * (a * c - w * b), 2 * (b * c + w * a), 1 - 2 * (a * a + b * b)
        for u in range(3):
            for v in range(3):
                m[u, v] = (view[u, 0] * r[0, v] + view[u, 1] * r[1, v] + view[u, 2] * r[2, v]) * scales[i, v]
        tx = z * min(max(x / z, -lim_x_neg), lim_x_pos)
        ty = z * min(max(y / z, -lim_y_neg), lim_y_pos)
        j00, j02 = fx / z, -fx * tx / (z * z)
        j11, j12 = fy / z, -fy * ty / (z * z)
        # J m: the 2D axes [2, 3]; cov2d = (J m)(J m)^T + eps
        a0, a1, a2 = j00 * m[0, 0] + j02 * m[2, 0], j00 * m[0, 1] + j02 * m[2, 1], j00 * m[0, 2] + j02 * m[2, 2]
        b0, b1, b2 = j11 * m[1, 0] + j12 * m[2, 0], j11 * m[1, 1] + j12 * m[2, 1], j11 * m[1, 2] + j12 * m[2, 2]
        ca = a0 * a0 + a1 * a1 + a2 * a2 + EPS2D
        cb = a0 * b0 + a1 * b1 + a2 * b2
        cc = b0 * b0 + b1 * b1 + b2 * b2 + EPS2D
        mx, my = fx * x / z + cx, fy * y / z + cy
        xy[i, 0], xy[i, 1] = mx, my
        mid = 0.5 * (ca + cc)
        radius = np.ceil(3.0 * np.sqrt(mid + np.sqrt(max(mid * mid - (ca * cc - cb * cb), 0.0))))
        on_screen = mx + radius > 0 and mx - radius < width and my + radius > 0 and my - radius < height
        finite = np.isfinite(ca) and np.isfinite(cb) and np.isfinite(cc)
        if not (in_front and on_screen and finite):
            conic[i, 0], conic[i, 2] = 1.0, 1.0
            continue
        det = ca * cc - cb * cb
        conic[i, 0], conic[i, 1], conic[i, 2] = cc / det, -cb / det, ca / det
        bright[i] = opac[i] >= ALPHA_MIN
        # the opacity-aware box of the tiles it can reach
        reach = np.sqrt(2.0 * np.log(max(opac[i], ALPHA_MIN) * 255.0))
        ext_x = reach * np.sqrt(ca) * (1 + 1e-6) + 1e-3
        ext_y = reach * np.sqrt(cc) * (1 + 1e-6) + 1e-3
        rects[i, 0] = int(min(max(np.floor((mx - ext_x) / TILE), 0.0), tiles_x))
        rects[i, 1] = int(min(max(np.floor((mx + ext_x) / TILE) + 1, 0.0), tiles_x))
        rects[i, 2] = int(min(max(np.floor((my - ext_y) / TILE), 0.0), tiles_y))
        rects[i, 3] = int(min(max(np.floor((my + ext_y) / TILE) + 1, 0.0), tiles_y))
        # colour: the real SH basis along the unit direction from the camera centre, + 0.5, clamped at 0
        dx, dy, dz = px - centre[0], py - centre[1], pz - centre[2]
        dn = max(np.sqrt(dx * dx + dy * dy + dz * dz), 1e-12)
        dx, dy, dz = dx / dn, dy / dn, dz / dn
        xx, yy, zz = dx * dx, dy * dy, dz * dz
        for ch in range(3 if k_sh > 0 else 0):
            s = SH[0] * sh[i, 0, ch]
            if k_sh > 1:
                s += -SH[1] * dy * sh[i, 1, ch] + SH[1] * dz * sh[i, 2, ch] - SH[1] * dx * sh[i, 3, ch]
            if k_sh > 4:
                s += (SH[2] * dx * dy * sh[i, 4, ch] - SH[2] * dy * dz * sh[i, 5, ch]
                      + SH[3] * (2 * zz - xx - yy) * sh[i, 6, ch] - SH[2] * dx * dz * sh[i, 7, ch]
                      + SH[4] * (xx - yy) * sh[i, 8, ch])
            if k_sh > 9:
                s += (-SH[5] * dy * (3 * xx - yy) * sh[i, 9, ch] + SH[6] * dx * dy * dz * sh[i, 10, ch]
                      - SH[7] * dy * (4 * zz - xx - yy) * sh[i, 11, ch]
                      + SH[8] * dz * (2 * zz - 3 * xx - 3 * yy) * sh[i, 12, ch]
                      - SH[7] * dx * (4 * zz - xx - yy) * sh[i, 13, ch] + SH[9] * dz * (xx - yy) * sh[i, 14, ch]
                      - SH[5] * dx * (xx - 3 * yy) * sh[i, 15, ch])
            feat[i, ch] = max(s + 0.5, 0.0)
        feat[i, 3] = z
    ids = np.flatnonzero(bright)
    order = ids[np.argsort(depth[ids], kind="mergesort")]  # [V] stable: ties keep their index order
    return xy, conic, feat, rects, order


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
