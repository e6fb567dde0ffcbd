"""Which features a classifier was fitted on: a typed, saved backbone spec that can rebuild the backbone."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from imgorigin.attribution.features import Backbone


@dataclass(frozen=True)
class BackboneSpec:
    """A backbone (``create_backbone`` name), its id with the digest of its weights, a layer and its preprocessing."""

    name: str
    id: str
    layer: str
    preprocess: str

    @classmethod
    def of(cls, backbone: Backbone, layer: str | int | None = None) -> BackboneSpec:
        """The spec of a live backbone at a layer (name, alias or index; None: its default layer)."""
        return cls(backbone.name, backbone.id, backbone.resolve_layer(layer), backbone.preprocess_id)

    def create(self, *, name: str | None = None, device: str | torch.device | None = "auto") -> Backbone:
        """The backbone to embed with; ``name`` loads the same weights from elsewhere (e.g. a moved folder).

        Other weights are refused: features from them would not be the ones the classifier was fitted on.
        """
        from imgorigin.attribution.features import BackboneError, create_backbone
        from imgorigin.runtime import resolve_device

        backbone = create_backbone(name or self.name, device=resolve_device(device))
        if backbone.id != self.id:
            raise BackboneError(
                f"backbone {name or self.name!r} has weights {backbone.id}, but the classifier was fitted on {self.id}"
            )
        return backbone

    def to_dict(self) -> dict[str, str]:
        """The spec as saved in classifier.json."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, str]) -> BackboneSpec:
        """A spec read back from classifier.json."""
        return cls(data["name"], data["id"], data["layer"], data["preprocess"])
