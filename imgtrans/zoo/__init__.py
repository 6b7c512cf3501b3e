"""The model zoo: reference checkpoints converted to imgtrans's layout, and pretrained weights."""

from imgtrans.zoo.reference import convert_reference, load_reference, read_reference, reference_arguments

__all__ = ["convert_reference", "load_reference", "read_reference", "reference_arguments"]
