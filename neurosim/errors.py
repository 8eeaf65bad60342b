"""The one exception hierarchy of neurosim.

Every user mistake raises a subclass of :class:`NeurosimError` whose message is one line that
names the file or option at fault and says how to fix it. The CLI turns these into that one
line on stderr and exit code 2; library users catch them as ordinary exceptions.
"""


class NeurosimError(Exception):
    """Base class: a problem the user can fix. ``str(err)`` is the one-line message."""

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


class InputError(NeurosimError, ValueError):
    """An input file is missing, unreadable, of the wrong format, corrupt or inconsistent."""


class ParameterError(NeurosimError, ValueError):
    """An option or parameter value is impossible (negative time constant, unknown name, ...)."""


class OutputError(NeurosimError, OSError):
    """An output cannot be written (directory missing, not writable, ...)."""


class CapacityError(NeurosimError):
    """A network or dataset does not fit the resources it is mapped to."""


class MissingExtraError(NeurosimError, ImportError):
    """An optional package is not installed; the message names the ``pip install "neurosim[EXTRA]"``.

    Raised by :mod:`neurosim.extras`; an ImportError too, so ``except ImportError`` fallbacks
    still apply.
    """
