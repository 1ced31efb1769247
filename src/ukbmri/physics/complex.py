"""Complex-based fat-water separation with R2* and a B0 field map, swap-free over the image.

Model per voxel and echo ``n`` (``c_n`` the multi-peak fat phasor)::

    S_n = exp(i phi) (W + F c_n) exp((-R2* + i 2 pi psi) t_n)     (common phase, default)
    S_n = (W + F c_n) exp((-R2* + i 2 pi psi) t_n)                 (W, F complex)

The common-phase model (water and fat share the phase ``phi`` at t = 0; W, F real) has
fewer unknowns, which sharpens the field estimate with few echoes and, because W and F
are signed real numbers, leaves no noise bias in the fat fraction near 0 % and 100 %.

Algorithm (all voxels at once, torch on CPU or CUDA, then scipy for the spatial step):

1. **VARPRO grid search.** For each candidate ``(psi, R2*)`` on a grid (psi over one
   period ``1 / dTE`` in ~4 Hz steps; R2* at a few values) the amplitudes are linear and
   are projected out in closed form, so the residual of every voxel at every grid point is
   a matrix product. The minimum over R2* gives a residual curve over psi per voxel.
2. **Candidates.** The (up to three) lowest local minima of each curve, refined by
   parabolic interpolation, with their residuals.
3. **Spatial selection** (:mod:`ukbmri.physics.spatial`): voxels whose best candidates
   agree form regions; each region is kept or flipped to its second candidate so as to
   minimise residual energy plus disagreement with neighbouring regions (weighted by
   signal, so the field may jump across low-signal gaps), then a small-scale clean-up and
   least-squares unwrapping of the field.
4. **Refinement.** Batched Levenberg-Marquardt on all parameters from the chosen
   candidate, with the field kept within a fraction of a period of the chosen minimum so
   that no voxel can fall back into the swapped solution.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch

from ukbmri.errors import FitInputError
from ukbmri.physics._lm import levenberg_marquardt
from ukbmri.physics.multiecho import FatWaterMaps, MultiEcho, check_mask, ff_from_amplitudes, resolve_device
from ukbmri.physics.spatial import select_candidates, unwrap_to_smooth
from ukbmri.physics.spectrum import SIX_PEAK, FatSpectrum, fat_phasor

__all__ = ["fit_complex", "field_period_hz", "search_candidates", "SearchGrid"]

log = logging.getLogger(__name__)

#: R2* values (1/s) of the grid search; the refinement is continuous.
SEARCH_R2 = (0.0, 30.0, 60.0, 120.0, 250.0, 500.0)
#: Default voxel size when the data carry none (mm): typical abdominal in-plane, thicker slices.
DEFAULT_SPACING = (1.5, 1.5, 5.0)
#: voxels per block of the grid search on the CPU (its work arrays then stay in the cache)
SEARCH_BLOCK_CPU = 256


def field_period_hz(te_s: np.ndarray) -> float:
    """``1 / dTE`` (median echo spacing): the period of the residual in the field."""
    d = np.diff(np.asarray(te_s, dtype=float))
    return float(1.0 / np.median(d))


def _bases(te: torch.Tensor, c: torch.Tensor, psi: torch.Tensor, r2: torch.Tensor, common_phase: bool) -> torch.Tensor:
    """Orthonormal bases of the model's column space at each (psi, R2*) grid point."""
    ph = torch.exp((-r2[None, :, None] + 2j * math.pi * psi[:, None, None]) * te[None, None, :])  # (K, J, n)
    b = torch.stack([ph, ph * c], dim=-1)  # (K, J, n, 2) complex
    if common_phase:
        b = torch.cat([b.real, b.imag], dim=2)  # (K, J, 2n, 2) real
    q, _ = torch.linalg.qr(b)
    return q


