"""The one exception type for bad input from the user (a file, a line, a key, a value).

Scripts catch ``InputError`` at the top and print its message without a traceback; anything
else is a bug and keeps its traceback. It subclasses ``ValueError`` so notebook code that
already catches ``ValueError`` keeps working.
"""


class InputError(ValueError):
    """Bad input: the message names the file, line, key or value at fault."""
