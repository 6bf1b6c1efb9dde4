"""The annotation page: people mark the regions of training images that should not matter."""
