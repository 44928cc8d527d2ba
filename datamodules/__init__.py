"""LightningDataModules for lightning_gen: images and text, offline-first."""
from datamodules.base import ImageDataModule
from datamodules.mnist import FashionMNISTDataModule, MNISTDataModule
from datamodules.synthetic import SyntheticImageDataModule

__all__ = ["FashionMNISTDataModule", "ImageDataModule", "MNISTDataModule", "SyntheticImageDataModule"]
