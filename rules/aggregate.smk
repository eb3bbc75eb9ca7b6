rule aggregate:
    """manifest.json, history events, a PEP 503 index of the output and the closure check."""
    input:
        plan=rules.plan.output.plan,
        records=aggregate_inputs,
    output:
        # OUTPUT/manifest.json is written too, but is no Snakemake output: after a failed run
        # Snakemake removes the (empty) folder of a missing output, and that folder is the
        # user's. `refinery` reruns this rule when the manifest is gone (cli_run).
        # Written only here, never by the onerror handler: a manifest written after a failed
        # job leaves this missing, so the next run retries the failed targets
        complete=f"{RESULTS}/aggregate/complete.json",
    log:
        f"{RESULTS}/logs/aggregate.log",
    run:
        inline("aggregate.py", input, output, params, wildcards, log)
