"""Evaluation: the metrics, and a saved detector evaluated from its params file alone (the
loop's own evaluation, :func:`gankd.train.loop.evaluate`, does the work)."""
