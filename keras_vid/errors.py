"""The one "did you mean" error for a misspelt name (methods, keys, rules)."""

import difflib


def unknown_name(what, name, valid, extra="", n=3):
    """Returns a `ValueError` for an unknown name, with its close matches.

    Args:
        what: what the name names, e.g. `"method"` or `"pairing rule"`.
        name: the name received.
        valid: the valid names, listed in the message.
        extra: a sentence appended to the message.
        n: at most this many close matches are suggested.

    Example:

    >>> str(unknown_name("method", "vid", ["vid_i", "kd"]))
    "Unknown method 'vid'. Did you mean 'vid_i'? Valid: vid_i, kd."
    """
    close = difflib.get_close_matches(str(name), list(valid), n=n, cutoff=0.5)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return ValueError(
        f"Unknown {what} {name!r}.{hint} Valid: {', '.join(valid)}.{extra}"
    )
