"""s390x Wheel Refinery: the domain behind the Snakemake workflow and the `refinery` CLI."""

__version__ = "0.1.0"
