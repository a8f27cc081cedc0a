"""Raster data in and out: raster I/O, bands and band scaling, block sampling and splits,
make-dataset and its index, training crops, and the HR -> LR degradations."""
