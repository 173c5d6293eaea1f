"""Data: the one image decoder, scanning data set folders, decoding pipelines, zips, the demo set, augmentation."""