class SearchGrid:
    """The grid search of :func:`search_candidates`, its bases built once for many voxel blocks.

    Columns of the projection matrix are laid out ``(basis vector, R2*, psi)`` so that the
    per-grid-point projections are contiguous blocks (no reductions over tiny trailing
    dimensions); the arithmetic is that of the per-block search, value for value.
    """

    def __init__(self, te: torch.Tensor, c: torch.Tensor, period: float, *, common_phase: bool = True,
                 r2_grid: tuple[float, ...] = SEARCH_R2, psi_step_hz: float = 4.0) -> None:
        k = int(min(max(math.ceil(period / psi_step_hz), 32), 512))
        dev = te.device
        self.k, self.period, self.common = k, period, common_phase
        self.psi = -period / 2 + period * torch.arange(k, dtype=torch.float64, device=dev) / k
        self.r2 = torch.tensor(r2_grid, dtype=torch.float64, device=dev)
        self.n = te.numel()
        q = _bases(te, c, self.psi, self.r2, common_phase)  # (K, J, 2n | n, 2)
        if common_phase:
            self.w = q.to(torch.float32).permute(2, 3, 1, 0).reshape(2 * self.n, -1).contiguous()  # (2n, 2 J K)
        else:
            self.w = q.to(torch.complex64).conj().permute(2, 3, 1, 0).reshape(self.n, -1).contiguous()
        self._work: dict[str, torch.Tensor] = {}  # work arrays reused from block to block

    def _buffer(self, name: str, rows: int, cols: int) -> torch.Tensor:
        b = self._work.get(name)
        if b is None or b.shape[0] < rows:
            b = self._work[name] = torch.empty((rows, cols), dtype=torch.float32, device=self.w.device)
        return b[:rows]

    def __call__(self, s: torch.Tensor, n_cand: int = 3) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Candidates of the voxels ``s`` ``(N, n)``: see :func:`search_candidates`."""
        return self.candidates(*self.curve(s), n_cand)

    def candidates(self, res: torch.Tensor, r2_idx: torch.Tensor, energy: torch.Tensor,
                   n_cand: int = 3) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Candidates from residual curves of :meth:`curve` (any number of voxels at once)."""
        return _local_minima(res, r2_idx, self.psi, self.r2, energy, self.period, n_cand)

    def curve(self, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Residual over psi (minimum over R2*) ``(N, K)`` float32, its R2* grid index and the energy."""
        k, nj = self.k, self.r2.numel()
        jk = nj * k
        energy = (s.abs() ** 2).sum(1)
        e32 = energy.to(torch.float32)
        if self.common:
            nb, buf = s.shape[0], self._buffer
            st = torch.cat([s.real, s.imag], dim=1).to(torch.float32)
            sp = torch.cat([s.imag, -s.real], dim=1).to(torch.float32)  # the signal times -i
            # (N, 2 J K): basis vector 0, then 1
            p = torch.matmul(st, self.w, out=buf("p", nb, 2 * jk))
            q = torch.matmul(sp, self.w, out=buf("q", nb, 2 * jk))
            p0, p1, q0, q1 = p[:, :jk], p[:, jk:], q[:, :jk], q[:, jk:]
            # the largest eigenvalue of [[pp, pq], [pq, q2]]: the projection at the best common phase
            t = buf("t", nb, jk)
            pp = torch.mul(p0, p0, out=buf("pp", nb, jk)).add_(torch.mul(p1, p1, out=t))
            q2 = torch.mul(q0, q0, out=buf("q2", nb, jk)).add_(torch.mul(q1, q1, out=t))
            pq = torch.mul(p0, q0, out=buf("pq", nb, jk)).add_(torch.mul(p1, q1, out=t))
            h = torch.sub(pp, q2, out=t).mul_(0.5)
            h = h.mul_(h).add_(pq.mul_(pq)).sqrt_()
            proj = pp.add_(q2).mul_(0.5).add_(h)
        else:
            z = s.to(torch.complex64) @ self.w  # (N, 2 J K)
            proj = z[:, :jk].abs() ** 2 + z[:, jk:].abs() ** 2
        res = proj.neg_().add_(e32[:, None]).clamp_min_(0.0).view(-1, nj, k)  # energy - proj, >= 0
        res, r2_idx = res.min(dim=1)  # (N, K)
        return res, (r2_idx.to(torch.uint8) if nj <= 256 else r2_idx), energy


def _local_minima(res, r2_idx, psi, r2, energy, period, n_cand):
    k = res.shape[1]
    # local minima of the periodic curve: <= the left neighbour, < the right one
    is_min = torch.empty(res.shape, dtype=torch.bool, device=res.device)
    torch.logical_and(res[:, 1:-1] <= res[:, :-2], res[:, 1:-1] < res[:, 2:], out=is_min[:, 1:-1])
    is_min[:, 0] = (res[:, 0] <= res[:, -1]) & (res[:, 0] < res[:, 1 % k])
    is_min[:, -1] = (res[:, -1] <= res[:, -2 % k]) & (res[:, -1] < res[:, 0])
    masked = res.masked_fill(~is_min, math.inf)
    m = min(n_cand, k)
    vals, idx = torch.topk(masked, m, dim=1, largest=False)
    lv, rv = res.gather(1, (idx - 1) % k), res.gather(1, (idx + 1) % k)
    den = lv - 2 * vals + rv
    off = torch.where(den > 0, 0.5 * (lv - rv) / den.clamp_min(1e-30), torch.zeros_like(den)).clamp(-0.5, 0.5)
    cpsi = psi[idx].to(torch.float64) + off.to(torch.float64) * (period / k)
    cr2 = r2[r2_idx.gather(1, idx).long()]
    nres = vals.to(torch.float64) / energy.clamp_min(1e-30)[:, None]
    cpsi = torch.where(torch.isfinite(vals), cpsi, torch.full_like(cpsi, math.nan))
    return cpsi, nres, cr2


def search_candidates(
    s: torch.Tensor, te: torch.Tensor, c: torch.Tensor, period: float, *, common_phase: bool = True,
    r2_grid: tuple[float, ...] = SEARCH_R2, psi_step_hz: float = 4.0, n_cand: int = 3,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Local minima of the VARPRO residual over psi for a batch of voxels.

    Returns ``psi (N, M)``, normalised residual ``(N, M)`` (``inf`` where there is no
    further minimum) and the R2* grid value at each minimum ``(N, M)``. Many blocks of
    voxels: build a :class:`SearchGrid` once and call it per block.
    """
    return SearchGrid(te, c, period, common_phase=common_phase, r2_grid=r2_grid, psi_step_hz=psi_step_hz)(s, n_cand)


class _ComplexModel:
    """Residuals / Jacobian of the complex model, real and imaginary parts stacked."""

    def __init__(self, s: torch.Tensor, te: torch.Tensor, c: torch.Tensor, common_phase: bool):
        self.s, self.te, self.c, self.common = s, te, c, common_phase
        if common_phase:
            # echo-wise factors of the decay-weighted moments that J^T J is made of
            t, cc = te, (c.abs() ** 2)
            self._moments = torch.stack([torch.ones_like(t), c.real, c.imag, cc, t, t * c.real, t * c.imag,
                                         t * cc, t * t, t * t * c.real, t * t * c.imag, t * t * cc], dim=1)
            # and of the sums of conj(e) d that J^T r is made of
            self._grad = torch.stack([torch.ones_like(c), c.conj(), t + 0j, t * c.conj()], dim=1)
        else:
            self.normal_equations = None

    def normal_equations(self, x: torch.Tensor, idx: torch.Tensor | None):
        """``(cost, J^T J, J^T r)`` of the common-phase model without forming the Jacobian.

        With ``e_n = exp((-R2* + i 2 pi psi) t_n + i phi)`` and ``B_n = W + F c_n`` the Jacobian
        columns are ``e (1, c, i B, 2 pi i t B, -t B)``, so ``J^T J`` needs only sums over echoes
        of ``|e|^2 = exp(-2 R2* t)`` times powers of ``t`` and ``c``, and ``J^T r`` the sums of
        ``conj(e) d`` times ``1, conj(c), t, t conj(c)`` (``d`` the complex misfit).
        """
        s = self.s if idx is None else self.s[idx]
        te, c = self.te, self.c
        w, f, phi, psi, r2 = (x[:, i:i + 1] for i in range(5))
        dec = torch.exp(-r2 * te)
        theta = (2.0 * math.pi) * psi * te + phi
        e = torch.complex(dec * torch.cos(theta), dec * torch.sin(theta))
        d = (w + f * c) * e - s
        cost = (d.real * d.real + d.imag * d.imag).sum(1)
        m = (dec * dec) @ self._moments  # (k, 12)
        m1, mcr, mci, mcc, mt, mtcr, mtci, mtcc, mtt, mttcr, mttci, mttcc = m.unbind(1)
        w, f = w[:, 0], f[:, 0]
        two_pi = 2.0 * math.pi
        q0 = w * w * m1 + 2 * w * f * mcr + f * f * mcc  # sum |e|^2 |B|^2
        q1 = w * w * mt + 2 * w * f * mtcr + f * f * mtcc  # ... t
        q2 = w * w * mtt + 2 * w * f * mttcr + f * f * mttcc  # ... t^2
        zero = torch.zeros_like(m1)
        a13, a23 = -f * mci, w * mci
        a14, a24 = -two_pi * f * mtci, two_pi * w * mtci
        a15, a25 = -(w * mt + f * mtcr), -(w * mtcr + f * mtcc)
        a34, a44, a55 = two_pi * q1, two_pi * two_pi * q2, q2
        jtj = torch.stack([
            m1, mcr, a13, a14, a15,
            mcr, mcc, a23, a24, a25,
            a13, a23, q0, a34, zero,
            a14, a24, a34, a44, zero,
            a15, a25, zero, zero, a55,
        ], dim=1).reshape(-1, 5, 5)
        v = (e.conj() * d) @ self._grad  # (k, 4): sums of v, conj(c) v, t v, t conj(c) v
        p0 = w * v[:, 2] + f * v[:, 3]
        grad = torch.stack([v[:, 0].real, v[:, 1].real, (w * v[:, 0] + f * v[:, 1]).imag,
                            two_pi * p0.imag, -p0.real], dim=1)
        return cost, jtj, grad

    def __call__(self, x: torch.Tensor, idx: torch.Tensor | None):
        s = self.s if idx is None else self.s[idx]
        te, c = self.te, self.c
        if self.common:
            w, f, phi, psi, r2 = (x[:, i:i + 1] for i in range(5))
            e = torch.exp((-r2 + 2j * math.pi * psi) * te) * torch.exp(1j * phi)
            base = (w + f * c)
            m = base * e
            cols = [e, c * e, 1j * m, 2j * math.pi * te * m, -te * m]
        else:
            wr, wi, fr, fi, psi, r2 = (x[:, i:i + 1] for i in range(6))
            e = torch.exp((-r2 + 2j * math.pi * psi) * te)
            m = ((wr + 1j * wi) + (fr + 1j * fi) * c) * e
            cols = [e, 1j * e, c * e, 1j * c * e, 2j * math.pi * te * m, -te * m]
        d = m - s
        r = torch.cat([d.real, d.imag], dim=1)
        jc = torch.stack(cols, dim=2)
        jac = torch.cat([jc.real, jc.imag], dim=1)
        return r, jac


def _initial_amplitudes(s: torch.Tensor, te: torch.Tensor, c: torch.Tensor, psi: torch.Tensor, r2: torch.Tensor,
                        common_phase: bool) -> torch.Tensor:
    """Closed-form amplitudes at a given (psi, R2*) per voxel -> full LM start vector."""
    e = torch.exp((-r2[:, None] + 2j * math.pi * psi[:, None]) * te[None, :])  # (N, n)
    b = torch.stack([e, e * c[None, :]], dim=2)  # (N, n, 2)
    bh = b.conj().transpose(1, 2)
    a = bh @ b + 1e-12 * torch.eye(2, dtype=b.dtype, device=b.device)
    x = torch.linalg.solve(a, bh @ s.unsqueeze(2)).squeeze(2)  # (N, 2) complex W, F
    if not common_phase:
        return torch.stack([x[:, 0].real, x[:, 0].imag, x[:, 1].real, x[:, 1].imag, psi, r2], dim=1)
    phi = torch.angle(x[:, 0] + x[:, 1])
    rot = torch.exp(-1j * phi)[:, None]
    wf = (x * rot).real
    return torch.stack([wf[:, 0], wf[:, 1], phi, psi, r2], dim=1)


def fit_complex(
    data: MultiEcho,
    *,
    spectrum: FatSpectrum = SIX_PEAK,
    mask: np.ndarray | None = None,
    device: str = "cpu",
    common_phase: bool = True,
    r2star_max: float = 1000.0,
    psi_step_hz: float = 5.0,
    lam: float = 0.05,
    spacing: tuple[float, float, float] | None = None,
    max_iter: int = 30,
    chunk: int = 32768,
) -> FatWaterMaps:
    """Separate water and fat, and estimate R2* and the B0 field, from complex multi-echo data.

    Parameters
    ----------
    data:
        Complex multi-echo data (``FitInputError`` for magnitude-only data).
    spectrum:
        Fat spectrum (default: six-peak).
    mask:
        Voxels to fit (default :func:`default_mask`).
    device:
        ``"cpu"``, ``"cuda"`` or ``"auto"`` for the voxel-wise stages.
    common_phase:
        Real W, F with one shared phase (default) or independent complex W, F.
    lam:
        Strength of the field-consistency term of the spatial step
        (:func:`ukbmri.physics.spatial.select_candidates`).
    spacing:
        Voxel size in mm for the spatial step (default: the data's, else
        :data:`DEFAULT_SPACING`).
    """
    if not data.is_complex:
        raise FitInputError("complex fitting needs complex (magnitude and phase) data", path=data.source,
                            expected="complex images", found="magnitude only")
    msk = check_mask(mask, data)
    n_vox = int(msk.sum())
    if n_vox == 0:
        raise FitInputError("the mask selects no voxels", path=data.source, expected="a non-empty mask", found=0)
    dev = resolve_device(device)
    period = field_period_hz(data.te_s)
    if np.ptp(np.diff(data.te_s)) > 0.02 * np.median(np.diff(data.te_s)):
        log.warning("%s: echo spacing is not uniform; the field search assumes a period of %.1f Hz",
                    data.source, period)
    s_all = data.images[msk].astype(np.complex128)
    scale = float(np.percentile(np.abs(s_all[:, 0]), 99)) or 1.0
    te = torch.as_tensor(data.te_s, dtype=torch.float64, device=dev)
    c = torch.as_tensor(fat_phasor(data.te_s, data.field_strength_t, spectrum), dtype=torch.complex128, device=dev)
    r2_grid = tuple(r for r in SEARCH_R2 if r <= r2star_max)

    # 1-2: voxel-wise candidates
    cpsi, cres, cr2 = [], [], []
    grid = SearchGrid(te, c, period, common_phase=common_phase, r2_grid=r2_grid, psi_step_hz=psi_step_hz)
    search_chunk = chunk if dev != "cpu" else min(chunk, SEARCH_BLOCK_CPU)
    curves = []
    for start in range(0, n_vox, search_chunk):
        s = torch.as_tensor(s_all[start:start + search_chunk] / scale, device=dev)
        curves.append(grid.curve(s))
        if len(curves) * search_chunk >= chunk or start + search_chunk >= n_vox:
            p_, r_, q_ = grid.candidates(*(torch.cat(v) for v in zip(*curves)))
            curves = []
            cpsi.append(p_.cpu().numpy())
            cres.append(r_.cpu().numpy())
            cr2.append(q_.cpu().numpy())
    cpsi_v, cres_v, cr2_v = np.concatenate(cpsi), np.concatenate(cres), np.concatenate(cr2)
    m_cand = cpsi_v.shape[1]

    # 3: spatial selection on the image grid
    shape = data.shape
    grid_psi = np.full((m_cand,) + shape, np.nan)
    grid_res = np.full((m_cand,) + shape, np.inf)
    grid_psi[:, msk] = cpsi_v.T
    grid_res[:, msk] = cres_v.T
    energy = np.sum(np.abs(data.images.astype(np.complex128)) ** 2, axis=-1)
    sp = spacing or data.spacing or DEFAULT_SPACING
    sel, smooth = select_candidates(grid_psi, grid_res, energy, msk, period, sp, lam=lam)
    sel_v = sel[msk]
    psi_sel = np.take_along_axis(cpsi_v, sel_v[:, None], axis=1)[:, 0]
    r2_sel = np.take_along_axis(cr2_v, sel_v[:, None], axis=1)[:, 0]
    grid_sel = np.zeros(shape)
    grid_sel[msk] = psi_sel
    psi_unw = unwrap_to_smooth(grid_sel, smooth, period, msk)[msk]

    # 4: refinement
    n_par = 5 if common_phase else 6
    params = np.zeros((n_vox, n_par))
    cost_v = np.zeros(n_vox)
    inf = math.inf
    for start in range(0, n_vox, chunk):
        sl = slice(start, start + chunk)
        s = torch.as_tensor(s_all[sl] / scale, device=dev)
        psi0 = torch.as_tensor(psi_unw[sl], device=dev)
        r20 = torch.as_tensor(r2_sel[sl], device=dev)
        x0 = _initial_amplitudes(s, te, c, psi0, r20, common_phase)
        nb = x0.shape[0]
        # amplitudes bounded by a generous multiple of the voxel's signal (keeps ill-conditioned
        # noise voxels from running off with huge, cancelling water and fat)
        amp = (10.0 * s.abs().amax(dim=1) * math.exp(min(r2star_max * float(data.te_s[0]), 5.0)))[:, None]
        lo = torch.cat([-amp.expand(nb, n_par - 2), torch.zeros(nb, 2, dtype=torch.float64, device=dev)], 1)
        hi = torch.cat([amp.expand(nb, n_par - 2), torch.zeros(nb, 2, dtype=torch.float64, device=dev)], 1)
        if common_phase:  # phase is free
            lo[:, 2], hi[:, 2] = -inf, inf
        lo[:, -2], hi[:, -2] = psi0 - 0.2 * period, psi0 + 0.2 * period
        lo[:, -1], hi[:, -1] = 0.0, r2star_max
        x, cost = levenberg_marquardt(_ComplexModel(s, te, c, common_phase), x0, lower=lo, upper=hi,
                                      max_iter=max_iter)
        params[sl] = x.cpu().numpy()
        cost_v[sl] = (cost / (s.abs() ** 2).sum(1).clamp_min(1e-30)).cpu().numpy()

    if common_phase:
        w, f = params[:, 0], params[:, 1]
        flip = (w + f) < 0
        w, f = np.where(flip, -w, w), np.where(flip, -f, f)
    else:
        w, f = np.hypot(params[:, 0], params[:, 1]), np.hypot(params[:, 2], params[:, 3])

    def scatter(v: np.ndarray) -> np.ndarray:
        out = np.full(shape, np.nan, dtype=np.float32)
        out[msk] = v
        return out

    water, fat = scatter(w * scale), scatter(f * scale)
    return FatWaterMaps(
        water=water, fat=fat, ff_percent=ff_from_amplitudes(water, fat, msk),
        r2star_per_s=scatter(params[:, -1]), b0_hz=scatter(params[:, -2]),
        residual=scatter(np.sqrt(cost_v)), mask=msk, method="complex",
        info={"common_phase": common_phase, "period_hz": period, "spacing_mm": list(sp),
              "spectrum_ppm": list(spectrum.ppm), "device": dev, "voxels": n_vox},
    )
