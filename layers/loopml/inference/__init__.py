"""Online inference: scoring, explanations, model loading with graceful degradation, capture."""
