"""Building the container images: catalog, contexts, base filesystem, builds."""
