"""The README opens with the two commands, and CI runs the second one verbatim."""
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _readme_commands():
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    return re.findall(r"```bash\n(.*?)\n```", text, flags=re.S)[:2]


def test_two_commands_and_ci():
    main_job, tests = _readme_commands()
    assert main_job.endswith("bertg4 deploy") and "'.[cpu]'" in main_job
    assert "'.[cpu,test,mxnet,ort,serve]'" in tests and "pytest" in tests
    ci = open(os.path.join(ROOT, ".ci", "run"), encoding="utf-8").read().splitlines()
    assert tests in ci, ".ci/run must run the README's test command verbatim"
