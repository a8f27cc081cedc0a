"""Inference: model files and bundled models, the tile grid, the engine and the GeoTIFF writer."""
