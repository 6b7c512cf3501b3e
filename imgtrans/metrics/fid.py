"""Fréchet and kernel Inception distances (FID, KID), computed as published pix2pix scores are.

Both compare the *distribution* of the outputs with that of the targets, in the 2048-d pool
features $f(\\cdot)$ of an Inception-v3 network trained on ImageNet. With $\\mu, \\Sigma$ the
mean and covariance of the targets' features and $\\mu_w, \\Sigma_w$ the outputs' (Heusel et al.,
NeurIPS 2017),

$$\\mathrm{FID} = \\lVert \\mu - \\mu_w \\rVert^2
  + \\operatorname{tr}\\big(\\Sigma + \\Sigma_w - 2 (\\Sigma \\Sigma_w)^{1/2}\\big),$$

and KID is the squared maximum mean discrepancy under the kernel
$k(a, b) = (a^\\top b / 2048 + 1)^3$, estimated without bias on random subsets of
``kid_subset_size`` images and averaged over ``kid_subsets`` subsets (Bińkowski et al., ICLR 2018).
Lower is better for both; 0 means the same distribution.

**Which implementation.** The statistics are torchmetrics' `FrechetInceptionDistance` and
`KernelInceptionDistance`; the network is torch-fidelity's port of the TensorFlow Inception
(``inception-2015-12-05``, weights ``weights-inception-2015-12-05-6726825d.pth``, the weights of
the original TTUR FID code and of pytorch-fid), resizing to 299 × 299 with TensorFlow 1's
bilinear resampling and no antialiasing (torchmetrics' ``antialias=False``; its default,
``True``, gives other numbers). This is the standard FID: mmagic's published pix2pix FIDs
(facades: 119.1 for the official weights; 124.98 for its own, 127.8 in an earlier table) use the
same weights through pytorch-fid's network (``inception_style='PyTorch'``) on the 106 test
images. Images are quantised to 8 bits first, as when FID is computed on saved PNGs.

**Weights without pickle or network.** The weights are read with
``torch.load(weights_only=True)`` (or from a ``.safetensors`` file), never unpickled; torch-fidelity
would read them with ``weights_only=False``. They come from, in order: the file given
(``inception_weights=`` here, ``--inception-weights`` on the command line); the cache where
torch-fidelity and torchmetrics keep them (``$TORCH_HOME/hub/checkpoints``); a download into that
cache, refused in offline mode (``HF_HUB_OFFLINE=1``) and abandoned after
``HF_HUB_DOWNLOAD_TIMEOUT`` seconds (10) without an answer.

```python no-test
import torch
from imgtrans.metrics.fid import InceptionDistance

scores = InceptionDistance(inception_weights="weights-inception-2015-12-05-6726825d.pth")
targets = torch.rand(64, 3, 64, 64) * 2 - 1
scores.update((targets + 0.2 * torch.randn_like(targets)).clamp(-1, 1), targets)
print(scores.compute())  # {"fid": ..., "kid": ..., "kid_std": ..., "images": 64, ...}
```
"""

from __future__ import annotations

import inspect
import os
import warnings
from pathlib import Path
from typing import Any, Mapping
from unittest import mock

import torch
from torch import nn

WEIGHTS_FILE = "weights-inception-2015-12-05-6726825d.pth"
"""The file name of the FID Inception weights, as torch-fidelity and torchmetrics cache them."""
WEIGHTS_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{WEIGHTS_FILE}"
FEATURES = 2048
"""The standard FID's features: the 2048 pool features. 64, 192 and 768 (earlier layers) also exist."""
FEATURE_CHOICES = (64, 192, 768, 2048)
RELIABLE_IMAGES = 10_000
"""Heusel et al. recommend at least 10,000 images for FID; below, it is biased upward."""
KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000  # torch-fidelity's and torchmetrics' defaults
INSTALL = 'FID and KID need torchmetrics and torch-fidelity: pip install "imgtrans[fid]"'


def _libraries():
    """torchmetrics' FID/KID and its Inception network, or one line saying how to install them."""
    try:
        import torch_fidelity.feature_extractor_inceptionv3 as fidelity  # noqa: F401
        from torchmetrics.image.fid import FrechetInceptionDistance, NoTrainInceptionV3
        from torchmetrics.image.kid import KernelInceptionDistance
    except ImportError:
        raise ModuleNotFoundError(INSTALL) from None
    return fidelity, NoTrainInceptionV3, FrechetInceptionDistance, KernelInceptionDistance


