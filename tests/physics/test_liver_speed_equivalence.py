"""The fast paths of the liver physics give the values of the plain formulations they replace.

Each test compares a sped-up step with a direct (slow) reference written out here: the
field-map grid search, phase phasors and dynamics alignment of the zip reader, the
Cramer-Rao SDs, and the normal equations of the complex model inside Levenberg-Marquardt.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage as ndi

from ukbmri.io import phase_to_radians
from ukbmri.physics import _lm
from ukbmri.physics.complex import SEARCH_R2, SearchGrid, _bases, _ComplexModel, field_period_hz, fit_complex
from ukbmri.physics.inputs import _align_dynamics, _phasor
from ukbmri.physics.liver_noise import crlb_sd
from ukbmri.physics.multiecho import MultiEcho
from ukbmri.physics.phantom import uniform_te
from ukbmri.physics.spectrum import fat_phasor, signal

TE6 = uniform_te(6, 1.2e-3, 2.0e-3)


def _noisy_voxels(n: int, te: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    ff = rng.uniform(0.0, 1.0, n)
    s = signal(1.0 - ff, ff, rng.uniform(10.0, 600.0, n), te, 1.5, b0_hz=rng.uniform(-200.0, 200.0, n))
    s = s * np.exp(1j * rng.uniform(-np.pi, np.pi, n))[:, None]
    return s + 0.02 * (rng.standard_normal(s.shape) + 1j * rng.standard_normal(s.shape))


def _reference_search(s, te, c, period, psi_step_hz, common_phase, r2_grid=SEARCH_R2, n_cand=3):
    """The per-block search as first written: (N, K, J, 2) projections, min over R2*."""
    k = int(min(max(math.ceil(period / psi_step_hz), 32), 512))
    psi = -period / 2 + period * torch.arange(k, dtype=torch.float64) / k
    r2 = torch.tensor(r2_grid, dtype=torch.float64)
    q = _bases(te, c, psi, r2, common_phase)
    n = te.numel()
    energy = (s.abs() ** 2).sum(1)
    if common_phase:
        qm = q.to(torch.float32).permute(2, 0, 1, 3).reshape(2 * n, -1)
        st = torch.cat([s.real, s.imag], dim=1).to(torch.float32)
        sp = torch.cat([s.imag, -s.real], dim=1).to(torch.float32)
        p = (st @ qm).reshape(-1, k, r2.numel(), 2)
        qq = (sp @ qm).reshape(-1, k, r2.numel(), 2)
        pp, q2, pq = (p * p).sum(-1), (qq * qq).sum(-1), (p * qq).sum(-1)
        proj = 0.5 * (pp + q2) + torch.sqrt((0.5 * (pp - q2)) ** 2 + pq * pq)
    else:
        qm = q.to(torch.complex64).permute(2, 0, 1, 3).reshape(n, -1)
        p = (s.to(torch.complex64) @ qm.conj()).reshape(-1, k, r2.numel(), 2)
        proj = (p.abs() ** 2).sum(-1)
    res = (energy.to(torch.float32)[:, None, None] - proj).clamp_min(0.0)
    res, r2_idx = res.min(dim=2)
    left, right = torch.roll(res, 1, dims=1), torch.roll(res, -1, dims=1)
    masked = torch.where((res <= left) & (res < right), res, torch.full_like(res, math.inf))
    vals, idx = torch.topk(masked, min(n_cand, k), dim=1, largest=False)
    lv, rv = left.gather(1, idx), right.gather(1, idx)
    den = lv - 2 * vals + rv
    off = torch.where(den > 0, 0.5 * (lv - rv) / den.clamp_min(1e-30), torch.zeros_like(den)).clamp(-0.5, 0.5)
    cpsi = psi[idx] + off.to(torch.float64) * (period / k)
    cpsi = torch.where(torch.isfinite(vals), cpsi, torch.full_like(cpsi, math.nan))
    return cpsi, vals.to(torch.float64) / energy.clamp_min(1e-30)[:, None], r2[r2_idx.gather(1, idx)]


@pytest.mark.parametrize("te,common_phase", [(TE6, True), (uniform_te(10, 2.38e-3, 2.38e-3), True), (TE6, False)],
                         ids=["ideal", "gre", "ideal-independent-phases"])
def test_grid_search_in_blocks_equals_the_direct_search(te, common_phase):
    rng = np.random.default_rng(0)
    s = torch.as_tensor(_noisy_voxels(700, te, rng))
    tt = torch.as_tensor(te)
    c = torch.as_tensor(fat_phasor(te, 1.5), dtype=torch.complex128)
    period = field_period_hz(te)
    want = _reference_search(s, tt, c, period, 5.0, common_phase)
    grid = SearchGrid(tt, c, period, common_phase=common_phase, psi_step_hz=5.0)
    curves = [grid.curve(s[i:i + 256]) for i in range(0, s.shape[0], 256)]
    got = grid.candidates(*(torch.cat(v) for v in zip(*curves)))
    for a, b in zip(got, want):
        assert torch.equal(torch.isnan(a), torch.isnan(b))
        assert torch.equal(torch.nan_to_num(a, nan=0.0, posinf=1e30), torch.nan_to_num(b, nan=0.0, posinf=1e30))
    assert torch.isfinite(got[0][:, 0]).all()  # every voxel has a best candidate


def test_phase_phasors_by_table_equal_the_complex_exponential():
    rng = np.random.default_rng(1)
    ints = rng.integers(-4096, 4096, size=(3, 20, 17)).astype(np.float64)
    want = np.exp(1j * phase_to_radians(ints))
    got = _phasor(ints)
    assert got.dtype == want.dtype and np.array_equal(got, want)
    frac = ints + 0.25  # not Siemens integers: the direct expression
    assert np.array_equal(_phasor(frac), np.exp(1j * phase_to_radians(frac)))
    assert _phasor(np.zeros((0, 3))).shape == (0, 3)


def test_dynamics_alignment_equals_the_angle_formula_and_keeps_zero_products():
    rng = np.random.default_rng(2)
    shape = (6, 24, 20)
    ref = rng.standard_normal(shape) + 1j * rng.standard_normal(shape)
    drift = np.exp(1j * rng.uniform(-3, 3))
    dyn = [ref, ref * drift + 0.1 * rng.standard_normal(shape), np.zeros(shape, complex)]
    acc = ref.copy()
    for d in dyn[1:]:
        prod = d * np.conj(ref)
        re = ndi.gaussian_filter(prod.real, sigma=(0, 3.0, 3.0))
        im = ndi.gaussian_filter(prod.imag, sigma=(0, 3.0, 3.0))
        acc += d * np.exp(-1j * np.angle(re + 1j * im))
    want = acc / len(dyn)
    got = _align_dynamics(dyn)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12 * np.abs(want).max())


def _reference_crlb(w, f, r2, te, sigma, complex_model):
    w, f, r2 = (np.clip(np.asarray(v, float), 0, None)[..., None] for v in (w, f, r2))
    c = fat_phasor(te, 1.5)
    dec = np.exp(-r2 * te)
    if complex_model:
        s = (w + f * c) * dec
        jac = np.stack([dec + 0j * s, c * dec, 1j * s, 2j * np.pi * te * s, -te * s], axis=-1)
        fisher = np.einsum("...ni,...nj->...ij", jac.conj(), jac).real / sigma ** 2
        ir = 4
    else:
        g = np.sqrt(np.maximum(w * w + f * f * np.abs(c) ** 2 + 2 * w * f * c.real, 1e-30))
        jac = np.stack([(w + f * c.real) / g * dec, (f * np.abs(c) ** 2 + w * c.real) / g * dec, -te * g * dec], -1)
        fisher = np.einsum("...ni,...nj->...ij", jac, jac) / sigma ** 2
        ir = 2
    p = fisher.shape[-1]
    fisher = fisher + np.eye(p) * 1e-12 * np.maximum(np.trace(fisher, axis1=-2, axis2=-1), 1e-30)[..., None, None]
    cov = np.linalg.inv(fisher)
    tot = (w + f)[..., 0]
    gw, gf = -f[..., 0] / tot ** 2, w[..., 0] / tot ** 2
    var_ff = gw ** 2 * cov[..., 0, 0] + gf ** 2 * cov[..., 1, 1] + 2 * gw * gf * cov[..., 0, 1]
    return np.sqrt(cov[..., 0, 0]), 100 * np.sqrt(np.maximum(var_ff, 0)), np.sqrt(cov[..., ir, ir])


@pytest.mark.parametrize("complex_model", [False, True])
def test_crlb_equals_the_matrix_inverse(complex_model):
    rng = np.random.default_rng(3)
    w, f, r2 = rng.uniform(0.05, 2, (40, 30)), rng.uniform(0, 1, (40, 30)), rng.uniform(0, 600, (40, 30))
    got = crlb_sd(w, f, r2, TE6, 1.5, 0.01, complex_model=complex_model)
    want = _reference_crlb(w, f, r2, TE6, 0.01, complex_model)
    for a, b in zip(got, want):
        assert a.shape == (40, 30)
        np.testing.assert_allclose(a, b, rtol=1e-8)
    scalar = crlb_sd(0.8, 0.2, 40.0, TE6, 1.5, 0.01, complex_model=complex_model)
    assert all(np.ndim(v) == 0 for v in scalar)
    assert all(np.isinf(v) for v in crlb_sd(0.0, 0.0, 40.0, TE6, 1.5, 0.01, complex_model=complex_model))


def test_complex_normal_equations_equal_those_of_the_jacobian():
    rng = np.random.default_rng(4)
    te = torch.as_tensor(TE6)
    c = torch.as_tensor(fat_phasor(TE6, 1.5), dtype=torch.complex128)
    s = torch.as_tensor(_noisy_voxels(300, TE6, rng))
    model = _ComplexModel(s, te, c, True)
    x = torch.as_tensor(np.stack([rng.uniform(-1, 1, 300), rng.uniform(-1, 1, 300), rng.uniform(-3, 3, 300),
                                  rng.uniform(-200, 200, 300), rng.uniform(0, 600, 300)], 1))
    idx = torch.arange(0, 300, 3)
    r, jac = model(x[idx], idx)
    cost, jtj, g = model.normal_equations(x[idx], idx)
    torch.testing.assert_close(cost, (r * r).sum(1), rtol=1e-12, atol=0)
    torch.testing.assert_close(jtj, torch.einsum("nmi,nmj->nij", jac, jac), rtol=1e-12, atol=1e-12 * float(jtj.abs().max()))
    torch.testing.assert_close(g, (jac.transpose(1, 2) @ r.unsqueeze(2)).squeeze(2), rtol=1e-12,
                               atol=1e-12 * float(g.abs().max()))


def test_complex_fit_with_normal_equations_equals_the_jacobian_path(monkeypatch):
    rng = np.random.default_rng(5)
    s = _noisy_voxels(400, TE6, rng).reshape(20, 20, 1, 6)
    data = MultiEcho(s.astype(np.complex64), TE6, 1.5, spacing=(1.5, 1.5, 5.0))
    fast = fit_complex(data, mask=np.ones(data.shape, bool))
    real_lm = _lm.levenberg_marquardt

    def jacobian_only(fun, x0, **kw):  # the solver falls back to J when a model has no normal equations
        return real_lm(lambda x, idx: fun(x, idx), x0, **kw)

    monkeypatch.setattr("ukbmri.physics.complex.levenberg_marquardt", jacobian_only)
    slow = fit_complex(data, mask=np.ones(data.shape, bool))
    np.testing.assert_allclose(fast.ff_percent, slow.ff_percent, rtol=0, atol=1e-4)
    np.testing.assert_allclose(fast.r2star_per_s, slow.r2star_per_s, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(fast.b0_hz, slow.b0_hz, rtol=0, atol=1e-3)


@pytest.mark.parametrize("sigma", [None, 0.02], ids=["plain", "rician"])
def test_magnitude_normal_equations_equal_those_of_the_jacobian(sigma):
    from ukbmri.physics.magnitude import _MagModel

    rng = np.random.default_rng(6)
    te = uniform_te(10, 2.38e-3, 2.38e-3)
    s = torch.as_tensor(np.abs(_noisy_voxels(200, te, rng)))
    c = torch.as_tensor(fat_phasor(te, 1.5), dtype=torch.complex128)
    model = _MagModel(s, torch.as_tensor(te), c, sigma)
    x = torch.as_tensor(np.stack([rng.uniform(0, 1, 200), rng.uniform(0, 1, 200), rng.uniform(0, 600, 200)], 1))
    idx = torch.arange(1, 200, 2)
    r, jac = model(x[idx], idx)
    cost, jtj, g = model.normal_equations(x[idx], idx)
    torch.testing.assert_close(cost, (r * r).sum(1), rtol=1e-12, atol=0)
    torch.testing.assert_close(jtj, torch.einsum("nmi,nmj->nij", jac, jac), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(g, (jac.transpose(1, 2) @ r.unsqueeze(2)).squeeze(2), rtol=1e-12, atol=1e-14)
