"""The GIMP procedures' arguments, derived from `StyleConfig` (written out at install time).

GIMP's Python has neither numpy nor torch, so the plug-in cannot import the engine to learn its
settings. ``nst gimp-install`` therefore writes `spec()` as ``nst-gimp-args.json`` next to the
plug-in, and the plug-in registers its PDB arguments from that file. Arguments that are
`StyleConfig` fields (``steps``, ``size``, ``style-weight``, ...) take their default, bounds and
help from the field itself, so the dialog, scripts and the CLI can never disagree; reinstalling
after an engine upgrade refreshes them (the installer touches the plug-in so GIMP re-reads it).
Arguments that are `StylizeOptions` fields (``method``, ``model-size``, ``composite``) do the same
(``option_field``). Arguments that only exist in GIMP (style layer, model file, layer mode, ...)
are declared here. ``selection_margin`` is the context the engine stylizes around a selection
(`nst_engine.options.SELECTION_MARGIN`): the plug-in should read that much around it.

Spatial control (`nst_engine.regions`): ``regions`` (0..`MAX_REGIONS`) regions, region k a saved
channel or layer mask (``regionK-channel``, white = the region) painted in its own style
(``regionK-style-layer`` or ``regionK-style-file``), and ``regions-rest`` what the part no region
covers becomes: the photo, or the Style layer/file. The iterative method only.

Part of the spec depends on the engine's machine, learned by ``nst gimp-install`` (`EngineFacts`):
the shipped models (the Model choice, labelled by painting, plus "Other .onnx file…"), whether
CUDA is there (without it the dialog opens on the model method) and the measured step cost
(``"estimate"``: the dialog's "about 4 min on this computer"). An argument's ``show_if``
({argument: [values]}) tells the dialog when to show it; ``dialog_default`` is the value the
dialog starts from the first time, where it differs from the PDB default that scripts get.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, TypedDict

from ..config import StyleConfig
from ..options import SELECTION_MARGIN, StylizeOptions

SPEC_VERSION = 5  # 3: regions; 4: plug-in-nst-frames; 5: regionK-weight, style-scale
GINT_MAX = 2**31 - 1

# StyleConfig fields the procedures expose, in dialog order, with dialog-only hints: the label,
# and the slider's soft range (typing still accepts anything within the field's bounds).
CONFIG_FIELDS: dict[str, dict[str, Any]] = {
    "steps": {"nick": "S_teps", "soft": [1, 1000]},
    "size": {"nick": "Si_ze (px)", "soft": [64, 2048],
             "extra": ". For a selection, the layer's scale is kept (the selection is processed at the "
                      "same px per px as the whole layer would be)"},
    "style_weight": {"nick": "Style _weight", "soft": [0.0, 20.0], "digits": 2},
    "style_scale": {"nick": "Stro_ke scale", "soft": [0.25, 4.0], "digits": 2,
                    "extra": ": larger gives the painting's larger structures and broader strokes, smaller its "
                             "finer ones (Gatys et al. 2017, scale control)"},
    # seed: StyleConfig's is `int | None` without bounds; GIMP needs an int range: -1 = random.
    "seed": {"nick": "Ra_ndom seed", "soft": [0, 1000], "lo": -1, "hi": GINT_MAX,
             "extra": " (-1: a different result every time)"},
}
CONFIG_ARGUMENTS = tuple(CONFIG_FIELDS)

LAYER_MODES = [  # nick, Gimp.LayerMode member, label
    ("normal", "NORMAL", "Normal"), ("overlay", "OVERLAY", "Overlay"), ("soft-light", "SOFTLIGHT", "Soft light"),
    ("hard-light", "HARDLIGHT", "Hard light"), ("multiply", "MULTIPLY", "Multiply"), ("screen", "SCREEN", "Screen"),
    ("darken-only", "DARKEN_ONLY", "Darken only"), ("lighten-only", "LIGHTEN_ONLY", "Lighten only"),
    ("grain-merge", "GRAIN_MERGE", "Grain merge"), ("lch-color", "LCH_COLOR", "LCh color"),
    ("lch-lightness", "LCH_LIGHTNESS", "LCh lightness"), ("hsl-color", "HSL_COLOR", "HSL color"),
    ("luminance", "LUMINANCE", "Luminance"), ("dissolve", "DISSOLVE", "Dissolve"),
]


def _choice(name: str, nick: str, blurb: str, options: list[tuple[str, str, str]], default: str) -> dict[str, Any]:
    return {"name": name, "type": "choice", "nick": nick, "blurb": blurb, "default": default,
            "choices": [{"nick": n, "label": label, "help": h} for n, label, h in options]}


# StylizeOptions fields the stylize procedure exposes, with dialog-only hints (the choices' labels).
OPTION_FIELDS: dict[str, dict[str, Any]] = {
    "method": {"nick": "_Method", "labels": {
        "iterative": ("Iterative (any style image)", "Gatys et al.: optimises the image; slow"),
        "model": ("Model (fast, one style per model)", "A trained network: one pass")}},
    "model_size": {"nick": "Model _size (px)", "soft": [0, 4096]},
    "composite": {"nick": "_Blend selection", "labels": {
        "poisson": ("Poisson (seamless)", "Gradient-domain blending at the selection edge"),
        "feather": ("Feather", "Soft edge"), "none": ("None (hard edge)", "")}},
}


def _field_argument(cls: type, field_name: str, hints: dict[str, Any], key: str) -> dict[str, Any]:
    """A GIMP argument from field ``field_name`` of dataclass ``cls``: its default, choices or
    bounds and help from the field, the label (``nick``) and slider range from ``hints``."""
    f = {fl.name: fl for fl in dataclasses.fields(cls)}[field_name]
    default = f.default
    meta = f.metadata
    help_text = str(meta.get("help", ""))
    if key == "option_field":  # StylizeOptions' help is a sentence in the dialog
        help_text = help_text[:1].upper() + help_text[1:]
    arg: dict[str, Any] = {
        "name": field_name.replace("_", "-"), key: field_name, "nick": hints["nick"],
        "blurb": help_text + hints.get("extra", ""),
    }
    if "choices" in meta:
        labels = hints.get("labels", {})
        arg.update(type="choice", default=default, choices=[
            {"nick": c, "label": labels.get(c, (c.capitalize(), ""))[0], "help": labels.get(c, ("", ""))[1]}
            for c in meta["choices"]])
        return arg
    is_int = str(f.type) in ("int", "int | None")
    lo, hi = meta.get("lo", hints.get("lo")), meta.get("hi", hints.get("hi"))
    if lo is None or hi is None:
        raise ValueError(f"{cls.__name__}.{field_name} has no bounds for a GIMP argument")
    if is_int:
        lo, hi = max(int(lo), -GINT_MAX), min(int(hi), GINT_MAX)
    arg.update(type="int" if is_int else "double", min=lo, max=hi,
               default=-1 if default is None else default, soft=hints.get("soft"))
    if "digits" in hints:
        arg["digits"] = hints["digits"]
    return arg


def _config_argument(field_name: str) -> dict[str, Any]:
    return _field_argument(StyleConfig, field_name, CONFIG_FIELDS[field_name], "config_field")


def _option_argument(field_name: str) -> dict[str, Any]:
    return _field_argument(StylizeOptions, field_name, OPTION_FIELDS[field_name], "option_field")


def _maybe_config_choice(field_name: str, fallback: dict[str, Any]) -> dict[str, Any]:
    """A choice the engine may have moved into StyleConfig (e.g. preserve_colors): use it if so."""
    fields = {fl.name: fl for fl in dataclasses.fields(StyleConfig)}
    f = fields.get(field_name)
    if f is None or "choices" not in f.metadata:
        return fallback
    labels = {c["nick"]: c for c in fallback["choices"]}
    arg = dict(fallback, config_field=field_name, default=getattr(StyleConfig(), field_name),
               blurb=f.metadata.get("help", fallback["blurb"]))
    arg["choices"] = [labels.get(c, {"nick": c, "label": c.capitalize(), "help": ""}) for c in f.metadata["choices"]]
    return arg


def _style_arguments() -> list[dict[str, Any]]:
    return [
        {"name": "style-layer", "type": "layer", "nick": "St_yle layer",
         "blurb": "A layer of any open image whose style is transferred (used instead of Style file when set)"},
        {"name": "style-file", "type": "file", "nick": "Style _file",
         "blurb": "An image file whose style is transferred (when no Style layer is set)"},
    ]


MAX_REGIONS = 4  # regions of the stylize procedure (region1-… to region4-…)
MAX_REGION_WEIGHT = 100.0  # regionK-weight: a multiple of the style weight
REST_CHOICES = [("photo", "Keep the photo", "Outside the regions the layer stays as it is"),
                ("style", "Style above (Style layer or file)", "Outside the regions: the style chosen under Style")]


def region_arguments() -> list[dict[str, Any]]:
    """``regions``, then channel and style (layer or file) of region 1..`MAX_REGIONS`, then
    ``regions-rest``, then each region's weight. A region's arguments show in the dialog while
    Regions counts it."""
    iterative = ["iterative"]
    args: list[dict[str, Any]] = [{
        "name": "regions", "type": "int", "nick": "_Regions", "min": 0, "max": MAX_REGIONS, "default": 0,
        "soft": [0, MAX_REGIONS],
        "blurb": "Iterative method only: how many regions get a style of their own (0: one style everywhere). "
                 "Region k is the part of the image its channel selects (white; a saved selection or a layer "
                 "mask; soft edges blend), painted in region k's style; a selection still limits everything"}]
    for k in range(1, MAX_REGIONS + 1):
        shown = {"method": iterative, "regions": list(range(k, MAX_REGIONS + 1))}
        args += [
            {"name": f"region{k}-channel", "type": "channel", "nick": f"Region {k} channel", "show_if": shown,
             "blurb": f"Where region {k} is: a channel of this image (Select ▸ Save to Channel) or a layer mask"},
            {"name": f"region{k}-style-layer", "type": "layer", "nick": f"Region {k} style layer", "show_if": shown,
             "blurb": f"A layer of any open image whose style paints region {k} (used instead of the file when set)"},
            {"name": f"region{k}-style-file", "type": "file", "nick": f"Region {k} style file", "show_if": shown,
             "blurb": f"An image file whose style paints region {k} (when no region {k} style layer is set)"},
        ]
    args.append(dict(_choice("regions-rest", "Rest _of the image", "With Regions: what the part no region covers "
                             "becomes (the photo, or the style chosen under Style)", REST_CHOICES, "photo"),
                     show_if={"method": iterative, "regions": list(range(1, MAX_REGIONS + 1))}))
    # spec 5: the weights come last, so the arguments above keep their positions
    args += [{"name": f"region{k}-weight", "type": "double", "nick": f"Region {k} weight", "min": 0.0,
              "max": MAX_REGION_WEIGHT, "default": 1.0, "soft": [0.0, 4.0], "digits": 2,
              "show_if": {"method": iterative, "regions": list(range(k, MAX_REGIONS + 1))},
              "blurb": f"How strongly region {k} takes its style: its style weight times this (0: the region "
                       "keeps the photo)"} for k in range(1, MAX_REGIONS + 1)]
    return args


def _result_arguments() -> list[dict[str, Any]]:
    return [
        _choice("layer-mode", "Layer mod_e", "Blend mode of the new layer",
                [(n, label, "") for n, _, label in LAYER_MODES], "normal"),
        {"name": "opacity", "type": "double", "nick": "Opac_ity", "blurb": "Opacity of the new layer (%)",
         "min": 0.0, "max": 100.0, "default": 100.0, "soft": [0.0, 100.0], "digits": 1},
    ]


OTHER_MODEL = "file"  # the Model choice that uses Model file instead of a shipped model
DEFAULT_MODEL = "starry-night"  # the default Model when it ships (else the first one)


class EngineFacts(TypedDict, total=False):
    """What ``nst gimp-install`` learns from the engine's Python (`nst_engine.gimp_install.engine_facts`)."""

    models: list[dict[str, str]]  # shipped models: name, painting, variant (`nst_engine.models.model_catalog`)
    cuda: bool  # torch.cuda.is_available() in the engine's environment
    step_cost: dict[str, Any] | None  # `nst_engine.estimate.StepCost.to_spec()`, None if not measured


