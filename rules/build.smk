rule reuse_wheels:
    """Every reusable input wheel copied as is, in one batched job."""
    input:
        inventory=rules.scan.output.inventory,
        plan=rules.plan.output.plan,
    output:
        record=RESULTS.reuse_record,
    log:
        RESULTS.job_log("reuse_wheels"),
    run:
        inline("reuse_wheels.py", input, output, params, wildcards, log)


rule fetch_wheels:
    """Compatible target wheels downloaded from the index (cached, sha256-verified), batched."""
    input:
        plan=rules.plan.output.plan,
    output:
        record=RESULTS.fetch_record,
    log:
        RESULTS.job_log("fetch_wheels"),
    run:
        inline("fetch_wheels.py", input, output, params, wildcards, log)


rule prepare_build_env:
    """Every planned sdist and its build requirements (as wheels) downloaded once, before any
    build, and each distinct build environment of the local builder made once, so that builds
    share it or install their own offline (refinery_lib/warmup.py). An sdist that cannot be
    downloaded is named in the record and blocks nothing."""
    input:
        plan=rules.plan.output.plan,
    output:
        record=RESULTS.buildenv_record,
    log:
        main=RESULTS.job_log("prepare_build_env"),
        pip=RESULTS.job_log("prepare_build_env.pip"),
    run:
        inline("prepare_build_env.py", input, output, params, wildcards, log)


rule fetch_sdist:
    """The sdist of one package to build, downloaded once into the cache."""
    input:
        # params come from the plan; ancient: a re-made plan alone reruns nothing
        plan=ancient(rules.plan.output.plan),
        # after the warm-up, which downloaded the sdist already (then this job finds it cached)
        buildenv=ancient(rules.prepare_build_env.output.record),
    output:
        record=RESULTS.sdist_record("{key}"),
    log:
        RESULTS.job_log("fetch_sdist/{key}"),
    # a build is ready only once its sdist is here: fetching in the builds' priority order is
    # what lets the build order follow --schedule when jobs are scarce
    priority: build_priority
    params:
        source=sdist_params,
    run:
        inline("fetch_sdist.py", input, output, params, wildcards, log)


rule build_wheel:
    """One package built from its sdist and repaired to the target platform."""
    input:
        plan=ancient(rules.plan.output.plan),
        sdist=rules.fetch_sdist.output.record,
        # ancient: a warm-up redone for a changed plan does not rebuild what was built
        buildenv=ancient(rules.prepare_build_env.output.record),
        deps=build_dependencies,
    output:
        outcome=RESULTS.outcome("{key}"),
    log:
        RESULTS.job_log("build_wheel/{key}"),
    benchmark:
        RESULTS.benchmark("{key}")
    # shortest-first (or fifo, longest-first) from observed durations in the history
    priority: build_priority
    conda:
        "../envs/build.yaml"
    container:
        BUILD_IMAGE
    resources:
        mem_mb=build_mem_mb,
        runtime=build_runtime,
        cpus_per_task=build_cpus,
    params:
        build=node_build_params,
    script:
        "../scripts/build_wheel.py"
