"""HTML reports of stored runs: plotly charts, the metrics table and the trade list.

``build_report(engine, run)`` returns a self-contained page (plotly.js inlined);
``write_report(engine, run, path)`` writes it. ``learning_curves_figure(frame)``
draws training metrics per update. See :mod:`reporting.report`.
"""

from reporting.downsample import bucket_means, minmax_indices
from reporting.figures import learning_curves_figure, monthly_returns_table
from reporting.report import build_report, render_html, training_report, write_report
from reporting.trades import fill_kinds, round_trips_frame

__all__ = [
    "bucket_means",
    "build_report",
    "fill_kinds",
    "learning_curves_figure",
    "minmax_indices",
    "monthly_returns_table",
    "render_html",
    "round_trips_frame",
    "training_report",
    "write_report",
]