def _model_choices(models: Sequence[dict[str, str]]) -> list[tuple[str, str, str]]:
    """(nick, label, help) per shipped model, labelled by painting (with the variant where two
    models paint the same picture), then the Other .onnx file choice."""
    paintings = [m.get("painting") or m["name"] for m in models]
    out = []
    for m, painting in zip(models, paintings, strict=True):
        if m["name"] == OTHER_MODEL:
            continue
        label = painting if paintings.count(painting) == 1 else f"{painting}, {m.get('variant', m['name'])}"
        out.append((m["name"], label, f"Shipped model {m['name']} ({m.get('variant', '?')})"))
    out.append((OTHER_MODEL, "Other .onnx file…", "A model made by `nst train`: choose it in Model file"))
    return out


def _model_arguments(models: Sequence[dict[str, str]]) -> list[dict[str, Any]]:
    choices = _model_choices(models)
    names = [n for n, _, _ in choices if n != OTHER_MODEL]
    default = DEFAULT_MODEL if DEFAULT_MODEL in names else (names[0] if names else OTHER_MODEL)
    shipped = ", ".join(names) if names else "none installed"
    only_model = {"method": ["model"]}
    return [
        dict(_choice("model", "Mo_del", f"Method model: a shipped model by name ({shipped}), or '{OTHER_MODEL}' "
                     "to use the .onnx file in Model file", choices, default), show_if=only_model),
        {"name": "model-file", "type": "file", "nick": "Model fi_le", "show_if": {**only_model, "model": [OTHER_MODEL]},
         "blurb": f"An .onnx model made by `nst train` (used when Model is '{OTHER_MODEL}')"},
        dict(_option_argument("model_size"), show_if=only_model),
    ]


