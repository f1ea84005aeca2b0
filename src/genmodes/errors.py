"""User-facing errors. The CLI prints ``genmodes: error: <message>`` (one line) and exits 2."""


class GenmodesError(Exception):
    """A problem the user can fix: bad config, corrupt file, unknown model. The message is one line."""


class DataError(GenmodesError, ValueError):
    """Unknown family, bad setting, missing or corrupt data file."""


class ModelError(GenmodesError):
    """Unknown model spec, missing model package, model unreachable offline."""


class ConfigError(GenmodesError, ValueError):
    """Invalid experiment config."""
