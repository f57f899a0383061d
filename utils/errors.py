"""The one exception type for bad input from the user (a file, a line, a key, a value).

Scripts catch ``InputError`` at the top and print ``user_message(e)`` without a traceback; anything
else is a bug and keeps its traceback. ``report_error(e)`` prints that line and returns the exit status. It subclasses ``ValueError`` so notebook code that
already catches ``ValueError`` keeps working.
"""
import sys


class InputError(ValueError):
    """Bad input: the message names the file, line, key or value at fault."""


def user_message(e: BaseException) -> str:
    """``str(e)``, or for an exception that a DataLoader worker raised, its original message.

    PyTorch re-raises a worker's exception in the main process with the same type but a new message,
    ``"Caught InputError in DataLoader worker process 0.\\nOriginal Traceback ..."``, which ends with
    ``"utils.errors.InputError: <the message>"``; this returns ``<the message>``.
    """
    text = str(e)
    if not (text.startswith("Caught ") and "\nOriginal Traceback" in text):
        return text
    cls = type(e)  # the traceback's last line names it as traceback.format_exception does
    module = "" if cls.__module__ in ("builtins", "__main__") else f"{cls.__module__}."
    _, found, message = text.rpartition(f"\n{module}{cls.__qualname__}: ")
    return message.strip() if found else text


def report_error(e: BaseException) -> int:
    """Print ``error: <user_message(e)>`` on stderr, the one line a script shows for bad input; returns 2,
    the exit status of bad input."""
    print(f"error: {user_message(e)}", file=sys.stderr)
    return 2
