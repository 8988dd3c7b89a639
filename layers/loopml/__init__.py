"""loopml: a scikit-learn model from MVP to production on AWS, and kept healthy there."""

__version__ = "0.1.0"
