"""``make bench``: speed and cost of the uploader, measured on its real code paths (see bench/README.md)."""
