checkpoint plan:
    """reuse / fetch / build / missing / skip for every name==version, dependencies expanded."""
    input:
        inventory=rules.scan.output.inventory,
        missing_deps=missing_deps_record,
    output:
        plan=RESULTS.plan,
    log:
        RESULTS.job_log("plan"),
    # Rerun triggers, not read by the job (it takes its settings from the config): Snakemake
    # plans again when one changes (the profiles' rerun-triggers include params). They are
    # the config the planner reads: the target, the strategy (upgrade, fallback-latest,
    # expansion depth, no-binary, extras, skip-known-failures), the index (its URLs without
    # credentials, which stay out of Snakemake's metadata) and the overrides (the planner
    # reads their version pins; a change to any key plans again).
    params:
        target=config["target"],
        strategy=config["strategy"],
        index=redact_data(config["index"]),
        overrides=config["overrides"],
    run:
        inline("plan.py", input, output, params, wildcards, log)
