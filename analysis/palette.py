"""One palette by meaning, for every view of the results: the HTML page (its CSS is generated from it), the picture
(matplotlib colours) and the terminal (rich styles).

A cell is coloured by what it means for its lab's question (analysis.layouts says which meaning each lab's cells
have), never by its outcome alone: a second socket that took a listener's connections is a takeover although every
call it made returned ok. The colours are Okabe and Ito's (distinct under the common colour-vision deficiencies),
with different lightness between neighbours of one hue family; every cell also says its outcome in words, the
takeover and lost are bold and framed and unsupported is hatched in the page, so colour is never the only cue.
"""
from dataclasses import dataclass


@dataclass(frozen=True)
class Colour:
    """A meaning's colour: `background` for cells, swatches and the picture; `text` readable on it (contrast
    >= 4.5 : 1); `label` the legend's words, `short` the picture's."""
    name: str
    background: str
    text: str
    label: str
    short: str = ""

    def __post_init__(self):
        if not self.short:
            object.__setattr__(self, "short", self.name.replace("_", " "))


MEANINGS = (
    Colour("ok", "#009E73", "#000000", "ok: the step did what was asked, and nothing was taken over"),
    Colour("refused", "#56B4E9", "#000000", "refused: EADDRINUSE"),
    Colour("shared", "#E69F00", "#000000",
           "shared: a second socket holds the port a live socket holds (it may take its connections or datagrams)"),
    Colour("takeover", "#D55E00", "#000000",
           "takeover: the second socket took connections or datagrams meant for the first (or a miswired pair)"),
    Colour("lost", "#0072B2", "#FFFFFF",
           "lost: connections queued on a listener that closed were reset or never served, not moved to the others"),
    Colour("other_error", "#CC79A7", "#000000", "another error (EACCES, EINVAL, ...)"),
    Colour("inconclusive", "#F0E442", "#000000", "inconclusive: the state was not witnessed"),
    Colour("unsupported", "#BBBBBB", "#000000", "unsupported: the host cannot build the case"),
    Colour("error", "#000000", "#FFFFFF", "error: the agent failed"),
    Colour("value", "#F2F2F2", "#000000", "a value the step reported (set, path, a count, ...)", "a value"),
    Colour("none", "#FFFFFF", "#6B6B6B", "not measured", "not measured"),
)
BY_NAME = {colour.name: colour for colour in MEANINGS}
NAMES = tuple(colour.name for colour in MEANINGS)

# Marks drawn over the cells: where systems differ (the picture), a mismatch with the documented expectation.
DIFFER = Colour("differ", "#000000", "#FFFFFF", "systems differ in this case", "systems differ")
MISMATCH = "#000000"

# What a verdict means, in the same colours: agreeing is ok, disagreeing is drawn as a takeover is (look here).
VERDICT_MEANINGS = {"match": "ok", "mismatch": "takeover", "undocumented": "value", "inconclusive": "inconclusive",
                    "unsupported": "unsupported", "error": "error"}


def rich_style(name):
    """The rich style of a meaning (or of a verdict): its text on its background."""
    colour = BY_NAME[VERDICT_MEANINGS.get(name, name)]
    return "{} on {}".format(colour.text, colour.background)


def rgb(hex_colour):
    """(r, g, b) of '#RRGGBB', each 0-255."""
    return tuple(int(hex_colour[position:position + 2], 16) for position in (1, 3, 5))