def default_weights_path() -> Path:
    """Where torch-fidelity and torchmetrics cache the weights: ``$TORCH_HOME/hub/checkpoints/``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_FILE


def _where_to_put_it() -> str:
    return (
        f"download {WEIGHTS_URL} on a machine with network and put it at {default_weights_path()}, "
        "or pass its path with --inception-weights FILE (inception_weights= in Python)"
    )


def find_inception_weights(path: str | os.PathLike | None = None) -> Path:
    """The weights file to use: ``path``, else the cached file, else a download into the cache.

    Raises:
        FileNotFoundError: ``path`` does not exist, or there is no cached file and no download
            (offline mode, no network, timeout); the message says where to put the file.
    """
    if path is not None:
        path = Path(path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"no Inception weights file at {path}; expected {WEIGHTS_FILE} ({WEIGHTS_URL})")
        return path
    cached = default_weights_path()
    if cached.is_file():
        return cached
    from imgtrans.hub import DownloadError, download

    try:
        return download(WEIGHTS_URL, cached)
    except DownloadError as error:
        reason = str(error).replace(WEIGHTS_URL, "the file")  # the URL is said once, below
        raise FileNotFoundError(f"no FID Inception weights ({reason}); {_where_to_put_it()}") from None


def load_inception_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a weights file, read without unpickling (``weights_only=True``, or safetensors)."""
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle refusals, truncated zip archives, safetensors errors
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"{path} is not a readable weights file ({first[:200]}); expected {WEIGHTS_FILE}") from None
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} does not hold a state dict of tensors; expected {WEIGHTS_FILE}")
    return dict(state)


def _inception_class():
    """torchmetrics' never-training Inception, taking its weights from us instead of a download."""
    fidelity, NoTrainInceptionV3, _, _ = _libraries()

    class FIDInceptionV3(NoTrainInceptionV3):
        def __init__(self, state: Mapping[str, torch.Tensor] | None, feature: int = FEATURES) -> None:
            options = {"antialias": False} if "antialias" in inspect.signature(super().__init__).parameters else {}
            # torch-fidelity's constructor downloads, or torch.load()s a path with weights_only=False;
            # its download function is swapped, for this call only, for the tensors we read safely.
            with mock.patch.object(fidelity, "load_state_dict_from_url", lambda *args, **kwargs: state):
                super().__init__(name="inception-v3-compat", features_list=[str(feature)], **options)
            self.num_features = feature  # torchmetrics reads it instead of running a dummy image

        def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
            if state_dict is None:  # random_inception_state(): keep the fresh initialisation
                return None
            _check_layout(state_dict, super().state_dict())
            return super().load_state_dict(state_dict, strict=strict, assign=assign)

    return FIDInceptionV3


def _check_layout(state: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor]) -> None:
    # The published file, converted from TensorFlow, has no BatchNorm step counters: torch adds them.
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    shapes = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or shapes:
        problems = [f"{len(missing)} missing (e.g. {missing[0]})"] if missing else []
        problems += [f"{len(unexpected)} unexpected (e.g. {unexpected[0]})"] if unexpected else []
        if shapes:
            key = shapes[0]
            problems.append(f"{len(shapes)} of another shape (e.g. {key}: {tuple(state[key].shape)}, "
                            f"expected {tuple(expected[key].shape)})")  # fmt: skip
        raise ValueError(f"tensors {', '.join(problems)}")


