"""User-facing errors. The CLI prints ``genmodes: error: <message>`` (one line) and exits 2."""


class GenmodesError(Exception):
    """A problem the user can fix: bad config, corrupt file, unknown model. The message is one line."""

    def __str__(self) -> str:
        # one line whatever the message was built from (a path or a value may hold a newline)
        return " ".join(super().__str__().split("\n"))


class DataError(GenmodesError, ValueError):
    """Unknown family, bad setting, missing or corrupt data file."""


class ModelError(GenmodesError):
    """Unknown model spec, missing model package, model unreachable offline."""


class ConfigError(GenmodesError, ValueError):
    """Invalid experiment config."""


class DiskError(DataError):
    """A file or folder that cannot be read or written: permissions, a full disk, a read-only mount,
    a name too long for the filesystem, a path under a file."""


class BusyError(GenmodesError):
    """A run folder another live process is working in."""


class NumericError(GenmodesError, ArithmeticError):
    """A non-finite loss or score: reporting it as a number would be wrong."""
