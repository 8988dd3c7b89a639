"""Feedback capture: the captured dataset (predictions + labels), the review list, privacy controls.

Modules: ``layout`` (where objects live), ``consumer`` (SQS -> dataset), ``reader`` (dataset -> rows,
``read_captured``), ``service`` (the feedback API), ``erasure`` (right to erasure), ``privacy``
(subject hashing, log masking), ``ports``/``dynamo``/``memory`` (storage), ``wiring`` (assembly).
"""
