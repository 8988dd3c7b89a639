"""Starting retraining from uploads under ``incoming/<model>/`` (validated first) and from a schedule."""
