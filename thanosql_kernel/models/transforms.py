"""Two-view SimCLR augmentation of a whole batch on its device, fresh parameters per image.

Why hand-written: torchvision.transforms.v2 on a batched tensor draws ONE parameter set for
the whole batch (pytorch/vision#8484), which makes every image in a step share the same crop
and defeats SimCLR. Two per-image implementations were measured on the target 2-core CPU
(``bench/train.py --augment``: 28x28 grey MNIST, crop + rotation + brightness/contrast +
normalise, after warm-up, other load on the machine varying between runs):

    views per call   hand-written affine grid (here)   kornia.augmentation   ratio
    128              169,000 views/s                    28,000 views/s        6.1x
    512              216,000 views/s                    44,000 views/s        4.9x

The hand-written version won by 5-6x: one ``affine_grid`` + ``grid_sample`` does crop,
rotation, shear and flips at once, and every other step is a few elementwise tensor ops with
per-image parameters of shape (B, 1, 1, 1); kornia pays per-augmentation Python overhead and
builds its matrices image by image. Nothing here syncs with the host, so on CUDA the whole
augmentation is a handful of kernel launches per batch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .config import SimCLRConfig


class _Draws:
    """The random numbers of one augmentation call, per image row.

    ``rows`` None: every row of the batch draws its own (the training process holds the whole
    batch). Otherwise the batch is this worker's ``rows`` of a global batch of ``total`` rows
    (data-parallel training): every draw is made for all ``total`` rows from the generator
    every worker shares, and only ``rows`` are kept, so each image gets exactly the numbers it
    would get in one process training on the whole batch."""

    def __init__(self, gen: torch.Generator, device: torch.device, batch: int,
                 part: tuple[int, torch.Tensor] | None) -> None:
        self.gen, self.device = gen, device
        self.total = batch if part is None else part[0]
        self.rows: torch.Tensor | None = None if part is None else part[1].to(device)

    def rand(self, shape: tuple[int, ...]) -> torch.Tensor:
        return self._keep(torch.rand((self.total, *shape[1:]), generator=self.gen,
                                     device=self.device))

    def randn(self, shape: tuple[int, ...]) -> torch.Tensor:
        return self._keep(torch.randn((self.total, *shape[1:]), generator=self.gen,
                                      device=self.device))

    def uniform(self, lo: float, hi: float, shape: tuple[int, ...]) -> torch.Tensor:
        return self.rand(shape) * (hi - lo) + lo

    def bernoulli(self, p: float, n: int) -> torch.Tensor:
        return self.rand((n,)) < p

    def _keep(self, drawn: torch.Tensor) -> torch.Tensor:
        return drawn if self.rows is None else drawn[self.rows]


def _grey(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) -> (B, 1, H, W) luma (ITU-R 601, as PIL's convert('L'))."""
    return (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])


