"""The keys of an exported ONNX file's metadata (metadata_props), torch-free: the exporter writes them
(models/onnx_export.py) and the API, which never imports torch, reads them to answer for the model."""

import json
from collections.abc import Mapping
from dataclasses import dataclass

from models.dataset_info import DatasetInfo

DATASET_INFO, GENERATIVE, LATENT_DIM = "nnforge.dataset_info", "nnforge.generative", "nnforge.latent_dim"


@dataclass(frozen=True)
class OnnxMeta:
    info: DatasetInfo  # the checkpoint's: what the network was trained on, even if the upload is gone
    generative: bool  # a GAN's generator: latent vectors in, samples out
    latent_dim: int | None

    def as_metadata(self) -> dict[str, str]:
        return {
            DATASET_INFO: self.info.model_dump_json(),
            GENERATIVE: json.dumps(self.generative),
            LATENT_DIM: json.dumps(self.latent_dim),
        }

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str]) -> "OnnxMeta":
        return cls(
            info=DatasetInfo.model_validate_json(metadata[DATASET_INFO]),
            generative=json.loads(metadata[GENERATIVE]),
            latent_dim=json.loads(metadata[LATENT_DIM]),
        )
