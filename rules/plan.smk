checkpoint plan:
    """reuse / fetch / build / missing / skip for every name==version, dependencies expanded."""
    input:
        inventory=rules.scan.output.inventory,
        requeue=requeue_record,
    output:
        plan=f"{RESULTS}/plan/plan.json",
    # not read by the job (it takes its settings from the config): they are what makes
    # Snakemake plan again when the target, strategy, index or overrides change
    # (rerun-triggers include params)
    params:
        target=config["target"],
        strategy=config["strategy"],
        # (credentials in an index URL stay out of Snakemake's metadata)
        index=redact_data(config["index"]),
        overrides=config["overrides"],
    log:
        f"{RESULTS}/logs/plan.log",
    run:
        inline("plan.py", input, output, params, wildcards, log)
