"""The JSON record a test bed keeps in its folder (lab.json, vm.json), so that another process can find it again."""
import json
import os

from testbed.errors import LabError


def read(folder, name, what):
    """The record `name` in `folder`; LabError ("no lab in ...") when there is none or it cannot be read."""
    try:
        with open(os.path.join(folder, name)) as file:
            return json.load(file)
    except (OSError, ValueError) as error:
        raise LabError(f"no {what} in {folder}: cannot read {name} ({error})")
