"""The catalogue of datasets: what each pix2pix and CycleGAN dataset holds, where it is, and its bounds.

[imgtrans.data.downloads][] fetches and extracts them; each entry bounds what its archive may be
(the download's length, the members, the expanded bytes).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from imgtrans.data.archives import Bounds

DATASETS_URL = "https://efrosgans.eecs.berkeley.edu/pix2pix/datasets"
"""Where the reference implementation's datasets are (its script names the same server over plain http);
``IMGTRANS_DATASETS_URL`` picks a mirror."""

CYCLEGAN_DATASETS_URL = "https://efrosgans.eecs.berkeley.edu/cyclegan/datasets"
"""Where the reference's CycleGAN datasets are, as ``NAME.zip`` (``datasets/download_cyclegan_dataset.sh``)."""

UNITS = {"kB": 10**3, "MB": 10**6, "GB": 10**9}


@dataclass(frozen=True)
class DatasetEntry:
    """One pix2pix dataset, as the reference implementation distributes it.

    Attributes:
        name: the archive's name, ``NAME.tar.gz``, and the folder it unpacks to.
        task: what A and B hold, e.g. ``"photo (A) | architectural labels (B)"``.
        direction: the direction of the paper's task on it (``--direction``).
        size: the archive's size as the reference server lists it.
        splits: the split folders in the archive, with their number of pairs where published.
        source: where the images come from, to cite.
        licence: terms to respect; ``None`` means the data can be fetched from the reference server.
        downloadable: ``False`` when the data must be obtained by the user (Cityscapes).
        layout: ``"paired"`` (pix2pix: AB files in train/, val/, test/) or ``"unpaired"`` (CycleGAN:
            trainA/, trainB/, testA/, testB/, from ``NAME.zip``).
        archive_root: the folder the archive unpacks to, when it is not ``name`` (CycleGAN's
            ``facades.zip`` is catalogued as ``facades-unpaired``, beside pix2pix's ``facades``).
        unlisted_images: images the catalogue does not count (test splits whose size is not
            published), allowed on top of those listed in ``splits``.
    """

    name: str
    task: str
    direction: str
    size: str
    splits: tuple[str, ...]
    source: str
    licence: str
    downloadable: bool = True
    layout: str = "paired"
    archive_root: str | None = None
    unlisted_images: int = 0

    @property
    def root(self) -> str:
        """The folder the archive holds everything under (``name`` unless ``archive_root`` says otherwise)."""
        return self.archive_root or self.name

    @property
    def archive_file(self) -> str:
        """The archive's file name: ``NAME.tar.gz`` (pix2pix) or ``NAME.zip`` (CycleGAN)."""
        return f"{self.root}.zip" if self.layout == "unpaired" else f"{self.name}.tar.gz"

    @property
    def url(self) -> str:
        """Where the archive is fetched from: ``$IMGTRANS_DATASETS_URL/NAME.tar.gz`` (``.../cyclegan/NAME.zip``)
        or the reference's (the variable is read at each call)."""
        mirror = os.environ.get("IMGTRANS_DATASETS_URL")
        if self.layout == "unpaired":
            base = f"{mirror.rstrip('/')}/cyclegan" if mirror else CYCLEGAN_DATASETS_URL
        else:
            base = mirror or DATASETS_URL
        return f"{base.rstrip('/')}/{self.archive_file}"

    @property
    def archive_bytes(self) -> int:
        """The catalogued size in bytes (``"29 MB"`` is 29,000,000)."""
        number, unit = self.size.split()
        return int(float(number) * UNITS[unit])

    @property
    def images(self) -> int:
        """The images of all splits, as catalogued (``"train (400)"``...), and the unlisted ones allowed."""
        return sum(int(n) for split in self.splits for n in re.findall(r"\((\d+)\)", split)) + self.unlisted_images

    @property
    def max_download(self) -> int:
        """The longest download accepted: 1.5 times the catalogued size (which is rounded), and 1 MiB."""
        return self.archive_bytes * 3 // 2 + 2**20

    @property
    def bounds(self) -> Bounds:
        """What the archive may hold: twice its images (and 64 folders or extras) as members, and 4 times its
        catalogued size as expanded bytes (pix2pix archives hold JPEG and PNG images, which do not compress)."""
        return Bounds(2 * self.images + 64, 4 * self.archive_bytes + 2**20, f"{self.size}, {self.images:,} images")

    @property
    def plain_http(self) -> bool:
        """Whether the archive comes over unencrypted http (a mirror's choice)."""
        return self.url.startswith("http://")


