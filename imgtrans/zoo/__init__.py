"""The model zoo: pretrained weights, saving and loading without pickle, and reference checkpoints.

- [entries][imgtrans.zoo.entries]: the catalogue of pretrained models;
- [pretrained][imgtrans.zoo.pretrained]: ``save_pretrained`` / ``from_pretrained`` / ``push_to_hub``;
- [resolver][imgtrans.zoo.resolver]: where ``build(name, pretrained=True)`` finds weights;
- [download][imgtrans.zoo.download]: cache locations, atomic downloads, the Hub;
- [reference][imgtrans.zoo.reference]: reading the reference implementation's checkpoints.
"""

from imgtrans.zoo.download import DownloadError, cache_dir
from imgtrans.zoo.entries import ZOO, HubSource, ZooEntry, list_pretrained, pretrained_entry, register_pretrained
from imgtrans.zoo.pretrained import CorruptWeightsError, from_pretrained, model_card, push_to_hub, save_pretrained
from imgtrans.zoo.reference import convert_reference, load_reference, read_reference, reference_arguments
from imgtrans.zoo.resolver import fetch, load_pretrained

__all__ = [
    "ZOO",
    "CorruptWeightsError",
    "DownloadError",
    "HubSource",
    "ZooEntry",
    "cache_dir",
    "convert_reference",
    "fetch",
    "from_pretrained",
    "list_pretrained",
    "load_pretrained",
    "load_reference",
    "model_card",
    "pretrained_entry",
    "push_to_hub",
    "read_reference",
    "reference_arguments",
    "register_pretrained",
    "save_pretrained",
]
