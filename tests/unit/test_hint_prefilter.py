"""The prefilter of hint matching: the literals read from a pattern are in every match of it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from refinery_lib.hint_catalog import load_catalog
from refinery_lib.hint_prefilter import Prefilter, required_literals
from refinery_lib.text_lines import line_ends

ROOT = Path(__file__).resolve().parents[2]
LOGS = ROOT / "tests" / "fixtures" / "logs"

# pattern -> the literals every match holds (None: the parser knows of none)
CASES = [
    ("abc", {"abc"}),
    ("foo\\.bar", {"foo.bar"}),
    ("ab|cd", {"ab", "cd"}),
    ("ab|.*", None),
    ("abx+yz", {"abx"}),  # after a repeat the text is not next to the first copy
    ("abcd?efg", {"abc"}),
    ("a\\d+bc", {"bc"}),
    ("a{2}bcd", {"bcd"}),
    ("a{0,3}bcd", {"bcd"}),
    ("{x}abc", {"{x}abc"}),  # braces that are no repeat are text
    ("a{}bc", {"a{}bc"}),
    ("x{,2}yyy", {"yyy"}),
    ("error (?:one|two) here", {"error "}),
    ("(?:x|yy)zzzz", {"zzzz"}),
    ("pre(?:fix)post", {"prefixpost"}),  # a group of one alternative is part of the text
    ("x(?P<n>abc)y", {"xabcy"}),
    ("x(abc)+y", {"abc"}),
    ("x(?:abc)?yz", {"yz"}),
    ("(?i:abc)def", {"def"}),
    ("(?i)abcdef", None),
    ("(?x)abc def", None),
    ("(?s:ab.c)def", {"cdef"}),
    ("(?<!foo)barbaz", {"barbaz"}),
    ("(?=look)ahead", {"ahead"}),
    ("[abc]def", {"def"}),
    ("[]x]yz", {"yz"}),
    ("[^]x]yzw", {"yzw"}),
    ("[a\\]]yz", {"yz"}),
    ("\\x41BC", {"ABC"}),
    ("\\u00e9t\\u00e9", {"été"}),
    ("(a)\\1bcd", {"bcd"}),
    ("\\0123abc", {"3abc"}),  # \012 is one (octal) character
    ("\\N{BULLET}abc", {"abc"}),
    ("ab++cde", {"cde"}),
    ("(?#comment)abc", {"abc"}),
    ("(x)?(?(1)yes|no)zzz", {"zzz"}),
    ("^\\s*CMake Error\\b", {"CMake Error"}),
    ("'(?:[^']*/)?(?:cc)' failed", {"cc' failed"}),
]


@pytest.mark.parametrize(("pattern", "expected"), CASES)
def test_required_literals(pattern, expected):
    re.compile(pattern)  # every case is a valid pattern
    found = required_literals(pattern)
    assert (set(found) if found is not None else None) == expected


def _catalog_patterns() -> list[tuple[str, re.Pattern[str], frozenset[str]]]:
    return [(e.id, rx, lits) for e in load_catalog() for rx, lits in zip(e.regexes, e.literals,
                                                                            strict=True)]


def test_every_catalog_pattern_has_literals_the_prefilter_can_use():
    for hint_id, rx, literals in _catalog_patterns():
        assert literals and min(map(len, literals)) >= 3, (hint_id, rx.pattern)


def test_prefilter_never_drops_a_line_the_pattern_matches():
    """Over every pattern of the real catalog and every line of the captured logs and of the
    catalog's examples: a line a pattern matches holds one of the pattern's literals."""
    lines = {line for p in LOGS.glob("*.log")
             for line in p.read_text(encoding="utf-8", errors="replace").splitlines()}
    lines |= {example for e in load_catalog() for example in e.examples}
    matched = 0
    for hint_id, rx, literals in _catalog_patterns():
        for line in lines:
            if rx.search(line):
                matched += 1
                assert any(lit in line for lit in literals), (hint_id, rx.pattern, line)
    assert matched > 300  # the logs and examples do exercise the catalog


def test_prefilter_candidates_are_the_lines_holding_a_literal():
    class Entry:
        def __init__(self, *literals: frozenset[str]):
            self.literals = literals

    prefilter = Prefilter.of([Entry(frozenset({"abc"}), frozenset({"zz", "yy"})),
                              Entry(frozenset())])
    text = "none\nxabcx\nyy and abc\nlast zz"
    found = prefilter.candidates(text, line_ends(text))
    assert found == {0: [(1, [0])], 1: [(0, [0]), (1, [0])], 2: [(0, [0, 1]), (1, [0])],
                     3: [(0, [1]), (1, [0])]}


def test_generated_matches_hold_a_literal():
    """Strings hypothesis generates from the catalog's patterns hold one of their literals
    (derandomized: the same examples on every run, so a failure reproduces)."""
    import hypothesis
    import hypothesis.strategies as st

    patterns = sorted({(rx.pattern, literals) for _, rx, literals in _catalog_patterns()},
                      key=lambda item: item[0])

    @hypothesis.settings(max_examples=200, deadline=None, database=None, derandomize=True,
                         suppress_health_check=list(hypothesis.HealthCheck))
    @hypothesis.given(st.sampled_from(patterns).flatmap(
        lambda item: st.tuples(st.just(item), st.from_regex(item[0]))))
    def check(drawn):
        (pattern, literals), text = drawn
        assert re.search(pattern, text)
        assert any(lit in text for lit in literals), (pattern, text)

    check()


def test_no_private_regex_parser():
    """The refinery reads regexes with its own parser, never the standard library's private
    one (re._parser, sre_parse), whose layout changes between Python versions."""
    private = {"sre_parse", "sre_compile", "sre_constants", "re._parser", "re._compiler",
               "re._constants"}
    found = []
    for path in sorted((ROOT / "refinery_lib").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
            elif (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                  and node.value.id == "re" and node.attr.startswith("_")):
                names = [f"re.{node.attr}"]
            elif isinstance(node, ast.Constant) and node.value in private:
                names = [node.value]  # importlib.import_module("sre_parse") and the like
            found += [f"{path.relative_to(ROOT)}:{node.lineno}: {n}" for n in names
                      if n in private]
    assert found == []
