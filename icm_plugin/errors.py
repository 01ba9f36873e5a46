"""The one exception type for mistakes a user can cause (bad file, bad value, unreachable server)."""


class ICMError(Exception):
    """A user-facing error: the message names the file/record/field and the fix; the CLI prints it without a traceback."""
