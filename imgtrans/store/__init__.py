"""From a name to bytes on disk and back: the model configuration, weights, checkpoints, the zoo, the factory.

``config`` (``ModelConfig``, which owns ``config.json``), ``folder`` (the folder format: its file names and
its one writer), ``weights`` (safetensors state dicts), ``checkpoint``
(training checkpoints), ``card`` (README.md of a saved model), ``reference`` (the reference
implementation's ``.pth`` files, read without pickle), ``zoo`` (published weights) and ``factory``
(``build``, ``save_pretrained``, ``from_pretrained``, ``load``). Nothing here trains or deploys.
"""
