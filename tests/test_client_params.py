"""`labqueue run --param`: values typed by the pipeline's schema before sending."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from frontend.client_params import ParamError, describe, glob_match, parameters

PIPELINES = Path(__file__).resolve().parent.parent / "backend" / "pipelines"
SEQ_QC = json.loads((PIPELINES / "seq-qc" / "parameters.schema.json").read_text())
TABLES = json.loads(
    (PIPELINES / "table-profiler" / "parameters.schema.json").read_text()
)
FILES = ["raw/a.fq", "raw/b.fq.gz", "raw/old/c.fq", "notes.txt", "t.csv"]
CHOICES = {
    "properties": {
        "mode": {"type": "string", "enum": ["fast", "careful"]},
        "ratio": {"type": "number", "minimum": 0, "maximum": 1},
    }
}


def asked() -> list[str]:
    return FILES


def test_one_file_for_a_list_is_a_list_of_one():
    # The README's own example, which used to answer "must be a array".
    assert parameters(SEQ_QC, ("sequences=raw/a.fq",), asked) == {
        "sequences": ["raw/a.fq"]
    }


def test_a_name_again_adds_to_the_list_and_true_is_a_boolean():
    given = ("sequences=raw/a.fq", "sequences=notes.txt", "vector_plots=yes")
    assert parameters(SEQ_QC, given, asked) == {
        "sequences": ["raw/a.fq", "notes.txt"],
        "vector_plots": True,
    }


def test_a_pattern_takes_the_projects_files_it_matches():
    assert parameters(SEQ_QC, ("sequences=raw/*",), asked) == {
        "sequences": ["raw/a.fq", "raw/b.fq.gz"]  # `*` stays in its folder
    }
    assert parameters(SEQ_QC, ("sequences=raw/**/*.fq",), asked) == {
        "sequences": ["raw/a.fq", "raw/old/c.fq"]
    }
    with pytest.raises(ParamError, match=r"'x/\*.fq' matches no file of the project"):
        parameters(SEQ_QC, ("sequences=x/*.fq",), asked)


def test_the_project_is_asked_for_its_files_only_for_a_pattern():
    def never() -> list[str]:
        raise AssertionError("listed the project's files for no pattern")

    assert parameters(TABLES, ("tables=t.csv", "bins=15"), never) == {
        "tables": ["t.csv"],
        "bins": 15,
    }


def test_a_json_list_is_taken_as_written():
    assert parameters(SEQ_QC, ('sequences=["raw/a.fq", "t.csv"]',), asked) == {
        "sequences": ["raw/a.fq", "t.csv"]
    }


@pytest.mark.parametrize(
    ("schema", "pair", "said"),
    [
        (TABLES, "bins=many", "bins: expected a whole number, got 'many'"),
        (TABLES, "bins=2", "bins: must be at least 5, got 2"),
        (TABLES, "colour=red", "there is no parameter 'colour' (it has: bins, "),
        (TABLES, "bins", "'bins': write it as name=value"),
        (SEQ_QC, "vector_plots=perhaps", "expected true or false, got 'perhaps'"),
        (CHOICES, "mode=quick", "mode: 'quick' is not one of: fast, careful"),
        (CHOICES, "ratio=1.5", "ratio: must be at most 1, got 1.5"),
    ],
)
def test_a_value_that_does_not_fit_is_named_in_one_line(schema, pair, said):
    with pytest.raises(ParamError) as refused:
        parameters(schema, (pair,), asked)
    assert said in str(refused.value)
    assert "\n" not in str(refused.value)


def test_one_value_parameters_refuse_two():
    with pytest.raises(ParamError, match="bins takes one value; it was given 2"):
        parameters(TABLES, ("bins=10", "bins=20"), asked)


def test_glob_match_is_the_shells():
    assert glob_match("a/b.csv", "a/*.csv")
    assert not glob_match("a/x/b.csv", "a/*.csv")
    assert glob_match("a/x/y/b.csv", "a/**/b.csv")
    assert glob_match("a/b.csv", "a/**/b.csv")
    assert not glob_match("b.csv", "a/*.csv")


def test_describe_shows_each_parameter_as_the_run_form_does():
    shown = "\n".join(describe(TABLES))
    assert "tables (list of files *.csv *.tsv *.csv.gz *.tsv.gz" in shown
    assert "required" in shown.split("\n")[0]
    assert "bins (whole number 5–200, default 30)" in shown
    assert "Number of bars in each histogram." in shown
