"""Statistics of a whole store and its HTML report.

    stats      per-video rows (``flowprep inspect --videos``, ``store.video_stats()``)
    plots      matplotlib (Agg) figures of those rows, as PNG bytes
    page       ``flowprep report``: one self-contained HTML page

Nothing is imported here, so the store can import ``report.stats`` without
pulling in matplotlib or the page.
"""