# Sizes are those of the reference server's listing (2018); pair counts from the reference's
# docs/datasets.md and the archives' split folders.
DATASETS: dict[str, DatasetEntry] = {
    d.name: d
    for d in (
        DatasetEntry(
            "facades",
            "photo (A) | architectural labels (B): labels -> photo is BtoA",
            "BtoA",
            "29 MB",
            ("train (400)", "val (100)", "test (106)"),
            "CMP Facade Database, Tylecek and Sara, GCPR 2013 (cmp.felk.cvut.cz/~tylecr1/facade)",
            "research use; cite the CMP Facade Database",
        ),
        DatasetEntry(
            "cityscapes",
            "photo (A) | semantic labels (B): labels -> photo is BtoA",
            "BtoA",
            "99 MB",
            ("train (2975)", "val (500)"),
            "Cityscapes, Cordts et al., CVPR 2016 (www.cityscapes-dataset.com)",
            "needs your own registration at https://www.cityscapes-dataset.com: download gtFine_trainvaltest.zip "
            "and leftImg8bit_trainvaltest.zip there and pair them with the reference's "
            "datasets/prepare_cityscapes_dataset.py; as the reference does, imgtrans does not download it",
            downloadable=False,
        ),
        DatasetEntry(
            "maps",
            "aerial photo (A) | Google map (B): aerial -> map is AtoB",
            "AtoB",
            "239 MB",
            ("train (1096)", "val (1098)"),
            "scraped from Google Maps around New York by the pix2pix authors",
            "map data and imagery (c) Google; research use",
        ),
        DatasetEntry(
            "edges2shoes",
            "HED edges (A) | shoe photo (B): edges -> photo is AtoB",
            "AtoB",
            "2.0 GB",
            ("train (49825)", "val (200)"),
            "UT Zappos50K, Yu and Grauman, CVPR 2014; edges by HED",
            "research use; cite UT Zappos50K",
        ),
        DatasetEntry(
            "edges2handbags",
            "HED edges (A) | handbag photo (B): edges -> photo is AtoB",
            "AtoB",
            "8.0 GB",
            ("train (138567)", "val (200)"),
            "Amazon handbags from the iGAN project, Zhu et al., ECCV 2016; edges by HED",
            "research use; cite iGAN",
        ),
        DatasetEntry(
            "night2day",
            "night (A) | day (B) of the same webcam: night -> day is AtoB (day -> night, BtoA)",
            "AtoB",
            "1.9 GB",
            ("train (17823)", "val (10)", "test (2287)"),
            "Transient Attributes, Laffont et al., SIGGRAPH 2014",
            "research use; cite Transient Attributes",
        ),
    )
}
"""The datasets of the reference's ``download_pix2pix_dataset.sh`` and ``download_cyclegan_dataset.sh``, by name."""


