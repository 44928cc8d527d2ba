"""One LightningModule per generator family."""
from lightning_gen.models.vae import VAE

__all__ = ["VAE"]
