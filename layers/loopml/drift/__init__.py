"""The drift *service*: one evaluation of a model version over a time window, its reports and history,
and the guarded retraining trigger. The statistics themselves live in ``loopml.statistics``.
"""
