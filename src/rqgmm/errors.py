"""Exceptions and warnings raised by rqgmm.

Every error a user can trigger with bad input derives from :class:`RqgmmError`, so the CLI can
print its message without a stack trace. They also derive from the built-in class that fits
(``ValueError``, ``FileNotFoundError``…), so ``except ValueError`` keeps working.
"""


try:  # scikit-learn users catch its classes: ours are also theirs where it is installed
    from sklearn.exceptions import ConvergenceWarning as _SklearnConvergenceWarning
    from sklearn.exceptions import NotFittedError as _SklearnNotFittedError
except ImportError:  # scikit-learn is optional: stand-ins with the same built-in bases as its classes
    class _SklearnNotFittedError(ValueError, AttributeError):
        """Stand-in for scikit-learn's NotFittedError (a ValueError and an AttributeError)."""

    class _SklearnConvergenceWarning(UserWarning):
        """Stand-in for scikit-learn's ConvergenceWarning."""


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


class NotFittedError(RqgmmError, _SklearnNotFittedError, AttributeError):
    """A method that needs a fitted tokenizer was called before ``fit``."""


class ConvergenceWarning(_SklearnConvergenceWarning, UserWarning):
    """EM or k-means stopped at ``max_iter`` before the change fell below ``tol``."""


class ComponentReseedWarning(UserWarning):
    """Empty or collapsed mixture components / clusters were re-seeded during fitting."""
