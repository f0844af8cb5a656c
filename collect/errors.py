"""The controller's own failure: a host it could not reach or run. A user's mistake is formats.errors.UserError."""


class TransportError(Exception):
    """A host could not be reached, or the agent did not run to its end there: the reason, in one line."""
