"""`workflow`: the hosted-runner workflow written into a user's own repository.

The checkout's .github/workflows/labs.yml is the one source: this copies its bytes, so the file a user commits is
the one the repository lints (actionlint, zizmor) and whose Linux and report jobs its tests run.
"""
import os

from formats.errors import UserError

CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCE = os.path.join(CHECKOUT, ".github", "workflows", "labs.yml")
DEFAULT_OUT = os.path.join(".github", "workflows", "labs.yml")  # where GitHub looks, in the repository's root
NEXT_STEP = ("commit it and push: Actions > labs > Run workflow starts it (and it runs every Monday); in a "
             "repository that is not socklab's own, set the Actions variable SOCKLAB_REPOSITORY to the socklab "
             "repository (owner/name) it runs")


def workflow_text():
    with open(SOURCE, "rb") as stream:
        return stream.read()


def write(out=DEFAULT_OUT, force=False):
    """Writes the workflow to `out` (its folders made as needed); the line that says what was done. UserError when
    `out` is a folder, or a different file is there and `force` is not given."""
    text = workflow_text()
    if os.path.isdir(out):
        raise UserError("is a folder: name the workflow file, e.g. {}".format(os.path.join(out, "labs.yml")),
                        path=out, field="--out")
    try:
        with open(out, "rb") as stream:
            existing = stream.read()
    except FileNotFoundError:
        existing = None
    except OSError as exc:
        raise UserError("cannot be read: {}".format(exc.strerror), path=out, field="--out") from None
    if existing == text:
        return "{}: already this workflow; {}".format(out, NEXT_STEP)
    if existing is not None and not force:
        raise UserError("a different file is there: `./socklab workflow --force` replaces it", path=out,
                        field="--out")
    folder = os.path.dirname(out)
    temporary = out + ".tmp"
    try:
        if folder:
            os.makedirs(folder, exist_ok=True)
        with open(temporary, "wb") as stream:
            stream.write(text)
        os.replace(temporary, out)  # a reader never sees half a workflow
    except OSError as exc:
        raise UserError("cannot be written: {}".format(exc.strerror), path=out, field="--out") from None
    return "{}: {} the workflow; {}".format(out, "replaced with" if existing is not None else "wrote", NEXT_STEP)
