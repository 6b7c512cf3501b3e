"""Paired image datasets (AB files or A/ and B/ folders) and the embedded synthetic facades."""

from imgtrans.data.paired import PairedImageDataset
from imgtrans.data.synthetic import SyntheticFacades, write_ab_folder

__all__ = ["PairedImageDataset", "SyntheticFacades", "write_ab_folder"]
