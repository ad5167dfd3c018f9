"""The refusal every fastpass.regex tier shares."""


class UnsupportedPattern(ValueError):
    """The pattern is valid Python syntax but uses a construct fastpass does not run; the message
    names the construct and what to write instead."""
