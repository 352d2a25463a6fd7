"""Where the heavy work runs: this process (the default) or a Ray cluster (``mlsd[ray]``)."""
