"""The shipped models as users see them: painting, variant, size, how each was trained."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Titles of the paintings in ../shared/images/styles (public domain), for models whose metadata
# carries only a style name.
PAINTINGS = {
    "starry-night": "The Starry Night (Vincent van Gogh, 1889)",
    "great-wave": "The Great Wave off Kanagawa (Hokusai, c. 1831)",
    "composition-vii": "Composition VII (Wassily Kandinsky, 1913)",
    "monet-water-lilies": "Water Lilies (Claude Monet)",
    "monet-impression-sunrise": "Impression, Sunrise (Claude Monet, 1872)",
    "turner-temeraire": "The Fighting Temeraire (J. M. W. Turner, 1839)",
    "klimt-the-kiss": "The Kiss (Gustav Klimt, 1908)",
    "seurat-sunday-afternoon": "A Sunday Afternoon on the Island of La Grande Jatte (Georges Seurat, 1884)",
    "vangogh-wheatfield-crows": "Wheatfield with Crows (Vincent van Gogh, 1890)",
    "gauguin-siesta": "The Siesta (Paul Gauguin, c. 1892)",
}


@dataclass(frozen=True)
class ModelEntry:
    """One shipped model, as `nst models` and the GIMP dialog list it."""

    name: str  # what --model takes: starry-night
    painting: str  # The Starry Night (Vincent van Gogh, 1889)
    variant: str  # light | standard
    bytes: int
    trained: str  # how it was trained, one line
    path: Path

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "painting": self.painting, "variant": self.variant, "bytes": self.bytes,
                "trained": self.trained, "path": str(self.path)}


def _trained_line(training: dict[str, Any]) -> str:
    steps = training.get("steps_done") or training.get("steps")
    parts = [f"{steps} steps" if steps else "steps unknown"]
    if training.get("crop"):
        parts.append(f"{training.get('batch_size')}x{training['crop']} px crops"
                     + (f" + {training['fine_steps']} at {training.get('fine_batch_size')}x{training.get('fine_crop')}"
                        if training.get("fine_steps") else ""))
    if training.get("init"):  # fine-tuned or continued from another network: its steps are not counted here
        init = str(training["init"])
        parts.append("started from " + init.removesuffix(".pt").removesuffix(".ckpt").removesuffix(".onnx"))
    if training.get("train_minutes") is not None:
        parts.append(f"{training['train_minutes']} min on {training.get('processor') or training.get('device', '?')}")
    elif training.get("device"):
        parts.append(f"on {training['device']}")
    return ", ".join(parts)


def model_catalog() -> list[ModelEntry]:
    """The shipped models with their painting and training summary (opens each model once; cached)."""
    from .models import list_models, load_model

    entries = []
    for name in list_models():
        info = load_model(name, "cpu")  # cached: a second listing opens nothing
        painting = info.metadata.get("painting") or PAINTINGS.get(info.style_name, info.style_name)
        if painting == info.style_name:
            painting = PAINTINGS.get(info.style_name, painting)
        entries.append(ModelEntry(name, painting, info.metadata.get("variant", "?"), info.path.stat().st_size,
                                  _trained_line(info.training), info.path))
    return entries
