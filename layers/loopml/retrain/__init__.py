"""Retraining with a canary rollout: the steps the ``retrain`` state machine runs, one per Task state.

``workflow.RetrainWorkflow`` holds the steps; ``dataset``, ``gate`` and ``canary`` are the pure
decisions they make; ``lock``, ``approvals`` and ``adapters`` own the state they keep in S3, Lambda,
CloudWatch and Step Functions.
"""
