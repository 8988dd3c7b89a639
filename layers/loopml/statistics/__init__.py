"""Drift engine: reference profiles at training time, data/prediction/label drift, quality, performance, bias.

Each module is imported by name (``loopml.statistics.engine``, ``.profile``, ``.bias``, ``.performance``,
``.quality``, ``.report_html``, ``.stats``), and this package imports none of them: the inference function
reads a model's ``ReferenceProfile`` and must not build the whole engine's models at every cold start
(40 ms). scipy is imported when a p-value is first needed.
"""
