"""Exceptions and warnings raised by rqgmm.

Every error a user can trigger with bad input derives from :class:`RqgmmError`, so the CLI can
print its message without a stack trace. They also derive from the built-in class that fits
(``ValueError``, ``FileNotFoundError``…), so ``except ValueError`` keeps working.

:class:`NotFittedError` has the built-in bases of scikit-learn's (``ValueError`` and
``AttributeError``). Where scikit-learn is loaded, :func:`not_fitted` and
:func:`convergence_warning` give subclasses that are also scikit-learn's classes, so its
estimator checks and its users' ``except`` / warning filters see them as theirs; importing
scikit-learn here instead would cost about two seconds at every start of the command line.
"""

import sys


class RqgmmError(Exception):
    """Base class of every user-facing rqgmm error."""


class InvalidInputError(RqgmmError, ValueError):
    """Input data is unusable: wrong shape, dtype, NaN/Inf values, too few rows."""


class ArtifactError(RqgmmError, ValueError):
    """A saved tokenizer directory is missing, incomplete, corrupted or of another version."""


class VersionMismatchError(RqgmmError, ValueError):
    """Two parts of the lifecycle name different tokenizer versions (codes file and tokenizer,
    registry and service, CTR run and tokenizer); the message names both and the fixing command."""


class OutputExistsError(RqgmmError, FileExistsError):
    """An output path already exists and overwriting was not requested."""


class NotFittedError(RqgmmError, ValueError, AttributeError):
    """A method that needs a fitted tokenizer was called before ``fit``."""


class ConvergenceWarning(UserWarning):
    """EM or k-means stopped at ``max_iter`` before the change fell below ``tol``."""


class ComponentReseedWarning(UserWarning):
    """Empty or collapsed mixture components / clusters were re-seeded during fitting."""


_SKLEARN_FLAVOURS: dict[type, type] = {}


def _sklearn_flavour(ours: type, name: str) -> type:
    """``ours``, or a subclass that is also scikit-learn's class ``name`` when scikit-learn is loaded."""
    exceptions = sys.modules.get("sklearn.exceptions")
    theirs = getattr(exceptions, name, None)
    if theirs is None:
        return ours
    if ours not in _SKLEARN_FLAVOURS:
        _SKLEARN_FLAVOURS[ours] = type(ours.__name__, (ours, theirs), {"__module__": ours.__module__,
                                                                       "__doc__": ours.__doc__})
    return _SKLEARN_FLAVOURS[ours]


def not_fitted(message: str) -> NotFittedError:
    """A :class:`NotFittedError` (also scikit-learn's where it is loaded) to raise."""
    return _sklearn_flavour(NotFittedError, "NotFittedError")(message)


def convergence_warning() -> type:
    """The category to warn with: :class:`ConvergenceWarning` (also scikit-learn's where it is loaded)."""
    return _sklearn_flavour(ConvergenceWarning, "ConvergenceWarning")
