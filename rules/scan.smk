rule scan:
    """One record per input file: name, version, tags, Requires-Dist, sha256 or why invalid."""
    input:
        wheels=input_wheels,
    output:
        inventory=f"{RESULTS}/scan/inventory.json",
    log:
        f"{RESULTS}/logs/scan.log",
    run:
        inline("scan.py", input, output, params, wildcards, log)
