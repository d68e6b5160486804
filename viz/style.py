"""Journal and talk styles: matplotlib rcParams, column widths, deterministic saving.

Only fonts bundled with matplotlib are used (STIX for ``paper``, DejaVu Sans for
``talk``), so a figure renders the same on every machine. Saving strips dates and
software versions from the files, so re-rendering a run gives identical PDF/SVG bytes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from landscape.errors import ConfigError
from landscape.io.rundir import atomic_write

SINGLE_COLUMN_IN = 3.25
"""Width of a single journal column in inches (two-column layouts: IEEE, ACM, NeurIPS)."""

DOUBLE_COLUMN_IN = 6.75
"""Width of a full page (both columns) in inches."""

FORMATS = ("png", "pdf", "svg")
STYLES = ("paper", "talk")

_COMMON: dict[str, Any] = {
    "axes.spines.top": True,
    "axes.spines.right": True,
    "axes.axisbelow": True,
    "axes.grid": False,
    "legend.frameon": True,
    "legend.fancybox": False,
    "legend.edgecolor": "0.7",
    "legend.framealpha": 0.9,
    "image.cmap": "viridis",
    "pdf.fonttype": 42,
    "ps.fonttype": 42,
    "svg.fonttype": "path",
    "svg.hashsalt": "landscape",
    "savefig.bbox": "tight",
    "savefig.pad_inches": 0.02,
    "path.simplify": True,
    "xtick.direction": "out",
    "ytick.direction": "out",
    "axes.unicode_minus": True,
}

_PAPER: dict[str, Any] = {
    **_COMMON,
    "font.family": "serif",
    "font.serif": ["STIXGeneral"],
    "mathtext.fontset": "stix",
    "font.size": 8.0,
    "axes.titlesize": 8.0,
    "axes.labelsize": 8.0,
    "xtick.labelsize": 7.0,
    "ytick.labelsize": 7.0,
    "legend.fontsize": 7.0,
    "figure.titlesize": 9.0,
    "axes.linewidth": 0.6,
    "lines.linewidth": 1.0,
    "lines.markersize": 4.0,
    "patch.linewidth": 0.5,
    "xtick.major.width": 0.6,
    "ytick.major.width": 0.6,
    "xtick.minor.width": 0.4,
    "ytick.minor.width": 0.4,
    "xtick.major.size": 3.0,
    "ytick.major.size": 3.0,
    "xtick.minor.size": 1.5,
    "ytick.minor.size": 1.5,
    "contour.linewidth": 0.4,
    "figure.dpi": 100,
    "savefig.dpi": 300,
}

_TALK: dict[str, Any] = {
    **_COMMON,
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans"],
    "mathtext.fontset": "dejavusans",
    "font.size": 14.0,
    "axes.titlesize": 15.0,
    "axes.labelsize": 14.0,
    "xtick.labelsize": 12.0,
    "ytick.labelsize": 12.0,
    "legend.fontsize": 12.0,
    "figure.titlesize": 16.0,
    "axes.linewidth": 1.2,
    "lines.linewidth": 2.2,
    "lines.markersize": 8.0,
    "patch.linewidth": 1.0,
    "xtick.major.width": 1.2,
    "ytick.major.width": 1.2,
    "xtick.major.size": 5.0,
    "ytick.major.size": 5.0,
    "contour.linewidth": 0.9,
    "figure.dpi": 100,
    "savefig.dpi": 200,
}

# Figure widths (inches) per style: (single, double).
_WIDTHS = {"paper": (SINGLE_COLUMN_IN, DOUBLE_COLUMN_IN), "talk": (6.4, 12.0)}


def check_style(style: str) -> str:
    """Return ``style`` if known, else raise :class:`ConfigError`.

    Example:
        >>> check_style("paper")
        'paper'
    """
    if style not in STYLES:
        raise ConfigError(f"--style {style!r} is not known; use {' or '.join(STYLES)}.")
    return style


def check_formats(formats: str | Iterable[str]) -> tuple[str, ...]:
    """Normalize ``"png,pdf"`` or ``["png", "pdf"]`` to a tuple of known formats.

    Example:
        >>> check_formats("png, PDF")
        ('png', 'pdf')
    """
    items = formats.split(",") if isinstance(formats, str) else list(formats)
    out: list[str] = []
    for item in items:
        f = str(item).strip().lower().lstrip(".")
        if not f:
            continue
        if f not in FORMATS:
            raise ConfigError(f"--format {f!r} is not supported; use {', '.join(FORMATS)}.")
        if f not in out:
            out.append(f)
    if not out:
        raise ConfigError("--format is empty; give one or more of png, pdf, svg.")
    return tuple(out)


def style_params(style: str = "paper") -> dict[str, Any]:
    """The rcParams of a style (``paper`` or ``talk``).

    Example:
        >>> style_params("paper")["font.size"]
        8.0
    """
    return dict(_PAPER if check_style(style) == "paper" else _TALK)


def set_style(style: str = "paper") -> None:
    """Set matplotlib's global rcParams for journal (``paper``) or slide (``talk``) figures.

    ``paper``: STIX serif (Times-like) at 8 pt, thin lines, 300 dpi PNG, TrueType fonts
    embedded in PDF. ``talk``: DejaVu Sans at 14 pt, thick lines, 200 dpi. The figure
    functions of this package apply the style locally and never need this call; use it
    for your own figures so they match.

    Args:
        style: ``paper`` or ``talk``.

    Example:
        >>> set_style("paper")
        >>> import matplotlib
        >>> matplotlib.rcParams["font.size"]
        8.0
    """
    import matplotlib

    matplotlib.rcParams.update(style_params(style))


def width(style: str, columns: int = 1) -> float:
    """Figure width in inches for one or two journal columns (or the talk equivalent).

    Example:
        >>> width("paper", 2)
        6.75
    """
    single, double = _WIDTHS[check_style(style)]
    return single if columns == 1 else double


def style_context(style: str) -> Any:
    """A context manager applying ``style`` (and the Agg backend) to figures made inside."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    return matplotlib.rc_context(style_params(style))


def new_figure(figsize: Sequence[float], **kwargs: Any) -> Any:
    """A figure bound to the Agg canvas (never a GUI window, never pyplot's registry)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=tuple(figsize), layout="constrained", **kwargs)
    FigureCanvasAgg(fig)
    return fig


_METADATA = {
    "png": {"Software": None},
    "pdf": {"Creator": None, "Producer": None, "CreationDate": None},
    "svg": {"Creator": None, "Date": None},
}


def save_figure(
    fig: Any, stem: Path, formats: Sequence[str], *, dpi: float | None = None
) -> list[Path]:
    """Write ``fig`` as ``stem.<fmt>`` for each format, atomically and reproducibly.

    Args:
        fig: a matplotlib figure.
        stem: path without extension.
        formats: subset of ``png``, ``pdf``, ``svg``.
        dpi: raster resolution (PNG); default the style's ``savefig.dpi``.

    Returns:
        The written paths, in the order of ``formats``.
    """
    paths: list[Path] = []
    for fmt in formats:
        path = stem.with_suffix(f".{fmt}")

        def write(tmp: Path, fmt: str = fmt) -> None:
            kwargs: dict[str, Any] = {"format": fmt, "metadata": _METADATA[fmt]}
            if dpi is not None:
                kwargs["dpi"] = dpi
            fig.savefig(tmp, **kwargs)

        atomic_write(path, write)
        paths.append(path)
    return paths