def random_inception_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """Inception tensors of the right layout with random values, to test the FID code path offline.

    The tensors are those of ``weights-inception-2015-12-05-6726825d.pth`` (torch-fidelity's
    conversion of the TensorFlow graph: no BatchNorm step counters). Convolutions are
    He-initialised and batch normalisations are identities, so features keep their scale through
    the network. Scores computed with them mean nothing beyond the properties
    every FID has (0 for one set against itself, growing with the difference).
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        network = _inception_class()(None)
        for module in network.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=FEATURES**-0.5)
                nn.init.zeros_(module.bias)
    # the published file's layout: no BatchNorm step counters
    return {k: v.clone() for k, v in network.state_dict().items() if not k.endswith("num_batches_tracked")}


class InceptionFeatures(nn.Module):
    """The 2048 pool features of the FID Inception for images in $[-1, 1]$ (or those of an earlier layer).

    Args:
        inception_weights: a weights file (``.pth`` read with ``weights_only=True``, or
            ``.safetensors``) of the layout of ``weights-inception-2015-12-05-6726825d.pth``;
            ``None`` finds it as [find_inception_weights][imgtrans.metrics.fid.find_inception_weights] does.
        state: the tensors themselves, instead of a file.
        feature: 2048 (the pool features: the standard FID, the only one comparable with published
            numbers), or 64, 192 or 768 (the average of an earlier layer, as torchmetrics' and
            torch-fidelity's ``feature`` option; far cheaper, for experiments and tests).

    Raises:
        FileNotFoundError: No file given, none cached, and no download possible.
        ValueError: The file is unreadable or holds other tensors than the network's.
        ModuleNotFoundError: torchmetrics or torch-fidelity is not installed.
    """

    def __init__(
        self,
        inception_weights: str | os.PathLike | None = None,
        state: Mapping[str, torch.Tensor] | None = None,
        feature: int = FEATURES,
    ) -> None:
        super().__init__()
        if feature not in FEATURE_CHOICES:
            raise ValueError(f"feature must be one of {', '.join(map(str, FEATURE_CHOICES))}; got {feature!r}")
        self.num_features = feature
        cls = _inception_class()  # the libraries first: without them, say how to install them
        source = "the given state"
        if state is None:
            path = find_inception_weights(inception_weights)
            state, source = load_inception_weights(path), str(path)
        try:
            self.network = cls(state, feature)
        except ValueError as error:
            raise ValueError(f"{source} does not hold the FID Inception weights ({WEIGHTS_FILE}): {error}") from None

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Features ``(N, num_features)`` of images ``(N, C, H, W)`` in $[-1, 1]$, 1 (gray) or 3 channels.

        Images are quantised to 8 bits as a PNG would store them; the network resizes them to
        299 × 299.
        """
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] not in (1, 3):
            shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise ValueError(f"FID needs images of shape (N, 1 or 3, H, W) in [-1, 1]; got {shape}")
        if not torch.isfinite(images).all():
            raise ValueError("FID was given images holding NaN or infinite values")
        pixels = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        pixels = pixels.expand(-1, 3, -1, -1) if pixels.shape[1] == 1 else pixels
        device = next(self.network.parameters()).device
        return self.network(pixels.to(device)).float()


