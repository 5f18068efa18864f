"""The one exception type that the CLI turns into a one-line message and exit code 2."""

#: A message longer than this is cut in the middle: an error names the problem and the fix,
#: it never echoes an unbounded value from a file (a huge list, a pasted tensor).
MAX_MESSAGE = 600


class UserError(ValueError):
    """Bad input from the user (a flag, a file, a budget): say what and how to fix it."""

    def __init__(self, message: object = "") -> None:
        text = str(message)
        if len(text) > MAX_MESSAGE:
            half = MAX_MESSAGE // 2 - 10
            text = f"{text[:half]} ...[{len(text) - 2 * half:,} characters cut]... {text[-half:]}"
        super().__init__(text)
