"""``nst stylize --region MASK=STYLE[#STYLEMASK][:WEIGHT]``: spatial control from the command line
(`nst_engine.regions`). No torch here: the specs are parsed and their images read."""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import InputError

if TYPE_CHECKING:
    from ..regions import Region

REGION_HELP = ("MASK=STYLE[#STYLEMASK][:WEIGHT]: paint the part of CONTENT that the mask image MASK selects "
               "(white; its alpha where it has one; soft edges blend) in the style of STYLE, optionally only "
               "the part of STYLE under STYLEMASK, with WEIGHT times --style-weight (default 1; 0 keeps the "
               "photo there). Repeat for several regions; any MASK size with CONTENT's aspect ratio. The part no "
               "region covers stays the photo, or takes the STYLE images if any are given")


@dataclass(frozen=True)
class RegionSpec:
    text: str  # as typed
    mask: str
    style: str
    style_mask: str
    weight: float


def parse_region(text: str) -> RegionSpec:
    """``MASK=STYLE[#STYLEMASK][:WEIGHT]`` → its parts. A trailing ``:WEIGHT`` is taken only when it
    is a number, so ``style:NAME`` stays a style name; MASK ends at the first ``=``, STYLE at the
    last ``#``."""
    mask, eq, rest = text.partition("=")
    if not eq or not mask.strip() or not rest.strip():
        raise InputError("--region", text, "expected MASK=STYLE[#STYLEMASK][:WEIGHT], e.g. sky.png=starry.jpg:2")
    weight = 1.0
    head, colon, tail = rest.rpartition(":")
    if colon:
        try:
            weight = float(tail)
        except ValueError:
            head = rest  # not a weight: part of the style's name (style:NAME)
        else:
            if not math.isfinite(weight) or weight < 0:
                raise InputError("--region", text, f"the weight after ':' must be a number >= 0, got {tail!r}")
    else:
        head = rest
    style, hash_, style_mask = head.rpartition("#")
    if not hash_:
        style, style_mask = head, ""
    if not style.strip() or (hash_ and not style_mask.strip()):
        raise InputError("--region", text, "expected MASK=STYLE[#STYLEMASK][:WEIGHT]: STYLE or STYLEMASK missing")
    return RegionSpec(text, mask.strip(), style.strip(), style_mask.strip(), weight)


def load_regions(specs: Sequence[str], mask_side: int, style_side: int) -> list["Region"]:
    """The `Region`s of ``--region`` options: masks decoded for a result of long side ``mask_side``,
    styles (and their masks) for ``style_side``. Unreadable files: InputError naming --region."""
    from ..regions import Region, mask_from_image
    from ..samples import load

    regions = []
    for text in specs:
        spec = parse_region(text)
        mask = mask_from_image(load(spec.mask, "--region", max_side=mask_side))
        style = load(spec.style, "--region", max_side=style_side)
        style_mask = mask_from_image(load(spec.style_mask, "--region", max_side=style_side)) \
            if spec.style_mask else None
        regions.append(Region(mask, style, spec.weight, style_mask, argument="--region", source=text))
    return regions