class _Precomputed(nn.Module):
    """The identity, with ``num_features``: torchmetrics' metrics are fed features, not images."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features.double()  # the statistics, and so the scores, in float64


class InceptionDistance:
    """FID and KID of generated images against real ones, accumulated batch by batch.

    The Inception network runs once per image; its features feed torchmetrics'
    `FrechetInceptionDistance` and `KernelInceptionDistance` (through their custom-feature
    interface). Real features can be kept while the generated ones are reset, so a validation
    set's targets are encoded once for a whole training run.

    Args:
        inception_weights: see [InceptionFeatures][imgtrans.metrics.fid.InceptionFeatures].
        fid: compute FID (its matrix square root takes about 3 s on 2 idle CPU cores, whatever the
            number of images: torchmetrics takes the eigenvalues of a 2048 x 2048 product).
        kid: compute KID.
        kid_subsets: random subsets KID averages over (100).
        kid_subset_size: images per subset; ``None``: 1000, or all images when fewer.
        batch_size: images per Inception forward pass.
        device: where the Inception network runs (``None``: where it is; a new one is on the CPU).
        features: an [InceptionFeatures][imgtrans.metrics.fid.InceptionFeatures] to share,
            instead of loading one.
    """

    def __init__(
        self,
        inception_weights: str | os.PathLike | None = None,
        fid: bool = True,
        kid: bool = True,
        kid_subsets: int = KID_SUBSETS,
        kid_subset_size: int | None = None,
        batch_size: int = 16,
        device: torch.device | str | None = None,
        features: InceptionFeatures | None = None,
    ) -> None:
        if kid_subset_size is not None and (not isinstance(kid_subset_size, int) or kid_subset_size < 2):
            raise ValueError(f"kid_subset_size must be an integer >= 2 (or None); got {kid_subset_size!r}")
        if not isinstance(kid_subsets, int) or kid_subsets < 1:
            raise ValueError(f"kid_subsets must be an integer >= 1; got {kid_subsets!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1; got {batch_size}")
        if not (fid or kid):
            raise ValueError("nothing to compute: set fid=True, kid=True or both")
        _, _, Frechet, Kernel = _libraries()
        self.features = features if features is not None else InceptionFeatures(inception_weights)
        if device is not None:
            self.features.to(device)
        self.batch_size, self.kid_subsets, self.kid_subset_size = batch_size, kid_subsets, kid_subset_size
        dims = self.features.num_features
        self._fid = Frechet(feature=_Precomputed(dims), reset_real_features=False)  # also counts the images
        self._compute_fid = fid
        self._kid = None
        if kid:
            with warnings.catch_warnings():  # that KID keeps every feature: 16 KiB an image, as intended
                warnings.simplefilter("ignore", UserWarning)
                self._kid = Kernel(feature=_Precomputed(dims), reset_real_features=False, subsets=kid_subsets)
        self._real: list[torch.Tensor] = []  # the real features, to share with spawn()

    def _add(self, images: torch.Tensor, real: bool) -> None:
        with torch.no_grad():
            for start in range(0, len(images), self.batch_size):
                self._add_features(self.features(images[start : start + self.batch_size]).cpu(), real)

    def _add_features(self, features: torch.Tensor, real: bool) -> None:
        self._fid.update(features, real=real)
        if self._kid is not None:
            self._kid.update(features, real=real)
        if real:
            self._real.append(features)

    def spawn(self) -> "InceptionDistance":
        """A new accumulator with the same network, settings and real images, and no generated ones.

        The real images are not encoded again: their features are copied.
        """
        other = InceptionDistance(
            fid=self._compute_fid, kid=self._kid is not None, kid_subsets=self.kid_subsets,
            kid_subset_size=self.kid_subset_size, batch_size=self.batch_size, features=self.features,
        )  # fmt: skip
        for features in self._real:
            other._add_features(features, real=True)
        return other

    def update_real(self, images: torch.Tensor) -> None:
        """Add real images ``(N, C, H, W)`` in $[-1, 1]$ (the targets)."""
        self._add(images, real=True)

    def update_fake(self, images: torch.Tensor) -> None:
        """Add generated images ``(N, C, H, W)`` in $[-1, 1]$ (the outputs)."""
        self._add(images, real=False)

    def update(self, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        """Add a batch of outputs and their targets."""
        self.update_fake(outputs)
        self.update_real(targets)

    @property
    def real_images(self) -> int:
        """Real images added so far."""
        return int(self._fid.real_features_num_samples)

    @property
    def fake_images(self) -> int:
        """Generated images added so far."""
        return int(self._fid.fake_features_num_samples)

    def reset_fake(self) -> None:
        """Forget the generated images, keep the real ones (for the next validation)."""
        self._fid.reset()
        if self._kid is not None:
            self._kid.reset()

    def compute(self) -> dict[str, Any]:
        """The scores so far.

        Returns:
            ``{"images", "real_images"}``, with FID ``"fid"``, and with KID ``{"kid", "kid_std",
                "kid_subsets", "kid_subset_size"}`` (mean and standard deviation over subsets;
                the subsets are drawn with a fixed seed, so the same images give the same KID,
                and the global random stream is left untouched).

        Raises:
            ValueError: Fewer than 2 images on a side, or a KID subset larger than the images.
        """
        fake, real = self.fake_images, self.real_images
        if fake < 2 or real < 2:
            raise ValueError(f"FID and KID need at least 2 generated and 2 real images; got {fake} and {real}")
        size = self.kid_subset_size if self.kid_subset_size is not None else min(KID_SUBSET_SIZE, fake, real)
        if self._kid is not None and size > min(fake, real):
            raise ValueError(
                f"kid_subset_size ({size}) is larger than the {min(fake, real)} images; "
                f"give a kid_subset_size of at most {min(fake, real)} (--kid-subset-size on the command line)"
            )
        scores: dict[str, Any] = {"images": fake, "real_images": real}
        if self._compute_fid:
            scores["fid"] = float(self._fid.compute())
        if self._kid is not None:
            self._kid.subset_size = size
            with torch.random.fork_rng(devices=[]):  # KID draws its subsets from the global generator
                torch.manual_seed(0)
                mean, std = self._kid.compute()
            scores.update(kid=float(mean), kid_std=float(std), kid_subsets=self.kid_subsets, kid_subset_size=size)
        return scores


def bias_note(images: int) -> str | None:
    """The warning a report shows beside an FID of ``images`` images, or ``None`` from 10,000 on."""
    if images >= RELIABLE_IMAGES:
        return None
    return (
        f"FID on {images} images is biased upward (its bias shrinks roughly as 1/N; Heusel et al. recommend "
        f"at least {RELIABLE_IMAGES:,}): compare FIDs only between evaluations of the same images and number of "
        "images (mmagic's facades FIDs use the 106 test images), and read KID, whose estimate is unbiased"
    )

