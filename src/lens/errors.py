"""User-facing errors.

`LensError` is what every boundary check raises: a message that says what was wrong and what to do.
It subclasses ValueError so library callers can catch the usual type; the CLI prints it as one line.
"""


class LensError(ValueError):
    """Bad input at a boundary (prompt, size, config, file). The message tells the user what to do."""
