"""The data: data sets and their files, the LightningDataModule, and batch augmentation."""
