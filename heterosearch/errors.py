"""The one exception type that the CLI turns into a one-line message and exit code 2."""


class UserError(ValueError):
    """Bad input from the user (a flag, a file, a budget): say what and how to fix it."""