def _unpaired(name: str, task: str, size: str, train: tuple[int, int], source: str, licence: str = "research use; cite "
              "CycleGAN (Zhu et al. 2017) and the images' sources", **more) -> DatasetEntry:  # fmt: skip
    """A CycleGAN dataset: ``trainA`` and ``trainB`` of their published sizes; test splits up to half as many."""
    splits = (f"trainA ({train[0]})", f"trainB ({train[1]})", "testA", "testB")
    return DatasetEntry(name, task, "AtoB", size, splits, source, licence, layout="unpaired",
                        unlisted_images=max(500, sum(train) // 2), **more)  # fmt: skip


# CycleGAN's datasets (datasets/download_cyclegan_dataset.sh). The reference publishes no sizes for its zip files;
# these are the archives' lengths that TensorFlow Datasets recorded from the same server
# (tensorflow_datasets/url_checksums/cycle_gan.txt, in bytes; horse2zebra.zip is 116,867,962), to three figures,
# which the server's listing (2017, in MiB: horse2zebra.zip 111M) confirms. ae_photos, which TensorFlow Datasets does
# not list, has the listing's "10M" only: 11 MB bounds it. Each size bounds the download (1.5 times) and the
# expansion (4 times), and the first download's SHA-256 is recorded and later ones compared with it. Training counts
# are the reference's docs/datasets.md; its test splits are not counted there and are allowed up to half the
# training images (500 at least). Cityscapes, as for pix2pix, must be prepared from the user's own download.
_PHOTOS = "Flickr landscape photos (tags landscape, landscapephotography)"
DATASETS.update({
    d.name: d
    for d in (
        _unpaired("horse2zebra", "horses (A) | zebras (B)", "117 MB", (939, 1177),
                  "ImageNet, keywords 'wild horse' and 'zebra'"),
        _unpaired("apple2orange", "apples (A) | oranges (B)", "78.5 MB", (996, 1020),
                  "ImageNet, keywords 'apple' and 'navel orange'"),
        _unpaired("summer2winter_yosemite", "Yosemite in summer (A) | in winter (B)", "133 MB", (1273, 854),
                  "Flickr API photos of Yosemite"),
        _unpaired("monet2photo", "Monet paintings (A) | photos (B)", "305 MB", (1074, 6853), f"Wikiart; {_PHOTOS}"),
        _unpaired("cezanne2photo", "Cezanne paintings (A) | photos (B)", "280 MB", (584, 6853), f"Wikiart; {_PHOTOS}"),
        _unpaired("ukiyoe2photo", "Ukiyo-e prints (A) | photos (B)", "293 MB", (1433, 6853), f"Wikiart; {_PHOTOS}"),
        _unpaired("vangogh2photo", "Van Gogh paintings (A) | photos (B)", "307 MB", (401, 6853), f"Wikiart; {_PHOTOS}"),
        _unpaired("maps-unpaired", "aerial photos (A) | Google maps (B), unpaired", "1.48 GB", (1096, 1096),
                  "scraped from Google Maps around New York by the pix2pix authors", "map data and imagery (c) Google; "
                  "research use", archive_root="maps"),
        _unpaired("facades-unpaired", "facade photos (A) | architectural labels (B), unpaired", "35.1 MB", (400, 400),
                  "CMP Facade Database, Tylecek and Sara, GCPR 2013", "research use; cite the CMP Facade Database",
                  archive_root="facades"),
        _unpaired("cityscapes-unpaired", "street photos (A) | semantic labels (B), unpaired", "280 MB", (2975, 2975),
                  "Cityscapes, Cordts et al., CVPR 2016 (www.cityscapes-dataset.com)",
                  "needs your own registration at https://www.cityscapes-dataset.com; the reference's "
                  "datasets/prepare_cityscapes_dataset.py writes trainA (photos) and trainB (labels) from it; as the "
                  "reference does, imgtrans does not download it", archive_root="cityscapes", downloadable=False),
        _unpaired("iphone2dslr_flower", "iPhone flower photos (A) | DSLR flower photos (B)", "340 MB", (1813, 3316),
                  "Flickr"),
        # Photos to translate with the published style models (cyclegan-style-monet...), not a training set: the
        # reference's CycleGAN (Lua) tests them as phase "test" of domain A, testA/; their number is not published.
        DatasetEntry("ae_photos", "photos (A) by Alexei Efros, to translate with the style models (no B, no training "
                     "split)", "AtoB", "11 MB", ("testA",), "photos by Alexei A. Efros (www.flickr.com/photos/aaefros)",
                     "research use; cite CycleGAN (Zhu et al. 2017)", layout="unpaired", unlisted_images=500),
    )
})  # fmt: skip
