"""Pipelines: GitLab CI and GitHub Actions files generated from conveyor.yml, the check that they have not
drifted from it, and what Conveyor needs to know when it runs inside one.

    pipeline.py     what a pipeline is made of: environments in promotion order, their jobs' shape
    gitlab.py       `.gitlab-ci.yml` from a Pipeline
    github.py       a GitHub Actions workflow from a Pipeline
    check.py        a committed file against what would be generated now
    environment.py  which CI system runs us, who started it, the pipeline's URL
    sections.py     collapsible sections in a CI job's log

Generation is pure: a config (and the names of the commands this Conveyor has) in, YAML text out.
"""
