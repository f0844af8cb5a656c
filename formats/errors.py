"""The one error a user can cause: bad input, named by file, line and field. Tasks print it and exit 2."""


class UserError(Exception):
    """A mistake in something the user gave (a file, a name, an option): never a traceback, always one line."""

    def __init__(self, message, path=None, line=None, field=None):
        super().__init__(message)
        self.message, self.path, self.line, self.field = message, path, line, field

    def __str__(self):
        where = ""
        if self.path is not None:
            where = str(self.path) + (":{}".format(self.line) if self.line is not None else "") + ": "
        field = "{}: ".format(self.field) if self.field else ""
        return where + field + self.message
