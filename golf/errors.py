"""The one exception type a stage turns into a one-line error message and a non-zero exit."""


class GolfError(Exception):
    """Bad input or an impossible request: the message names the file, key or value."""
