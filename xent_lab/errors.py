"""User-facing errors: their message says what is wrong and how to fix it, and no traceback is shown."""


class XentError(Exception):
    """Base class of the errors `python -m xent_lab.train` reports as a one-line message."""


class ConfigError(XentError):
    """A config value is invalid; the message names the key."""


class NonFiniteLossError(XentError):
    """The training loss became NaN or infinite."""


class TrackingError(XentError):
    """The MLflow tracking store cannot be reached or used."""


class NotApplicable(ConfigError):
    """A valid combination of choices that has no implementation, e.g. FLSD-53 with Keras' built-in focal loss.

    A sweep that crosses such choices skips these jobs instead of counting them as failures.
    """


def invalid_value(key: str, value: object, expected: str) -> ConfigError:
    """The one-line error for a config value: the key, the value, and the values it takes."""
    return ConfigError(f"invalid config value {key}={value!r}: expected {expected}")
