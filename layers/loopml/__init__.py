"""loopml: a scikit-learn model from MVP to production on AWS, and kept healthy there."""

__version__ = "0.1.0"


def register(*args: object, **kwargs: object) -> object:
    """Register a fitted scikit-learn classifier: ``loopml.register(estimator, X, y, model="NAME", to=...)``.

    See ``loopml.registration.register``; imported on use, so importing loopml stays cheap in a Lambda."""
    from loopml.registration import register as _register

    return _register(*args, **kwargs)  # type: ignore[arg-type]
