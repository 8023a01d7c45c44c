"""Datamodules: one per dataset, all serving batches as dicts with fixed keys.

Keys: ``image`` (float in [0, 1], N×C×H×W), ``index``, and where the dataset has them
``label`` (int class), ``attributes`` (float multi-hot), ``caption`` (list of str).
"""

from lightning_gen.data.animal_faces import AnimalFacesDataModule
from lightning_gen.data.awa2 import AwA2DataModule
from lightning_gen.data.base import GenerativeDataModule
from lightning_gen.data.cat_faces import CatFacesDataModule
from lightning_gen.data.celeba import CelebADataModule
from lightning_gen.data.hf_dataset import HFDatasetDataModule
from lightning_gen.data.image_folder import ImageFolderDataModule
from lightning_gen.data.nabirds import NABirdsDataModule
from lightning_gen.data.shapes import ShapesDataModule

__all__ = [
    "AnimalFacesDataModule",
    "AwA2DataModule",
    "CatFacesDataModule",
    "CelebADataModule",
    "GenerativeDataModule",
    "HFDatasetDataModule",
    "ImageFolderDataModule",
    "NABirdsDataModule",
    "ShapesDataModule",
]