def _preserve_colors() -> dict[str, Any]:
    return _maybe_config_choice("preserve_colors", _choice(
        "preserve-colors", "_Preserve colors", "Keep the colours of the original",
        [("none", "No (style colours)", ""), ("luminance", "Luminance transfer", "Only the style's light and dark"),
         ("histogram", "Histogram matching", "Style colours matched to the original's"),
         ("linear", "Linear colour transfer", "Style colours moved to the original's mean and covariance")],
        "none"))


def stylize_arguments(facts: EngineFacts | None = None) -> list[dict[str, Any]]:
    """The arguments of plug-in-nst-stylize. Without CUDA the dialog opens on the model method
    (``dialog_default``); scripts keep ``iterative`` as the default either way."""
    facts = facts or {}
    only_iterative = {"method": ["iterative"]}
    method = _option_argument("method")
    method["dialog_default"] = "iterative" if facts.get("cuda", True) else "model"
    return [
        *(dict(a, show_if=only_iterative) for a in _style_arguments()),
        method,
        *_model_arguments(facts.get("models") or []),
        dict(_config_argument("steps"), show_if=only_iterative),
        dict(_config_argument("size"), show_if=only_iterative),
        dict(_config_argument("style_weight"), show_if=only_iterative),
        _preserve_colors(),
        _option_argument("composite"),
        *_result_arguments(),
        *region_arguments(),  # arguments added later come last: earlier ones keep their positions
        dict(_config_argument("style_scale"), show_if=only_iterative),  # spec 5
    ]


