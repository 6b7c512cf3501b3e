"""Image datasets: paired (AB files or A/ and B/ folders), unpaired (trainA/, trainB/), and the embedded synthetic facades."""

from imgtrans.data.paired import PairedImageDataset
from imgtrans.data.synthetic import SyntheticFacades, write_ab_folder
from imgtrans.data.unpaired import DomainImageDataset, UnpairedImageDataset, evaluation_domains, write_unpaired_folder

__all__ = [
    "DomainImageDataset",
    "PairedImageDataset",
    "SyntheticFacades",
    "UnpairedImageDataset",
    "evaluation_domains",
    "write_ab_folder",
    "write_unpaired_folder",
]
