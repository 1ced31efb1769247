"""The report's plots, drawn from whole columns (matplotlib, Agg, imported lazily).

Each plot is a :class:`Plot`: a file name, the frame of columns it is drawn from (its
content hash decides whether the PNG must be redrawn) and a function that draws it.
Large cohorts are drawn as binned histograms and single-pixel markers, so 100,000 rows
cost about as much as 1,000.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd

from ukbmri.report.data import numeric_values, companion

__all__ = ["Plot", "histogram_plots", "agreement_plots", "width_plots", "truth_plots", "frame_digest"]

FIGURE_VERSION = "2"  # bump when a drawing changes, so cached PNGs are redrawn
PER_FIGURE = 12  # panels per grid figure (4 x 3)
_BLUE, _RED = "#4477aa", "#cc3311"


@dataclass(frozen=True)
class Plot:
    name: str  # file name, e.g. "hist_01.png"
    title: str
    frame: pd.DataFrame  # the columns it is drawn from
    draw: Callable[[pd.DataFrame], object]  # frame -> matplotlib Figure (a module-level function or partial: picklable)
    key: str = ""  # anything else the drawing depends on

    def digest(self) -> str:
        return frame_digest(self.frame, extra=f"{FIGURE_VERSION}|{self.name}|{self.title}|{self.key}")


def frame_digest(df: pd.DataFrame, extra: str = "") -> str:
    """A content hash of a frame (column names, dtypes and values)."""
    h = hashlib.sha256(extra.encode())
    h.update("\x1f".join(f"{c}:{df[c].dtype}" for c in df.columns).encode())
    if len(df.columns) and len(df):
        h.update(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes())
    return h.hexdigest()


def _figure(n_panels: int, w: float = 3.2, h: float = 2.6, *, left: float = 0.5, right: float = 0.15,
            top: float = 0.4, bottom: float = 0.35):
    """A grid of ``n_panels`` axes (4 per row), each in a ``w`` x ``h`` inch cell with fixed margins in
    inches (much cheaper than ``tight_layout``, which dominated the drawing time)."""
    from matplotlib.figure import Figure

    ncol = min(4, max(1, n_panels))
    nrow = (n_panels + ncol - 1) // ncol
    fw, fh = w * ncol, h * nrow
    fig = Figure(figsize=(fw, fh))
    axes = []
    for k in range(n_panels):
        r, c = divmod(k, ncol)
        axes.append(fig.add_axes(((c * w + left) / fw, ((nrow - 1 - r) * h + bottom) / fh,
                                  (w - left - right) / fw, (h - top - bottom) / fh)))
    return fig, axes


def _chunks(items: Sequence, n: int = PER_FIGURE) -> list[Sequence]:
    return [items[i : i + n] for i in range(0, len(items), n)]


def _hist_panel(ax, v: np.ndarray, title: str, color: str = _BLUE) -> None:
    v = v[np.isfinite(v)]
    ax.set_title(f"{title} (n={v.size})", fontsize=8)
    ax.tick_params(labelsize=7)
    if v.size == 0:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, fontsize=8)
        return
    lo, hi = float(v.min()), float(v.max())
    if hi - lo <= 1e-6 * max(1.0, abs(lo), abs(hi)):  # (nearly) constant: a visible bar, not a bin error
        pad = max(0.5, 0.01 * abs(lo))
        lo, hi = lo - pad, hi + pad
    counts, edges = np.histogram(v, bins=int(min(40, max(5, np.sqrt(v.size)))), range=(lo, hi))
    ax.stairs(counts, edges, fill=True, color=color)


def _draw_hists(df: pd.DataFrame):
    fig, axes = _figure(len(df.columns))
    for ax, c in zip(axes, df.columns):
        _hist_panel(ax, numeric_values(df[c]), str(c))
    return fig


def histogram_plots(table: pd.DataFrame, columns: Sequence[str]) -> list[Plot]:
    """Grids of histograms, up to 12 columns per figure."""
    return [Plot(f"hist_{i + 1:02d}.png", "distributions", table[list(cols)], _draw_hists)
            for i, cols in enumerate(_chunks(list(columns)))]


def _points(ax, x: np.ndarray, y: np.ndarray) -> None:
    """Markers that stay readable from 10 to 100,000 points."""
    n = x.size
    ms, alpha = (4.0, 0.9) if n <= 200 else (3.0, 0.8) if n <= 2000 else (1.0, 0.3) if n <= 20000 else (0.5, 0.15)
    ax.plot(x, y, "o", ms=ms, alpha=alpha, color=_BLUE, mew=0, rasterized=True)


def _draw_agreement(df: pd.DataFrame, title: str):
    a, b = df.columns[:2]
    x, y = numeric_values(df[a]), numeric_values(df[b])
    ok = np.isfinite(x) & np.isfinite(y)
    mean, diff = (x[ok] + y[ok]) / 2, y[ok] - x[ok]
    fig, (ax,) = _figure(1, 4.6, 3.6, left=0.85, bottom=0.5, top=0.35)
    _points(ax, mean, diff)
    bias = float(diff.mean())
    sd = float(diff.std(ddof=1)) if diff.size > 1 else 0.0
    ax.axhline(bias, color=_RED, lw=1, label=f"bias {bias:+.2f}")
    for k in (-1.96, 1.96):
        ax.axhline(bias + k * sd, color=_RED, lw=0.8, ls="--")
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_xlabel(f"mean of methods ({a.rsplit('_', 1)[-1]})", fontsize=8)
    ax.set_ylabel(f"{b}\nminus {a}", fontsize=7)
    ax.set_title(f"{title} (n={diff.size}, LoA ±{1.96 * sd:.2f})", fontsize=9)
    ax.legend(fontsize=7, loc="best")
    ax.tick_params(labelsize=7)
    return fig


def agreement_plots(table: pd.DataFrame, pairs: Sequence[tuple[str, str, str]]) -> list[Plot]:
    """One Bland-Altman plot per liver method pair."""
    out = []
    for i, (a, b, title) in enumerate(pairs):
        out.append(Plot(f"bland_altman_{i + 1:02d}.png", title, table[[a, b]], partial(_draw_agreement, title=title)))
    return out


def _draw_widths(df: pd.DataFrame, names: Sequence[str]):
    fig, axes = _figure(len(names))
    for ax, name, lo, hi in zip(axes, names, df.columns[0::2], df.columns[1::2]):
        _hist_panel(ax, numeric_values(df[hi]) - numeric_values(df[lo]), f"{name}\n95 % interval width", color="#228833")
    return fig


def width_plots(table: pd.DataFrame, intervals: Sequence[tuple[str, str, str]]) -> list[Plot]:
    """Histograms of 95 % interval widths, up to 12 columns per figure."""
    out = []
    for i, chunk in enumerate(_chunks(list(intervals))):
        cols = [c for _, lo, hi in chunk for c in (lo, hi)]
        names = [v for v, _, _ in chunk]
        out.append(Plot(f"widths_{i + 1:02d}.png", "interval widths", table[cols], partial(_draw_widths, names=names),
                        key=repr(names)))
    return out


def _draw_truth(df: pd.DataFrame, pairs: Mapping[str, str]):
    fig, axes = _figure(len(pairs), 3.2, 3.0, bottom=0.55)
    for ax, (p, t) in zip(axes, pairs.items()):
        x, y = numeric_values(df[f"truth__{t}"]), numeric_values(df[p])
        ok = np.isfinite(x) & np.isfinite(y)
        lo, hi = companion(df.columns, p, "ci95_low"), companion(df.columns, p, "ci95_high")
        if lo and hi and ok.sum() <= 2000:
            a, b = numeric_values(df[lo])[ok], numeric_values(df[hi])[ok]
            ax.vlines(x[ok], a, b, color=_BLUE, alpha=0.25, lw=0.6)
        _points(ax, x[ok], y[ok])
        if ok.any():
            lim = [float(min(x[ok].min(), y[ok].min())), float(max(x[ok].max(), y[ok].max()))]
            ax.plot(lim, lim, color=_RED, lw=0.8)
        ax.set_title(p, fontsize=8)
        ax.set_xlabel(f"truth: {t}", fontsize=7)
        ax.tick_params(labelsize=7)
    return fig


def truth_plots(merged: pd.DataFrame, pairs: Mapping[str, str]) -> list[Plot]:
    """Prediction vs phantom truth scatter plots (with 95 % intervals when few), 12 per figure."""
    pairs = {p: t for p, t in pairs.items() if p in merged.columns and f"truth__{t}" in merged.columns}
    out = []
    for i, chunk in enumerate(_chunks(list(pairs.items()))):
        sub = dict(chunk)
        cols = []
        for p, t in sub.items():
            cols += [p, f"truth__{t}"] + [c for c in (companion(merged.columns, p, "ci95_low"),
                                                      companion(merged.columns, p, "ci95_high")) if c]
        out.append(Plot(f"truth_{i + 1:02d}.png", "against the truth", merged[list(dict.fromkeys(cols))],
                        partial(_draw_truth, pairs=sub), key=repr(sorted(sub.items()))))
    return out
