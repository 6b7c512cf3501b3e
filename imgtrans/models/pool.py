"""A history of generated images for the discriminator (Shrivastava et al., CVPR 2017; CycleGAN section 4).

CycleGAN updates each discriminator "using a history of generated images rather than the ones
produced by the latest generators", a buffer of the 50 previous fakes. This is the reference
code's ``util/image_pool.py``, image by image: while the pool is not full, a fake is stored and
returned; after that, with probability 1/2 a stored fake is returned and the new one takes its
place, otherwise the new fake is returned and the pool is left as it is.

The draws come from the pool's own generator (the reference uses Python's global ``random``), so
that they depend on nothing else the run draws; its state and the stored images are the pool's
[state][imgtrans.models.pool.ImagePool.state], which the trainer saves in each checkpoint, so a
resumed run draws and returns what the uninterrupted one would.
"""

from __future__ import annotations

import torch


class ImagePool:
    """Up to ``size`` earlier fakes; [query][imgtrans.models.pool.ImagePool.query] swaps them for new ones.

    Args:
        size: images kept (50 in CycleGAN); 0 returns every fake unchanged.
        seed: seed of the pool's draws; by default one drawn from torch's global generator (so a
            seeded run seeds its pools).
    """

    def __init__(self, size: int = 50, seed: int | None = None) -> None:
        if size < 0:
            raise ValueError(f"pool_size must be at least 0; got {size}")
        self.size = size
        self.images: list[torch.Tensor] = []
        self.rng = torch.Generator()  # on the CPU: the same draws on every device
        self.rng.manual_seed(int(torch.randint(2**62, (), device="cpu")) if seed is None else seed)

    def __len__(self) -> int:
        return len(self.images)

    @torch.no_grad()
    def query(self, images: torch.Tensor) -> torch.Tensor:
        """The batch the discriminator sees in place of ``images`` (detached), drawn as the reference does."""
        if self.size == 0:
            return images.detach()
        chosen = []
        for image in images.detach().split(1):
            if len(self.images) < self.size:
                self.images.append(image)
                chosen.append(image)
            elif float(torch.rand((), generator=self.rng)) > 0.5:
                i = int(torch.randint(self.size, (), generator=self.rng))
                chosen.append(self.images[i].clone())
                self.images[i] = image
            else:
                chosen.append(image)
        return torch.cat(chosen)

    def state(self) -> dict[str, torch.Tensor]:
        """The generator's state (``rng``) and the stored images stacked (``images``, when there are any)."""
        state = {"rng": self.rng.get_state()}
        if self.images:
            shapes = {tuple(image.shape) for image in self.images}
            if len(shapes) > 1:
                raise ValueError(
                    f"the image pool holds fakes of {len(shapes)} sizes, which one checkpoint tensor cannot hold; "
                    "train on crops of one size (crop_size, --crop-size)"
                )
            state["images"] = torch.cat(self.images)
        return state

    def load_state(self, state: dict[str, torch.Tensor], device: torch.device | str = "cpu") -> None:
        """Restore what [state][imgtrans.models.pool.ImagePool.state] returned; the images go to ``device``."""
        self.rng.set_state(state["rng"])
        images = state.get("images")
        self.images = [] if images is None else list(images.to(device).split(1))
        if len(self.images) > self.size:
            raise ValueError(f"the checkpoint's image pool holds {len(self.images)} images; this pool holds {self.size}")