class BatchAugment:
    """Random per-image views of a uint8 batch: ``aug(x, gen)`` for x (B, C, S, S) uint8
    on any device returns float (B, C, S, S), standardised with ``mean``/``std`` (C,)."""

    def __init__(self, config: SimCLRConfig, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.c = config
        self.mean = mean.view(1, -1, 1, 1)
        self.std = std.view(1, -1, 1, 1)

    @property
    def geometric(self) -> bool:
        c = self.c
        return (c.crop_scale != (1.0, 1.0) or c.rotation > 0 or c.shear > 0 or c.flip
                or c.vertical_flip)

    def __call__(self, images: torch.Tensor, gen: torch.Generator,
                 part: tuple[int, torch.Tensor] | None = None) -> torch.Tensor:
        """images: (B, C, S, S) uint8 -> views (B, C, S, S) float. ``part`` (total, rows):
        ``images`` are the rows ``rows`` of a batch of ``total`` (see ``_Draws``)."""
        r = _Draws(gen, images.device, images.shape[0], part)
        x = images.float().div_(255.0)
        if self.geometric:
            x = self._affine(x, r)
        if self.c.stroke:   # None (the automatic default, unresolved) draws none either
            x = self._stroke(x, r)
        x = self._colour(x, r)
        if self.c.blur > 0:
            x = self._blur(x, r)
        if self.c.noise > 0:
            std = r.uniform(0.0, self.c.noise, (x.shape[0], 1, 1, 1))
            x = x + r.randn(x.shape) * std
        if self.c.erase > 0:
            x = self._erase(x, r)
        return (x - self.mean.to(x.device)) / self.std.to(x.device)

    def _affine(self, x: torch.Tensor, r: _Draws) -> torch.Tensor:
        """Random resized crop, rotation, shear and flips as one sampling grid per image."""
        c, b = self.c, x.shape[0]
        # crop area fraction and aspect ratio (log-uniform), as RandomResizedCrop draws them
        area = r.uniform(c.crop_scale[0], c.crop_scale[1], (b,))
        # crop_scale [1, 1] means no crop at all, not a full-area crop squeezed by the ratio
        ratio_range = c.crop_ratio if c.crop_scale != (1.0, 1.0) else (1.0, 1.0)
        log_r = r.uniform(math.log(ratio_range[0]), math.log(ratio_range[1]), (b,))
        ratio = torch.exp(log_r)
        sw = torch.sqrt(area * ratio).clamp(max=1.0)   # crop width / image width
        sh = torch.sqrt(area / ratio).clamp(max=1.0)
        # crop centre anywhere that keeps the crop inside the image (normalised -1..1 coords)
        tx = (r.rand((b,)) * 2 - 1) * (1 - sw)
        ty = (r.rand((b,)) * 2 - 1) * (1 - sh)
        ang = r.uniform(-c.rotation, c.rotation, (b,)) * (math.pi / 180)
        shr = torch.tan(r.uniform(-c.shear, c.shear, (b,)) * (math.pi / 180))
        fx = torch.where(r.bernoulli(0.5 if c.flip else 0.0, b), -1.0, 1.0)
        fy = torch.where(r.bernoulli(0.5 if c.vertical_flip else 0.0, b), -1.0, 1.0)
        cos, sin = torch.cos(ang), torch.sin(ang)
        # output coords -> input coords: scale(crop) @ rotate @ shear @ flip, then shift
        a00 = sw * (cos * fx)
        a01 = sw * (cos * shr - sin) * fy
        a10 = sh * (sin * fx)
        a11 = sh * (sin * shr + cos) * fy
        theta = torch.stack([torch.stack([a00, a01, tx], 1), torch.stack([a10, a11, ty], 1)], 1)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        # reflection keeps rotated corners natural for photos and black for centred digits
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection",
                             align_corners=False)

    def _stroke(self, x: torch.Tensor, r: _Draws) -> torch.Tensor:
        """Random stroke width: blend every image toward its 3x3 dilation (t > 0) or its
        3x3 erosion (t < 0) by its own t in [-stroke, stroke]. Thicker or thinner pen strokes
        then count as the same image: measured on digits and letters it lifts precision@4
        a lot (``bench/QUALITY.md``). For dark strokes on a light ground the two directions
        swap, which the symmetric range makes no matter."""
        s = self.c.stroke or 0.0
        t = r.uniform(-s, s, (x.shape[0], 1, 1, 1))
        dilated = F.max_pool2d(x, 3, 1, 1)
        eroded = -F.max_pool2d(-x, 3, 1, 1)
        return torch.where(t > 0, x + t * (dilated - x), x - t * (eroded - x))

    def _colour(self, x: torch.Tensor, r: _Draws) -> torch.Tensor:
        c, b = self.c, x.shape[0]
        shape = (b, 1, 1, 1)
        changed = False
        if c.color_jitter > 0:
            s = 0.8 * c.color_jitter   # SimCLR's colour jitter: 0.8 * strength per factor
            x = x * r.uniform(1 - s, 1 + s, shape)
            grey = _grey(x) if x.shape[1] == 3 else x
            m = grey.mean(dim=(1, 2, 3), keepdim=True)
            x = (x - m) * r.uniform(1 - s, 1 + s, shape) + m
            changed = True
        if x.shape[1] == 3:
            if c.saturation > 0:
                s = 0.8 * c.saturation
                g = _grey(x)
                x = (x - g) * r.uniform(1 - s, 1 + s, shape) + g
                changed = True
            if c.hue > 0:
                x = self._hue(x, r.uniform(-c.hue, c.hue, (b,)))
                changed = True
            if c.grayscale > 0:
                to_grey = r.bernoulli(c.grayscale, b).view(shape)
                x = torch.where(to_grey, _grey(x).expand_as(x), x)
                changed = True
        return x.clamp_(0.0, 1.0) if changed else x

    @staticmethod
    def _hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
        """Rotate the chroma plane of YIQ by ``shift`` turns: (B, 3, H, W), shift (B,)."""
        to_yiq = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322],
                               [0.211, -0.523, 0.312]], device=x.device)
        from_yiq = torch.linalg.inv(to_yiq)
        ang = shift * (2 * math.pi)
        cos, sin = torch.cos(ang), torch.sin(ang)
        one, zero = torch.ones_like(cos), torch.zeros_like(cos)
        rot = torch.stack([torch.stack([one, zero, zero], 1), torch.stack([zero, cos, -sin], 1),
                           torch.stack([zero, sin, cos], 1)], 1)          # (B, 3, 3)
        m = from_yiq @ rot @ to_yiq
        return torch.einsum("bij,bjhw->bihw", m, x)

    def _blur(self, x: torch.Tensor, r: _Draws) -> torch.Tensor:
        """Separable Gaussian blur, its own sigma per image (0 = untouched) as grouped conv."""
        c, (b, ch, h, w), dev = self.c, x.shape, x.device
        radius = max(1, min(math.ceil(2 * c.blur_sigma[1]), (min(h, w) - 1) // 2))
        sigma = r.uniform(c.blur_sigma[0], c.blur_sigma[1], (b,))
        sigma = torch.where(r.bernoulli(c.blur, b), sigma, torch.full_like(sigma, 1e-3))
        t = torch.arange(-radius, radius + 1, device=dev, dtype=x.dtype)
        k = torch.exp(-(t[None] ** 2) / (2 * sigma[:, None] ** 2))
        k = (k / k.sum(1, keepdim=True)).repeat_interleave(ch, 0)         # (B*C, K)
        y = x.reshape(1, b * ch, h, w)
        y = F.pad(y, (radius, radius, radius, radius), mode="reflect")
        y = F.conv2d(y, k[:, None, None, :], groups=b * ch)
        y = F.conv2d(y, k[:, None, :, None], groups=b * ch)
        return y.reshape(b, ch, h, w)

    def _erase(self, x: torch.Tensor, r: _Draws) -> torch.Tensor:
        """Blank one random rectangle (2-20 % of the area) in a fraction ``erase`` of images."""
        b, _, h, w = x.shape
        dev = x.device
        area = r.uniform(0.02, 0.2, (b,))
        ratio = torch.exp(r.uniform(math.log(0.3), math.log(3.3), (b,)))
        eh = torch.sqrt(area / ratio).clamp(max=1.0)
        ew = torch.sqrt(area * ratio).clamp(max=1.0)
        y0 = r.rand((b,)) * (1 - eh)
        x0 = r.rand((b,)) * (1 - ew)
        ys = (torch.arange(h, device=dev) + 0.5) / h
        xs = (torch.arange(w, device=dev) + 0.5) / w
        inside_y = (ys[None] >= y0[:, None]) & (ys[None] < (y0 + eh)[:, None])   # (B, H)
        inside_x = (xs[None] >= x0[:, None]) & (xs[None] < (x0 + ew)[:, None])   # (B, W)
        chosen = r.bernoulli(self.c.erase, b)[:, None, None]
        hit = inside_y[:, :, None] & inside_x[:, None, :] & chosen
        mean = self.mean.to(dev)   # erased pixels take the data mean: 0 after standardising
        return torch.where(hit[:, None], mean.expand(b, -1, h, w), x)
