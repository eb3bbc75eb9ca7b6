rule aggregate:
    """manifest.json, history events, a PEP 503 index of the output and the closure check.

    It reads its inputs, each build's benchmark, and the failure record of any node
    (`Paths.failure`: written by the job that failed, so no rule's output, since Snakemake
    removes a failed job's outputs; removed by the node's job when it runs again). The
    onerror handler runs the same aggregation after failed jobs, and there those records say
    why; this rule runs only when every job succeeded, so the only ones it finds are an
    earlier run's, of nodes without a job in this plan (refinery_lib/aggregate.read_outcomes)."""
    input:
        plan=rules.plan.output.plan,
        records=aggregate_inputs,
    output:
        # OUTPUT/manifest.json is written too, but is no Snakemake output: after a failed run
        # Snakemake removes the (empty) folder of a missing output, and that folder is the
        # user's. `refinery` reruns this rule when the manifest is gone (cli_run).
        # Written only here, never by the onerror handler: a manifest written after a failed
        # job leaves this missing, so the next run retries the failed targets
        complete=RESULTS.complete,
    log:
        RESULTS.job_log("aggregate"),
    run:
        inline("aggregate.py", input, output, params, wildcards, log)