def _texture_size() -> dict[str, Any]:
    arg = _config_argument("size")
    help_text = {f.name: f for f in dataclasses.fields(StyleConfig)}["size"].metadata["help"]
    arg["blurb"] = help_text + "; the texture is then resized to the canvas (or the selection)"
    return arg


def texture_arguments() -> list[dict[str, Any]]:
    return [
        *_style_arguments(),
        _config_argument("steps"),
        _texture_size(),
        _config_argument("seed"),
        *_result_arguments(),
        _config_argument("style_scale"),  # spec 5
    ]


CONSISTENCY_CHOICES = [  # nick (`nst_engine.temporal.CONSISTENCY`), label, help
    ("temporal", "Temporal (optical flow)", "Each frame keeps the previous stylized frame, warped along the motion, "
                                            "where the scene was visible: no flicker"),
    ("none", "None (frame by frame)", "Each frame is stylized on its own (it may flicker)")]


def frames_arguments(facts: EngineFacts | None = None) -> list[dict[str, Any]]:
    """The arguments of plug-in-nst-frames (`nst_engine.bridge.frames`): the model method by
    default (fast), temporal consistency on; the iterative method with a style layer or file."""
    from ..temporal import CONSISTENCY, DEFAULT_BLEND

    from .frames import MAX_BLEND, MAX_REFINE

    facts = facts or {}
    only_iterative = {"method": ["iterative"]}
    method = dict(_option_argument("method"), default="model")
    consistency = _choice("consistency", "_Consistency", "temporal: each frame keeps the previous stylized frame, "
                          "warped along the optical flow, where the scene was visible (no flicker); none: frame by "
                          "frame", CONSISTENCY_CHOICES, "temporal")
    if [c["nick"] for c in consistency["choices"]] != list(CONSISTENCY):
        raise ValueError("CONSISTENCY_CHOICES does not match nst_engine.temporal.CONSISTENCY")
    steps = _config_argument("steps")
    return [
        method,
        *_model_arguments(facts.get("models") or []),
        consistency,
        {"name": "blend", "type": "double", "nick": "_Blend with the previous frame", "min": 0.0, "max": MAX_BLEND,
         "default": DEFAULT_BLEND, "soft": [0.0, MAX_BLEND], "digits": 2, "show_if": {"consistency": ["temporal"]},
         "blurb": "How much of the previous stylized frame (warped) each frame keeps where the scene was visible: "
                  "more is steadier, less keeps each frame's own detail"},
        *(dict(a, show_if=only_iterative) for a in _style_arguments()),
        dict(steps, show_if=only_iterative, nick="S_teps (first frame)"),
        {"name": "next-steps", "type": "int", "nick": "Steps (_later frames)", "min": 0, "max": int(steps["max"]),
         "default": 0, "soft": [0, 1000], "show_if": {**only_iterative, "consistency": ["temporal"]},
         "blurb": "Optimizer steps for each frame after the first, which starts from the previous result warped "
                  "along the motion (0: half of Steps); frame by frame, every frame takes Steps"},
        dict(_config_argument("size"), show_if=only_iterative),
        dict(_config_argument("style_weight"), show_if=only_iterative),
        _preserve_colors(),
        # spec 5, last: the arguments above keep their positions
        {"name": "refine-steps", "type": "int", "nick": "_Refine steps", "min": 0, "max": MAX_REFINE, "default": 0,
         "soft": [0, 20], "show_if": {"method": ["model"], "consistency": ["temporal"]},
         "blurb": "Optimizer steps on each blended frame under the model's own loss: keeps the strokes crisp "
                  "that the blend dulls, at some seconds a frame (0: off)"},
        dict(_config_argument("style_scale"), show_if=only_iterative),  # spec 5
    ]


def spec(facts: EngineFacts | None = None) -> dict[str, Any]:
    """Everything the plug-in needs to register its procedures (JSON-serialisable). ``facts``
    about the engine's machine (shipped models, CUDA, step cost) come from ``nst gimp-install``;
    without them: no shipped models, the iterative method, no time estimate."""
    from .. import __version__

    facts = facts or {}
    return {
        "spec_version": SPEC_VERSION,
        "engine_version": __version__,
        "layer_modes": {n: member for n, member, _ in LAYER_MODES},
        "selection_margin": SELECTION_MARGIN,
        "estimate": facts.get("step_cost"),
        "procedures": {"plug-in-nst-stylize": stylize_arguments(facts), "plug-in-nst-texture": texture_arguments(),
                       "plug-in-nst-frames": frames_arguments(facts)},
    }
