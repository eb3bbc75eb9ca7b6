rule scan:
    """One record per input file: name, version, tags, Requires-Dist, sha256 or why invalid.

    The input folder's file names never become Snakemake patterns (a file named `a{b}.whl`
    or `a<b>.whl` would be read as a wildcard or a path variable): the step lists the folder
    itself, and a fingerprint of that listing (names, sizes, mtimes) reruns it on a change."""
    output:
        inventory=RESULTS.inventory,
    log:
        RESULTS.job_log("scan"),
    params:
        listing=input_listing,
    run:
        inline("scan.py", input, output, params, wildcards, log)
