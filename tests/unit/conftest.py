"""Unit-test fixtures."""

import sqlite3

import pytest


@pytest.fixture
def sql_trace(monkeypatch):
    """`sql_trace(module, ...)`: every SQL statement those modules' sqlite3.connect runs."""
    statements: list[str] = []
    real_connect = sqlite3.connect

    def traced(*args, **kwargs):
        con = real_connect(*args, **kwargs)
        con.set_trace_callback(statements.append)
        return con

    def install(*modules):
        for module in modules:
            monkeypatch.setattr(module.sqlite3, "connect", traced)
        return statements

    return install
