"""One LightningModule per generator family."""

from lightning_gen.models.diffusion import Diffusion
from lightning_gen.models.gan import GAN
from lightning_gen.models.gpt import GPT
from lightning_gen.models.vae import VAE

__all__ = ["Diffusion", "GAN", "GPT", "VAE"]
