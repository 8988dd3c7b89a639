"""Adapters own AWS: injected clients in, domain errors out."""
