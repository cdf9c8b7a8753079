"""The one error type of the edge kit: a bad input file, with the file named in the message."""


class EdgeKitError(ValueError):
    """A model, image or metadata problem; the message names the file and what is wrong."""
